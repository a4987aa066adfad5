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
pub mod search_gate;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod whitening;

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

/// Asks the CPU to start loading the cache lines of `items` (at most the first
/// [`PREFETCH_LINES`]) without waiting for them: issued for a run of independent lookups
/// before any is used, their cache misses overlap instead of queueing one after another.
/// A hint only: no effect on what the program computes, and none off x86-64.
pub(crate) fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(items).min(PREFETCH_LINES * 64);
        let base = items.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(64) {
            // SAFETY: `_mm_prefetch` is a hint that never faults or reads into the program,
            // whatever the address; `wrapping_add` keeps the arithmetic defined, and the
            // offsets stay inside the slice anyway. SSE is part of every x86-64 CPU.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    base.wrapping_add(offset),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

/// The most cache lines [`prefetch`] asks for per slice.
pub(crate) const PREFETCH_LINES: usize = 8;

#[cfg(test)]
mod tests;
