//! The coordinator's rebalance paths against real partition actors (no data folder): a refit
//! that lands while an apply copies reaches the new shards, and planning never holds writes
//! behind a stalled shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use vsa_index::{Encoder, EncoderConfig};

use super::{
    Coordinator, CoordinatorArguments, CoordinatorMessage, FitResult, IndexConfig,
    RebalanceCommand, RoutingTable,
};
use crate::durability::StorageConfig;
use crate::partition::PartitionMessage;
use crate::rebalance::{Plan, Status};
use crate::store::ItemRecord;
use crate::supervisor::FailureLog;

const DIM: usize = 288;

/// A deterministic pseudo-random vector per number.
fn embedding(n: u64) -> Vec<f32> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn record(n: u64, category: &str) -> ItemRecord {
    ItemRecord::new(
        format!("item-{n:05}"),
        category.into(),
        Vec::new(),
        Vec::new(),
        &embedding(n),
    )
}

/// Small thresholds; the encoder is never fitted by itself (the tests deliver fits).
fn config() -> IndexConfig {
    IndexConfig {
        fit_threshold: 1_000_000,
        rebalance_split_items: 20,
        rebalance_merge_items: 5,
        rebalance_grace_ms: 50,
        ..IndexConfig::default()
    }
}

async fn start() -> (
    ActorRef<CoordinatorMessage>,
    watch::Receiver<Arc<RoutingTable>>,
) {
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    let (actor, _) = Actor::spawn(
        None,
        Coordinator,
        CoordinatorArguments {
            config: config(),
            routing: tx,
            storage: StorageConfig::default(),
            failures: FailureLog::default(),
        },
    )
    .await
    .expect("coordinator starts");
    (actor, rx)
}

async fn upsert(c: &ActorRef<CoordinatorMessage>, n: u64, category: &str) {
    ractor::call_t!(c, CoordinatorMessage::Upsert, 5000, record(n, category))
        .expect("coordinator answers")
        .expect("write accepted");
}

async fn rebalance(c: &ActorRef<CoordinatorMessage>, cmd: RebalanceCommand) -> (String, String) {
    let (message, payload) = ractor::call_t!(c, CoordinatorMessage::Rebalance, 10_000, cmd)
        .expect("coordinator answers")
        .expect("command accepted");
    (message, payload.unwrap_or_default())
}

async fn stall(c: &ActorRef<CoordinatorMessage>, name: &str, ms: u64) {
    let found = ractor::call_t!(
        c,
        CoordinatorMessage::StallPartition,
        1000,
        name.to_string(),
        ms
    )
    .expect("coordinator answers");
    assert!(found, "no partition {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refit_during_an_apply_reaches_the_new_shards() {
    // Trained before anything starts, so its delivery below is quick.
    let sample: Vec<f32> = (0..60).flat_map(embedding).collect();
    let encoder = Encoder::train(
        &sample,
        DIM,
        &EncoderConfig {
            dims: 16,
            itq_iterations: 3,
            ..EncoderConfig::default()
        },
    )
    .expect("encoder trains");
    let (c, routing) = start().await;
    for n in 0..60 {
        upsert(&c, n, "c").await;
    }
    let (_, payload) = rebalance(&c, RebalanceCommand::Plan).await;
    let plan: Plan = serde_json::from_str(&payload).expect("plan json");
    assert_eq!(plan.steps.len(), 1, "{plan:?}");
    let m = plan.steps[0].to.len();
    assert!(m >= 2, "{plan:?}");

    // Hold the copy: the old shard's export waits behind the stall, so the switch cannot
    // happen before the fit below has been delivered.
    stall(&c, "p/c/0", 1500).await;
    rebalance(&c, RebalanceCommand::Apply(plan.plan_id)).await;
    let (_, status) = rebalance(&c, RebalanceCommand::Status).await;
    let status: Status = serde_json::from_str(&status).expect("status json");
    assert_eq!(status.state, "running", "{status:?}");

    // A fit finishes mid-apply (as the background fit would): generation 1.
    c.send_message(CoordinatorMessage::FitDone(FitResult {
        encoder: Some(Arc::new(encoder)),
        prototypes: None,
        centroids: None,
        items: 60,
    }))
    .expect("coordinator alive");
    // Answered after the fit was handled (one mailbox): the apply was still copying then.
    let (_, status) = rebalance(&c, RebalanceCommand::Status).await;
    let status: Status = serde_json::from_str(&status).expect("status json");
    assert_eq!(status.state, "running", "{status:?}");

    let started = Instant::now();
    loop {
        let (_, status) = rebalance(&c, RebalanceCommand::Status).await;
        let status: Status = serde_json::from_str(&status).expect("status json");
        if status.state == "done" {
            break;
        }
        assert_eq!(status.state, "running", "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let table = routing.borrow().clone();
    let slots = table.categories.get("c").expect("category").clone();
    assert_eq!(slots.len(), m);
    assert_eq!(table.encoder.as_ref().map(|e| e.generation), Some(1));
    let mut items = 0;
    for slot in &slots {
        let s = ractor::call_t!(slot.actor, PartitionMessage::Stats, 5000).expect("stats");
        assert_eq!(
            s.encoder_generation, 1,
            "{} was built during the apply and missed the refit",
            s.name
        );
        items += s.items;
    }
    assert_eq!(items, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_does_not_hold_writes_behind_a_stalled_shard() {
    let (c, _routing) = start().await;
    for n in 0..10 {
        upsert(&c, n, "a").await;
    }
    upsert(&c, 100, "b").await;
    stall(&c, "p/a/0", 3000).await;
    // The plan is in the coordinator's mailbox before the write.
    let (tx, mut plan) = ractor::concurrency::oneshot();
    c.send_message(CoordinatorMessage::Rebalance(
        RebalanceCommand::Plan,
        tx.into(),
    ))
    .expect("coordinator alive");
    upsert(&c, 101, "b").await;
    assert!(
        plan.try_recv().is_err(),
        "the write was acknowledged only after the plan: planning blocked the coordinator"
    );
    let (message, payload) = tokio::time::timeout(Duration::from_secs(5), plan)
        .await
        .expect("the plan does not wait for the stalled shard")
        .expect("answered")
        .expect("planned");
    assert!(message.contains("p/a/0"), "{message}");
    let plan: Plan = serde_json::from_str(&payload.unwrap_or_default()).expect("plan json");
    assert!(plan.steps.is_empty(), "{plan:?}");
}
