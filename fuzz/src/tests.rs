//! Smoke tests: every seed is valid and accepted, a short run of every target finds nothing,
//! and the driver does report panics and allocation peaks over the cap.

use std::time::Duration;

use super::*;
use crate::driver::{Options, run_target};
use crate::mutate::Mutator;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn temp(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("vsa-fuzz-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn opts(tag: &str, inputs: u64) -> Options {
    Options {
        inputs,
        findings: temp(tag),
        progress: Duration::from_secs(3600),
        ..Options::default()
    }
}

#[test]
fn every_seed_is_accepted() {
    for t in TARGETS {
        let seeds = (t.seeds)();
        assert!(seeds.len() >= 3, "{}: {} seeds", t.name, seeds.len());
        let accepted = seeds
            .iter()
            .filter(|s| (t.run)(s) == Outcome::Accepted)
            .count();
        // The empty stream/log and the oversized or torn frames are rejected on purpose.
        assert!(
            accepted + 4 >= seeds.len(),
            "{}: only {accepted} of {} seeds accepted",
            t.name,
            seeds.len()
        );
    }
}

#[test]
fn seeds_cover_every_image_format() {
    let formats: std::collections::BTreeSet<String> = seeds::images()
        .iter()
        .filter_map(|b| vsa_models::image::guess_format(b).ok())
        .map(|f| format!("{f:?}"))
        .collect();
    for f in ["Png", "Jpeg", "WebP", "Gif", "Bmp"] {
        assert!(formats.contains(f), "{formats:?}");
    }
}

#[test]
fn a_short_run_of_every_target_finds_nothing() {
    for t in TARGETS {
        let o = opts(&format!("short-{}", t.name), 3_000);
        let r = run_target(t, &o).expect("run");
        assert!(r.findings.is_empty(), "{}: {:?}", t.name, r.findings);
        assert_eq!(r.inputs, 3_000);
        assert!(r.accepted > 0, "{}: nothing accepted", t.name);
        assert!(r.peak > 0, "{}: the allocator counted nothing", t.name);
        let _ = std::fs::remove_dir_all(&o.findings);
    }
}

fn panics_on_0x42(data: &[u8]) -> Outcome {
    assert!(!data.contains(&0x42), "found the byte");
    Outcome::Rejected
}

fn allocates_a_lot(data: &[u8]) -> Outcome {
    if data.len() > 3 {
        let v = vec![1u8; 4 << 20];
        assert_eq!(v.len(), 4 << 20);
    }
    Outcome::Rejected
}

fn no_seeds() -> Vec<Vec<u8>> {
    vec![vec![0; 4]]
}

#[test]
fn a_panic_is_a_finding_saved_to_disk() {
    static T: Target = Target {
        name: "panicky",
        about: "test",
        run: panics_on_0x42,
        seeds: no_seeds,
        max_len: 64,
        cap: targets::codec_cap,
    };
    let o = opts("panic", 1_000_000);
    let r = run_target(&T, &o).expect("run");
    assert_eq!(r.findings.len(), 1, "{r:?}");
    assert!(r.inputs < 1_000_000);
    let f = &r.findings[0];
    assert_eq!(f.kind, "panic");
    let saved = std::fs::read(&f.path).expect("saved input");
    assert!(saved.contains(&0x42));
    assert!(f.message.contains("found the byte"), "{}", f.message);
    let _ = std::fs::remove_dir_all(&o.findings);
}

#[test]
fn an_allocation_over_the_cap_is_a_finding() {
    fn one_mib(_: usize) -> usize {
        1 << 20
    }
    static T: Target = Target {
        name: "greedy",
        about: "test",
        run: allocates_a_lot,
        seeds: no_seeds,
        max_len: 64,
        cap: one_mib,
    };
    let o = opts("alloc", 100_000);
    let r = run_target(&T, &o).expect("run");
    assert_eq!(r.findings.len(), 1, "{r:?}");
    assert_eq!(r.findings[0].kind, "alloc");
    assert!(r.peak >= 4 << 20);
    let _ = std::fs::remove_dir_all(&o.findings);
}

#[test]
fn the_mutator_is_deterministic_and_bounded() {
    let corpus = seeds::wal_logs();
    let (mut a, mut b) = (Mutator::new(7, 300), Mutator::new(7, 300));
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut lengths = std::collections::BTreeSet::new();
    for _ in 0..5_000 {
        a.next_input(&corpus, &mut x);
        b.next_input(&corpus, &mut y);
        assert_eq!(x, y);
        assert!(x.len() <= 300);
        lengths.insert(x.len());
    }
    assert!(lengths.len() > 50, "little variety: {lengths:?}");
}

#[test]
fn crc_fix_up_lets_mutations_reach_the_record_decoder() {
    let log = seeds::wal_logs().concat();
    let mut damaged = log.clone();
    // A payload byte of the first record: the CRC catches it, the fix-up hides it.
    damaged[20] ^= 0x01;
    assert!(
        vsa_actors::durability::record::decode_records(&damaged)
            .corruption
            .is_some()
    );
    let fixed = targets::fix_crcs(&damaged, 0);
    assert_ne!(fixed, damaged);
    let scan = vsa_actors::durability::record::decode_records(&fixed);
    assert!(
        scan.corruption.as_ref().is_none_or(|c| !c.contains("CRC")),
        "{:?}",
        scan.corruption
    );
    let _ = wal(&fixed);
}
