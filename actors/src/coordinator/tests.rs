//! The coordinator against real partition actors. Without a data folder: a refit that lands
//! while an apply copies reaches the new shards, and planning never holds writes behind a
//! stalled shard. With one: the model state a checkpoint wrote is back at once after a
//! restart (no refit, same binary results), and an unusable model file costs a refit, never
//! items.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use vsa_index::{Encoder, EncoderConfig};

use super::{
    Coordinator, CoordinatorArguments, CoordinatorMessage, FitResult, IndexConfig, ModelInfo,
    RebalanceCommand, RoutingTable,
};
use crate::durability::StorageConfig;
use crate::durability::manifest;
use crate::partition::{PartitionMessage, PartitionQuery};
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
            embedding_dim: None,
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

// ---- with a data folder: the model state survives a restart -------------------------------

struct Dir(std::path::PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("vsa-coordinator-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fits by itself at 100 items, refits at twice that; two shards per category.
fn durable_config() -> IndexConfig {
    IndexConfig {
        fit_threshold: 100,
        refit_growth: 2.0,
        shards_per_category: 2,
        ..IndexConfig::default()
    }
}

async fn start_durable(
    dir: &Dir,
    embedding_dim: Option<usize>,
) -> (
    ActorRef<CoordinatorMessage>,
    watch::Receiver<Arc<RoutingTable>>,
) {
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    let (actor, _) = Actor::spawn(
        None,
        Coordinator,
        CoordinatorArguments {
            config: durable_config(),
            routing: tx,
            storage: StorageConfig {
                dir: Some(dir.0.clone()),
                // A process restart, not a machine crash: the OS keeps what was written.
                fsync: crate::durability::FsyncPolicy::Never,
                ..StorageConfig::default()
            },
            failures: FailureLog::default(),
            embedding_dim,
        },
    )
    .await
    .expect("coordinator starts");
    (actor, rx)
}

async fn stop(c: ActorRef<CoordinatorMessage>) {
    c.stop_and_wait(None, Some(Duration::from_secs(10)))
        .await
        .expect("coordinator stops");
}

async fn model_info(c: &ActorRef<CoordinatorMessage>) -> ModelInfo {
    ractor::call_t!(c, CoordinatorMessage::ModelInfo, 5000).expect("coordinator answers")
}

async fn checkpoint(c: &ActorRef<CoordinatorMessage>) -> String {
    ractor::call_t!(c, |port| CoordinatorMessage::Checkpoint(Some(port)), 30_000)
        .expect("coordinator answers")
        .expect("checkpoint taken")
}

/// Polls `cond` every 20 ms for up to 30 s.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Encoder generation of every shard, as the shards report it.
async fn shard_generations(routing: &watch::Receiver<Arc<RoutingTable>>) -> Vec<u64> {
    let table = routing.borrow().clone();
    let mut out = Vec::new();
    for slot in table.slots() {
        let s = ractor::call_t!(slot.actor, PartitionMessage::Stats, 5000).expect("stats");
        out.push(s.encoder_generation);
    }
    out
}

/// `(id, score, hamming)` of the top 10 for item `n`'s embedding, over every shard.
async fn search(
    routing: &watch::Receiver<Arc<RoutingTable>>,
    n: u64,
) -> Vec<(String, f32, Option<u32>)> {
    let mut v = embedding(n);
    vsa_models::l2_normalise(&mut v);
    let q = Arc::new(PartitionQuery {
        vectors: vec![v],
        encoded: None,
        k: 10,
        candidates: 40,
        filter: None,
        exclude: None,
        colour: None,
        second_weight: 0.0,
        whitened: None,
    });
    let table = routing.borrow().clone();
    let mut hits = Vec::new();
    for slot in table.slots() {
        let h =
            ractor::call_t!(slot.actor, PartitionMessage::Search, 5000, q.clone()).expect("search");
        hits.extend(h.into_iter().map(|h| (h.id, h.score, h.hamming)));
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    hits.truncate(10);
    hits
}

/// 150 items (fitted at 100: generation 1 everywhere), a checkpoint, 10 more items after it
/// (only in the log); returns the coordinator still running.
async fn fill_and_checkpoint(
    dir: &Dir,
) -> (
    ActorRef<CoordinatorMessage>,
    watch::Receiver<Arc<RoutingTable>>,
) {
    let (c, routing) = start_durable(dir, Some(DIM)).await;
    for n in 0..150 {
        upsert(&c, n, if n % 3 == 0 { "a" } else { "b" }).await;
    }
    wait_for("the first fit to reach every shard", || async {
        let g = shard_generations(&routing).await;
        g.len() == 4 && g.iter().all(|g| *g == 1)
    })
    .await;
    // The fit started at 100 items; the catalogue is below 2 × that, so none is running.
    let info = model_info(&c).await;
    assert_eq!((info.generation, info.fits_done), (1, 1), "{info:?}");
    assert!(routing.borrow().prototypes.is_some() && routing.borrow().centroids.is_some());
    let summary = checkpoint(&c).await;
    assert!(summary.contains("model state model-"), "{summary}");
    for n in 150..160 {
        upsert(&c, n, "b").await;
    }
    (c, routing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_the_model_state_without_refitting() {
    let dir = Dir::new("restore");
    let (c, routing) = fill_and_checkpoint(&dir).await;
    let before = search(&routing, 7).await;
    assert!(
        before.iter().all(|h| h.2.is_some()),
        "binary search before the restart: {before:?}"
    );
    let info = model_info(&c).await;
    let prototypes = routing.borrow().prototypes.clone().expect("prototypes");
    let centroids = routing.borrow().centroids.clone().expect("centroids");
    stop(c).await;

    let (c, routing) = start_durable(&dir, Some(DIM)).await;
    // Straight after start, before any fit could have been started or finished.
    let table = routing.borrow().clone();
    assert_eq!(table.encoder.as_ref().map(|e| e.generation), Some(1));
    assert_eq!(table.encoder_fits, 0);
    assert!(
        table.recovery_report.is_empty(),
        "{:?}",
        table.recovery_report
    );
    assert_eq!(table.prototypes.as_deref(), Some(prototypes.as_ref()));
    assert_eq!(table.centroids.as_deref(), Some(centroids.as_ref()));
    let after = model_info(&c).await;
    assert!(after.restored, "{after:?}");
    assert_eq!(
        (after.generation, after.fitted_at, after.prototypes_at),
        (1, info.fitted_at, info.prototypes_at)
    );
    assert_eq!(after.fits_started, 0, "a refit was started: {after:?}");
    assert_eq!(shard_generations(&routing).await, vec![1; 4]);
    let count = ractor::call_t!(c, CoordinatorMessage::ItemCount, 5000).expect("count");
    assert_eq!(count, 160);
    // Same binary results, and the items only in the log were encoded too.
    assert_eq!(search(&routing, 7).await, before);
    let own = search(&routing, 155).await;
    assert_eq!(
        own.first().map(|h| (h.0.as_str(), h.2.is_some())),
        Some(("item-00155", true)),
        "{own:?}"
    );

    // Generations continue from the stored one once the catalogue has doubled since the fit.
    let due = info.fitted_at * 2;
    for n in 160..due {
        upsert(&c, n, "b").await;
    }
    assert_eq!(model_info(&c).await.fits_started, 1, "the refit is due");
    // A checkpoint while it runs, then none written since: the next checkpoint rewrites that
    // one's model state rather than answering "nothing written".
    checkpoint(&c).await;
    wait_for("the refit due at twice the stored fit size", || async {
        model_info(&c).await.fits_done == 1
    })
    .await;
    assert_eq!(model_info(&c).await.generation, 2);
    let seq = manifest::load(&dir.0)
        .expect("manifest")
        .expect("present")
        .checkpoints[1]
        .seq;
    checkpoint(&c).await;
    let m = manifest::load(&dir.0).expect("manifest").expect("present");
    assert_eq!(m.checkpoints.len(), 2);
    assert_eq!(
        m.checkpoints[1].seq, seq,
        "no new checkpoint without writes"
    );
    let snaps = manifest::snapshot_dir(&dir.0);
    let newest = m.checkpoints[1].model.clone().expect("model file");
    let stored = crate::durability::model::read(&snaps.join(newest)).expect("readable");
    assert_eq!(stored.encoder.map(|e| e.generation), Some(2));
    // Model files go with their checkpoints: only the two kept ones' remain.
    upsert(&c, 1000, "a").await;
    checkpoint(&c).await;
    let m = manifest::load(&dir.0).expect("manifest").expect("present");
    let mut named: Vec<String> = m
        .checkpoints
        .iter()
        .filter_map(|c| c.model.clone())
        .collect();
    named.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(&snaps)
        .expect("snapshots")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("model-"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, named);
    assert_eq!(named.len(), 2);
    assert!(!named.contains(&crate::durability::model::file_name(150)));
    stop(c).await;
}

/// Copies a data folder (the coordinator that wrote it is stopped).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_or_absent_model_file_costs_a_refit_not_items() {
    // One catalogue (fitting takes seconds), damaged four ways in copies.
    let template = Dir::new("model-template");
    let (c, _routing) = fill_and_checkpoint(&template).await;
    stop(c).await;
    for damage in [
        "corrupt",
        "made for another embedding size",
        "missing",
        "a manifest from before model files",
    ] {
        let dir = Dir::new("model-damaged");
        copy_dir(&template.0, &dir.0);
        let snaps = manifest::snapshot_dir(&dir.0);
        let path = manifest::manifest_path(&dir.0);
        let m = manifest::load(&dir.0).expect("manifest").expect("present");
        let file = snaps.join(
            m.checkpoints
                .last()
                .and_then(|c| c.model.clone())
                .expect("named"),
        );
        let mut dim = Some(DIM);
        match damage {
            "corrupt" => {
                let mut bytes = std::fs::read(&file).expect("model file");
                let i = bytes.len() / 2;
                bytes[i] ^= 0x40;
                std::fs::write(&file, bytes).expect("write");
            }
            "made for another embedding size" => dim = Some(DIM + 1),
            "missing" => std::fs::remove_file(&file).expect("remove"),
            _ => {
                // What an older build wrote: no `model` field, no model file.
                let mut json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
                for c in json["checkpoints"].as_array_mut().expect("checkpoints") {
                    c.as_object_mut().expect("object").remove("model");
                }
                std::fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
                std::fs::remove_file(&file).expect("remove");
            }
        }
        let (c, routing) = start_durable(&dir, dim).await;
        let table = routing.borrow().clone();
        let reported = table
            .recovery_report
            .iter()
            .any(|l| l.contains("model state"));
        // Damage is reported; a manifest that names no model file is not damage.
        assert_eq!(
            reported,
            !damage.starts_with("a manifest"),
            "{damage}: {:?}",
            table.recovery_report
        );
        assert!(table.encoder.is_none(), "{damage}");
        let count = ractor::call_t!(c, CoordinatorMessage::ItemCount, 5000).expect("count");
        assert_eq!(count, 160, "{damage}");
        let info = model_info(&c).await;
        assert!(!info.restored, "{damage}");
        assert_eq!(info.fits_started, 1, "{damage}: the refit starts at boot");
        wait_for("the refit", || async {
            let info = model_info(&c).await;
            info.fits_done == 1 && info.generation == 1
        })
        .await;
        wait_for("every shard rebuilt by the refit", || async {
            shard_generations(&routing).await == vec![1; 4]
        })
        .await;
        let own = search(&routing, 155).await;
        assert_eq!(
            own.first().map(|h| (h.0.as_str(), h.2.is_some())),
            Some(("item-00155", true)),
            "{damage}: {own:?}"
        );
        if damage.starts_with("a manifest") {
            // The next checkpoint writes a model file; the old checkpoint stays beside it.
            upsert(&c, 500, "a").await;
            let summary = checkpoint(&c).await;
            assert!(summary.contains("model state model-"), "{summary}");
            let m = manifest::load(&dir.0).expect("manifest").expect("present");
            assert_eq!(m.checkpoints.len(), 2);
            assert!(m.checkpoints[0].model.is_none() && m.checkpoints[1].model.is_some());
        }
        stop(c).await;
    }
}
