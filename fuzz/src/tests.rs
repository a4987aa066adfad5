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
fn model_seeds_hold_every_part_and_round_trip() {
    let states = seeds::model_states();
    let files = seeds::models();
    assert_eq!(files.len(), states.len());
    assert!(
        states
            .iter()
            .any(|s| s.encoder.is_some() && s.prototypes.is_some())
    );
    for (state, bytes) in states.iter().zip(&files) {
        let decoded = vsa_actors::durability::model::decode(bytes).expect("a seed decodes");
        assert_eq!(&decoded, state);
        assert_eq!(model(bytes), Outcome::Accepted);
    }
    // Every seed fits the target's default largest input, so mutations keep whole encoders.
    assert!(files.iter().all(|f| f.len() <= targets::MODEL_MAX_LEN));
    // A payload byte of the encoder record: caught by its CRC as given, decoded behind the
    // fixed-up CRC (and refused or accepted by the encoder's own checks, never a panic).
    let big = files.iter().max_by_key(|f| f.len()).expect("seeds");
    let mut damaged = big.clone();
    damaged[100] ^= 0x40;
    assert!(vsa_actors::durability::model::decode(&damaged).is_err());
    let _ = model(&damaged);
}

#[test]
fn a_model_file_whose_encoder_shapes_wrap_around_is_corrupt() {
    use vsa_actors::durability::model::{self as m, ModelHeader};
    use vsa_actors::durability::record::{encode_framed, frame_payload};
    // The seed's encoder of 256-d embeddings with pca_dims set to 2^56 + 256, so that
    // pca_dims × input_dims wraps around to the projection's real length, CRCs correct:
    // decoded, its first use aborted the process allocating 2^56 + 256 floats.
    let stored = seeds::model_states()
        .into_iter()
        .find_map(|s| s.encoder.filter(|_| s.prototypes.is_none()))
        .expect("an encoder seed");
    let bytes = stored.encoder.to_bytes().expect("encodes");
    // version 1, input_dims 256, dims 16, pca_dims 256 (varints: 0xfb then a u16)
    assert_eq!(bytes[..8], [1, 0xfb, 0, 1, 16, 0xfb, 0, 1]);
    let mut patched = bytes[..5].to_vec();
    patched.push(0xfd);
    patched.extend_from_slice(&((1u64 << 56) + 256).to_le_bytes());
    patched.extend_from_slice(&bytes[8..]);
    let mut file = m::MAGIC.to_vec();
    file.extend_from_slice(&m::VERSION.to_le_bytes());
    let header = ModelHeader {
        encoder: Some((1, 1000)),
        prototypes: None,
        centroids: false,
    };
    file.extend_from_slice(&encode_framed(&header).expect("header"));
    file.extend_from_slice(&frame_payload(&patched).expect("frame"));
    match m::decode(&file) {
        Err(vsa_actors::durability::DurabilityError::Corrupt(msg)) => {
            assert!(msg.contains("encoder"), "{msg}")
        }
        other => panic!("expected a corrupt encoder, got {other:?}"),
    }
    assert_eq!(model(&file), Outcome::Rejected);
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
