//! `vsa demo` (the README's main job) and `vsa embed` on the bundled model.

use crate::support::vsa;

#[test]
fn demo_ingests_the_builtin_catalogue_and_finds_photographed_items() {
    let out = vsa(&["demo", "--queries", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ingested 98 catalogue items (0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("predicted category"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("found the photographed item first in"))
        .unwrap_or_default();
    let found: usize = line
        .split_whitespace()
        .nth(6)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(found >= 1, "{stdout}");
}

#[test]
fn embed_prints_sensible_classes_and_a_similarity_table() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata");
    let out = vsa(&[
        "embed",
        dir.join("coffee.png").to_str().unwrap(),
        dir.join("chelsea.png").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("espresso"), "{stdout}");
    assert!(
        stdout.contains("Egyptian cat") || stdout.contains("tabby"),
        "{stdout}"
    );
    assert!(stdout.contains("cosine similarity"), "{stdout}");
}

#[test]
fn embed_reports_a_bad_file_clearly() {
    let dir = crate::support::TempDir::new("embed");
    let bad = dir.path().join("not-an-image.jpg");
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let out = vsa(&["embed", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not-an-image.jpg") && stderr.contains("not a supported image"),
        "{stderr}"
    );
}

#[test]
fn a_missing_runtime_library_names_the_setup_command() {
    let out = vsa(&["demo", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/setup.sh"), "{stderr}");
}
