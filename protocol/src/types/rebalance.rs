//! The rebalancer's plan and status: the JSON payloads of `AdminAction::RebalancePlan` and
//! `AdminAction::RebalanceStatus` (`AdminReply::payload`), shared by the server that writes them
//! and the clients (console, CLI) that read them. Fields missing from a payload take their
//! defaults, so an older server's answer still parses.

use serde::{Deserialize, Serialize};

/// A rebalance plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebalancePlan {
    /// Its id (`RebalanceApply` names it).
    pub plan_id: u64,
    /// Steps, applied in order; empty when nothing needs doing.
    pub steps: Vec<RebalanceStep>,
    /// A one-line summary (or why nothing).
    pub reason: String,
}

/// One step of a [`RebalancePlan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebalanceStep {
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

impl RebalanceStep {
    /// One line: `split shoes: p/shoes/0 → p/shoes/0,p/shoes/1 (1000 → 500+500): reason`.
    pub fn describe(&self) -> String {
        let after: Vec<String> = self.items_after.iter().map(u64::to_string).collect();
        let mut line = format!(
            "{} {}: {} → {} ({} → {})",
            self.kind,
            self.category,
            self.from.join(","),
            self.to.join(","),
            self.items_before,
            after.join("+"),
        );
        if !self.reason.is_empty() {
            line.push_str(": ");
            line.push_str(&self.reason);
        }
        line
    }
}

/// The state of the rebalancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RebalanceStatus {
    /// `idle`, `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    /// The plan applied (or last applied).
    pub plan_id: Option<u64>,
    /// 0…1.
    pub progress: f32,
    /// What is happening, or how it ended.
    pub message: String,
}

impl Default for RebalanceStatus {
    fn default() -> Self {
        RebalanceStatus {
            state: "idle".into(),
            plan_id: None,
            progress: 0.0,
            message: "no rebalance has run".into(),
        }
    }
}

impl RebalanceStatus {
    /// Whether a rebalance is in progress.
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}
