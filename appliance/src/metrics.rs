//! Request metrics of the server: per request kind, answers, errors, `busy` answers and a
//! latency histogram, all cumulative since boot (the console diffs two polls; `/metrics`
//! exports them as Prometheus counters).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vsa_actors::telemetry::AtomicHistogram;
use vsa_protocol::{ErrorCode, RequestMetrics, Response};

/// The kinds counted, in the order reported (`Request::kind` names plus `invalid` for frames
/// that did not decode).
const KINDS: [&str; 9] = [
    "search", "upsert", "delete", "click", "stats", "health", "admin", "hello", "invalid",
];

#[derive(Debug, Default)]
struct KindMeter {
    count: AtomicU64,
    errors: AtomicU64,
    busy: AtomicU64,
    latency: AtomicHistogram,
}

/// Counters per request kind.
#[derive(Debug, Default)]
pub struct RequestMeters {
    kinds: [KindMeter; KINDS.len()],
}

impl RequestMeters {
    /// Counts one answered request of `kind` that took `took`.
    pub fn record(&self, kind: &str, took: Duration, response: &Response) {
        let i = KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        let m = &self.kinds[i];
        m.count.fetch_add(1, Ordering::Relaxed);
        m.latency.record(took);
        if let Response::Error(e) = response {
            m.errors.fetch_add(1, Ordering::Relaxed);
            if e.code == ErrorCode::Busy {
                m.busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A copy for the wire, every kind included (zeros too, so series exist from boot).
    pub fn snapshot(&self) -> Vec<RequestMetrics> {
        KINDS
            .iter()
            .zip(&self.kinds)
            .map(|(kind, m)| RequestMetrics {
                kind: (*kind).to_string(),
                count: m.count.load(Ordering::Relaxed),
                errors: m.errors.load(Ordering::Relaxed),
                busy: m.busy.load(Ordering::Relaxed),
                latency: m.latency.snapshot(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_busy_are_counted_per_kind() {
        let m = RequestMeters::default();
        let ok = Response::Stats(vsa_protocol::StatsReply {
            items: 0,
            shards: Vec::new(),
            inference: vsa_protocol::InferenceStats {
                workers: 1,
                queue_depth: 0,
                queue_capacity: 1,
                batches: 0,
                images: 0,
                busy_rejections: 0,
            },
            restarts: 0,
            qps: 0.0,
            uptime_ms: 0,
            epoch: 0,
        });
        m.record("stats", Duration::from_micros(150), &ok);
        m.record(
            "search",
            Duration::from_millis(3),
            &Response::error(ErrorCode::Busy, "x"),
        );
        m.record(
            "nonsense",
            Duration::ZERO,
            &Response::error(ErrorCode::BadFrame, "x"),
        );
        let s = m.snapshot();
        let get = |k: &str| s.iter().find(|r| r.kind == k).expect("kind");
        assert_eq!((get("stats").count, get("stats").errors), (1, 0));
        assert_eq!((get("search").errors, get("search").busy), (1, 1));
        assert_eq!(get("invalid").count, 1);
        assert_eq!(get("search").latency.count(), 1);
    }
}
