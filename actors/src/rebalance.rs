//! Live shard rebalancing: plans (split oversized or hot categories, merge small ones) and the
//! bookkeeping of a running apply. The coordinator drives it (`coordinator.rs`):
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

use serde::{Deserialize, Serialize};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `split` or `merge`.
    pub kind: String,
    /// The category.
    pub category: String,
    /// Shards now (names).
    pub from: Vec<String>,
    /// Shards after (names).
    pub to: Vec<String>,
    /// Items in the category.
    pub items_before: u64,
    /// Items per new shard (exact: computed from the item ids).
    pub items_after: Vec<u64>,
    /// Why.
    pub reason: String,
}

/// A rebalance plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Its id (apply names it).
    pub plan_id: u64,
    /// Steps, applied in order.
    pub steps: Vec<PlanStep>,
    /// A one-line summary.
    pub reason: String,
}

/// Thresholds of the planner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A shard above this many items is split.
    pub split_items: u64,
    /// A category whose shards average below this is merged into fewer.
    pub merge_items: u64,
    /// Most shards per category.
    pub max_shards: usize,
    /// A shard serving more than this × the mean searches per shard is hot (split).
    pub hot_factor: f64,
}

/// What the planner knows of one category: per shard `(name, items, searches)`, and the ids.
#[derive(Debug, Clone)]
pub struct CategoryLoad {
    /// The category.
    pub category: String,
    /// Per shard: name, items, searches served.
    pub shards: Vec<(String, u64, u64)>,
    /// Every item id of the category.
    pub ids: Vec<String>,
}

/// Computes the steps for the categories given.
pub fn plan(categories: &[CategoryLoad], t: &Thresholds) -> Vec<PlanStep> {
    let all: Vec<u64> = categories
        .iter()
        .flat_map(|c| c.shards.iter().map(|s| s.2))
        .collect();
    let mean_searches = if all.is_empty() {
        0.0
    } else {
        all.iter().sum::<u64>() as f64 / all.len() as f64
    };
    let mut steps = Vec::new();
    for c in categories {
        let n = c.shards.len().max(1);
        let total: u64 = c.shards.iter().map(|s| s.1).sum();
        let biggest = c.shards.iter().map(|s| s.1).max().unwrap_or(0);
        let hottest = c.shards.iter().map(|s| s.2).max().unwrap_or(0);
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
        } else if mean_searches > 0.0
            && hottest as f64 > t.hot_factor * mean_searches
            && total >= t.merge_items.max(1) * 2
            && n < max
        {
            (
                (2 * n).min(max),
                "split",
                format!("hot: {hottest} searches vs {mean_searches:.0} per shard on average"),
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `idle`, `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    /// The plan applied (or last applied).
    pub plan_id: Option<u64>,
    /// 0…1.
    pub progress: f32,
    /// What is happening.
    pub message: String,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: "idle".into(),
            plan_id: None,
            progress: 0.0,
            message: "no rebalance has run".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(category: &str, shards: &[(u64, u64)], ids: usize) -> CategoryLoad {
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
                load("big", &[(300, 10)], 300),
                load("small", &[(5, 10), (4, 10), (6, 10), (5, 10)], 20),
                load("fine", &[(60, 10), (50, 10)], 110),
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
        let mut cats = vec![load("hot", &[(50, 1000)], 50)];
        for i in 0..8 {
            cats.push(load(&format!("cold{i}"), &[(50, 10)], 50));
        }
        let steps = plan(&cats, &T);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].category, "hot");
        assert_eq!(steps[0].to.len(), 2);
    }
}
