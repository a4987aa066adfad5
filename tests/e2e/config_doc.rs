//! docs/CONFIG.md stays true: its TOML block parses into the settings and equals the defaults.

use vsa_appliance::settings::Settings;

#[test]
fn the_documented_defaults_are_the_real_defaults() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md"),
    )
    .unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let dir = crate::support::TempDir::new("config");
    let file = dir.path().join("vsa.toml");
    std::fs::write(&file, &doc[start..end]).unwrap();
    let parsed = Settings::load(Some(&file)).expect("documented config loads");
    assert_eq!(
        parsed,
        Settings::default(),
        "docs/CONFIG.md and Settings::default() disagree"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    let dir = crate::support::TempDir::new("config");
    let file = dir.path().join("vsa.toml");
    std::fs::write(&file, "[pool]\nworkerz = 2\n").unwrap();
    assert!(
        Settings::load(Some(&file))
            .unwrap_err()
            .to_string()
            .contains("workerz")
    );
    std::fs::write(&file, "[pool]\nworkers = 0\n").unwrap();
    assert!(Settings::load(Some(&file)).is_err());
    std::fs::write(&file, "[index]\nrebalance_load_half_life_s = 0.0\n").unwrap();
    assert!(
        Settings::load(Some(&file))
            .unwrap_err()
            .to_string()
            .contains("rebalance_load_half_life_s")
    );
    assert!(Settings::load(Some(&dir.path().join("missing.toml"))).is_err());
}
