//! Live measurements for the operator console and `/metrics`: lock-free latency histograms
//! (the buckets of [`vsa_protocol::LATENCY_BOUNDS_US`]) and per-shard meters.
//!
//! Recording is a few relaxed atomic adds, cheap enough for every request and every shard call;
//! reading copies the counters into a wire [`Histogram`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vsa_protocol::{Histogram, LATENCY_BOUNDS_US};

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// A latency histogram anyone can record into through a shared reference.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Counts one observation of `us` microseconds.
    pub fn record_us(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Counts one observation.
    pub fn record(&self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// A copy for the wire.
    pub fn snapshot(&self) -> Histogram {
        Histogram {
            bounds_us: LATENCY_BOUNDS_US.to_vec(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Named histograms created on first use (query stages, request kinds).
#[derive(Debug, Default)]
pub struct HistogramSet(Mutex<BTreeMap<String, Arc<AtomicHistogram>>>);

impl HistogramSet {
    /// The histogram called `name`, created empty if new.
    pub fn get(&self, name: &str) -> Arc<AtomicHistogram> {
        let Ok(mut map) = self.0.lock() else {
            return Arc::new(AtomicHistogram::default());
        };
        if let Some(h) = map.get(name) {
            return h.clone();
        }
        let h = Arc::new(AtomicHistogram::default());
        map.insert(name.to_string(), h.clone());
        h
    }

    /// Every histogram, by name.
    pub fn snapshot(&self) -> Vec<(String, Histogram)> {
        self.0.lock().map_or_else(
            |_| Vec::new(),
            |m| m.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect(),
        )
    }
}

/// What the engine sees of one shard: its part of each search, and searches in flight.
#[derive(Debug, Default)]
pub struct ShardMeter {
    /// Searches sent and not answered.
    pub in_flight: AtomicU64,
    /// Time from sending a search to its answer (the shard's queue included).
    pub latency: AtomicHistogram,
}

/// Shard meters by shard name (names are stable across restarts and rebalances reuse them,
/// so a shard's history follows its name).
#[derive(Debug, Default)]
pub struct ShardMeters(Mutex<BTreeMap<String, Arc<ShardMeter>>>);

impl ShardMeters {
    /// The meter of `name`, created if new. Every search asks once per partition: a known
    /// name is found without allocating its key, so the lock is held for the lookup alone.
    pub fn get(&self, name: &str) -> Arc<ShardMeter> {
        let Ok(mut map) = self.0.lock() else {
            return Arc::new(ShardMeter::default());
        };
        if let Some(meter) = map.get(name) {
            return meter.clone();
        }
        map.entry(name.to_string()).or_default().clone()
    }
}

/// Counts a call in flight on a meter until dropped (so a cancelled call still ends).
#[derive(Debug)]
pub struct InFlight(Arc<ShardMeter>, std::time::Instant);

impl InFlight {
    /// Starts counting.
    pub fn start(meter: Arc<ShardMeter>) -> InFlight {
        meter.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(meter, std::time::Instant::now())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.latency.record(self.1.elapsed());
    }
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_land_in_their_buckets() {
        let h = AtomicHistogram::default();
        h.record_us(10); // the first bucket's bound is inclusive
        h.record_us(11);
        h.record_us(u64::MAX / 2);
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let meters = ShardMeters::default();
        let m = meters.get("p/a/0");
        let guard = InFlight::start(m.clone());
        assert_eq!(meters.get("p/a/0").in_flight.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!(m.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(m.latency.snapshot().count(), 1);
    }

    #[test]
    fn rss_is_measured_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 1 << 20);
        }
    }

    #[test]
    fn a_shard_meter_is_one_per_name() {
        let meters = ShardMeters::default();
        let a = meters.get("p0");
        let _counting = InFlight::start(meters.get("p0"));
        assert!(Arc::ptr_eq(&a, &meters.get("p0")));
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 1);
        let b = meters.get("p1");
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.in_flight.load(Ordering::Relaxed), 0);
    }
}
