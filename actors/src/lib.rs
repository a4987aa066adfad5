//! `vsa-actors`: the supervised actor system that serves vsa (ractor).
//!
//! ```text
//! Root ─┬─ InferencePool ── worker threads (ort sessions, dynamic batching, bounded queue)
//!       └─ Coordinator ──── Partition × (categories × shards)   (binary index + item store)
//! Engine: the request paths; holds handles only, reads the published routing table.
//! ```
//!
//! Modules:
//! - [`engine`]: [`Engine`] — search, upsert, delete, stats, health; configuration types.
//! - [`inference`]: the inference pool, its workers and dynamic batching.
//! - [`coordinator`]: routing table, item directory, encoder fitting, partition supervision.
//! - [`partition`]: one shard's actor.
//! - [`quality`]: query presets (localisation effort) and ingest augmentation.
//! - [`store`]: a partition's item table.
//! - [`supervisor`]: the root of the tree, and the log of children's failures.
//! - [`telemetry`]: latency histograms and shard meters for the console and `/metrics`.
//! - [`error`]: [`EngineError`] and its wire codes.

pub mod clicks;
pub mod coordinator;
pub mod durability;
pub mod engine;
pub mod error;
pub mod inference;
pub mod partition;
pub mod quality;
pub mod rebalance;
pub mod store;
pub mod supervisor;
pub mod telemetry;

pub use clicks::{ClickConfig, RerankWeights};
pub use coordinator::IndexConfig;
pub use durability::{FsyncPolicy, StorageConfig};
pub use engine::{Engine, EngineConfig, LimitsConfig, SearchConfig};
pub use error::{EngineError, Result};
pub use inference::PoolConfig;
pub use quality::{CategoryModel, Preset, QualityConfig};

/// Gives the calling thread the lowest CPU priority, for background work that must not slow
/// searches (Linux: the `SCHED_IDLE` policy, which runs only when a core has nothing else to
/// run and is preempted at once by any other thread; if that is refused, per-thread nice 19).
/// Best effort.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid, sched_setscheduler and setpriority take plain integers and a pointer to
    // a local that outlives the call.
    unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0 {
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

#[cfg(test)]
mod tests;
