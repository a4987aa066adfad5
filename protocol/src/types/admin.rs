//! `Admin`: operator actions, guarded by the admin token.

use serde::{Deserialize, Serialize};

/// An administrative request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminRequest {
    /// The admin token.
    pub token: String,
    /// What to do.
    pub action: AdminAction,
}

/// Administrative actions. Variants are only ever appended (see `types` module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminAction {
    /// Fault injection: make the named actor panic (to exercise supervision).
    PanicActor {
        /// The actor's name.
        name: String,
    },
    /// Snapshot every shard now.
    Snapshot,
    /// Replace the reranking weights: `(component, weight)`.
    SetRerankWeights(Vec<(String, f32)>),
    /// Compute a rebalance plan; the reply's payload is the plan as JSON.
    RebalancePlan,
    /// Apply a previously computed plan.
    RebalanceApply {
        /// The plan's id.
        plan_id: u64,
    },
    /// Cancel the rebalance in progress.
    RebalanceCancel,
    /// The rebalancer's status; the reply's payload is JSON.
    RebalanceStatus,
    /// Fault injection: the named actor stops handling messages for `millis` (a stalled
    /// shard: searches leave it out after their timeout and answer `degraded`).
    StallActor {
        /// The actor's name.
        name: String,
        /// How long.
        millis: u64,
    },
    /// Click aggregates: totals, rejected clicks, top items by CTR; the payload is JSON.
    ClickStats {
        /// How many top items.
        top: u32,
    },
    /// One page of training data mined from the click log; the payload is JSON
    /// (`{"triplets": [...], "virtual_ids": [...], "next": offset-or-null}`).
    ExportClicks {
        /// First retained query of the page.
        offset: u64,
        /// Most queries in the page.
        limit: u32,
    },
    /// Everything the operator console shows (answered with `Response::Telemetry`): counters,
    /// latency histograms, the supervision tree, shards, the pool, weights, and the server's
    /// warnings and errors numbered after `log_after`.
    Telemetry {
        /// Only log lines with a greater `seq` (0: all that are kept).
        log_after: u64,
    },
}

/// The answer to an admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// Human-readable outcome.
    pub message: String,
    /// Machine-readable details as JSON text (plans, status).
    pub payload: Option<String>,
}
