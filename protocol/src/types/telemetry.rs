//! `Telemetry`: everything the operator console shows, in one admin answer.
//!
//! Counters and histograms are **cumulative since boot**, so a client that polls computes rates
//! and windowed percentiles from the difference of two answers ([`Histogram::since`]), and the
//! same numbers can be exported as Prometheus counters without a second bookkeeping.

use serde::{Deserialize, Serialize};

use super::health::HealthReply;

/// Upper bounds (µs) of the latency buckets every [`Histogram`] of the server uses: a 1-2-5
/// series from 10 µs to 10 s. The last bucket of a histogram counts everything above.
pub const LATENCY_BOUNDS_US: [u64; 19] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
    500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram: `counts[i]` observations in `(bounds_us[i-1], bounds_us[i]]`, and one
/// more bucket for everything above the last bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket upper bounds, ascending, in microseconds.
    pub bounds_us: Vec<u64>,
    /// `bounds_us.len() + 1` counts.
    pub counts: Vec<u64>,
    /// Sum of the observed values, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// An empty histogram over [`LATENCY_BOUNDS_US`].
    pub fn latency() -> Histogram {
        Histogram {
            bounds_us: LATENCY_BOUNDS_US.to_vec(),
            counts: vec![0; LATENCY_BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) in microseconds, interpolated linearly inside its bucket;
    /// `None` when empty. Values in the overflow bucket report the last bound.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lo = if i == 0 {
                    0
                } else {
                    self.bounds_us.get(i - 1).copied().unwrap_or(0)
                };
                let Some(&hi) = self.bounds_us.get(i) else {
                    return Some(lo);
                };
                let within = (rank - seen as f64) / c as f64;
                return Some(lo + ((hi - lo) as f64 * within).round() as u64);
            }
            seen += c;
        }
        self.bounds_us.last().copied()
    }

    /// What was observed after `earlier` (an older copy of the same histogram); the whole of
    /// `self` when the bounds differ (e.g. the server restarted with other buckets) or a
    /// counter went backwards (a restart).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let comparable = earlier.bounds_us == self.bounds_us
            && earlier.counts.len() == self.counts.len()
            && self
                .counts
                .iter()
                .zip(&earlier.counts)
                .all(|(now, then)| now >= then);
        if !comparable {
            return self.clone();
        }
        Histogram {
            bounds_us: self.bounds_us.clone(),
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a - b)
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }
}

/// The server's live state, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Server name and version.
    pub server: String,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Live items.
    pub items: u64,
    /// The routing epoch.
    pub epoch: u64,
    /// Health, as `Request::Health` answers it.
    pub health: HealthReply,
    /// Resident memory of the server process (0 where the platform does not say).
    pub memory_rss_bytes: u64,
    /// Open client connections.
    pub connections_open: u64,
    /// Connections refused over the limit since boot.
    pub connections_refused: u64,
    /// Per request kind (`search`, `upsert`, ...): counts and latency, cumulative.
    pub requests: Vec<RequestMetrics>,
    /// The same counters over the recent window only (about the last minute): what a
    /// health check's latency thresholds look at.
    pub recent_requests: Vec<RequestMetrics>,
    /// Length of that window in milliseconds (0: since boot, no snapshot yet).
    pub recent_window_ms: u64,
    /// Per query stage (`decode`, `embed`, `search`, ...): latency, cumulative.
    pub stages: Vec<StageMetrics>,
    /// The supervision tree, parents before children.
    pub actors: Vec<ActorInfo>,
    /// Every shard.
    pub shards: Vec<ShardTelemetry>,
    /// The inference pool.
    pub inference: InferenceTelemetry,
    /// The live reranking weights.
    pub weights: WeightsInfo,
    /// Recent warnings and errors of the server's log after the `log_after` asked for, oldest
    /// first.
    pub log: Vec<LogLine>,
}

/// One request kind's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMetrics {
    /// `search`, `upsert`, `delete`, `click`, `stats`, `health`, `admin`, ...
    pub kind: String,
    /// Answered.
    pub count: u64,
    /// Answered with an error (any code, `busy` included).
    pub errors: u64,
    /// Answered with `busy` or `rate_limited` (told to back off).
    pub busy: u64,
    /// Time from decoding the request to its answer being ready.
    pub latency: Histogram,
}

/// One query stage's latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMetrics {
    /// The stage, as in `SearchResponse::timings`.
    pub stage: String,
    /// Its latency.
    pub latency: Histogram,
}

/// One actor of the supervision tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorInfo {
    /// Its name (`root`, `inference-pool`, `coordinator`, `p/<category>/<i>`, ...).
    pub name: String,
    /// Its supervisor's name (`None` for the root).
    pub parent: Option<String>,
    /// What it is (`root`, `inference-pool`, `coordinator`, `partition`, `click-aggregator`,
    /// `model-worker`).
    pub role: String,
    /// `running`, `recovering`, `stopped`, ... (ractor's status, or the server's own).
    pub state: String,
    /// Messages waiting, where the server can count them (the pool's queue, a partition's
    /// searches in flight); `None` where it cannot.
    pub mailbox: Option<u64>,
    /// Restarts of this actor (or of the pool's workers) since boot.
    pub restarts: u64,
    /// The last failure its supervisor saw.
    pub last_error: Option<String>,
}

/// One shard's live numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTelemetry {
    /// Shard name.
    pub name: String,
    /// The category it serves.
    pub category: String,
    /// Live items.
    pub items: u64,
    /// Approximate memory held.
    pub memory_bytes: u64,
    /// Searches answered since the shard started.
    pub searches: u64,
    /// Searches sent to it and not answered yet.
    pub in_flight: u64,
    /// Latency of its part of a search (queueing included), cumulative.
    pub latency: Histogram,
    /// Being rebuilt from disk.
    pub recovering: bool,
    /// Over the rebalancer's hot threshold (searches vs. the mean).
    pub hot: bool,
    /// Over the rebalancer's split threshold (items).
    pub oversized: bool,
}

/// The inference pool's live numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceTelemetry {
    /// Model worker threads configured.
    pub workers: u32,
    /// Of which alive.
    pub live_workers: u32,
    /// Images waiting.
    pub queue_depth: u32,
    /// Queue bound.
    pub queue_capacity: u32,
    /// Largest batch a worker runs.
    pub max_batch: u32,
    /// Batches run since boot.
    pub batches: u64,
    /// Images embedded since boot.
    pub images: u64,
    /// Requests refused with `busy` since boot.
    pub busy_rejections: u64,
    /// Worker restarts since boot.
    pub restarts: u64,
    /// Batch-size histogram: entry i counts batches of size in `(2^(i-1), 2^i]`.
    pub batch_sizes: Vec<u64>,
}

/// The live reranking weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// Bumped on every change; search responses carry it.
    pub version: u64,
    /// `(component, weight)`: `visual`, `colour`, `quality`, `ctr`.
    pub components: Vec<(String, f32)>,
}

/// One line of the server's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increasing number (ask for lines after the last one seen).
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[u64]) -> Histogram {
        let mut h = Histogram::latency();
        for &v in values {
            let i = h.bounds_us.partition_point(|&b| b < v);
            h.counts[i] += 1;
            h.sum_us += v;
        }
        h
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        assert_eq!(Histogram::latency().quantile(0.5), None);
        let h = with(
            &[150; 99]
                .iter()
                .chain(&[40_000])
                .copied()
                .collect::<Vec<_>>(),
        );
        let p50 = h.quantile(0.5).expect("p50");
        assert!((100..=200).contains(&p50), "{p50}");
        let p999 = h.quantile(0.999).expect("p99.9");
        assert!((20_000..=50_000).contains(&p999), "{p999}");
        assert_eq!(with(&[u64::MAX / 4]).quantile(0.5), Some(10_000_000));
    }

    #[test]
    fn since_subtracts_and_survives_restarts() {
        let early = with(&[150, 150]);
        let late = with(&[150, 150, 30_000]);
        let d = late.since(&early);
        assert_eq!(d.count(), 1);
        assert_eq!(d.sum_us, 30_000);
        // A restart: counters went backwards, so the whole newer histogram is the window.
        assert_eq!(early.since(&late), early);
    }
}
