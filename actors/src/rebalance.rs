//! Live shard rebalancing: plans (split oversized or hot categories, merge small ones), the
//! recent-load meter the planner reads ([`LoadMeter`]) and the bookkeeping of a running apply.
//! The coordinator drives it (`coordinator.rs`):
//!
//! ```text
//! Apply(plan) ─ for each step (one category, n → m shards):
//!   spawn m staging partitions ── every write to the category goes to the old shard (and the
//!   │                              log, old numbering) and also to its new shard
//!   Export each old shard ───────▶ group by new shard ─▶ Load (skips ids written directly
//!   │                                                   since staging began: those are newer)
//!   all loaded ─▶ log Layout{category, m} ─▶ swap the routing table (epoch + 1) ─▶ old shards
//!                 stop after a grace period
//! ```
//!
//! Crash safety: until the `Layout` record is in the log, recovery rebuilds the old layout
//! (the staging shards were memory only); from it on, recovery redistributes the category's
//! items by `shard_for(id, m)` at that point of the replay, so later records (new numbering)
//! land where they were written. Never a mix.
//!
//! No "move" steps: on one node every shard already is its own partition actor, so moving a
//! shard between actors would change nothing. Moves belong to the multi-node layer (shards on
//! other nodes through `ractor_cluster`), which does not exist yet (see `actors/README.md`).

use std::time::{Duration, Instant};

/// The recent load of one shard: an exponentially decayed count of its searches, read as a
/// rate (searches/s). Each search counts 1, and every count loses half its weight per
/// `half_life`, so the rate covers roughly the last `half_life / ln 2` seconds.
///
/// Unlike a lifetime counter, the figure means the same for a shard started a minute ago (a
/// split, a restart) as for one up for weeks: a young meter divides by the part of the window
/// it has lived (as Adam corrects its moment estimates), so a shard serving 10/s reads ≈ 10/s
/// whatever its age. Ages under `min(half_life, 1 s)` count as that, so one search in the first
/// millisecond reads ≈ 1/s, not 1000/s.
#[derive(Debug, Clone)]
pub struct LoadMeter {
    half_life_s: f64,
    /// Σ over past searches of 2^(−(at − t)/half_life).
    decayed: f64,
    at: Instant,
    born: Instant,
}

impl LoadMeter {
    /// A meter with no searches yet, born at `now`. `half_life_s` is clamped to 1 ms…10⁹ s.
    pub fn new(half_life_s: f64, now: Instant) -> LoadMeter {
        LoadMeter {
            half_life_s: if half_life_s.is_nan() {
                1e-3
            } else {
                half_life_s.clamp(1e-3, 1e9)
            },
            decayed: 0.0,
            at: now,
            born: now,
        }
    }

    fn decayed_at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.decayed * (-dt / self.half_life_s).exp2()
    }

    /// Counts one search at `now`.
    pub fn record(&mut self, now: Instant) {
        self.decayed = self.decayed_at(now) + 1.0;
        self.at = self.at.max(now);
    }

    /// Recent searches per second as of `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        let h = self.half_life_s;
        let floor = Duration::from_secs_f64(h.min(1.0));
        let age = now
            .saturating_duration_since(self.born)
            .max(floor)
            .as_secs_f64();
        // What a constant rate of 1/s would have accumulated over this meter's life.
        let window = h / std::f64::consts::LN_2 * (1.0 - (-age / h).exp2());
        self.decayed_at(now) / window
    }
}

pub use vsa_protocol::{RebalancePlan as Plan, RebalanceStep as PlanStep};

/// Thresholds of the planner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A shard above this many items is split.
    pub split_items: u64,
    /// A category whose shards average below this is merged into fewer.
    pub merge_items: u64,
    /// Most shards per category.
    pub max_shards: usize,
    /// A shard whose recent load is above this × the mean recent load per shard is hot
    /// (split).
    pub hot_factor: f64,
}

/// What the planner knows of one category: per shard `(name, items, recent load)`, and the ids.
#[derive(Debug, Clone)]
pub struct CategoryLoad {
    /// The category.
    pub category: String,
    /// Per shard: name, items, recent searches per second ([`LoadMeter::rate`]).
    pub shards: Vec<(String, u64, f64)>,
    /// Every item id of the category.
    pub ids: Vec<String>,
}

/// Computes the steps for the categories given.
pub fn plan(categories: &[CategoryLoad], t: &Thresholds) -> Vec<PlanStep> {
    let all: Vec<f64> = categories
        .iter()
        .flat_map(|c| c.shards.iter().map(|s| s.2))
        .collect();
    let mean_load = if all.is_empty() {
        0.0
    } else {
        all.iter().sum::<f64>() / all.len() as f64
    };
    let mut steps = Vec::new();
    for c in categories {
        let n = c.shards.len().max(1);
        let total: u64 = c.shards.iter().map(|s| s.1).sum();
        let biggest = c.shards.iter().map(|s| s.1).max().unwrap_or(0);
        let hottest = c.shards.iter().map(|s| s.2).fold(0.0, f64::max);
        let max = t.max_shards.max(1);
        let (m, kind, reason) = if biggest > t.split_items && n < max {
            let want = total.div_ceil((t.split_items / 2).max(1)) as usize;
            (
                want.max(2 * n).min(max),
                "split",
                format!(
                    "shard of {biggest} items > split threshold {}",
                    t.split_items
                ),
            )
        } else if mean_load > 0.0
            && hottest > t.hot_factor * mean_load
            && total >= t.merge_items.max(1) * 2
            && n < max
        {
            (
                (2 * n).min(max),
                "split",
                format!(
                    "hot: {hottest:.2} searches/s recently vs {mean_load:.2} per shard on average"
                ),
            )
        } else if n > 1 && total < t.merge_items.saturating_mul(n as u64) / 2 {
            (
                (total.div_ceil(t.merge_items.max(1)) as usize).clamp(1, n - 1),
                "merge",
                format!(
                    "{total} items over {n} shards < half the merge threshold {} per shard",
                    t.merge_items
                ),
            )
        } else {
            continue;
        };
        let mut after = vec![0u64; m];
        for id in &c.ids {
            after[crate::durability::record::shard_for(id, m)] += 1;
        }
        steps.push(PlanStep {
            kind: kind.to_string(),
            category: c.category.clone(),
            from: c.shards.iter().map(|s| s.0.clone()).collect(),
            to: (0..m).map(|i| format!("p/{}/{i}", c.category)).collect(),
            items_before: total,
            items_after: after,
            reason,
        });
    }
    steps
}

/// The state of the rebalancer, as `RebalanceStatus` reports it.
pub use vsa_protocol::RebalanceStatus as Status;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(category: &str, shards: &[(u64, f64)], ids: usize) -> CategoryLoad {
        CategoryLoad {
            category: category.into(),
            shards: shards
                .iter()
                .enumerate()
                .map(|(i, (items, searches))| (format!("p/{category}/{i}"), *items, *searches))
                .collect(),
            ids: (0..ids).map(|i| format!("{category}-{i}")).collect(),
        }
    }

    const T: Thresholds = Thresholds {
        split_items: 100,
        merge_items: 20,
        max_shards: 16,
        hot_factor: 4.0,
    };

    #[test]
    fn oversized_splits_small_merges_balanced_stays() {
        let steps = plan(
            &[
                load("big", &[(300, 1.0)], 300),
                load("small", &[(5, 1.0), (4, 1.0), (6, 1.0), (5, 1.0)], 20),
                load("fine", &[(60, 1.0), (50, 1.0)], 110),
            ],
            &T,
        );
        assert_eq!(steps.len(), 2, "{steps:?}");
        let big = &steps[0];
        assert_eq!((big.kind.as_str(), big.to.len()), ("split", 6));
        assert_eq!(big.items_after.iter().sum::<u64>(), 300);
        assert!(
            big.items_after.iter().all(|n| *n < 100),
            "{:?}",
            big.items_after
        );
        let small = &steps[1];
        assert_eq!((small.kind.as_str(), small.to.len()), ("merge", 1));
        assert_eq!(small.items_after, vec![20]);
    }

    #[test]
    fn a_hot_category_splits() {
        let mut cats = vec![load("hot", &[(50, 100.0)], 50)];
        for i in 0..8 {
            cats.push(load(&format!("cold{i}"), &[(50, 1.0)], 50));
        }
        let steps = plan(&cats, &T);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].category, "hot");
        assert_eq!(steps[0].to.len(), 2);
    }

    /// `n` searches spread evenly over `[from, from + secs)`.
    fn searches(m: &mut LoadMeter, from: Instant, secs: f64, n: u32) {
        for i in 0..n {
            m.record(from + Duration::from_secs_f64(secs * f64::from(i) / f64::from(n)));
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-9)
    }

    #[test]
    fn a_steady_load_reads_as_its_rate_whatever_the_meter_age() {
        let t0 = Instant::now();
        // Up for ten half-lives at 10/s.
        let mut old = LoadMeter::new(60.0, t0);
        searches(&mut old, t0, 600.0, 6000);
        let now = t0 + Duration::from_secs(600);
        assert!(close(old.rate(now), 10.0, 0.02), "{}", old.rate(now));
        // Born 5 s ago (a split, a restart) at the same 10/s: the same reading.
        let born = now - Duration::from_secs(5);
        let mut young = LoadMeter::new(60.0, born);
        searches(&mut young, born, 5.0, 50);
        assert!(close(young.rate(now), 10.0, 0.05), "{}", young.rate(now));
        // Nothing yet: 0; one search in the first millisecond is not 1000/s.
        let fresh = LoadMeter::new(60.0, now);
        assert_eq!(fresh.rate(now), 0.0);
        let mut one = LoadMeter::new(60.0, now);
        one.record(now);
        assert!(one.rate(now + Duration::from_millis(1)) <= 1.01);
    }

    #[test]
    fn old_load_fades_with_the_half_life() {
        let t0 = Instant::now();
        let mut m = LoadMeter::new(30.0, t0);
        searches(&mut m, t0, 300.0, 3000);
        let end = t0 + Duration::from_secs(300);
        let r = m.rate(end);
        assert!(close(m.rate(end + Duration::from_secs(30)), r / 2.0, 0.02));
        assert!(m.rate(end + Duration::from_secs(300)) < r / 1000.0);
        // Reading never changes the meter.
        assert_eq!(m.rate(end), r);
    }

    #[test]
    fn a_shard_hot_long_ago_is_not_hot_now_and_a_young_hot_one_is() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(3600);
        // Served 100 000 searches in its first ten minutes, none in the 50 since: a lifetime
        // counter calls it the hottest by far.
        let mut was_hot = LoadMeter::new(60.0, t0);
        searches(&mut was_hot, t0, 600.0, 100_000);
        // Every other shard: a steady 1/s for the whole hour.
        let mut steady = LoadMeter::new(60.0, t0);
        searches(&mut steady, t0, 3600.0, 3600);
        // Split 30 s ago, serving 20/s since: few lifetime searches, but hot now.
        let split_at = now - Duration::from_secs(30);
        let mut young = LoadMeter::new(60.0, split_at);
        searches(&mut young, split_at, 30.0, 600);
        let mut cats = vec![
            load("was-hot", &[(50, was_hot.rate(now))], 50),
            load("young", &[(50, young.rate(now))], 50),
        ];
        for i in 0..8 {
            cats.push(load(&format!("cold{i}"), &[(50, steady.rate(now))], 50));
        }
        let steps = plan(&cats, &T);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].category, "young");
        assert!(steps[0].reason.starts_with("hot:"), "{}", steps[0].reason);
    }
}
