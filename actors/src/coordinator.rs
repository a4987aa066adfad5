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

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use vsa_index::{Encoder, EncoderConfig};
use vsa_models::Prototypes;

use crate::partition::{EncoderGen, Partition, PartitionArguments, PartitionMessage};
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
}

/// Messages of the coordinator.
#[derive(Debug)]
pub enum CoordinatorMessage {
    /// Insert or replace an item.
    Upsert(ItemRecord, RpcReplyPort<WriteOutcome>),
    /// Delete an item by id.
    Delete(String, RpcReplyPort<WriteOutcome>),
    /// Which shard holds an id.
    Locate(String, RpcReplyPort<Option<PartitionSlot>>),
    /// Fault injection: panic the named partition. Replies whether it exists.
    PanicPartition(String, RpcReplyPort<bool>),
    /// A background fit finished.
    FitDone(FitResult),
    /// Total items in the directory.
    ItemCount(RpcReplyPort<u64>),
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
}

impl CoordinatorState {
    fn publish(&mut self) {
        self.table.epoch += 1;
        self.routing.send_replace(Arc::new(self.table.clone()));
    }

    fn shard_of(&self, id: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        (h.finish() % self.config.shards_per_category.max(1) as u64) as usize
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
    category: &str,
    shard: usize,
    encoder: Option<EncoderGen>,
) -> Result<PartitionSlot, ActorProcessingErr> {
    let name = partition_name(category, shard);
    let (actor, _) = Actor::spawn_linked(
        None,
        Partition,
        PartitionArguments {
            name: name.clone(),
            category: category.to_string(),
            encoder,
        },
        supervisor,
    )
    .await?;
    Ok(PartitionSlot {
        name,
        category: category.to_string(),
        shard,
        actor,
    })
}

impl Actor for Coordinator {
    type Msg = CoordinatorMessage;
    type State = CoordinatorState;
    type Arguments = CoordinatorArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
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
        };
        state.table.epoch = state.routing.borrow().epoch;
        state.publish();
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
                state.seq += 1;
                let seq = state.seq;
                let shard = state.shard_of(&record.id);
                let category = record.category.clone();
                if !state.table.categories.contains_key(&category) {
                    let n = state.config.shards_per_category.max(1);
                    let mut slots = Vec::with_capacity(n);
                    for i in 0..n {
                        slots.push(
                            spawn_partition(
                                myself.get_cell(),
                                &category,
                                i,
                                state.table.encoder.clone(),
                            )
                            .await?,
                        );
                    }
                    state.table.categories.insert(category.clone(), slots);
                    state.publish();
                }
                let previous = state
                    .directory
                    .insert(record.id.clone(), (category.clone(), shard));
                let moved = previous
                    .as_ref()
                    .is_some_and(|(c, s)| c != &category || *s != shard);
                if moved
                    && let Some((c, s)) = &previous
                    && let Some(old) = state.slot(c, *s)
                {
                    let _ = old
                        .actor
                        .send_message(PartitionMessage::Delete(record.id.clone(), None));
                }
                let Some(slot) = state.slot(&category, shard) else {
                    return Err(format!("no shard {shard} for category {category}").into());
                };
                // The partition answers the caller directly; map its bool to the outcome.
                let (tx, rx) = ractor::concurrency::oneshot();
                slot.actor
                    .send_message(PartitionMessage::Upsert(record, tx.into()))
                    .map_err(|e| format!("partition {}: {e}", slot.name))?;
                let existed_elsewhere = moved;
                tokio::spawn(async move {
                    if let Ok(replaced) = rx.await {
                        let _ = reply.send(WriteOutcome {
                            seq,
                            existed: replaced || existed_elsewhere,
                        });
                    }
                });
                maybe_fit(&myself, state);
            }
            CoordinatorMessage::Delete(id, reply) => {
                state.seq += 1;
                let seq = state.seq;
                match state.directory.remove(&id) {
                    None => {
                        let _ = reply.send(WriteOutcome {
                            seq,
                            existed: false,
                        });
                    }
                    Some((c, s)) => match state.slot(&c, s) {
                        Some(slot) => {
                            let (tx, rx) = ractor::concurrency::oneshot();
                            let _ = slot
                                .actor
                                .send_message(PartitionMessage::Delete(id, Some(tx.into())));
                            tokio::spawn(async move {
                                if let Ok(existed) = rx.await {
                                    let _ = reply.send(WriteOutcome { seq, existed });
                                }
                            });
                        }
                        None => {
                            let _ = reply.send(WriteOutcome {
                                seq,
                                existed: false,
                            });
                        }
                    },
                }
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
            CoordinatorMessage::FitDone(FitResult {
                encoder,
                prototypes,
                centroids,
                items,
            }) => {
                state.fitting = false;
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
                    let eg = EncoderGen {
                        generation: state.generation,
                        encoder,
                    };
                    for slot in state.table.slots() {
                        let _ = slot
                            .actor
                            .send_message(PartitionMessage::SetEncoder(eg.clone()));
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
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failed) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = ?cell.get_id(), error = %err, "partition failed");
                (cell, true)
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                tracing::warn!(actor = ?cell.get_id(), ?reason, "partition stopped");
                (cell, false)
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let found = state
            .table
            .slots()
            .find(|s| s.actor.get_id() == id)
            .map(|s| (s.category.clone(), s.shard));
        let Some((category, shard)) = found else {
            return Ok(());
        };
        // Its items are gone with it (no durability yet): forget them so the directory and
        // the counts stay true.
        state
            .directory
            .retain(|_, (c, s)| !(c == &category && *s == shard));
        let slot = spawn_partition(
            myself.get_cell(),
            &category,
            shard,
            state.table.encoder.clone(),
        )
        .await?;
        tracing::warn!(partition = %slot.name, "partition restarted");
        if let Some(v) = state.table.categories.get_mut(&category) {
            v[shard] = slot;
        }
        if failed {
            state.table.restarts += 1;
        }
        state.publish();
        Ok(())
    }
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
