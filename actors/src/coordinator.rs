//! `Coordinator`: owns the routing table (category → shards, epoch), the item directory
//! (id → shard) and the catalogue-side model state (the binary encoder), and supervises the
//! partitions.
//!
//! ```text
//! Coordinator ──spawn_linked──▶ Partition "p/<category>/<i>"  (one per shard)
//!      │  on ActorFailed: respawn the same name, drop its directory entries,
//!      │  bump the epoch, count the restart, publish the new table
//!      └─▶ watch::Sender<Arc<RoutingTable>> ──▶ every Engine (queries read the snapshot)
//! ```
//!
//! Writes go through the coordinator (one message each, in order); it forwards them to the
//! right partition with the caller's reply port, so it never awaits a partition inside a
//! handler. Searches do not pass through it at all: the engine reads the published routing
//! table and fans out to partitions directly (map-reduce over an immutable snapshot).
//!
//! The encoder is fitted once the catalogue holds `fit_threshold` items (until then partitions
//! search exactly) and refitted whenever it has grown by `refit_growth`; fitting runs in the
//! background on a sample, then every partition rebuilds its shard. The same fit publishes the
//! localisation prototypes (k-means centroids of the sample; below the fit threshold, the sample
//! itself, refreshed whenever the catalogue grows) in the routing table.
//!
//! With a data folder every checkpoint also writes that model state (encoder with its
//! generation and fit size, prototypes, category centroids: [`crate::durability::model`]), and
//! boot restores it before spawning the partitions: they build their binary shards from the
//! recovered items with the stored encoder, the table publishes prototypes and centroids at
//! once, generations continue from the stored one, and the next refit is due only once the
//! catalogue has grown by `refit_growth` from the stored fit size. A model file that cannot be
//! used is reported and the encoder is refitted as on a first boot.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use vsa_index::{Encoder, EncoderConfig};
use vsa_models::Prototypes;

use crate::durability::manifest::{self, Checkpoint, CheckpointManifest, ShardSnapshot};
use crate::durability::model::{self as model_file, ModelState, StoredEncoder};
use crate::durability::record::{DiskItem, WalOp, WalRecord, encode_record};
use crate::durability::recovery::{self, Recovered};
use crate::durability::wal::{AppendAck, WalStats, WalWriter};
use crate::durability::{DurabilityError, StorageConfig};
use crate::error::EngineError;
use crate::partition::{
    EncoderGen, Partition, PartitionArguments, PartitionMessage, SnapshotWritten,
};
use crate::rebalance::{CategoryLoad, Plan, Status as RebalanceStatusInfo, Thresholds};
use crate::store::ItemRecord;

/// Index and routing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Shards per category (items are spread by a hash of their id).
    pub shards_per_category: usize,
    /// Items needed before the binary encoder is first fitted.
    pub fit_threshold: usize,
    /// Refit when the catalogue has grown by this factor since the last fit.
    pub refit_growth: f32,
    /// Most embeddings sampled for a fit.
    pub fit_sample: usize,
    /// Reduced dimensions of the encoder (rerank vectors).
    pub dims: usize,
    /// Hamming candidates reranked per shard (R).
    pub candidates: usize,
    /// How long a search waits for one partition (ms) before answering without it (degraded).
    pub partition_timeout_ms: u64,
    /// Localisation prototypes (k-means centroids) once past `fit_threshold`.
    pub prototypes: usize,
    /// Rebalance: a shard above this many items is split.
    pub rebalance_split_items: u64,
    /// Rebalance: a category whose shards average below half this is merged into fewer.
    pub rebalance_merge_items: u64,
    /// Rebalance: most shards per category.
    pub rebalance_max_shards: usize,
    /// Rebalance: a shard whose recent load (searches/s) is above this × the mean per shard
    /// is hot.
    pub rebalance_hot_factor: f64,
    /// Rebalance: half-life (s) of the per-shard recent-load meter the planner compares.
    pub rebalance_load_half_life_s: f64,
    /// Rebalance: old shards are stopped this long after the switch (in-flight searches end).
    pub rebalance_grace_ms: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            shards_per_category: 1,
            fit_threshold: 512,
            refit_growth: 2.0,
            fit_sample: 20_000,
            dims: 256,
            candidates: 500,
            partition_timeout_ms: 2000,
            prototypes: 1024,
            rebalance_split_items: 1_000_000,
            rebalance_merge_items: 10_000,
            rebalance_max_shards: 64,
            rebalance_hot_factor: 4.0,
            rebalance_load_half_life_s: 300.0,
            rebalance_grace_ms: 2000,
        }
    }
}

/// Category → the normalised mean embedding of its items.
pub type CategoryCentroids = Vec<(String, Vec<f32>)>;

/// One shard's place in the routing table.
#[derive(Debug, Clone)]
pub struct PartitionSlot {
    /// Actor name, `p/<category>/<i>`.
    pub name: String,
    /// Category.
    pub category: String,
    /// Shard number within the category.
    pub shard: usize,
    /// The live actor.
    pub actor: ActorRef<PartitionMessage>,
    /// Being rebuilt from disk after a failure: searches skip it (and say `degraded`),
    /// writes to it wait in the coordinator.
    pub recovering: bool,
}

/// The routing table queries read; replaced (never mutated) on every change.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// Bumped on every change of the layout (new category, restart, refit).
    pub epoch: u64,
    /// Category → its shards.
    pub categories: BTreeMap<String, Vec<PartitionSlot>>,
    /// The current encoder, if fitted.
    pub encoder: Option<EncoderGen>,
    /// Catalogue prototypes for localisation (absent while the catalogue is empty).
    pub prototypes: Option<Arc<Prototypes>>,
    /// Category centroids (normalised mean embedding per category): the model branch of
    /// category prediction. Refitted with the prototypes.
    pub centroids: Option<Arc<CategoryCentroids>>,
    /// Partitions restarted since boot.
    pub restarts: u64,
    /// What boot recovery had to skip (empty: clean, or no data folder).
    pub recovery_report: Arc<Vec<String>>,
    /// Log writer counters (absent without a data folder).
    pub wal: Option<Arc<WalStats>>,
    /// Sequence number of the newest checkpoint (0: none yet).
    pub checkpoint_seq: u64,
    /// Encoder fits finished since this coordinator started (0 after a boot that restored the
    /// stored encoder and did not need to refit).
    pub encoder_fits: u64,
}

impl RoutingTable {
    /// Every slot.
    pub fn slots(&self) -> impl Iterator<Item = &PartitionSlot> {
        self.categories.values().flatten()
    }
}

/// Where a write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Sequence number of the write (monotonic per appliance).
    pub seq: u64,
    /// An item with this id existed before (upsert: replaced; delete: removed).
    pub existed: bool,
}

/// What a background fit produced.
#[derive(Debug)]
pub struct FitResult {
    /// The new encoder, when one was due and training worked.
    pub encoder: Option<Arc<Encoder>>,
    /// The new localisation prototypes.
    pub prototypes: Option<Arc<Prototypes>>,
    /// The new category centroids.
    pub centroids: Option<Arc<CategoryCentroids>>,
    /// Catalogue size when the fit started.
    pub items: usize,
}

/// The coordinator actor.
#[derive(Debug, Default)]
pub struct Coordinator;

/// Arguments of the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorArguments {
    /// Settings.
    pub config: IndexConfig,
    /// Where routing tables are published.
    pub routing: watch::Sender<Arc<RoutingTable>>,
    /// Durability settings (the data folder).
    pub storage: StorageConfig,
    /// Where partition failures are recorded (by shard name) for the console.
    pub failures: crate::supervisor::FailureLog,
    /// Embedding size of the model loaded now: a stored model state made for another size is
    /// not restored (`None`: checked against the recovered items instead).
    pub embedding_dim: Option<usize>,
}

/// The coordinator's model bookkeeping ([`CoordinatorMessage::ModelInfo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Generation of the current encoder (0: none fitted or restored).
    pub generation: u64,
    /// Catalogue size the current encoder was fitted at.
    pub fitted_at: u64,
    /// Catalogue size the current prototypes were computed at.
    pub prototypes_at: u64,
    /// Encoder fits started since this coordinator started.
    pub fits_started: u64,
    /// Encoder fits finished since this coordinator started.
    pub fits_done: u64,
    /// The model state was restored from a checkpoint's model file at boot.
    pub restored: bool,
}

/// Answer to a write: its outcome, or why it was not accepted (nothing applied).
pub type WriteReply = RpcReplyPort<Result<WriteOutcome, EngineError>>;

/// Messages of the coordinator.
#[derive(Debug)]
pub enum CoordinatorMessage {
    /// Insert or replace an item.
    Upsert(ItemRecord, WriteReply),
    /// Delete an item by id.
    Delete(String, WriteReply),
    /// Which shard holds an id.
    Locate(String, RpcReplyPort<Option<PartitionSlot>>),
    /// Fault injection: panic the named partition. Replies whether it exists.
    PanicPartition(String, RpcReplyPort<bool>),
    /// A background fit finished.
    FitDone(FitResult),
    /// Total items in the directory.
    ItemCount(RpcReplyPort<u64>),
    /// Fault injection: stall the named partition for `ms`. Replies whether it exists.
    StallPartition(String, u64, RpcReplyPort<bool>),
    /// Rebuild a failed shard from disk (sent on failure, and again after a failed try).
    RecoverShard(String, usize),
    /// A shard's recovery finished.
    ShardRecovered(String, usize, Result<Recovered, String>),
    /// Snapshot every shard now (a checkpoint); replies with a summary.
    Checkpoint(Option<RpcReplyPort<Result<String, String>>>),
    /// A checkpoint's snapshots are written (or one failed).
    CheckpointDone(
        Result<Checkpoint, String>,
        Option<RpcReplyPort<Result<String, String>>>,
    ),
    /// Periodic: start a checkpoint when due.
    Tick,
    /// An operator's rebalance command; replies `(message, JSON payload)`.
    Rebalance(RebalanceCommand, RebalanceReply),
    /// The recent loads a plan needs were gathered (in the background); compute it, answer.
    PlanGathered(PlanInput, RebalanceReply),
    /// A staged category's old shard exported its items (`generation` of the staging).
    StagingExported(u64, Result<Vec<Arc<ItemRecord>>, String>),
    /// A staged category's new shards loaded one export.
    StagingLoaded(u64),
    /// The model bookkeeping (encoder generation, fit counters).
    ModelInfo(RpcReplyPort<ModelInfo>),
}

/// Answer to a rebalance command: `(message, JSON payload)`, or why it was refused.
pub type RebalanceReply = RpcReplyPort<Result<(String, Option<String>), String>>;

/// What a plan is computed from, gathered outside the coordinator's handler.
#[derive(Debug)]
pub struct PlanInput {
    /// Per category: shard sizes, recent loads and item ids.
    pub loads: Vec<CategoryLoad>,
    /// Shards that did not report their load in time (counted as idle).
    pub silent: Vec<String>,
}

/// Rebalance commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceCommand {
    /// Compute a plan.
    Plan,
    /// Apply plan `id`.
    Apply(u64),
    /// Cancel the running apply (before its switch).
    Cancel,
    /// Report progress.
    Status,
}

/// A running apply.
#[derive(Debug)]
struct Run {
    plan: Plan,
    step: usize,
    staging: Option<Staging>,
}

/// One category being rebuilt with a new shard count.
#[derive(Debug)]
struct Staging {
    generation: u64,
    category: String,
    slots: Vec<PartitionSlot>,
    exports_left: usize,
    loads_left: usize,
    total: usize,
}

/// The durable side of the coordinator.
#[derive(Debug)]
struct Storage {
    dir: PathBuf,
    config: StorageConfig,
    wal: WalWriter,
    manifest: CheckpointManifest,
    checkpointing: bool,
    /// [`CoordinatorState::model_version`] the newest checkpoint's model file holds.
    model_saved: u64,
    /// The version the running checkpoint writes (None: it writes no model file).
    model_writing: Option<u64>,
    log_bytes_since: u64,
    writes_since: u64,
    last_checkpoint: Instant,
}

/// State of the coordinator.
#[derive(Debug)]
pub struct CoordinatorState {
    config: IndexConfig,
    routing: watch::Sender<Arc<RoutingTable>>,
    table: RoutingTable,
    /// id → (category, shard).
    directory: HashMap<String, (String, usize)>,
    seq: u64,
    fitting: bool,
    fitted_at: usize,
    prototypes_at: usize,
    generation: u64,
    storage: Option<Storage>,
    /// Writes for shards being recovered, in order.
    pending: HashMap<(String, usize), Vec<PartitionMessage>>,
    plan: Option<Plan>,
    next_plan_id: u64,
    run: Option<Run>,
    status: RebalanceStatusInfo,
    staging_generation: u64,
    failures: crate::supervisor::FailureLog,
    embedding_dim: Option<usize>,
    /// Encoder fits started / finished since start.
    fits_started: u64,
    fits_done: u64,
    /// Bumped whenever a fit changes the model state (what a checkpoint's model file holds).
    model_version: u64,
    /// The model state came from a model file at boot.
    model_restored: bool,
}

impl CoordinatorState {
    /// The model state in force now, as a checkpoint stores it.
    fn model_state(&self) -> ModelState {
        ModelState {
            encoder: self.table.encoder.as_ref().map(|eg| StoredEncoder {
                generation: eg.generation,
                fitted_at: self.fitted_at as u64,
                encoder: eg.encoder.clone(),
            }),
            prototypes: self
                .table
                .prototypes
                .clone()
                .map(|p| (p, self.prototypes_at as u64)),
            centroids: self.table.centroids.clone(),
        }
    }

    /// Appends a write to the log (when durable); `Ok(None)` without a data folder.
    fn log(&mut self, seq: u64, op: WalOp) -> Result<Option<AppendAck>, EngineError> {
        let Some(storage) = &mut self.storage else {
            return Ok(None);
        };
        let bytes = encode_record(&WalRecord { seq, op })
            .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let len = bytes.len() as u64;
        match storage.wal.append(seq, bytes) {
            Ok(ack) => {
                storage.log_bytes_since += len;
                storage.writes_since += 1;
                Ok(Some(ack))
            }
            Err(DurabilityError::Unavailable(m)) if m.contains("full") => {
                Err(EngineError::Busy("the write-ahead log queue is full"))
            }
            Err(e) => Err(EngineError::Unavailable(e.to_string())),
        }
    }

    /// What a write to `(category, shard)` watches if the shard dies before answering.
    fn rebuild_watch(&self, category: &str, shard: usize) -> Option<RebuildWatch> {
        self.storage.as_ref()?;
        let slot = self.slot(category, shard)?;
        Some((
            self.routing.subscribe(),
            category.to_string(),
            shard,
            slot.actor.get_id(),
        ))
    }

    /// Sends a write to a shard, or queues it while the shard recovers.
    fn deliver(&mut self, category: &str, shard: usize, msg: PartitionMessage) {
        let Some(slot) = self.slot(category, shard) else {
            return;
        };
        if slot.recovering {
            self.pending
                .entry((category.to_string(), shard))
                .or_default()
                .push(msg);
            return;
        }
        // Dead but not yet reported: keep the write for the rebuilt shard.
        if let Err(ractor::MessagingErr::SendErr(msg)) = slot.actor.send_message(msg) {
            self.pending
                .entry((category.to_string(), shard))
                .or_default()
                .push(msg);
        }
    }

    fn publish(&mut self) {
        self.table.epoch += 1;
        self.routing.send_replace(Arc::new(self.table.clone()));
    }

    /// The shard of an id in its category (the category's current shard count; the
    /// configured one for a new category).
    fn shard_of(&self, category: &str, id: &str) -> usize {
        let n = self
            .table
            .categories
            .get(category)
            .map_or(self.config.shards_per_category, Vec::len);
        crate::durability::record::shard_for(id, n)
    }

    /// The staging partition a write to `(category, id)` must also reach during a rebalance.
    fn staged(&self, category: &str, id: &str) -> Option<ActorRef<PartitionMessage>> {
        let st = self.run.as_ref()?.staging.as_ref()?;
        if st.category != category {
            return None;
        }
        let i = crate::durability::record::shard_for(id, st.slots.len());
        st.slots.get(i).map(|s| s.actor.clone())
    }

    fn slot(&self, category: &str, shard: usize) -> Option<&PartitionSlot> {
        self.table
            .categories
            .get(category)
            .and_then(|v| v.get(shard))
    }
}

fn partition_name(category: &str, shard: usize) -> String {
    format!("p/{category}/{shard}")
}

async fn spawn_partition(
    supervisor: ActorCell,
    config: &IndexConfig,
    category: &str,
    shard: usize,
    encoder: Option<EncoderGen>,
    initial: Vec<ItemRecord>,
) -> Result<PartitionSlot, ActorProcessingErr> {
    let name = partition_name(category, shard);
    let (actor, _) = Actor::spawn_linked(
        None,
        Partition,
        PartitionArguments {
            name: name.clone(),
            category: category.to_string(),
            encoder,
            initial,
            staging: false,
            load_half_life_s: config.rebalance_load_half_life_s,
        },
        supervisor,
    )
    .await?;
    Ok(PartitionSlot {
        name,
        category: category.to_string(),
        shard,
        actor,
        recovering: false,
    })
}

impl Actor for Coordinator {
    type Msg = CoordinatorMessage;
    type State = CoordinatorState;
    type Arguments = CoordinatorArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = CoordinatorState {
            config: args.config,
            routing: args.routing,
            table: RoutingTable::default(),
            directory: HashMap::new(),
            seq: 0,
            fitting: false,
            fitted_at: 0,
            prototypes_at: 0,
            generation: 0,
            storage: None,
            pending: HashMap::new(),
            plan: None,
            next_plan_id: 1,
            run: None,
            status: RebalanceStatusInfo::default(),
            staging_generation: 0,
            failures: args.failures,
            embedding_dim: args.embedding_dim,
            fits_started: 0,
            fits_done: 0,
            model_version: 0,
            model_restored: false,
        };
        state.table.epoch = state.routing.borrow().epoch;
        if let Some(dir) = args.storage.dir.clone() {
            boot_recovery(&myself, &mut state, dir, args.storage).await?;
            let me = myself.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if me.send_message(CoordinatorMessage::Tick).is_err() {
                        break;
                    }
                }
            });
        }
        state.publish();
        maybe_fit(&myself, &mut state);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMessage::Upsert(record, reply) => {
                let category = record.category.clone();
                let shard = state.shard_of(&category, &record.id);
                let previous = state.directory.get(&record.id).cloned();
                let moved = previous
                    .as_ref()
                    .is_some_and(|(c, s)| c != &category || *s != shard);
                let evict = previous
                    .clone()
                    .filter(|_| moved)
                    .map(|(c, s)| (c, s as u32));
                let seq = state.seq + 1;
                let ack = match state.log(
                    seq,
                    WalOp::Upsert {
                        item: DiskItem::from(&record),
                        shard: shard as u32,
                        evict,
                    },
                ) {
                    Ok(ack) => ack,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                };
                state.seq = seq;
                if !state.table.categories.contains_key(&category) {
                    let n = state.config.shards_per_category.max(1);
                    let mut slots = Vec::with_capacity(n);
                    for i in 0..n {
                        slots.push(
                            spawn_partition(
                                myself.get_cell(),
                                &state.config,
                                &category,
                                i,
                                state.table.encoder.clone(),
                                Vec::new(),
                            )
                            .await?,
                        );
                    }
                    state.table.categories.insert(category.clone(), slots);
                    state.publish();
                }
                state
                    .directory
                    .insert(record.id.clone(), (category.clone(), shard));
                if moved && let Some((c, s)) = &previous {
                    if let Some(staged) = state.staged(c, &record.id) {
                        let _ =
                            staged.send_message(PartitionMessage::Delete(record.id.clone(), None));
                    }
                    state.deliver(c, *s, PartitionMessage::Delete(record.id.clone(), None));
                }
                if let Some(staged) = state.staged(&category, &record.id) {
                    let (tx, _rx) = ractor::concurrency::oneshot();
                    let _ =
                        staged.send_message(PartitionMessage::Upsert(record.clone(), tx.into()));
                }
                // The partition answers through this port; the caller hears once the log has
                // the write too.
                let existed_before = previous.is_some();
                let rebuilt = state.rebuild_watch(&category, shard);
                let (tx, rx) = ractor::concurrency::oneshot();
                state.deliver(
                    &category,
                    shard,
                    PartitionMessage::Upsert(record, tx.into()),
                );
                tokio::spawn(async move {
                    let applied = rx.await.ok();
                    let reply_with = settle(applied, ack, rebuilt).await;
                    let _ = reply.send(reply_with.map(|replaced| WriteOutcome {
                        seq,
                        existed: replaced.unwrap_or(existed_before) || moved,
                    }));
                });
                maybe_fit(&myself, state);
            }
            CoordinatorMessage::Delete(id, reply) => {
                let Some((c, s)) = state.directory.get(&id).cloned() else {
                    let _ = reply.send(Ok(WriteOutcome {
                        seq: state.seq,
                        existed: false,
                    }));
                    return Ok(());
                };
                let seq = state.seq + 1;
                let ack = match state.log(
                    seq,
                    WalOp::Delete {
                        id: id.clone(),
                        category: c.clone(),
                        shard: s as u32,
                    },
                ) {
                    Ok(ack) => ack,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                };
                state.seq = seq;
                state.directory.remove(&id);
                if let Some(staged) = state.staged(&c, &id) {
                    let _ = staged.send_message(PartitionMessage::Delete(id.clone(), None));
                }
                let rebuilt = state.rebuild_watch(&c, s);
                let (tx, rx) = ractor::concurrency::oneshot();
                state.deliver(&c, s, PartitionMessage::Delete(id, Some(tx.into())));
                tokio::spawn(async move {
                    let applied = rx.await.ok();
                    let reply_with = settle(applied, ack, rebuilt).await;
                    // The directory had it: it existed, even if the shard died meanwhile.
                    let _ = reply.send(reply_with.map(|existed| WriteOutcome {
                        seq,
                        existed: existed.unwrap_or(true),
                    }));
                });
            }
            CoordinatorMessage::Locate(id, reply) => {
                let slot = state
                    .directory
                    .get(&id)
                    .and_then(|(c, s)| state.slot(c, *s))
                    .cloned();
                let _ = reply.send(slot);
            }
            CoordinatorMessage::PanicPartition(name, reply) => {
                let slot = state.table.slots().find(|s| s.name == name);
                let found = slot
                    .map(|s| s.actor.send_message(PartitionMessage::Panic).is_ok())
                    .unwrap_or(false);
                let _ = reply.send(found);
            }
            CoordinatorMessage::StallPartition(name, ms, reply) => {
                let slot = state.table.slots().find(|s| s.name == name);
                let found = slot
                    .map(|s| s.actor.send_message(PartitionMessage::Stall(ms)).is_ok())
                    .unwrap_or(false);
                let _ = reply.send(found);
            }
            CoordinatorMessage::FitDone(FitResult {
                encoder,
                prototypes,
                centroids,
                items,
            }) => {
                state.fitting = false;
                if centroids.is_some() || prototypes.is_some() || encoder.is_some() {
                    state.model_version += 1;
                }
                if centroids.is_some() {
                    state.table.centroids = centroids;
                }
                if let Some(p) = prototypes {
                    state.prototypes_at = items;
                    state.table.prototypes = Some(p);
                    state.publish();
                }
                if let Some(encoder) = encoder {
                    state.generation += 1;
                    state.fitted_at = items;
                    state.fits_done += 1;
                    state.table.encoder_fits = state.fits_done;
                    let eg = EncoderGen {
                        generation: state.generation,
                        encoder,
                    };
                    let targets: Vec<(String, usize)> = state
                        .table
                        .slots()
                        .map(|s| (s.category.clone(), s.shard))
                        .collect();
                    for (c, s) in targets {
                        state.deliver(&c, s, PartitionMessage::SetEncoder(eg.clone()));
                    }
                    // A running apply's new shards too: they were spawned with the old encoder
                    // (or none) and take over from the table's shards at the switch.
                    if let Some(st) = state.run.as_ref().and_then(|r| r.staging.as_ref()) {
                        for slot in &st.slots {
                            let _ = slot
                                .actor
                                .send_message(PartitionMessage::SetEncoder(eg.clone()));
                        }
                    }
                    state.table.encoder = Some(eg);
                    state.publish();
                    tracing::info!(
                        generation = state.generation,
                        items,
                        "binary encoder fitted; partitions rebuilt their shards"
                    );
                }
                maybe_fit(&myself, state);
            }
            CoordinatorMessage::ItemCount(reply) => {
                let _ = reply.send(state.directory.len() as u64);
            }
            CoordinatorMessage::ModelInfo(reply) => {
                let _ = reply.send(ModelInfo {
                    generation: state.table.encoder.as_ref().map_or(0, |e| e.generation),
                    fitted_at: state.fitted_at as u64,
                    prototypes_at: state.prototypes_at as u64,
                    fits_started: state.fits_started,
                    fits_done: state.fits_done,
                    restored: state.model_restored,
                });
            }
            CoordinatorMessage::RecoverShard(category, shard) => {
                start_shard_recovery(&myself, state, category, shard);
            }
            CoordinatorMessage::ShardRecovered(category, shard, result) => match result {
                Ok(mut recovered) => {
                    let key = (category.clone(), shard as u32);
                    let items = recovered.shards.remove(&key).unwrap_or_default();
                    let n = items.len();
                    for line in &recovered.skipped {
                        tracing::warn!(shard = %partition_name(&category, shard), "{line}");
                    }
                    let slot = spawn_partition(
                        myself.get_cell(),
                        &state.config,
                        &category,
                        shard,
                        state.table.encoder.clone(),
                        items,
                    )
                    .await?;
                    tracing::warn!(partition = %slot.name, items = n, "partition rebuilt from its snapshot and the log");
                    if let Some(v) = state.table.categories.get_mut(&category)
                        && let Some(old) = v.get_mut(shard)
                    {
                        *old = slot;
                    }
                    for msg in state
                        .pending
                        .remove(&(category.clone(), shard))
                        .unwrap_or_default()
                    {
                        state.deliver(&category, shard, msg);
                    }
                    state.publish();
                }
                Err(e) => {
                    tracing::error!(shard = %partition_name(&category, shard), error = %e, "shard recovery failed; retrying in 1 s");
                    let me = myself.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let _ = me.send_message(CoordinatorMessage::RecoverShard(category, shard));
                    });
                }
            },
            CoordinatorMessage::Checkpoint(reply) => start_checkpoint(&myself, state, reply),
            CoordinatorMessage::CheckpointDone(result, reply) => {
                let answer = finish_checkpoint(state, result);
                if let Some(r) = reply {
                    let _ = r.send(answer);
                }
            }
            CoordinatorMessage::Rebalance(cmd, reply) => {
                rebalance_command(&myself, state, cmd, reply).await;
            }
            CoordinatorMessage::PlanGathered(input, reply) => {
                let _ = reply.send(Ok(finish_plan(state, input)));
            }
            CoordinatorMessage::StagingExported(generation, result) => {
                staging_exported(&myself, state, generation, result);
            }
            CoordinatorMessage::StagingLoaded(generation) => {
                let done = match state.run.as_mut().and_then(|r| r.staging.as_mut()) {
                    Some(st) if st.generation == generation => {
                        st.loads_left = st.loads_left.saturating_sub(1);
                        st.loads_left == 0 && st.exports_left == 0
                    }
                    _ => false,
                };
                update_progress(state);
                if done {
                    switch_layout(&myself, state).await?;
                }
            }
            CoordinatorMessage::Tick => {
                if let Some(st) = &state.storage {
                    let by_size = st.config.checkpoint_log_bytes > 0
                        && st.log_bytes_since >= st.config.checkpoint_log_bytes;
                    // A refit since the last checkpoint is worth one too (a model-only one when
                    // nothing was written), so the next boot need not refit.
                    let model_changed = st.model_saved != state.model_version;
                    let by_time = st.config.checkpoint_interval_s > 0
                        && (st.writes_since > 0 || model_changed)
                        && st.last_checkpoint.elapsed()
                            >= Duration::from_secs(st.config.checkpoint_interval_s);
                    if !st.checkpointing && (by_size || by_time) {
                        start_checkpoint(&myself, state, None);
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for slot in state.table.slots() {
            slot.actor.stop(None);
        }
        // Dropping the writer flushes and syncs what is queued.
        state.storage.take();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failed, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = ?cell.get_id(), error = %err, "partition failed");
                let why = format!("failed: {err}");
                (cell, true, why)
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::warn!(actor = ?cell.get_id(), ?reason, "partition stopped");
                (cell, false, String::new())
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let found = state
            .table
            .slots()
            .find(|s| s.actor.get_id() == id)
            .map(|s| (s.category.clone(), s.shard, s.name.clone()));
        if let (true, Some((_, _, name))) = (failed, &found) {
            state.failures.record(name, &why);
        }
        let found = found.map(|(c, s, _)| (c, s));
        let Some((category, shard)) = found else {
            let staged = state
                .run
                .as_ref()
                .and_then(|r| r.staging.as_ref())
                .is_some_and(|st| st.slots.iter().any(|s| s.actor.get_id() == id));
            if staged && failed {
                fail_run(state, "a new shard failed while being filled".into());
            }
            return Ok(());
        };
        if failed {
            state.table.restarts += 1;
        }
        if state.storage.is_some() {
            if let Some(slot) = state
                .table
                .categories
                .get_mut(&category)
                .and_then(|v| v.get_mut(shard))
            {
                slot.recovering = true;
            }
            state.publish();
            start_shard_recovery(&myself, state, category, shard);
            return Ok(());
        }
        // No data folder: its items are gone with it; forget them so the directory and the
        // counts stay true.
        state
            .directory
            .retain(|_, (c, s)| !(c == &category && *s == shard));
        let slot = spawn_partition(
            myself.get_cell(),
            &state.config,
            &category,
            shard,
            state.table.encoder.clone(),
            Vec::new(),
        )
        .await?;
        tracing::warn!(partition = %slot.name, "partition restarted empty (no data folder)");
        if let Some(v) = state.table.categories.get_mut(&category) {
            v[shard] = slot;
        }
        state.publish();
        Ok(())
    }
}

/// How a write ends: the log's verdict first; then the partition's answer, or, when the
/// partition died with the write in its mailbox, the rebuild that replays it from the log.
/// `Ok(None)`: applied through the rebuild, the partition's answer is unknown.
async fn settle(
    applied: Option<bool>,
    ack: Option<AppendAck>,
    rebuilt: Option<RebuildWatch>,
) -> Result<Option<bool>, EngineError> {
    wait_logged(ack).await?;
    if let Some(v) = applied {
        return Ok(Some(v));
    }
    let Some((mut rx, category, shard, old)) = rebuilt else {
        return Err(EngineError::Unavailable(
            "the shard failed before applying the write (no data folder: it is lost)".into(),
        ));
    };
    let back = rx.wait_for(|t| {
        t.categories
            .get(&category)
            .and_then(|v| v.get(shard))
            .is_some_and(|s| !s.recovering && s.actor.get_id() != old)
    });
    match tokio::time::timeout(Duration::from_secs(120), back).await {
        Ok(Ok(_)) => Ok(None),
        _ => Err(EngineError::Unavailable(
            "the shard failed while applying the write; it is in the log and will be \
             applied when the shard is rebuilt"
                .into(),
        )),
    }
}

/// What a write needs to wait for its shard's rebuild.
type RebuildWatch = (
    watch::Receiver<Arc<RoutingTable>>,
    String,
    usize,
    ractor::ActorId,
);

/// Waits for the log to confirm a write (immediately when not durable).
async fn wait_logged(ack: Option<AppendAck>) -> Result<(), EngineError> {
    match ack {
        None => Ok(()),
        Some(rx) => match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::Unavailable(format!(
                "the write-ahead log failed: {e}"
            ))),
            Err(_) => Err(EngineError::Unavailable(
                "the write-ahead log writer stopped".into(),
            )),
        },
    }
}

/// Boot: rebuild every shard from the data folder, then open the log after the last write.
async fn boot_recovery(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    dir: PathBuf,
    config: StorageConfig,
) -> Result<(), ActorProcessingErr> {
    std::fs::create_dir_all(manifest::snapshot_dir(&dir))
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let started = Instant::now();
    let d = dir.clone();
    let recovered = tokio::task::spawn_blocking(move || recovery::recover(&d, true))
        .await
        .map_err(|e| format!("recovery panicked: {e}"))?
        .map_err(|e| format!("recovering {}: {e}", dir.display()))?;
    for line in &recovered.skipped {
        tracing::warn!("recovery: {line}");
    }
    tracing::info!(
        items = recovered.items(),
        from_snapshots = recovered.from_snapshots,
        log_records = recovered.replayed,
        last_seq = recovered.last_seq,
        ms = started.elapsed().as_millis() as u64,
        dir = %dir.display(),
        "recovered the catalogue"
    );
    state.seq = recovered.last_seq;
    let mut report = recovered.skipped.clone();
    // The model state of the newest usable checkpoint, before any partition is spawned.
    let expected_dim = state.embedding_dim.or_else(|| {
        recovered
            .shards
            .values()
            .flatten()
            .next()
            .map(|r| r.embedding.len())
    });
    let d = dir.clone();
    let manifest_read = recovered.manifest.clone();
    let (model, lines) =
        tokio::task::spawn_blocking(move || load_model_state(&d, &manifest_read, expected_dim))
            .await
            .map_err(|e| format!("reading the model state panicked: {e}"))?;
    for line in &lines {
        tracing::warn!("recovery: {line}");
    }
    report.extend(lines);
    if let Some((file, m)) = model {
        restore_model(state, &file, m);
    }
    state.table.recovery_report = Arc::new(report);
    state.table.checkpoint_seq = recovered.manifest.checkpoints.last().map_or(0, |c| c.seq);
    let n = state.config.shards_per_category.max(1);
    let mut by_category: BTreeMap<String, BTreeMap<usize, Vec<ItemRecord>>> = BTreeMap::new();
    let layouts = recovered.layouts.clone();
    for ((category, shard), items) in recovered.shards {
        by_category
            .entry(category)
            .or_default()
            .insert(shard as usize, items);
    }
    let mut spawns = Vec::new();
    for (category, mut shards) in by_category {
        let count = match layouts.get(&category) {
            // A rebalance set this category's shard count.
            Some(m) => (*m as usize).max(shards.keys().max().map_or(0, |k| k + 1)),
            None => shards.keys().max().map_or(n, |m| (m + 1).max(n)),
        };
        for i in 0..count {
            let items = shards.remove(&i).unwrap_or_default();
            for r in &items {
                state.directory.insert(r.id.clone(), (category.clone(), i));
            }
            spawns.push((category.clone(), i, items));
        }
    }
    // With a restored encoder every partition encodes its items while it starts: all at once.
    let started_at = Instant::now();
    let encoder = state.table.encoder.clone();
    let index_config = &state.config;
    let slots =
        futures::future::join_all(
            spawns.into_iter().map(|(category, i, items)| {
                let supervisor = myself.get_cell();
                let encoder = encoder.clone();
                async move {
                    spawn_partition(supervisor, index_config, &category, i, encoder, items).await
                }
            }),
        )
        .await;
    for slot in slots {
        let slot = slot?;
        state
            .table
            .categories
            .entry(slot.category.clone())
            .or_default()
            .push(slot);
    }
    for slots in state.table.categories.values_mut() {
        slots.sort_by_key(|s| s.shard);
    }
    if let Some(eg) = &encoder {
        tracing::info!(
            generation = eg.generation,
            items = state.directory.len(),
            ms = started_at.elapsed().as_millis() as u64,
            "partitions built their binary shards with the restored encoder"
        );
    }
    let wal = WalWriter::start(&dir, &config, recovered.last_seq + 1)
        .map_err(|e| format!("opening the write-ahead log: {e}"))?;
    state.table.wal = Some(wal.stats().clone());
    state.storage = Some(Storage {
        dir,
        config,
        wal,
        manifest: recovered.manifest,
        checkpointing: false,
        model_saved: state.model_version,
        model_writing: None,
        log_bytes_since: 0,
        writes_since: 0,
        last_checkpoint: Instant::now(),
    });
    Ok(())
}

/// Reads the model state of the newest checkpoint that has a usable one (newest first; an
/// older checkpoint's is as good a starting point, it only refits sooner). Returns it with
/// its file name, and a report line for every model file that could not be used.
fn load_model_state(
    dir: &std::path::Path,
    manifest: &CheckpointManifest,
    expected_dim: Option<usize>,
) -> (Option<(String, ModelState)>, Vec<String>) {
    let snaps = manifest::snapshot_dir(dir);
    let mut lines = Vec::new();
    for checkpoint in manifest.checkpoints.iter().rev() {
        let Some(file) = &checkpoint.model else {
            continue;
        };
        let read = model_file::read(&snaps.join(file))
            .and_then(|m| expected_dim.map_or(Ok(()), |d| m.check_dim(d)).map(|()| m));
        match read {
            Ok(m) => {
                if !lines.is_empty() {
                    lines.push(format!(
                        "used the model state of the checkpoint at seq {} ({file}) instead",
                        checkpoint.seq
                    ));
                }
                return (Some((file.clone(), m)), lines);
            }
            Err(e) => lines.push(format!(
                "model state {file} (checkpoint at seq {}) not used ({e})",
                checkpoint.seq
            )),
        }
    }
    if !lines.is_empty() {
        lines.push(
            "no usable model state: the encoder is refitted in the background (exact search \
             until then)"
                .into(),
        );
    }
    (None, lines)
}

/// Puts a stored model state in force: the encoder (partitions are spawned with it), its
/// generation and fit size (the next refit is due at `refit_growth` × that), prototypes and
/// centroids.
fn restore_model(state: &mut CoordinatorState, file: &str, m: ModelState) {
    let generation = m.encoder.as_ref().map(|e| e.generation.max(1));
    if let Some(e) = m.encoder {
        state.generation = e.generation.max(1);
        state.fitted_at = usize::try_from(e.fitted_at).unwrap_or(usize::MAX);
        state.table.encoder = Some(EncoderGen {
            generation: state.generation,
            encoder: e.encoder,
        });
    }
    let prototypes = m.prototypes.as_ref().map_or(0, |(p, _)| p.len());
    if let Some((p, at)) = m.prototypes {
        state.prototypes_at = usize::try_from(at).unwrap_or(usize::MAX);
        state.table.prototypes = Some(p);
    }
    let centroids = m.centroids.as_ref().map_or(0, |c| c.len());
    state.table.centroids = m.centroids;
    state.model_restored = true;
    tracing::info!(
        file,
        generation = generation.unwrap_or(0),
        fitted_at = state.fitted_at,
        prototypes,
        centroids,
        "restored the model state of the checkpoint"
    );
}

/// Rebuilds one failed shard in the background: wait until the log holds every write routed
/// so far, read its snapshot + log, then hand the items back ([`CoordinatorMessage::ShardRecovered`]).
fn start_shard_recovery(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    category: String,
    shard: usize,
) {
    let Some(storage) = &state.storage else {
        return;
    };
    let upto = state.seq;
    let dir = storage.dir.clone();
    let barrier = storage.wal.barrier();
    let me = myself.clone();
    tokio::spawn(async move {
        let result = async {
            barrier
                .map_err(|e| e.to_string())?
                .await
                .map_err(|_| "the log writer stopped".to_string())?;
            let key = (category.clone(), shard as u32);
            tokio::task::spawn_blocking(move || recovery::recover_shard(&dir, &key, upto))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
        .await;
        let _ = me.send_message(CoordinatorMessage::ShardRecovered(category, shard, result));
    });
}

/// Starts a checkpoint: every shard writes a snapshot as of the current sequence number.
fn start_checkpoint(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    reply: Option<RpcReplyPort<Result<String, String>>>,
) {
    let refuse = |reply: Option<RpcReplyPort<Result<String, String>>>, why: String| {
        if let Some(r) = reply {
            let _ = r.send(Err(why));
        }
    };
    let seq = state.seq;
    let recovering = state.table.slots().any(|s| s.recovering);
    let model = state.model_state();
    let model_version = state.model_version;
    let Some(storage) = &mut state.storage else {
        return refuse(reply, "no data folder: nothing is persisted".into());
    };
    if storage.checkpointing {
        return refuse(reply, "a snapshot is already being written".into());
    }
    if recovering {
        return refuse(
            reply,
            "a shard is being recovered; try again shortly".into(),
        );
    }
    if let Some(last) = storage.manifest.checkpoints.last().filter(|c| c.seq == seq) {
        if storage.model_saved == model_version || model.is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Ok(format!(
                    "nothing written since the snapshot at seq {seq}"
                )));
            }
            return;
        }
        // No writes, but a fit since: the same checkpoint with the new model state.
        storage.checkpointing = true;
        storage.model_writing = Some(model_version);
        storage.last_checkpoint = Instant::now();
        let mut checkpoint = last.clone();
        let path = manifest::snapshot_dir(&storage.dir).join(model_file::file_name(seq));
        let me = myself.clone();
        tokio::spawn(async move {
            let result = write_model_file(path, model).await.map(|file| {
                checkpoint.model = Some(file);
                checkpoint
            });
            let _ = me.send_message(CoordinatorMessage::CheckpointDone(result, reply));
        });
        return;
    }
    storage.checkpointing = true;
    storage.model_writing = (!model.is_empty()).then_some(model_version);
    storage.log_bytes_since = 0;
    storage.writes_since = 0;
    storage.last_checkpoint = Instant::now();
    // New writes go to a new segment, so the old ones can be deleted once covered.
    let rotated = storage.wal.rotate();
    let snap_dir = manifest::snapshot_dir(&storage.dir);
    let model_path = snap_dir.join(model_file::file_name(seq));
    let mb_s = storage.config.snapshot_mb_s;
    let mut waits = Vec::new();
    for (i, slot) in state.table.slots().enumerate() {
        let file = format!("snap-{seq:020}-{i:05}.snap");
        let (tx, rx) = ractor::concurrency::oneshot();
        let sent = slot.actor.send_message(PartitionMessage::Snapshot {
            path: snap_dir.join(&file),
            seq,
            shard: slot.shard as u32,
            mb_s,
            reply: tx.into(),
        });
        waits.push((
            slot.category.clone(),
            slot.shard as u32,
            file,
            sent.is_ok(),
            rx,
        ));
    }
    let me = myself.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        let result = async {
            if let Ok(r) = rotated {
                let _ = r.await;
            }
            let mut shards = Vec::new();
            for (category, shard, file, sent, rx) in waits {
                if !sent {
                    return Err(format!("shard {category}/{shard} is not running"));
                }
                let written: SnapshotWritten = rx
                    .await
                    .map_err(|_| format!("shard {category}/{shard} stopped while snapshotting"))?
                    .map_err(|e| format!("shard {category}/{shard}: {e}"))?;
                shards.push(ShardSnapshot {
                    category,
                    shard,
                    file,
                    items: written.items,
                    bytes: written.bytes,
                });
            }
            // The items are safe; a model file that cannot be written only costs a refit at
            // the next boot.
            let model = if model.is_empty() {
                None
            } else {
                write_model_file(model_path, model)
                    .await
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "the checkpoint goes without its model state")
                    })
                    .ok()
            };
            tracing::info!(
                seq,
                shards = shards.len(),
                items = shards.iter().map(|s| s.items).sum::<u64>(),
                model = model.as_deref().unwrap_or("none"),
                ms = started.elapsed().as_millis() as u64,
                "snapshots written"
            );
            Ok(Checkpoint { seq, shards, model })
        }
        .await;
        let _ = me.send_message(CoordinatorMessage::CheckpointDone(result, reply));
    });
}

/// Records a finished checkpoint in the manifest, then drops what it made unnecessary: log
/// segments and snapshots older than the oldest kept checkpoint.
fn finish_checkpoint(
    state: &mut CoordinatorState,
    result: Result<Checkpoint, String>,
) -> Result<String, String> {
    let Some(storage) = &mut state.storage else {
        return Err("no data folder".into());
    };
    storage.checkpointing = false;
    let writing = storage.model_writing.take();
    let checkpoint = result.inspect_err(|e| tracing::error!(error = %e, "snapshot failed"))?;
    let mut m = storage.manifest.clone();
    m.version = manifest::MANIFEST_VERSION;
    match m.checkpoints.last_mut() {
        // A model-only checkpoint: the same snapshots, a newer model state.
        Some(last) if last.seq == checkpoint.seq => *last = checkpoint.clone(),
        _ => m.checkpoints.push(checkpoint.clone()),
    }
    while m.checkpoints.len() > manifest::KEPT {
        m.checkpoints.remove(0);
    }
    manifest::store(&storage.dir, &m).map_err(|e| {
        tracing::error!(error = %e, "writing the manifest failed");
        e.to_string()
    })?;
    storage.manifest = m;
    if let Some(v) = writing
        && checkpoint.model.is_some()
    {
        storage.model_saved = v;
    }
    state.table.checkpoint_seq = checkpoint.seq;
    if let Some(oldest) = storage.manifest.checkpoints.first() {
        let _ = storage.wal.truncate_through(oldest.seq);
    }
    let keep: std::collections::HashSet<&str> = storage
        .manifest
        .checkpoints
        .iter()
        .flat_map(|c| {
            c.shards
                .iter()
                .map(|s| s.file.as_str())
                .chain(c.model.as_deref())
        })
        .collect();
    let snap_dir = manifest::snapshot_dir(&storage.dir);
    if let Ok(entries) = std::fs::read_dir(&snap_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if let Some(name) = name.to_str()
                && (name.starts_with("snap-") || name.starts_with("model-"))
                && !keep.contains(name)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let items: u64 = checkpoint.shards.iter().map(|s| s.items).sum();
    let bytes: u64 = checkpoint.shards.iter().map(|s| s.bytes).sum();
    let model = match (&checkpoint.model, writing) {
        (Some(f), _) => format!(", model state {f}"),
        (None, Some(_)) => ", model state not written (see the log)".to_string(),
        (None, None) => String::new(),
    };
    Ok(format!(
        "snapshot at seq {}: {} shards, {items} items, {bytes} bytes{model}",
        checkpoint.seq,
        checkpoint.shards.len()
    ))
}

/// Writes a checkpoint's model file on a blocking thread; returns its name.
async fn write_model_file(path: PathBuf, model: ModelState) -> Result<String, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let written = tokio::task::spawn_blocking(move || model_file::write(&path, &model))
        .await
        .map_err(|e| format!("writing the model state panicked: {e}"))?;
    written.map_err(|e| format!("writing the model state: {e}"))?;
    Ok(name)
}

/// Starts a background fit when the catalogue crossed the threshold or grew enough (encoder
/// and prototypes), or, below the threshold, whenever it changed size (prototypes only: the
/// sample itself, cheap for small catalogues).
fn maybe_fit(myself: &ActorRef<CoordinatorMessage>, state: &mut CoordinatorState) {
    let items = state.directory.len();
    let threshold = state.config.fit_threshold.max(1);
    let encoder_due = if state.generation == 0 {
        items >= threshold
    } else {
        items as f32 >= state.fitted_at as f32 * state.config.refit_growth.max(1.01)
    };
    let prototypes_due =
        items > 0 && (encoder_due || (items < threshold && items != state.prototypes_at));
    if state.fitting || !(encoder_due || prototypes_due) {
        return;
    }
    state.fitting = true;
    if encoder_due {
        state.fits_started += 1;
    }
    let slots: Vec<PartitionSlot> = state.table.slots().cloned().collect();
    let config = state.config.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let per = config.fit_sample / slots.len().max(1) + 1;
        let mut sample: Vec<f32> = Vec::new();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let mut dims = 0;
        for slot in &slots {
            let r = ractor::call_t!(slot.actor, PartitionMessage::Sample, 10_000, per);
            if let Ok(vectors) = r {
                for v in vectors {
                    dims = v.len();
                    sample.extend_from_slice(&v);
                    rows.push(v);
                }
            }
        }
        let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for slot in &slots {
            let r = ractor::call_t!(slot.actor, PartitionMessage::EmbeddingSum, 10_000);
            if let Ok((sum, count)) = r
                && count > 0
            {
                let acc = sums
                    .entry(slot.category.clone())
                    .or_insert_with(|| vec![0.0; sum.len()]);
                for (a, x) in acc.iter_mut().zip(&sum) {
                    *a += x;
                }
            }
        }
        let centroids: Vec<(String, Vec<f32>)> = sums
            .into_iter()
            .map(|(c, mut v)| {
                vsa_models::l2_normalise(&mut v);
                (c, v)
            })
            .collect();
        let centroids = (!centroids.is_empty()).then(|| Arc::new(centroids));
        let n = sample.len().checked_div(dims).unwrap_or(0);
        let k = if items < threshold {
            0
        } else {
            config.prototypes
        };
        let prototypes = if n >= 1 && dims > 0 {
            tokio::task::spawn_blocking(move || vsa_models::kmeans(&rows, dims, k, 15))
                .await
                .ok()
                .filter(|p| !p.is_empty())
                .map(Arc::new)
        } else {
            None
        };
        let encoder = if encoder_due && n >= 2 && dims > 0 {
            let cfg = EncoderConfig {
                dims: config.dims.min(dims),
                ..EncoderConfig::default()
            };
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || Encoder::train(&sample, dims, &cfg)).await {
                Ok(Ok(e)) => {
                    tracing::info!(
                        samples = n,
                        ms = started.elapsed().as_millis() as u64,
                        "encoder trained"
                    );
                    Some(Arc::new(e))
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "encoder training failed");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "encoder training panicked");
                    None
                }
            }
        } else {
            None
        };
        if encoder_due && encoder.is_none() {
            // Try again later rather than spinning.
            tokio::time::sleep(Duration::from_secs(5)).await;
        } else if prototypes.is_none() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let _ = me.send_message(CoordinatorMessage::FitDone(FitResult {
            encoder,
            prototypes,
            centroids,
            items,
        }));
    });
}

fn thresholds(c: &IndexConfig) -> Thresholds {
    Thresholds {
        split_items: c.rebalance_split_items,
        merge_items: c.rebalance_merge_items,
        max_shards: c.rebalance_max_shards,
        hot_factor: c.rebalance_hot_factor,
    }
}

/// How long planning waits for one shard's load figure (every shard is asked at once, outside
/// the coordinator's handler); a shard that does not answer in time counts as idle.
const PLAN_STATS_TIMEOUT_MS: u64 = 500;

/// Plan / apply / cancel / status; answers through `reply` (a plan once its loads are in).
async fn rebalance_command(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    cmd: RebalanceCommand,
    reply: RebalanceReply,
) {
    if cmd == RebalanceCommand::Plan {
        gather_plan(myself, state, reply);
        return;
    }
    let answer = rebalance_run_command(myself, state, cmd).await;
    let _ = reply.send(answer);
}

/// Starts a plan: sizes come from the directory now; the recent loads are asked of every shard
/// at once in a background task, which hands them back as [`CoordinatorMessage::PlanGathered`].
/// A stalled shard so delays the plan by at most [`PLAN_STATS_TIMEOUT_MS`], and writes never.
fn gather_plan(
    myself: &ActorRef<CoordinatorMessage>,
    state: &CoordinatorState,
    reply: RebalanceReply,
) {
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut counts: HashMap<(&str, usize), u64> = HashMap::new();
    for (id, (c, s)) in &state.directory {
        ids.entry(c.as_str()).or_default().push(id.clone());
        *counts.entry((c.as_str(), *s)).or_default() += 1;
    }
    type Shards = Vec<(String, u64, ActorRef<PartitionMessage>)>;
    let categories: Vec<(String, Shards, Vec<String>)> = state
        .table
        .categories
        .iter()
        .map(|(category, slots)| {
            let shards = slots
                .iter()
                .map(|slot| {
                    let items = counts
                        .get(&(category.as_str(), slot.shard))
                        .copied()
                        .unwrap_or(0);
                    (slot.name.clone(), items, slot.actor.clone())
                })
                .collect();
            let ids = ids.remove(category.as_str()).unwrap_or_default();
            (category.clone(), shards, ids)
        })
        .collect();
    let me = myself.clone();
    tokio::spawn(async move {
        let asks = categories
            .iter()
            .flat_map(|(_, shards, _)| shards)
            .map(|(_, _, actor)| recent_load(actor));
        let mut answers = futures::future::join_all(asks).await.into_iter();
        let mut silent = Vec::new();
        let loads = categories
            .into_iter()
            .map(|(category, shards, ids)| CategoryLoad {
                category,
                shards: shards
                    .into_iter()
                    .map(|(name, items, _)| {
                        let load = answers.next().flatten();
                        if load.is_none() {
                            silent.push(name.clone());
                        }
                        (name, items, load.unwrap_or(0.0))
                    })
                    .collect(),
                ids,
            })
            .collect();
        let _ = me.send_message(CoordinatorMessage::PlanGathered(
            PlanInput { loads, silent },
            reply,
        ));
    });
}

/// A shard's recent load, or `None` when it does not answer in time.
async fn recent_load(actor: &ActorRef<PartitionMessage>) -> Option<f64> {
    ractor::call_t!(actor, PartitionMessage::Stats, PLAN_STATS_TIMEOUT_MS)
        .ok()
        .map(|s| s.recent_load)
}

/// Computes a plan from gathered loads and keeps it for `Apply`.
fn finish_plan(state: &mut CoordinatorState, input: PlanInput) -> (String, Option<String>) {
    let steps = crate::rebalance::plan(&input.loads, &thresholds(&state.config));
    let plan_id = state.next_plan_id;
    state.next_plan_id += 1;
    let mut reason = if steps.is_empty() {
        "balanced: nothing to do".to_string()
    } else {
        steps
            .iter()
            .map(|s| format!("{} {} {}→{}", s.kind, s.category, s.from.len(), s.to.len()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !input.silent.is_empty() {
        reason.push_str(&format!(
            " (no load figure from {} in {PLAN_STATS_TIMEOUT_MS} ms: counted as idle)",
            input.silent.join(", ")
        ));
    }
    let plan = Plan {
        plan_id,
        steps,
        reason: reason.clone(),
    };
    let payload = serde_json::to_string(&plan).unwrap_or_default();
    state.plan = Some(plan);
    (format!("plan {plan_id}: {reason}"), Some(payload))
}

/// Apply / cancel / status.
async fn rebalance_run_command(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    cmd: RebalanceCommand,
) -> Result<(String, Option<String>), String> {
    match cmd {
        RebalanceCommand::Plan => Err("plans are computed in the background".into()),
        RebalanceCommand::Apply(id) => {
            if state.run.is_some() {
                return Err("a rebalance is already running".into());
            }
            let Some(plan) = state.plan.clone().filter(|p| p.plan_id == id) else {
                return Err(format!(
                    "no plan {id}: compute one with RebalancePlan first"
                ));
            };
            if plan.steps.is_empty() {
                return Err(format!("plan {id} has nothing to do"));
            }
            if state.table.slots().any(|s| s.recovering) {
                return Err("a shard is recovering; try again shortly".into());
            }
            state.plan = None;
            state.status = RebalanceStatusInfo {
                state: "running".into(),
                plan_id: Some(id),
                progress: 0.0,
                message: "starting".into(),
            };
            state.run = Some(Run {
                plan,
                step: 0,
                staging: None,
            });
            start_step(myself, state).await.map_err(|e| e.to_string())?;
            Ok((format!("applying plan {id}"), None))
        }
        RebalanceCommand::Cancel => {
            let Some(run) = state.run.take() else {
                return Err("no rebalance is running".into());
            };
            if let Some(st) = run.staging {
                for s in st.slots {
                    s.actor.stop(Some("rebalance cancelled".into()));
                }
            }
            state.status = RebalanceStatusInfo {
                state: "cancelled".into(),
                plan_id: Some(run.plan.plan_id),
                progress: state.status.progress,
                message: format!(
                    "cancelled at step {} of {} (steps before it had switched)",
                    run.step + 1,
                    run.plan.steps.len()
                ),
            };
            state.publish();
            Ok((format!("plan {} cancelled", run.plan.plan_id), None))
        }
        RebalanceCommand::Status => Ok((
            state.status.message.clone(),
            Some(serde_json::to_string(&state.status).unwrap_or_default()),
        )),
    }
}

/// Starts the current step of the run: staging shards, exports of the old ones.
async fn start_step(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
) -> Result<(), ActorProcessingErr> {
    let Some(run) = &state.run else {
        return Ok(());
    };
    let Some(step) = run.plan.steps.get(run.step).cloned() else {
        return Ok(());
    };
    let old: Vec<PartitionSlot> = state
        .table
        .categories
        .get(&step.category)
        .cloned()
        .unwrap_or_default();
    let m = step.to.len().max(1);
    let mut slots = Vec::with_capacity(m);
    for i in 0..m {
        let name = partition_name(&step.category, i);
        let (actor, _) = Actor::spawn_linked(
            None,
            Partition,
            PartitionArguments {
                name: name.clone(),
                category: step.category.clone(),
                encoder: state.table.encoder.clone(),
                initial: Vec::new(),
                staging: true,
                load_half_life_s: state.config.rebalance_load_half_life_s,
            },
            myself.get_cell(),
        )
        .await?;
        slots.push(PartitionSlot {
            name,
            category: step.category.clone(),
            shard: i,
            actor,
            recovering: false,
        });
    }
    state.staging_generation += 1;
    let generation = state.staging_generation;
    if let Some(run) = &mut state.run {
        run.staging = Some(Staging {
            generation,
            category: step.category.clone(),
            slots,
            exports_left: old.len(),
            loads_left: old.len(),
            total: old.len(),
        });
    }
    // Copy in the background: each old shard hands over shared handles to its items.
    for slot in old {
        let me = myself.clone();
        tokio::spawn(async move {
            let r = ractor::call_t!(slot.actor, PartitionMessage::Export, 60_000)
                .map_err(|e| format!("{}: {e}", slot.name));
            let _ = me.send_message(CoordinatorMessage::StagingExported(generation, r));
        });
    }
    if state
        .table
        .categories
        .get(&step.category)
        .is_none_or(Vec::is_empty)
    {
        // Nothing to copy (the category emptied meanwhile): switch at once.
        switch_layout(myself, state).await?;
    }
    update_progress(state);
    Ok(())
}

/// One old shard's items arrived: load them into the new shards they hash to.
fn staging_exported(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
    generation: u64,
    result: Result<Vec<Arc<ItemRecord>>, String>,
) {
    let Some(st) = state.run.as_mut().and_then(|r| r.staging.as_mut()) else {
        return;
    };
    if st.generation != generation {
        return;
    }
    let records = match result {
        Ok(r) => r,
        Err(e) => {
            fail_run(state, format!("copying a shard failed: {e}"));
            return;
        }
    };
    st.exports_left = st.exports_left.saturating_sub(1);
    let m = st.slots.len();
    let mut groups: Vec<Vec<ItemRecord>> = vec![Vec::new(); m];
    for r in records {
        groups[crate::durability::record::shard_for(&r.id, m)].push((*r).clone());
    }
    let mut waits = Vec::new();
    for (slot, group) in st.slots.iter().zip(groups) {
        let (tx, rx) = ractor::concurrency::oneshot();
        let _ = slot
            .actor
            .send_message(PartitionMessage::Load(group, tx.into()));
        waits.push(rx);
    }
    let me = myself.clone();
    tokio::spawn(async move {
        for w in waits {
            let _ = w.await;
        }
        let _ = me.send_message(CoordinatorMessage::StagingLoaded(generation));
    });
    update_progress(state);
}

fn update_progress(state: &mut CoordinatorState) {
    let Some(run) = &state.run else {
        return;
    };
    let steps = run.plan.steps.len().max(1) as f32;
    let within = run.staging.as_ref().map_or(0.0, |st| {
        let t = (st.total.max(1) * 2) as f32;
        ((st.total - st.exports_left) + (st.total - st.loads_left)) as f32 / t
    });
    state.status.progress = ((run.step as f32 + within) / steps).min(1.0);
    if let Some(step) = run.plan.steps.get(run.step) {
        state.status.message = format!(
            "step {}/{}: {} {} {}→{} shards",
            run.step + 1,
            run.plan.steps.len(),
            step.kind,
            step.category,
            step.from.len(),
            step.to.len()
        );
    }
}

fn fail_run(state: &mut CoordinatorState, why: String) {
    tracing::error!(error = %why, "rebalance failed");
    if let Some(run) = state.run.take() {
        if let Some(st) = run.staging {
            for s in st.slots {
                s.actor.stop(Some("rebalance failed".into()));
            }
        }
        state.status = RebalanceStatusInfo {
            state: "failed".into(),
            plan_id: Some(run.plan.plan_id),
            progress: state.status.progress,
            message: why,
        };
    }
}

/// Every copy is loaded: log the new layout, swap the routing table, retire the old shards,
/// go on with the next step.
async fn switch_layout(
    myself: &ActorRef<CoordinatorMessage>,
    state: &mut CoordinatorState,
) -> Result<(), ActorProcessingErr> {
    let Some(st) = state.run.as_mut().and_then(|r| r.staging.take()) else {
        return Ok(());
    };
    let m = st.slots.len();
    let seq = state.seq + 1;
    // The layout record orders every later write (new numbering) after it in the log.
    if let Err(e) = state.log(
        seq,
        WalOp::Layout {
            category: st.category.clone(),
            shards: m as u32,
        },
    ) {
        for s in st.slots {
            s.actor.stop(None);
        }
        fail_run(state, format!("logging the new layout failed: {e}"));
        return Ok(());
    }
    state.seq = seq;
    for slot in &st.slots {
        let _ = slot.actor.send_message(PartitionMessage::EndStaging);
    }
    let old = state
        .table
        .categories
        .insert(st.category.clone(), st.slots)
        .unwrap_or_default();
    for (id, (c, s)) in state.directory.iter_mut() {
        if *c == st.category {
            *s = crate::durability::record::shard_for(id, m);
        }
    }
    state.publish();
    tracing::info!(category = %st.category, from = old.len(), to = m, "rebalance switched the layout");
    let grace = Duration::from_millis(state.config.rebalance_grace_ms);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        for s in old {
            s.actor.stop(Some("retired by a rebalance".into()));
        }
    });
    let more = state.run.as_mut().is_some_and(|r| {
        r.step += 1;
        r.step < r.plan.steps.len()
    });
    if more {
        Box::pin(start_step(myself, state)).await?;
    } else if let Some(run) = state.run.take() {
        state.status = RebalanceStatusInfo {
            state: "done".into(),
            plan_id: Some(run.plan.plan_id),
            progress: 1.0,
            message: format!("plan {} applied: {}", run.plan.plan_id, run.plan.reason),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests;
