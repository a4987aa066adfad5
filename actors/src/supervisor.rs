//! The root of the supervision tree.
//!
//! ```text
//! Root ─┬─ InferencePool  (worker threads; dead workers restarted by the pool itself)
//!       ├─ Coordinator ─── Partition × (categories × shards)
//!       └─ ClickAggregator × N
//! ```
//!
//! A failed child of the root is restarted with the same arguments, the restart is counted and
//! its error kept in the [`FailureLog`] (the console's Actors tab shows both). A click
//! aggregator comes back with its last saved state. A restarted coordinator recovers the
//! catalogue from the data folder's snapshots and log (boot recovery); with no data folder
//! (`server.in_memory`) it comes back empty. The pool's channel and the routing `watch` live
//! outside the actors, so handles held by engines stay valid across restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;

use crate::clicks::{AggregatorArguments, AggregatorMessage, spawn_aggregator};
use crate::coordinator::{Coordinator, CoordinatorArguments, CoordinatorMessage};
use crate::inference::{InferencePool, InferencePoolArguments, InferencePoolMessage};

/// What a supervisor saw of one child's failures, for the operator console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorFailure {
    /// Restarts after a failure.
    pub restarts: u64,
    /// The last failure, as the supervisor saw it.
    pub last_error: String,
}

/// Failures per logical actor name (`inference-pool`, `coordinator`, `clicks/0`,
/// `p/<category>/<i>`), shared by the supervisors that record them and the engine that reports
/// them. Names survive restarts, where actor ids do not.
#[derive(Debug, Clone, Default)]
pub struct FailureLog(Arc<Mutex<BTreeMap<String, ActorFailure>>>);

impl FailureLog {
    /// Counts a failure of `name`.
    pub fn record(&self, name: &str, error: &str) {
        if let Ok(mut map) = self.0.lock() {
            let entry = map.entry(name.to_string()).or_default();
            entry.restarts += 1;
            entry.last_error = error.chars().take(300).collect();
        }
    }

    /// What is known of `name`.
    pub fn get(&self, name: &str) -> Option<ActorFailure> {
        self.0.lock().ok().and_then(|m| m.get(name).cloned())
    }
}

/// The root supervisor.
#[derive(Debug, Default)]
pub struct Root;

/// Arguments of the root.
#[derive(Debug, Clone)]
pub struct RootArguments {
    /// For the inference pool.
    pub pool: InferencePoolArguments,
    /// For the coordinator.
    pub coordinator: CoordinatorArguments,
    /// Where the current coordinator is published.
    pub coordinator_ref: watch::Sender<Option<ActorRef<CoordinatorMessage>>>,
    /// Restart counter shared with the engine.
    pub restarts: Arc<AtomicU64>,
    /// One per click aggregator.
    pub aggregators: Vec<AggregatorArguments>,
    /// Where the current aggregators are published.
    pub aggregator_refs: watch::Sender<Vec<ActorRef<AggregatorMessage>>>,
    /// Failures of the root's children, by name.
    pub failures: FailureLog,
}

/// Messages of the root (none besides supervision events).
#[derive(Debug)]
pub enum RootMessage {}

/// State of the root.
#[derive(Debug)]
pub struct RootState {
    args: RootArguments,
    pool: ActorRef<InferencePoolMessage>,
    coordinator: ActorRef<CoordinatorMessage>,
    aggregators: Vec<ActorRef<AggregatorMessage>>,
}

impl Actor for Root {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = RootArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (pool, _) =
            Actor::spawn_linked(None, InferencePool, args.pool.clone(), myself.get_cell()).await?;
        let (coordinator, _) = Actor::spawn_linked(
            None,
            Coordinator,
            args.coordinator.clone(),
            myself.get_cell(),
        )
        .await?;
        args.coordinator_ref.send_replace(Some(coordinator.clone()));
        let mut aggregators = Vec::with_capacity(args.aggregators.len());
        for a in &args.aggregators {
            aggregators.push(spawn_aggregator(a.clone(), myself.get_cell()).await?);
        }
        args.aggregator_refs.send_replace(aggregators.clone());
        Ok(RootState {
            args,
            pool,
            coordinator,
            aggregators,
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = ?cell.get_id(), error = %err, "child of the root failed");
                (cell, format!("failed: {err}"))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::warn!(actor = ?cell.get_id(), ?reason, "child of the root stopped");
                (cell, format!("stopped: {}", reason.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        let name = if cell.get_id() == state.pool.get_id() {
            "inference-pool".to_string()
        } else if cell.get_id() == state.coordinator.get_id() {
            "coordinator".to_string()
        } else {
            state
                .aggregators
                .iter()
                .position(|a| a.get_id() == cell.get_id())
                .map_or_else(|| "unknown".to_string(), |i| format!("clicks/{i}"))
        };
        if name != "unknown" {
            state.args.failures.record(&name, &why);
        }
        if cell.get_id() == state.pool.get_id() {
            let (pool, _) = Actor::spawn_linked(
                None,
                InferencePool,
                state.args.pool.clone(),
                myself.get_cell(),
            )
            .await?;
            state.pool = pool;
        } else if cell.get_id() == state.coordinator.get_id() {
            let (c, _) = Actor::spawn_linked(
                None,
                Coordinator,
                state.args.coordinator.clone(),
                myself.get_cell(),
            )
            .await?;
            state.args.coordinator_ref.send_replace(Some(c.clone()));
            state.coordinator = c;
        } else if let Some(i) = state
            .aggregators
            .iter()
            .position(|a| a.get_id() == cell.get_id())
        {
            state.aggregators[i] =
                spawn_aggregator(state.args.aggregators[i].clone(), myself.get_cell()).await?;
            state
                .args
                .aggregator_refs
                .send_replace(state.aggregators.clone());
        } else {
            return Ok(());
        }
        state.args.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.coordinator.stop(None);
        state.pool.stop(None);
        for a in &state.aggregators {
            a.stop(None);
        }
        Ok(())
    }
}
