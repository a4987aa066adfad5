use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::manifest::{self, Checkpoint, CheckpointManifest, ShardSnapshot};
use super::model::{self, ModelState, StoredEncoder};
use super::record::{WalOp, WalRecord, decode_records, encode_record};
use super::recovery::{recover, recover_shard};
use super::snapshot::{self, SnapshotHeader};
use super::wal::{ReplayReport, SegmentEnd, WalWriter, replay, scan_segment, segments, wal_dir};
use super::{DiskItem, DurabilityError, FsyncPolicy, StorageConfig};
use crate::store::ItemRecord;

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "vsa-durability-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(id: &str, category: &str, x: f32) -> ItemRecord {
    ItemRecord::new(
        id.into(),
        category.into(),
        vec![("colour".into(), "red".into())],
        vec![("title".into(), format!("title of {id}"))],
        &[x, 1.0, -0.5, 0.25],
    )
}

fn upsert(seq: u64, id: &str, category: &str, shard: u32) -> WalRecord {
    WalRecord {
        seq,
        op: WalOp::Upsert {
            item: DiskItem::from(&record(id, category, seq as f32)),
            shard,
            evict: None,
        },
    }
}

fn config(fsync: FsyncPolicy) -> StorageConfig {
    StorageConfig {
        fsync,
        segment_bytes: 4096,
        ..StorageConfig::default()
    }
}

/// Appends records through a real writer and waits for every acknowledgement.
fn write_log(dir: &Path, first: u64, records: &[WalRecord], fsync: FsyncPolicy) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let wal = WalWriter::start(dir, &config(fsync), first).expect("start");
    // In groups of 10, each acknowledged before the next: several group commits.
    for chunk in records.chunks(10) {
        let acks: Vec<_> = chunk
            .iter()
            .map(|r| {
                wal.append(r.seq, encode_record(r).expect("encode"))
                    .expect("append")
            })
            .collect();
        for a in acks {
            rt.block_on(a).expect("ack").expect("logged");
        }
    }
}

#[test]
fn records_round_trip_and_a_cut_stops_the_scan_cleanly() {
    let records: Vec<WalRecord> = (1..=5)
        .map(|s| upsert(s, &format!("i{s}"), "c", 0))
        .collect();
    let bytes: Vec<u8> = records
        .iter()
        .flat_map(|r| encode_record(r).expect("encode"))
        .collect();
    let scan = decode_records(&bytes);
    assert_eq!(scan.records, records);
    assert!(scan.corruption.is_none());
    // Cut inside the last record: the first four survive, the cut is reported.
    let scan = decode_records(&bytes[..bytes.len() - 3]);
    assert_eq!(scan.records, records[..4]);
    assert!(scan.corruption.expect("reported").contains("torn"));
    // A flipped payload bit fails the CRC of that record only.
    let mut flipped = bytes.clone();
    let second = encode_record(&records[0]).expect("encode").len();
    flipped[second + 12] ^= 1;
    let scan = decode_records(&flipped);
    assert_eq!(scan.records.len(), 1);
    assert!(scan.corruption.expect("reported").contains("CRC"));
}

#[test]
fn the_writer_groups_commits_rotates_and_truncates() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = Dir::new("writer");
        let records: Vec<WalRecord> = (1..=200)
            .map(|s| upsert(s, &format!("i{s}"), "c", 0))
            .collect();
        write_log(dir.path(), 1, &records, fsync);
        // Small segments: the log was rotated many times, and replays whole and in order.
        let segs = segments(&wal_dir(dir.path())).expect("segments");
        assert!(segs.len() >= 3, "{fsync:?}: {} segments", segs.len());
        let mut seen = Vec::new();
        let report = replay(dir.path(), |r| {
            seen.push(r.seq);
            true
        })
        .expect("replay");
        assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "{fsync:?}");
        assert!(report.torn.is_none());
        // Truncating through seq 100 drops only segments wholly ≤ 100.
        let wal = WalWriter::start(dir.path(), &config(fsync), 201).expect("restart");
        wal.truncate_through(100).expect("truncate");
        drop(wal);
        let mut first = None;
        replay(dir.path(), |r| {
            first.get_or_insert(r.seq);
            true
        })
        .expect("replay");
        let first = first.expect("records left");
        assert!(
            first > 1 && first <= 101,
            "{fsync:?}: log now starts at {first}"
        );
    }
}

#[test]
fn snapshots_round_trip_and_damage_is_detected() {
    let dir = Dir::new("snapshot");
    let items: Vec<Arc<ItemRecord>> = (0..50)
        .map(|i| Arc::new(record(&format!("i{i}"), "c", i as f32)))
        .collect();
    let header = SnapshotHeader {
        category: "c".into(),
        shard: 0,
        seq: 77,
        items: 50,
    };
    let path = dir.path().join("s.snap");
    snapshot::write(&path, &header, &items).expect("write");
    let snap = snapshot::read(&path).expect("read");
    assert_eq!(snap.header, header);
    let expected: Vec<ItemRecord> = items.iter().map(|r| (**r).clone()).collect();
    assert_eq!(snap.items, expected);
    let bytes = std::fs::read(&path).expect("bytes");
    assert!(snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x10;
    assert!(snapshot::decode(&bad).is_err());
    let mut version = bytes.clone();
    version[8] = 9;
    let e = snapshot::decode(&version).expect_err("other version");
    assert!(e.to_string().contains("version 9"), "{e}");
}

/// Two checkpoints and a log; the newest snapshot corrupt → the older one plus replay.
/// The snapshot writer encodes items by reference and writes the file back in ranges as it
/// grows: the bytes must be those of framing each `DiskItem` as the log does, across several
/// write-back ranges and a rate limit.
#[test]
fn a_large_snapshot_is_the_framed_disk_items_byte_for_byte() {
    let dir = Dir::new("snapshot-large");
    let dims: Vec<f32> = (0..1280).map(|d| (d as f32 * 0.37).sin()).collect();
    let items: Vec<Arc<ItemRecord>> = (0..12_000)
        .map(|i| {
            let mut r = ItemRecord::new(
                format!("item-{i}"),
                format!("cat-{}", i % 3),
                vec![
                    ("colour".into(), "red".into()),
                    ("size".into(), format!("{i}")),
                ],
                vec![("title".into(), format!("title of {i}"))],
                &dims.iter().map(|v| v + i as f32 * 1e-3).collect::<Vec<_>>(),
            );
            r.colour = vec![0.5, 0.25, i as f32];
            r.quality = vec![("sharpness".into(), 0.75)];
            Arc::new(r)
        })
        .collect();
    let header = SnapshotHeader {
        category: "c".into(),
        shard: 3,
        seq: 12,
        items: items.len() as u64,
    };
    let path = dir.path().join("big.snap");
    let size = snapshot::write_limited(&path, &header, &items, 10_000).expect("write");
    let bytes = std::fs::read(&path).expect("bytes");
    assert_eq!(size, bytes.len() as u64);
    assert!(
        size > 3 * snapshot::WRITEBACK_BYTES,
        "{size} bytes: too few ranges"
    );
    let mut expected = snapshot::MAGIC.to_vec();
    expected.extend_from_slice(&snapshot::VERSION.to_le_bytes());
    expected.extend(super::record::encode_framed(&header).expect("header"));
    for item in &items {
        expected
            .extend(super::record::encode_framed(&DiskItem::from(item.as_ref())).expect("item"));
    }
    assert!(
        bytes == expected,
        "the snapshot differs from the framed items"
    );
    let snap = snapshot::read(&path).expect("read");
    assert_eq!(snap.items.len(), items.len());
    assert_eq!(snap.items[11_999], *items[11_999]);
    assert!(!dir.path().join("big.tmp").exists());
}

#[test]
fn recovery_falls_back_to_the_previous_checkpoint() {
    let dir = Dir::new("recovery");
    let d = dir.path();
    std::fs::create_dir_all(manifest::snapshot_dir(d)).expect("mkdir");
    let mut records: Vec<WalRecord> = (1..=30)
        .map(|s| upsert(s, &format!("i{s}"), "c", (s % 2) as u32))
        .collect();
    records.push(WalRecord {
        seq: 31,
        op: WalOp::Delete {
            id: "i3".into(),
            category: "c".into(),
            shard: 1,
        },
    });
    write_log(d, 1, &records, FsyncPolicy::Always);
    // Checkpoints at seq 10 and 20, built from the same records.
    let state_at = |seq: u64, shard: u32| -> Vec<Arc<ItemRecord>> {
        records
            .iter()
            .filter(|r| r.seq <= seq)
            .filter_map(|r| match &r.op {
                WalOp::Upsert { item, shard: s, .. } if *s == shard => {
                    Some(Arc::new(ItemRecord::from(item.clone())))
                }
                _ => None,
            })
            .collect()
    };
    let mut m = CheckpointManifest {
        version: manifest::MANIFEST_VERSION,
        checkpoints: Vec::new(),
    };
    for seq in [10u64, 20] {
        let mut shards = Vec::new();
        for shard in 0..2u32 {
            let items = state_at(seq, shard);
            let file = format!("snap-{seq}-{shard}.snap");
            let header = SnapshotHeader {
                category: "c".into(),
                shard,
                seq,
                items: items.len() as u64,
            };
            let bytes = snapshot::write(&manifest::snapshot_dir(d).join(&file), &header, &items)
                .expect("snapshot");
            shards.push(ShardSnapshot {
                category: "c".into(),
                shard,
                file,
                items: header.items,
                bytes,
            });
        }
        m.checkpoints.push(Checkpoint {
            seq,
            shards,
            model: None,
        });
    }
    manifest::store(d, &m).expect("manifest");

    let clean = recover(d, false).expect("recover");
    assert!(clean.skipped.is_empty(), "{:?}", clean.skipped);
    assert_eq!(clean.items(), 29);
    assert_eq!(clean.last_seq, 31);
    assert_eq!(clean.from_snapshots, 20);

    // Corrupt the newest snapshot of shard 1.
    let newest = manifest::snapshot_dir(d).join("snap-20-1.snap");
    let mut bytes = std::fs::read(&newest).expect("read");
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    std::fs::write(&newest, bytes).expect("write");
    let fallback = recover(d, false).expect("recover");
    assert_eq!(fallback.items(), 29);
    assert_eq!(fallback.skipped.len(), 1, "{:?}", fallback.skipped);
    assert!(fallback.skipped[0].contains("previous checkpoint"));
    let ids = |r: &super::recovery::Recovered| -> Vec<String> {
        let mut v: Vec<String> = r.shards.values().flatten().map(|i| i.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&fallback), ids(&clean));

    // One shard alone, up to a sequence number.
    let one = recover_shard(d, &("c".to_string(), 0), 24).expect("shard");
    let ids0: Vec<&str> = one
        .shards
        .values()
        .flatten()
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(ids0.len(), 12, "{ids0:?}");
    assert!(!ids0.contains(&"i26"));
}

/// A small model state: an encoder of 288-d embeddings, three prototypes, two centroids.
fn model_state() -> ModelState {
    const D: usize = 288;
    let vector = |n: u64| -> Vec<f32> {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..D)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    let sample: Vec<f32> = (0..40).flat_map(vector).collect();
    let encoder = vsa_index::Encoder::train(
        &sample,
        D,
        &vsa_index::EncoderConfig {
            dims: 16,
            itq_iterations: 2,
            ..vsa_index::EncoderConfig::default()
        },
    )
    .expect("encoder trains");
    let rows: Vec<Vec<f32>> = (0..3).map(vector).collect();
    ModelState {
        encoder: Some(StoredEncoder {
            generation: 7,
            fitted_at: 4096,
            encoder: Arc::new(encoder),
        }),
        prototypes: Some((Arc::new(vsa_models::Prototypes::from_rows(&rows, D)), 4000)),
        centroids: Some(Arc::new(vec![
            ("a".into(), vector(10)),
            ("b".into(), vector(11)),
        ])),
    }
}

#[test]
fn model_files_round_trip_and_damage_is_detected() {
    let dir = Dir::new("model");
    let state = model_state();
    let path = dir.path().join(model::file_name(12));
    let size = model::write(&path, &state).expect("write");
    assert_eq!(size, std::fs::metadata(&path).expect("written").len());
    assert_eq!(model::read(&path).expect("read"), state);
    assert!(state.check_dim(288).is_ok());
    let e = state.check_dim(1280).expect_err("other size");
    assert!(matches!(e, DurabilityError::Incompatible(_)), "{e}");
    // Each part is optional.
    let bare = ModelState {
        encoder: None,
        prototypes: None,
        centroids: state.centroids.clone(),
    };
    assert_eq!(
        model::decode(&model::encode(&bare).expect("encode")).expect("decode"),
        bare
    );
    let bytes = std::fs::read(&path).expect("bytes");
    assert!(model::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(model::decode(&extra).is_err());
    // A flipped bit anywhere after the magic fails a CRC, a length or the version.
    for at in [12, 20, bytes.len() / 3, bytes.len() / 2, bytes.len() - 2] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x08;
        let e = model::decode(&bad).expect_err("damaged");
        assert!(matches!(e, DurabilityError::Corrupt(_)), "byte {at}: {e}");
    }
    let mut version = bytes.clone();
    version[8] = 9;
    let e = model::decode(&version).expect_err("other version");
    assert!(e.to_string().contains("version 9"), "{e}");
    assert!(model::read(&dir.path().join("missing.bin")).is_err());
}

#[test]
fn an_old_manifest_without_model_files_loads() {
    let dir = Dir::new("old-manifest");
    // Exactly what a build before model files wrote.
    let old = r#"{
  "version": 1,
  "checkpoints": [
    { "seq": 10, "shards": [ { "category": "c", "shard": 0, "file": "snap-10-0.snap", "items": 3, "bytes": 200 } ] }
  ]
}"#;
    std::fs::write(manifest::manifest_path(dir.path()), old).expect("write");
    let m = manifest::load(dir.path()).expect("loads").expect("present");
    assert_eq!(m.version, manifest::MANIFEST_VERSION);
    assert_eq!(m.checkpoints.len(), 1);
    assert_eq!(m.checkpoints[0].seq, 10);
    assert_eq!(m.checkpoints[0].model, None);
    // And what this build writes names the model file; a build that does not know the field
    // ignores it (no `deny_unknown_fields`), so the version stays.
    let mut new = m.clone();
    new.checkpoints[0].model = Some(model::file_name(10));
    manifest::store(dir.path(), &new).expect("store");
    assert_eq!(manifest::load(dir.path()).expect("loads"), Some(new));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes and mutated valid logs never panic the log scanner, and what it returns
    /// is a prefix of what was written.
    #[test]
    fn log_scan_survives_mutations(
        n in 1usize..6,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let records: Vec<WalRecord> = (1..=n as u64).map(|s| upsert(s, &format!("i{s}"), "c", 0)).collect();
        let mut bytes: Vec<u8> = records.iter().flat_map(|r| encode_record(r).expect("encode")).collect();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let cut = cut.index(bytes.len() + 1);
        bytes.truncate(cut);
        bytes.extend_from_slice(&junk);
        let scan = decode_records(&bytes);
        prop_assert!(scan.records.len() <= n + junk.len());
        // Replay's streaming reader sees the same records and stops at the same byte.
        let mut report = ReplayReport::default();
        let mut streamed = Vec::new();
        let end = scan_segment(&mut &bytes[..], bytes.len() as u64, &mut report, &mut |r| {
            streamed.push(r);
            true
        })
        .expect("reading memory");
        prop_assert_eq!(&streamed, &scan.records);
        match (&end, &scan.corruption) {
            (SegmentEnd::Complete, None) => prop_assert_eq!(scan.valid_len, bytes.len()),
            (SegmentEnd::Torn { offset, .. }, Some(_)) => {
                prop_assert_eq!(*offset, scan.valid_len as u64)
            }
            other => prop_assert!(false, "the scanners disagree: {other:?}"),
        }
        if flips.is_empty() {
            for (a, b) in scan.records.iter().zip(&records) {
                prop_assert_eq!(a, b);
            }
        }
        let _ = decode_records(&junk);
    }

    /// Same for snapshots: damage is an error, never a panic or a huge allocation.
    #[test]
    fn snapshot_decode_survives_mutations(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = Dir::new("prop-snapshot");
        let items: Vec<Arc<ItemRecord>> = (0..3).map(|i| Arc::new(record(&format!("i{i}"), "c", i as f32))).collect();
        let header = SnapshotHeader { category: "c".into(), shard: 0, seq: 3, items: 3 };
        let path = dir.path().join("p.snap");
        snapshot::write(&path, &header, &items).expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        let intact = flips.is_empty();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let cut = cut.index(bytes.len() + 1);
        let full = cut == bytes.len();
        bytes.truncate(cut);
        let r = snapshot::decode(&bytes);
        if intact && full {
            prop_assert!(r.is_ok());
        } else if !full {
            prop_assert!(r.is_err());
        }
        let _ = snapshot::decode(&junk);
    }

    /// And for model files.
    #[test]
    fn model_decode_survives_mutations(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = MODEL_BYTES.get_or_init(|| model::encode(&model_state()).expect("encode"));
        let mut bytes = bytes.clone();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let cut = cut.index(bytes.len() + 1);
        let full = cut == bytes.len();
        bytes.truncate(cut);
        let r = model::decode(&bytes);
        if flips.iter().all(|(_, x)| *x == 0) && full {
            prop_assert!(r.is_ok());
        } else if !full {
            prop_assert!(r.is_err());
        }
        let _ = model::decode(&junk);
    }
}

/// Encoded once: training the encoder per case would dominate the property test.
static MODEL_BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

#[cfg(target_os = "linux")]
#[test]
fn background_threads_take_the_idle_policy() {
    let policy = std::thread::spawn(|| {
        crate::lower_thread_priority();
        // SAFETY: queries the calling thread's policy; no memory is touched.
        unsafe { libc::sched_getscheduler(0) }
    })
    .join()
    .expect("thread");
    assert_eq!(policy, libc::SCHED_IDLE);
}
