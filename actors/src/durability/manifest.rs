//! `MANIFEST.json`: the checkpoints recovery may start from (newest last, at most two).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DurabilityError, Result, write_atomic};

/// Format version of the manifest.
pub const MANIFEST_VERSION: u32 = 1;
/// Checkpoints kept (the newest, and the one before it as a fallback).
pub const KEPT: usize = 2;

/// The checkpoint list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointManifest {
    /// Format version.
    pub version: u32,
    /// Oldest first.
    pub checkpoints: Vec<Checkpoint>,
}

/// Every shard as of one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Writes ≤ this are in the snapshots.
    pub seq: u64,
    /// One snapshot per shard that existed.
    pub shards: Vec<ShardSnapshot>,
    /// The model state in force at `seq` (file name inside `snapshots/`, see
    /// [`super::model`]); `None` when nothing was fitted yet, its write failed, or the
    /// manifest predates model files (they load unchanged: the field is optional, so
    /// [`MANIFEST_VERSION`] stays 1 and older builds ignore it).
    #[serde(default)]
    pub model: Option<String>,
}

/// One shard's snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    /// Category.
    pub category: String,
    /// Shard number.
    pub shard: u32,
    /// File name inside `snapshots/`.
    pub file: String,
    /// Items in it.
    pub items: u64,
    /// Its size.
    pub bytes: u64,
}

/// The manifest's path.
pub fn manifest_path(data_dir: &Path) -> PathBuf {
    data_dir.join("MANIFEST.json")
}

/// The snapshot folder.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// Loads the manifest; `Ok(None)` when there is none yet.
pub fn load(data_dir: &Path) -> Result<Option<CheckpointManifest>> {
    let path = manifest_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DurabilityError::io(&path)(e)),
    };
    let m: CheckpointManifest = serde_json::from_slice(&bytes)
        .map_err(|e| DurabilityError::Corrupt(format!("{}: {e}", path.display())))?;
    if m.version != MANIFEST_VERSION {
        return Err(DurabilityError::Corrupt(format!(
            "{}: manifest version {}; this build reads {MANIFEST_VERSION}",
            path.display(),
            m.version
        )));
    }
    Ok(Some(m))
}

/// Stores the manifest atomically.
pub fn store(data_dir: &Path, m: &CheckpointManifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| DurabilityError::Encode(e.to_string()))?;
    write_atomic(&manifest_path(data_dir), &bytes)
}
