//! Request metrics of the server: per request kind, answers, errors, `busy` answers and a
//! latency histogram, all cumulative since boot (the console diffs two polls; `/metrics`
//! exports them as Prometheus counters).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vsa_actors::telemetry::AtomicHistogram;
use vsa_protocol::{ErrorCode, RequestMetrics, Response};

/// The kinds counted, in the order reported (`Request::kind` names plus `invalid` for frames
/// that did not decode).
const KINDS: [&str; 10] = [
    "search", "upsert", "delete", "click", "clicks", "stats", "health", "admin", "hello", "invalid",
];

#[derive(Debug, Default)]
struct KindMeter {
    count: AtomicU64,
    errors: AtomicU64,
    busy: AtomicU64,
    latency: AtomicHistogram,
}

/// How far back [`RequestMeters::recent`] looks.
pub const RECENT_WINDOW: Duration = Duration::from_secs(60);

/// Counters per request kind, and snapshots of them for a recent window.
#[derive(Debug, Default)]
pub struct RequestMeters {
    kinds: [KindMeter; KINDS.len()],
    /// Snapshots taken by [`RequestMeters::tick`], oldest first, spanning ~[`RECENT_WINDOW`].
    history: Mutex<VecDeque<(Instant, Vec<RequestMetrics>)>>,
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
            if matches!(e.code, ErrorCode::Busy | ErrorCode::RateLimited) {
                m.busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes a snapshot for the recent window (the server calls this every few seconds) and
    /// forgets snapshots no longer needed to cover [`RECENT_WINDOW`].
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    fn tick_at(&self, now: Instant) {
        let snap = self.snapshot();
        let Ok(mut h) = self.history.lock() else {
            return;
        };
        h.push_back((now, snap));
        // Keep the newest snapshot at least a window old as the base; drop older ones.
        while h.len() > 1 && now.saturating_duration_since(h[1].0) >= RECENT_WINDOW {
            h.pop_front();
        }
    }

    /// The counters over the recent window: now minus the oldest kept snapshot (since boot
    /// before the first tick), and the window's length in milliseconds.
    pub fn recent(&self) -> (Vec<RequestMetrics>, u64) {
        self.recent_at(Instant::now())
    }

    fn recent_at(&self, now: Instant) -> (Vec<RequestMetrics>, u64) {
        let current = self.snapshot();
        let base = self.history.lock().ok().and_then(|h| h.front().cloned());
        let Some((at, base)) = base else {
            return (current, 0);
        };
        let window = now.saturating_duration_since(at).as_millis() as u64;
        let diff = current
            .into_iter()
            .map(|now| match base.iter().find(|b| b.kind == now.kind) {
                Some(b) => RequestMetrics {
                    count: now.count.saturating_sub(b.count),
                    errors: now.errors.saturating_sub(b.errors),
                    busy: now.busy.saturating_sub(b.busy),
                    latency: now.latency.since(&b.latency),
                    kind: now.kind,
                },
                None => now,
            })
            .collect();
        (diff, window)
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

    #[test]
    fn the_recent_window_forgets_what_is_older() {
        let m = RequestMeters::default();
        let ok = Response::error(ErrorCode::BadRequest, "x");
        let t0 = Instant::now();
        m.record("search", Duration::from_secs(2), &ok); // a slow one, long ago
        m.tick_at(t0);
        m.tick_at(t0 + Duration::from_secs(30));
        m.record("search", Duration::from_millis(1), &ok);
        m.tick_at(t0 + Duration::from_secs(65));
        let (recent, window) = m.recent_at(t0 + Duration::from_secs(66));
        let search = recent.iter().find(|r| r.kind == "search").expect("search");
        assert_eq!(search.count, 1, "only the request of the last minute");
        assert!(search.latency.quantile(0.99).expect("p99") <= 1_000);
        assert_eq!(
            window, 66_000,
            "based on the newest snapshot a window old (t0)"
        );
        // Later, the t0 + 30 s snapshot is a window old: t0 is forgotten.
        m.tick_at(t0 + Duration::from_secs(95));
        let (recent, window) = m.recent_at(t0 + Duration::from_secs(96));
        assert_eq!(window, 66_000);
        let search = recent.iter().find(|r| r.kind == "search").expect("search");
        assert_eq!(search.count, 1);
    }
}
