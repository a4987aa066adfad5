//! Durability: the write-ahead log, per-shard snapshots, the checkpoint manifest and recovery.
//!
//! ```text
//! write ─▶ Coordinator (assigns seq) ─┬─▶ WalWriter thread: append, group commit, fsync ─▶ ack
//!                                     └─▶ Partition (applies it in memory)
//! the caller is answered when both have answered.
//!
//! data_dir/
//!   wal/wal-<first seq>.log       records: [len u32][crc32 u32][bincode WalRecord]
//!   snapshots/snap-<seq>-<n>.snap one per shard per checkpoint (versioned, CRC per item)
//!   snapshots/model-<seq>.bin     the model state of a checkpoint: encoder, prototypes,
//!                                 category centroids (versioned, CRC per part)
//!   MANIFEST.json                 the last two checkpoints: seq covered, shard → file, model file
//! ```
//!
//! A checkpoint snapshots every shard as of one sequence number `S` (the coordinator sends the
//! request behind every write ≤ S, so each partition's state is exactly "all writes ≤ S");
//! the manifest keeps the newest two checkpoints and the log is truncated behind the older,
//! so a corrupt newest snapshot falls back to its predecessor plus a longer replay.
//!
//! Recovery (boot, or one shard after a panic): load the newest readable snapshot of each
//! shard, then replay the log records after it that touch that shard. A torn or corrupt log
//! tail is detected by its length/CRC, reported, cut off and moved aside; replay stops there.
//!
//! A checkpoint also writes the catalogue-side model state in force when it was taken
//! ([`model`]): at boot the coordinator restores it before spawning the partitions, so they
//! build their binary shards from the recovered items at once and nothing is refitted until
//! the catalogue has grown enough. A model file that cannot be used (missing, corrupt, made
//! for another embedding size) only costs a refit, never items.

pub mod manifest;
pub mod model;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod wal;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use record::{DiskItem, WalOp, WalRecord};

#[cfg(test)]
mod tests;

/// When the log is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before a write is acknowledged (group commit: one fsync covers every write that
    /// arrived meanwhile).
    Always,
    /// Every `fsync_interval_ms`; a crash of the machine (not the process) can lose the
    /// writes of the last interval.
    Interval,
    /// Never explicitly (the OS decides); a process crash loses nothing, a machine crash may.
    Never,
}

/// `[storage]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data folder; `None` keeps everything in memory only (nothing survives a restart).
    /// Not read from configuration files: the appliance sets it from `server.data_dir`.
    #[serde(skip)]
    pub dir: Option<PathBuf>,
    /// Flush policy of the write-ahead log.
    pub fsync: FsyncPolicy,
    /// Flush period with `fsync = "interval"` (ms).
    pub fsync_interval_ms: u64,
    /// Most writes one group commit covers.
    pub group_commit_max: usize,
    /// A log segment is closed and a new one started beyond this size (bytes).
    pub segment_bytes: u64,
    /// Checkpoint (snapshot every shard) after this many bytes of log (0: never by size).
    pub checkpoint_log_bytes: u64,
    /// Checkpoint at least this often when anything was written (s; 0: never by time).
    pub checkpoint_interval_s: u64,
    /// Bounded queue of the log writer; a full queue answers `busy`.
    pub queue: usize,
    /// Snapshot write rate limit (MB/s; 0: unlimited), so a checkpoint does not crowd out
    /// searches.
    pub snapshot_mb_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: None,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 100,
            group_commit_max: 4096,
            segment_bytes: 64 << 20,
            checkpoint_log_bytes: 512 << 20,
            checkpoint_interval_s: 600,
            queue: 65_536,
            snapshot_mb_s: 100,
        }
    }
}

/// Errors of the durability layer.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Bytes on disk are not what was written (CRC, length, magic, version, decode).
    #[error("{0}")]
    Corrupt(String),
    /// Bytes that decode but do not fit what runs now (e.g. a model state made for another
    /// embedding size).
    #[error("incompatible: {0}")]
    Incompatible(String),
    /// A record could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The log writer is gone or its queue is full.
    #[error("write-ahead log unavailable: {0}")]
    Unavailable(String),
}

impl DurabilityError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DurabilityError {
        let path = path.into();
        move |source| DurabilityError::Io { path, source }
    }
}

/// Result of the durability layer.
pub type Result<T> = std::result::Result<T, DurabilityError>;

/// Held while a snapshot is written: one at a time, so a checkpoint takes at most one core.
pub(crate) static SNAPSHOT_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fsyncs a folder so a rename or a new file in it survives a machine crash.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(DurabilityError::io(dir))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync the folder.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(DurabilityError::io(&tmp))?;
    f.write_all(bytes).map_err(DurabilityError::io(&tmp))?;
    f.sync_all().map_err(DurabilityError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(DurabilityError::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
