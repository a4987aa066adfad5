//! `Stats`: counters for the console and scripts.

use serde::{Deserialize, Serialize};

/// Server statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Live items across all shards.
    pub items: u64,
    /// One entry per shard.
    pub shards: Vec<ShardStats>,
    /// The inference pool.
    pub inference: InferenceStats,
    /// Actor restarts since boot.
    pub restarts: u64,
    /// Recent queries per second.
    pub qps: f32,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The current routing epoch.
    pub epoch: u64,
}

/// One shard's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Shard name.
    pub name: String,
    /// The category it serves.
    pub category: String,
    /// Live items.
    pub items: u64,
    /// Approximate memory held.
    pub memory_bytes: u64,
    /// Messages waiting in its mailbox.
    pub queue_depth: u32,
    /// Searches served since boot.
    pub searches: u64,
}

/// The inference pool's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceStats {
    /// Model worker threads.
    pub workers: u32,
    /// Images waiting.
    pub queue_depth: u32,
    /// Queue bound; a full queue answers `busy`.
    pub queue_capacity: u32,
    /// Batches run since boot.
    pub batches: u64,
    /// Images embedded since boot.
    pub images: u64,
    /// Requests refused with `busy` since boot.
    pub busy_rejections: u64,
}
