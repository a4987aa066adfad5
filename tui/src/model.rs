//! View-model: the numbers the screens show, computed from the server's answers.
//!
//! Telemetry counters and histograms are cumulative since boot, so rates and windowed
//! percentiles come from the difference of two consecutive polls ([`Window::between`]). The
//! JSON payloads of admin replies (plans, rebalance status, weights, click statistics) are
//! parsed leniently here: a missing field is a default, never a failure.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use vsa_protocol::{ActorInfo, Histogram, RequestMetrics, SearchHit, Telemetry};

/// The reranking components, in the order the console shows them.
pub const COMPONENTS: [&str; 4] = ["visual", "colour", "quality", "ctr"];

/// What happened between two polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Seconds between the polls (by the server's uptime).
    pub secs: f64,
    /// `search` requests answered per second.
    pub search_qps: f64,
    /// Windowed median latency of `search`, µs (`None` when no search was answered).
    pub search_p50_us: Option<u64>,
    /// Windowed 99th percentile latency of `search`, µs.
    pub search_p99_us: Option<u64>,
    /// Requests of every kind answered per second.
    pub requests_per_s: f64,
    /// Error answers (any kind, `busy` included) per second.
    pub errors_per_s: f64,
    /// `busy` answers per second.
    pub busy_per_s: f64,
    /// Per shard, in the order of the newer poll.
    pub shards: Vec<ShardWindow>,
    /// Images embedded per second.
    pub images_per_s: f64,
    /// Batches run per second.
    pub batches_per_s: f64,
    /// Inference `busy` rejections per second.
    pub busy_rejections_per_s: f64,
}

/// One shard's numbers over a [`Window`].
#[derive(Debug, Clone, PartialEq)]
pub struct ShardWindow {
    /// The shard.
    pub name: String,
    /// Searches per second (`None` for a shard new or restarted in the window).
    pub qps: Option<f64>,
    /// Windowed 99th percentile latency, µs.
    pub p99_us: Option<u64>,
}

fn per_s(now: u64, then: u64, secs: f64) -> f64 {
    now.saturating_sub(then) as f64 / secs
}

impl Window {
    /// The window between two polls of the same server; `None` when no time passed or the
    /// server restarted in between (its uptime went backwards).
    pub fn between(prev: &Telemetry, now: &Telemetry) -> Option<Window> {
        if now.uptime_ms <= prev.uptime_ms {
            return None;
        }
        let secs = (now.uptime_ms - prev.uptime_ms) as f64 / 1000.0;
        let empty = RequestMetrics {
            kind: String::new(),
            count: 0,
            errors: 0,
            busy: 0,
            latency: Histogram::default(),
        };
        let before = |kind: &str| {
            prev.requests
                .iter()
                .find(|r| r.kind == kind)
                .unwrap_or(&empty)
        };
        let (mut requests, mut errors, mut busy) = (0.0, 0.0, 0.0);
        let (mut search_qps, mut search_p50_us, mut search_p99_us) = (0.0, None, None);
        for r in &now.requests {
            let then = before(&r.kind);
            requests += per_s(r.count, then.count, secs);
            errors += per_s(r.errors, then.errors, secs);
            busy += per_s(r.busy, then.busy, secs);
            if r.kind == "search" {
                search_qps = per_s(r.count, then.count, secs);
                let window = r.latency.since(&then.latency);
                search_p50_us = window.quantile(0.5);
                search_p99_us = window.quantile(0.99);
            }
        }
        let shards = now
            .shards
            .iter()
            .map(|s| {
                let then = prev.shards.iter().find(|p| p.name == s.name);
                match then {
                    Some(then) if s.searches >= then.searches => ShardWindow {
                        name: s.name.clone(),
                        qps: Some(per_s(s.searches, then.searches, secs)),
                        p99_us: s.latency.since(&then.latency).quantile(0.99),
                    },
                    _ => ShardWindow {
                        name: s.name.clone(),
                        qps: None,
                        p99_us: None,
                    },
                }
            })
            .collect();
        let (i, j) = (&now.inference, &prev.inference);
        Some(Window {
            secs,
            search_qps,
            search_p50_us,
            search_p99_us,
            requests_per_s: requests,
            errors_per_s: errors,
            busy_per_s: busy,
            shards,
            images_per_s: per_s(i.images, j.images, secs),
            batches_per_s: per_s(i.batches, j.batches, secs),
            busy_rejections_per_s: per_s(i.busy_rejections, j.busy_rejections, secs),
        })
    }

    /// This shard's numbers, if it was in the newer poll.
    pub fn shard(&self, name: &str) -> Option<&ShardWindow> {
        self.shards.iter().find(|s| s.name == name)
    }
}

/// The supervision tree in display order: each actor after its parent, children in the
/// server's order, with its depth. Actors whose parent is unknown are roots; a cycle cannot
/// loop (each actor is listed once).
pub fn actor_tree(actors: &[ActorInfo]) -> Vec<(usize, &ActorInfo)> {
    let names: HashSet<&str> = actors.iter().map(|a| a.name.as_str()).collect();
    let mut children: HashMap<&str, Vec<&ActorInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for a in actors {
        match a.parent.as_deref() {
            Some(p) if names.contains(p) && p != a.name => {
                children.entry(p).or_default().push(a);
            }
            _ => roots.push(a),
        }
    }
    let mut out = Vec::with_capacity(actors.len());
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, &ActorInfo)> = roots.into_iter().rev().map(|a| (0, a)).collect();
    while let Some((depth, a)) = stack.pop() {
        if !seen.insert(a.name.as_str()) {
            continue;
        }
        out.push((depth, a));
        if let Some(kids) = children.get(a.name.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
    // Actors only reachable through a cycle: show them at the top level rather than hide them.
    for a in actors {
        if seen.insert(a.name.as_str()) {
            out.push((0, a));
        }
    }
    out
}

/// The rebalancer's payloads, as the protocol defines them.
pub use vsa_protocol::{RebalancePlan as Plan, RebalanceStatus, RebalanceStep as PlanStep};

/// Parsing an admin reply's JSON payload into its protocol type.
pub trait Payload: serde::de::DeserializeOwned {
    /// What the payload is, for the error message.
    const WHAT: &'static str;

    /// Parses a payload.
    fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("cannot parse the {}: {e}", Self::WHAT))
    }
}

impl Payload for Plan {
    const WHAT: &'static str = "plan";
}

impl Payload for RebalanceStatus {
    const WHAT: &'static str = "rebalance status";
}

/// Reranking weights with their version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    /// Bumped on every change.
    pub version: u64,
    /// `(component, weight)`.
    pub components: Vec<(String, f32)>,
}

impl Weights {
    /// Reads `{"version":u64,"visual":f32,...}` (the `SetRerankWeights` payload, and
    /// `weights` in the click statistics); known components first, then any others.
    pub fn from_json(v: &Value) -> Option<Weights> {
        let obj = v.as_object()?;
        let version = obj.get("version").and_then(Value::as_u64).unwrap_or(0);
        let mut components: Vec<(String, f32)> = COMPONENTS
            .iter()
            .filter_map(|c| Some((c.to_string(), obj.get(*c)?.as_f64()? as f32)))
            .collect();
        for (k, v) in obj {
            if k != "version"
                && !COMPONENTS.contains(&k.as_str())
                && let Some(x) = v.as_f64()
            {
                components.push((k.clone(), x as f32));
            }
        }
        Some(Weights {
            version,
            components,
        })
    }

    /// Parses a weights payload.
    pub fn parse(json: &str) -> Result<Weights, String> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| format!("cannot parse the weights: {e}"))?;
        Weights::from_json(&v).ok_or_else(|| "the weights payload is not an object".to_owned())
    }

    /// The weight of a component (0 when absent).
    pub fn get(&self, component: &str) -> f32 {
        self.components
            .iter()
            .find(|(c, _)| c == component)
            .map_or(0.0, |(_, w)| *w)
    }
}

/// The click statistics (`ClickStats`'s payload).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClickStats {
    /// Clicks accepted (decayed).
    pub clicks: f64,
    /// Impressions logged (decayed).
    pub impressions: f64,
    /// Clicks refused.
    pub rejected: u64,
    /// Items with click state.
    pub items_tracked: u64,
    /// Memory the aggregates hold.
    pub memory_bytes: u64,
    /// Per tracked item.
    pub bytes_per_item: f64,
    /// Searches logged since boot.
    pub queries_logged: u64,
    /// Searches retained in the query log.
    pub queries_retained: u64,
    /// The live weights, if the payload carries them.
    pub weights: Option<Weights>,
    /// Top items by CTR.
    pub top: Vec<TopItem>,
}

/// One item of [`ClickStats::top`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopItem {
    /// Item id.
    pub id: String,
    /// Its CTR.
    pub ctr: f64,
    /// Its clicks.
    pub clicks: f64,
    /// Its impressions.
    pub impressions: f64,
}

fn f(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
        .unwrap_or(0)
}

impl ClickStats {
    /// Parses a click statistics payload.
    pub fn parse(json: &str) -> Result<ClickStats, String> {
        let v: Value =
            serde_json::from_str(json).map_err(|e| format!("cannot parse click stats: {e}"))?;
        let top = v
            .get("top")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|t| TopItem {
                        id: t
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        ctr: f(t, "ctr"),
                        clicks: f(t, "clicks"),
                        impressions: f(t, "impressions"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClickStats {
            clicks: f(&v, "clicks"),
            impressions: f(&v, "impressions"),
            rejected: u(&v, "rejected"),
            items_tracked: u(&v, "items_tracked"),
            memory_bytes: u(&v, "memory_bytes"),
            bytes_per_item: f(&v, "bytes_per_item"),
            queries_logged: u(&v, "queries_logged"),
            queries_retained: u(&v, "queries_retained"),
            weights: v.get("weights").and_then(Weights::from_json),
            top,
        })
    }
}

/// A hit's named score component (0 when absent).
pub fn component(hit: &SearchHit, name: &str) -> f32 {
    hit.components
        .iter()
        .find(|(c, _)| c == name)
        .map_or(0.0, |(_, v)| *v)
}

/// A hit's score under these weights (docs/RANKING.md): Σ w_c · c over the components.
pub fn rescore(hit: &SearchHit, weights: &[(String, f32)]) -> f32 {
    weights.iter().map(|(c, w)| w * component(hit, c)).sum()
}

/// One row of the re-scored ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRow {
    /// Item id.
    pub id: String,
    /// Score under the pending weights.
    pub score: f32,
    /// 0-based rank in the server's ranking.
    pub old_rank: usize,
    /// 0-based rank under the pending weights.
    pub new_rank: usize,
}

impl PreviewRow {
    /// `▲2` (moved up two), `▼1`, `=` or `new` (from below the shown top).
    pub fn movement(&self, shown: usize) -> String {
        if self.old_rank >= shown {
            "new".to_owned()
        } else if self.new_rank < self.old_rank {
            format!("▲{}", self.old_rank - self.new_rank)
        } else if self.new_rank > self.old_rank {
            format!("▼{}", self.new_rank - self.old_rank)
        } else {
            "=".to_owned()
        }
    }
}

/// The server's hits (best first) re-scored with `weights`, best first, top `top` of them.
/// Ties keep the server's order.
pub fn rerank(hits: &[SearchHit], weights: &[(String, f32)], top: usize) -> Vec<PreviewRow> {
    let mut rows: Vec<PreviewRow> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| PreviewRow {
            id: h.id.clone(),
            score: rescore(h, weights),
            old_rank: i,
            new_rank: 0,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.old_rank.cmp(&b.old_rank))
    });
    rows.truncate(top);
    for (i, r) in rows.iter_mut().enumerate() {
        r.new_rank = i;
    }
    rows
}

/// `1d 02:03:04` or `02:03:04`.
pub fn fmt_uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `850 µs`, `1.2 ms`, `1.50 s`, or `–` for none.
pub fn fmt_us(us: Option<u64>) -> String {
    match us {
        None => "–".to_owned(),
        Some(us) if us < 1000 => format!("{us} µs"),
        Some(us) if us < 1_000_000 => format!("{:.1} ms", us as f64 / 1000.0),
        Some(us) => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `12.3/s`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}/s")
    } else {
        format!("{r:.1}/s")
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn fmt_clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}
