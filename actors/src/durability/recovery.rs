//! Recovery: the newest readable snapshot of each shard plus the log records after it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::manifest::{self, CheckpointManifest, snapshot_dir};
use super::record::WalOp;
use super::{Result, snapshot, wal};
use crate::store::ItemRecord;

/// `(category, shard)`.
pub type ShardKey = (String, u32);

/// What recovery rebuilt, and what it had to skip.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every shard's items.
    pub shards: BTreeMap<ShardKey, Vec<ItemRecord>>,
    /// Highest sequence number seen (snapshots and log); new writes continue after it.
    pub last_seq: u64,
    /// The manifest read (empty when there was none or it was unreadable).
    pub manifest: CheckpointManifest,
    /// Items loaded from snapshots.
    pub from_snapshots: u64,
    /// Log records replayed onto the snapshots.
    pub replayed: u64,
    /// Problems found and what was done about them (empty: a clean recovery).
    pub skipped: Vec<String>,
    /// Shard counts set by rebalances (the log's latest `Layout` per category).
    pub layouts: BTreeMap<String, u32>,
}

impl Recovered {
    /// Total items.
    pub fn items(&self) -> usize {
        self.shards.values().map(Vec::len).sum()
    }
}

/// Rebuilds every shard from `data_dir`. With `repair`, a torn log tail is cut off and moved
/// aside so the log can be appended to again (boot); without, the files are only read.
pub fn recover(data_dir: &Path, repair: bool) -> Result<Recovered> {
    recover_inner(data_dir, None, u64::MAX, repair)
}

/// Rebuilds one shard from its newest snapshot and the log records ≤ `upto` (after a panic of
/// its partition, while the others serve). Never repairs the log (the writer owns it).
pub fn recover_shard(data_dir: &Path, key: &ShardKey, upto: u64) -> Result<Recovered> {
    wait_for_hold(data_dir, key);
    // A rebalance may have renumbered the category's shards: rebuild the whole category,
    // then keep the one shard.
    let mut r = recover_inner(data_dir, Some(&key.0), upto, false)?;
    r.shards.retain(|k, _| k == key);
    Ok(r)
}

/// Rebuild holds set by fault injection: `(data folder, shard)` → until when.
static REBUILD_HOLDS: Mutex<BTreeMap<(PathBuf, ShardKey), Instant>> = Mutex::new(BTreeMap::new());

/// Fault injection (admin `StallActor` on `rebuild/p/<category>/<n>`): a rebuild of `key`
/// from `data_dir` does not start before `until`; `None` releases the hold at once. While it
/// is held the shard stays out of searches, which answer `degraded`: the window an operator
/// rehearses. Rebuilds run on a blocking thread, so waiting here blocks no actor.
pub fn hold_rebuild(data_dir: &Path, key: &ShardKey, until: Option<Instant>) {
    let Ok(mut holds) = REBUILD_HOLDS.lock() else {
        return;
    };
    let k = (data_dir.to_path_buf(), key.clone());
    match until {
        Some(t) => {
            holds.insert(k, t);
        }
        None => {
            holds.remove(&k);
        }
    }
}

/// Waits while a hold on `key` lasts (re-reading it, so a release takes effect at once).
fn wait_for_hold(data_dir: &Path, key: &ShardKey) {
    let k = (data_dir.to_path_buf(), key.clone());
    loop {
        let until = match REBUILD_HOLDS.lock() {
            Ok(holds) => holds.get(&k).copied(),
            Err(_) => None,
        };
        let now = Instant::now();
        match until {
            Some(t) if t > now => std::thread::sleep((t - now).min(Duration::from_millis(20))),
            Some(_) => {
                // Over: forget it.
                hold_rebuild(data_dir, key, None);
                return;
            }
            None => return,
        }
    }
}

fn recover_inner(
    data_dir: &Path,
    only: Option<&String>,
    upto: u64,
    repair: bool,
) -> Result<Recovered> {
    let mut out = Recovered::default();
    let manifest = match manifest::load(data_dir) {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => {
            out.skipped.push(format!(
                "manifest unreadable ({e}); recovering from the log alone"
            ));
            CheckpointManifest::default()
        }
    };
    let snaps = snapshot_dir(data_dir);
    // Base of each shard: (seq its snapshot covers, its items by id).
    let mut base: BTreeMap<ShardKey, (u64, HashMap<String, ItemRecord>)> = BTreeMap::new();
    let newest = manifest.checkpoints.last();
    let older = manifest
        .checkpoints
        .len()
        .checked_sub(2)
        .and_then(|i| manifest.checkpoints.get(i));
    // A shard absent from a checkpoint was empty at its seq.
    let default_seq = newest.map_or(0, |c| c.seq);
    if let Some(newest) = newest {
        let wanted: Vec<&manifest::ShardSnapshot> = newest
            .shards
            .iter()
            .filter(|s| only.is_none_or(|c| c == &s.category))
            .collect();
        // Snapshots are independent: read them on every core.
        let mut reads = read_parallel(&snaps, &wanted);
        for (s, read) in wanted.iter().zip(reads.drain(..)) {
            let key = (s.category.clone(), s.shard);
            match read {
                Ok(snap) => {
                    base.insert(key, (newest.seq, by_id(snap.items)));
                }
                Err(e) => {
                    let fallback = older.map(|o| {
                        (
                            o.seq,
                            o.shards
                                .iter()
                                .find(|x| x.category == s.category && x.shard == s.shard)
                                .cloned(),
                        )
                    });
                    match fallback {
                        Some((seq, Some(prev))) => match snapshot::read(&snaps.join(&prev.file)) {
                            Ok(snap) => {
                                out.skipped.push(format!(
                                    "snapshot {} of shard {}/{} skipped ({e}); used the previous \
                                     checkpoint's ({}, seq {seq}) and replayed the log after it",
                                    s.file, s.category, s.shard, prev.file
                                ));
                                base.insert(key, (seq, by_id(snap.items)));
                            }
                            Err(e2) => {
                                out.skipped.push(format!(
                                    "snapshots {} ({e}) and {} ({e2}) of shard {}/{} both \
                                     unreadable; replaying the log from seq {seq}: items \
                                     written before it may be missing",
                                    s.file, prev.file, s.category, s.shard
                                ));
                                base.insert(key, (seq, HashMap::new()));
                            }
                        },
                        Some((seq, None)) => {
                            out.skipped.push(format!(
                                "snapshot {} of shard {}/{} skipped ({e}); the shard was empty \
                                 at the previous checkpoint (seq {seq}), replaying the log after it",
                                s.file, s.category, s.shard
                            ));
                            base.insert(key, (seq, HashMap::new()));
                        }
                        None => {
                            out.skipped.push(format!(
                                "snapshot {} of shard {}/{} skipped ({e}); no older checkpoint: \
                                 replaying the whole log",
                                s.file, s.category, s.shard
                            ));
                            base.insert(key, (0, HashMap::new()));
                        }
                    }
                }
            }
        }
    }
    out.from_snapshots = base.values().map(|(_, m)| m.len() as u64).sum();
    let min_base = base
        .values()
        .map(|(s, _)| *s)
        .min()
        .unwrap_or(default_seq)
        .min(default_seq);
    let mut first_seen: Option<u64> = None;
    let mut replayed = 0u64;
    let mut layouts: BTreeMap<String, u32> = BTreeMap::new();
    let report = wal::replay(data_dir, |record| {
        if record.seq > upto {
            return false;
        }
        first_seen.get_or_insert(record.seq);
        if let WalOp::Layout { category, shards } = &record.op {
            if only.is_none_or(|c| c == category) {
                relayout(
                    &mut base,
                    category,
                    *shards,
                    record.seq,
                    default_seq,
                    &mut layouts,
                );
            }
            replayed += 1;
            return true;
        }
        let mut apply = |key: ShardKey, f: &mut dyn FnMut(&mut HashMap<String, ItemRecord>)| {
            if only.is_some_and(|c| c != &key.0) {
                return;
            }
            let entry = base
                .entry(key)
                .or_insert_with(|| (default_seq, HashMap::new()));
            if record.seq > entry.0 {
                f(&mut entry.1);
            }
        };
        match &record.op {
            WalOp::Upsert { item, shard, evict } => {
                if let Some((c, s)) = evict {
                    apply((c.clone(), *s), &mut |m| {
                        m.remove(&item.id);
                    });
                }
                apply((item.category.clone(), *shard), &mut |m| {
                    m.insert(item.id.clone(), ItemRecord::from(item.clone()));
                });
            }
            WalOp::Delete {
                id,
                category,
                shard,
            } => {
                apply((category.clone(), *shard), &mut |m| {
                    m.remove(id);
                });
            }
            WalOp::Layout { .. } => {}
        }
        replayed += 1;
        true
    })?;
    out.replayed = replayed;
    out.layouts = layouts;
    if let Some(first) = first_seen
        && first > min_base + 1
    {
        out.skipped.push(format!(
            "the log starts at seq {first} but the snapshots end at seq {min_base}: writes \
             {}..{} are missing",
            min_base + 1,
            first - 1
        ));
    }
    if let Some(torn) = &report.torn {
        let mut line = format!(
            "log {} is torn or corrupt at byte {} ({}): replay stopped there, {} bytes skipped",
            torn.segment.display(),
            torn.offset,
            torn.reason,
            torn.bytes_skipped
        );
        if !torn.later_segments.is_empty() {
            line.push_str(&format!(
                ", {} later segment(s) not replayed",
                torn.later_segments.len()
            ));
        }
        if repair {
            match wal::cut_torn_tail(torn) {
                Ok(()) => line.push_str("; the bad bytes were moved to *.corrupt-* files"),
                Err(e) => line.push_str(&format!("; moving them aside failed: {e}")),
            }
        }
        out.skipped.push(line);
    }
    out.last_seq = report.last_seq.max(default_seq);
    out.manifest = manifest;
    out.shards = base
        .into_iter()
        .map(|(k, (_, m))| {
            let mut v: Vec<ItemRecord> = m.into_values().collect();
            v.sort_by(|a, b| a.id.cmp(&b.id));
            (k, v)
        })
        .collect();
    Ok(out)
}

/// A `Layout` record at `seq`: when the category's snapshots predate it, its items are
/// redistributed over `shards` shards as of `seq` (a checkpoint after it already holds the new
/// layout: nothing to do).
fn relayout(
    base: &mut BTreeMap<ShardKey, (u64, HashMap<String, ItemRecord>)>,
    category: &str,
    shards: u32,
    seq: u64,
    default_seq: u64,
    layouts: &mut BTreeMap<String, u32>,
) {
    layouts.insert(category.to_string(), shards);
    let keys: Vec<ShardKey> = base
        .keys()
        .filter(|(c, _)| c == category)
        .cloned()
        .collect();
    let newest = keys
        .iter()
        .filter_map(|k| base.get(k).map(|(s, _)| *s))
        .max()
        .unwrap_or(default_seq)
        .max(default_seq);
    if newest >= seq {
        return;
    }
    let mut items: HashMap<String, ItemRecord> = HashMap::new();
    for k in keys {
        if let Some((_, m)) = base.remove(&k) {
            items.extend(m);
        }
    }
    for i in 0..shards.max(1) {
        base.insert((category.to_string(), i), (seq, HashMap::new()));
    }
    for (id, r) in items {
        let i = super::record::shard_for(&id, shards as usize) as u32;
        if let Some((_, m)) = base.get_mut(&(category.to_string(), i)) {
            m.insert(id, r);
        }
    }
}

/// Reads snapshot files with up to `available_parallelism` threads, results in order.
fn read_parallel(
    dir: &Path,
    shards: &[&manifest::ShardSnapshot],
) -> Vec<Result<snapshot::Snapshot>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(shards.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<snapshot::Snapshot>>>> =
        shards.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(s) = shards.get(i) else { break };
                    let r = snapshot::read(&dir.join(&s.file));
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(super::DurabilityError::Corrupt("snapshot not read".into())))
        })
        .collect()
}

fn by_id(items: Vec<ItemRecord>) -> HashMap<String, ItemRecord> {
    items.into_iter().map(|r| (r.id.clone(), r)).collect()
}
