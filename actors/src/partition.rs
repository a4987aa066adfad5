//! `Partition`: one actor per index shard. It owns the shard's [`ItemStore`] (ids, attributes,
//! full f16 embeddings) and, once the coordinator has fitted an encoder, the binary
//! [`vsa_index::Shard`] built from it. Writes and searches are messages, handled one at a time,
//! so a partition never needs a lock.
//!
//! Search: with a shard, a Hamming scan picks `candidates` rows, they are reranked exactly with
//! the stored embeddings (best over the query's vectors), top-k returned; before the first fit
//! the search is exact over the store. Searches are counted twice: a lifetime counter, and a
//! decayed recent rate ([`LoadMeter`]) that the rebalance planner compares. A panic restarts
//! the partition through its supervisor (the coordinator), which rebuilds it from its snapshot
//! and the write-ahead log ([`crate::durability`]) and hands the items back as
//! [`PartitionArguments::initial`].

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use vsa_index::{Encoder, Filter, Query, SearchParams, Shard, Whitening};

use crate::rebalance::LoadMeter;
use crate::store::{ItemRecord, ItemStore};

/// An encoder with the generation number the coordinator gave it.
#[derive(Debug, Clone)]
pub struct EncoderGen {
    /// Increases with every refit.
    pub generation: u64,
    /// The encoder.
    pub encoder: Arc<Encoder>,
}

/// A search as a partition receives it.
#[derive(Debug, Clone)]
pub struct PartitionQuery {
    /// 1–8 L2-normalised query embeddings.
    pub vectors: Vec<Vec<f32>>,
    /// The same vectors encoded with encoder `generation`, when the engine had one.
    pub encoded: Option<(u64, Query)>,
    /// Hits wanted.
    pub k: usize,
    /// Hamming candidates to rerank.
    pub candidates: usize,
    /// Attribute filter.
    pub filter: Option<Filter>,
    /// An item id to leave out (search by item).
    pub exclude: Option<String>,
    /// The query object's colour histogram and its weight in the score
    /// (`visual + weight × intersection`); no colour term when absent.
    pub colour: Option<(Vec<f32>, f32)>,
    /// Weight of an item's second-best query vector in its score (0: best-of only).
    pub second_weight: f32,
    /// The learned-whitening part of the score, when the preset asks for it.
    pub whitened: Option<WhitenedQuery>,
}

/// Query vectors transformed by a fitted [`Whitening`]: an item's visual score becomes
/// `(1 − weight) × cosine + weight × best whitened similarity`.
#[derive(Debug, Clone)]
pub struct WhitenedQuery {
    /// The transform (for the items' norms).
    pub whitening: Arc<Whitening>,
    /// `Mq / √(qᵀMq)` per query vector.
    pub vectors: Vec<Vec<f32>>,
    /// Share of the whitened similarity, in (0, 1].
    pub weight: f32,
}

impl WhitenedQuery {
    /// The blended visual score of `r`, given its plain best cosine `s` and `√(xᵀMx)`.
    fn blend(&self, s: f32, r: &ItemRecord, norm: f32) -> f32 {
        if !(norm.is_finite() && norm > 0.0) {
            return s;
        }
        let best = self
            .vectors
            .iter()
            .map(|q| crate::store::dot_f16(q, &r.embedding))
            .fold(f32::NEG_INFINITY, f32::max);
        (1.0 - self.weight) * s + self.weight * best / norm
    }
}

/// `√(xᵀMx)` of the items a whitened search has scored, for the whitening it was computed
/// with: computed once per item and fit (`r` dot products), not per search. Keys are never
/// reused by the store, so an entry can only go stale by its item leaving; the cache is
/// cleared when it outgrows the store.
#[derive(Debug, Default)]
struct WhitenedNorms {
    of: Option<Arc<Whitening>>,
    norms: std::collections::HashMap<u64, f32>,
}

impl WhitenedNorms {
    fn get(&mut self, w: &Arc<Whitening>, key: u64, r: &ItemRecord, live: usize) -> f32 {
        if !self.of.as_ref().is_some_and(|o| Arc::ptr_eq(o, w)) || self.norms.len() > 2 * live + 64
        {
            self.of = Some(w.clone());
            self.norms.clear();
        }
        *self.norms.entry(key).or_insert_with(|| {
            let sq: f32 = r.embedding.iter().map(|v| v.to_f32() * v.to_f32()).sum();
            w.norm2_with(sq, |v| crate::store::dot_f16(v, &r.embedding))
                .sqrt()
        })
    }
}

/// One hit from one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionHit {
    /// External id.
    pub id: String,
    /// Category.
    pub category: String,
    /// Visual similarity plus the colour term (the partition's ranking score).
    pub score: f32,
    /// Cosine similarity (best over the query's vectors).
    pub visual: f32,
    /// The colour term (the preset's weight × histogram intersection; 0 without colour).
    pub colour: f32,
    /// The item's quality score in `[0, 1]`.
    pub quality: f32,
    /// Hamming distance of the best code match, when the binary index was used.
    pub hamming: Option<u32>,
    /// Which query vector matched best.
    pub vector: u8,
}

/// Counters of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStats {
    /// Actor name.
    pub name: String,
    /// Category served.
    pub category: String,
    /// Items.
    pub items: u64,
    /// Approximate memory.
    pub memory_bytes: u64,
    /// Searches served since this actor started (a lifetime counter: it restarts at 0 when
    /// the shard is respawned or rebuilt by a rebalance).
    pub searches: u64,
    /// Recent searches per second, decayed with the configured half-life
    /// ([`crate::rebalance::LoadMeter`]): what the rebalance planner compares.
    pub recent_load: f64,
    /// Encoder generation of the shard (0: exact search, no shard yet).
    pub encoder_generation: u64,
}

/// The partition actor.
#[derive(Debug, Default)]
pub struct Partition;

/// Arguments of a partition.
#[derive(Debug, Clone)]
pub struct PartitionArguments {
    /// Actor name (stable across restarts).
    pub name: String,
    /// Category served.
    pub category: String,
    /// Encoder to build the shard with, if fitted.
    pub encoder: Option<EncoderGen>,
    /// Items to start with (recovered from disk).
    pub initial: Vec<ItemRecord>,
    /// A rebalance target being filled: remember the ids written directly, so a bulk
    /// [`PartitionMessage::Load`] of older copies never overwrites them.
    pub staging: bool,
    /// Half-life of the recent-load meter (seconds; `index.rebalance_load_half_life_s`).
    pub load_half_life_s: f64,
}

/// What a written snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWritten {
    /// Items written.
    pub items: u64,
    /// File size.
    pub bytes: u64,
}

/// Messages of a partition.
#[derive(Debug)]
pub enum PartitionMessage {
    /// Insert or replace an item; replies whether it replaced one here.
    Upsert(ItemRecord, RpcReplyPort<bool>),
    /// Delete an item; replies whether it existed.
    Delete(String, Option<RpcReplyPort<bool>>),
    /// Search.
    Search(Arc<PartitionQuery>, RpcReplyPort<Vec<PartitionHit>>),
    /// An item's normalised embedding.
    GetEmbedding(String, RpcReplyPort<Option<Vec<f32>>>),
    /// Up to `n` embeddings for an encoder fit (evenly spread).
    Sample(usize, RpcReplyPort<Vec<Vec<f32>>>),
    /// The sum of the partition's embeddings and their count (for the category centroid).
    EmbeddingSum(RpcReplyPort<(Vec<f32>, usize)>),
    /// Rebuild the shard with a new encoder.
    SetEncoder(EncoderGen),
    /// Counters.
    Stats(RpcReplyPort<PartitionStats>),
    /// Write a snapshot of the current items to `path`, covering writes ≤ `seq` (the sender
    /// guarantees every earlier write reached this partition first). The write runs in the
    /// background; the reply comes when it is on disk.
    Snapshot {
        /// Destination file.
        path: std::path::PathBuf,
        /// Sequence number covered.
        seq: u64,
        /// Shard number (recorded in the header).
        shard: u32,
        /// Write rate limit (MB/s; 0: unlimited).
        mb_s: u64,
        /// Answered when written.
        reply: RpcReplyPort<Result<SnapshotWritten, String>>,
    },
    /// Every item (shared handles), for a rebalance copy.
    Export(RpcReplyPort<Vec<Arc<ItemRecord>>>),
    /// Bulk insert from a rebalance copy; ids written directly since staging began are
    /// skipped (their direct write is newer). Replies with the number inserted.
    Load(Vec<ItemRecord>, RpcReplyPort<usize>),
    /// The rebalance switched to this partition: stop tracking direct writes.
    EndStaging,
    /// Fault injection: panic inside the handler.
    Panic,
    /// Fault injection: stop handling messages for this long (ms).
    Stall(u64),
}

/// State of a partition.
#[derive(Debug)]
pub struct PartitionState {
    name: String,
    category: String,
    store: ItemStore,
    index: Option<(EncoderGen, Shard)>,
    searches: u64,
    load: LoadMeter,
    /// Ids written directly while staging (None: not staging).
    touched: Option<std::collections::HashSet<String>>,
    /// Whitened norms of the items scored so far.
    wnorms: WhitenedNorms,
}

impl PartitionState {
    /// Inserts or replaces an item in the store and the shard; true when it replaced one.
    fn upsert(&mut self, record: ItemRecord) -> bool {
        let (key, old) = self.store.upsert(record);
        if let Some((_, shard)) = &mut self.index
            && let Some(old) = old
        {
            shard.delete(old);
        }
        if let Some(record) = self.store.get(key).cloned() {
            self.insert_into_shard(key, &record);
        }
        old.is_some()
    }

    fn insert_into_shard(&mut self, key: u64, record: &ItemRecord) {
        if let Some((gen_, shard)) = &mut self.index {
            match gen_.encoder.encode(&record.embedding_f32()) {
                Ok(enc) => {
                    if let Err(e) = shard.insert(key, &enc, &record.attributes) {
                        tracing::error!(partition = %self.name, error = %e, "shard insert failed");
                    }
                }
                Err(e) => tracing::error!(partition = %self.name, error = %e, "encode failed"),
            }
        }
    }

    fn rebuild(&mut self, encoder: EncoderGen) {
        let mut shard = Shard::new(encoder.encoder.dims());
        shard.reserve(self.store.len());
        // Encode in chunks with the batched (GEMM) encoder: bit-identical to one at a time.
        let records: Vec<(u64, &ItemRecord)> = self.store.iter().collect();
        for chunk in records.chunks(1024) {
            let flat: Vec<f32> = chunk.iter().flat_map(|(_, r)| r.embedding_f32()).collect();
            match encoder.encoder.encode_batch(&flat, 1) {
                Ok(encoded) => {
                    for ((key, record), enc) in chunk.iter().zip(encoded) {
                        if let Err(e) = shard.insert(*key, &enc, &record.attributes) {
                            tracing::error!(partition = %self.name, error = %e, "shard insert failed");
                        }
                    }
                }
                Err(e) => tracing::error!(partition = %self.name, error = %e, "encode failed"),
            }
        }
        self.index = Some((encoder, shard));
    }

    fn search(&mut self, q: &PartitionQuery) -> Vec<PartitionHit> {
        self.searches += 1;
        self.load.record(Instant::now());
        let k = q.k.max(1);
        // (visual, colour term, query vector, hamming, record)
        let mut scored: Vec<(f32, f32, u8, Option<u32>, &ItemRecord)> = Vec::new();
        if let Some((gen_, shard)) = &self.index {
            let own;
            let query = match &q.encoded {
                Some((g, query)) if *g == gen_.generation => query,
                _ => {
                    let vectors = q
                        .vectors
                        .iter()
                        .filter_map(|v| gen_.encoder.encode_query(v).ok())
                        .collect();
                    own = Query { vectors };
                    &own
                }
            };
            if query.vectors.is_empty() {
                return Vec::new();
            }
            let extra = usize::from(q.exclude.is_some());
            let params = SearchParams {
                // Exact rerank of the shard's best: keep a margin over k.
                k: (k + extra).max(k * 4).min(q.candidates.max(k + extra)),
                candidates: q.candidates.max(k + extra),
                threads: 1,
                rerank: true,
                kernel: None,
            };
            match shard.search(query, &params, q.filter.as_ref()) {
                Ok(hits) => {
                    for h in hits {
                        if let Some(r) = self.store.get(h.id) {
                            let (s, vi) = r.best_dot_with_second(&q.vectors, q.second_weight);
                            let s = q.whitened.as_ref().map_or(s, |w| {
                                let n = self.wnorms.get(&w.whitening, h.id, r, self.store.len());
                                w.blend(s, r, n)
                            });
                            scored.push((s, colour_term(q, r), vi, Some(h.hamming), r));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(partition = %self.name, error = %e, "shard search failed")
                }
            }
        } else {
            let live = self.store.len();
            for (key, r) in self.store.iter() {
                if q.filter.as_ref().is_some_and(|f| !r.matches(f)) {
                    continue;
                }
                let (s, vi) = r.best_dot_with_second(&q.vectors, q.second_weight);
                let s = q.whitened.as_ref().map_or(s, |w| {
                    let n = self.wnorms.get(&w.whitening, key, r, live);
                    w.blend(s, r, n)
                });
                scored.push((s, colour_term(q, r), vi, None, r));
            }
        }
        if let Some(ex) = &q.exclude {
            scored.retain(|(_, _, _, _, r)| &r.id != ex);
        }
        scored.sort_by(|a, b| {
            (b.0 + b.1)
                .total_cmp(&(a.0 + a.1))
                .then_with(|| a.4.id.cmp(&b.4.id))
        });
        scored.truncate(k);
        scored
            .into_iter()
            .map(|(visual, colour, vector, hamming, r)| PartitionHit {
                id: r.id.clone(),
                category: r.category.clone(),
                score: visual + colour,
                visual,
                colour,
                quality: r.quality_score(),
                hamming,
                vector,
            })
            .collect()
    }
}

/// The colour part of an item's score for a query.
fn colour_term(q: &PartitionQuery, r: &ItemRecord) -> f32 {
    match &q.colour {
        Some((hist, w)) if *w != 0.0 && !r.colour.is_empty() => {
            w * vsa_models::colour_similarity(hist, &r.colour)
        }
        _ => 0.0,
    }
}

impl Actor for Partition {
    type Msg = PartitionMessage;
    type State = PartitionState;
    type Arguments = PartitionArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = PartitionState {
            name: args.name,
            category: args.category,
            store: ItemStore::default(),
            index: None,
            searches: 0,
            load: LoadMeter::new(args.load_half_life_s, Instant::now()),
            touched: args.staging.then(std::collections::HashSet::new),
            wnorms: WhitenedNorms::default(),
        };
        for record in args.initial {
            state.store.upsert(record);
        }
        if let Some(e) = args.encoder {
            state.rebuild(e);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PartitionMessage::Upsert(record, reply) => {
                if let Some(t) = &mut state.touched {
                    t.insert(record.id.clone());
                }
                let replaced = state.upsert(record);
                let _ = reply.send(replaced);
            }
            PartitionMessage::Delete(id, reply) => {
                if let Some(t) = &mut state.touched {
                    t.insert(id.clone());
                }
                let old = state.store.remove(&id);
                if let (Some((_, shard)), Some(old)) = (&mut state.index, old) {
                    shard.delete(old);
                }
                if let Some(r) = reply {
                    let _ = r.send(old.is_some());
                }
            }
            PartitionMessage::Search(q, reply) => {
                let hits = state.search(&q);
                let _ = reply.send(hits);
            }
            PartitionMessage::GetEmbedding(id, reply) => {
                let _ = reply.send(state.store.get_by_id(&id).map(ItemRecord::embedding_f32));
            }
            PartitionMessage::Sample(n, reply) => {
                let len = state.store.len();
                let step = len.div_ceil(n.max(1)).max(1);
                let sample = state
                    .store
                    .iter()
                    .step_by(step)
                    .take(n)
                    .map(|(_, r)| r.embedding_f32())
                    .collect();
                let _ = reply.send(sample);
            }
            PartitionMessage::EmbeddingSum(reply) => {
                let mut sum: Vec<f32> = Vec::new();
                for (_, r) in state.store.iter() {
                    if sum.is_empty() {
                        sum = vec![0.0; r.embedding.len()];
                    }
                    for (s, x) in sum.iter_mut().zip(&r.embedding) {
                        *s += x.to_f32();
                    }
                }
                let _ = reply.send((sum, state.store.len()));
            }
            PartitionMessage::SetEncoder(e) => {
                let newer = state
                    .index
                    .as_ref()
                    .is_none_or(|(g, _)| g.generation < e.generation);
                if newer {
                    state.rebuild(e);
                }
            }
            PartitionMessage::Stats(reply) => {
                let shard_bytes = state.index.as_ref().map_or(0, |(_, s)| s.memory_bytes());
                let _ = reply.send(PartitionStats {
                    name: state.name.clone(),
                    category: state.category.clone(),
                    items: state.store.len() as u64,
                    memory_bytes: (state.store.memory_bytes() + shard_bytes) as u64,
                    searches: state.searches,
                    recent_load: state.load.rate(Instant::now()),
                    encoder_generation: state.index.as_ref().map_or(0, |(g, _)| g.generation),
                });
            }
            PartitionMessage::Snapshot {
                path,
                seq,
                shard,
                mb_s,
                reply,
            } => {
                let items = state.store.shared();
                let header = crate::durability::snapshot::SnapshotHeader {
                    category: state.category.clone(),
                    shard,
                    seq,
                    items: items.len() as u64,
                };
                // A background thread at the lowest CPU priority, one snapshot at a time across
                // the appliance: searches keep the cores.
                let spawned = std::thread::Builder::new()
                    .name("vsa-snapshot".into())
                    .spawn(move || {
                        crate::lower_thread_priority();
                        let _one_at_a_time = crate::durability::SNAPSHOT_WRITER
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let r = crate::durability::snapshot::write_limited(
                            &path, &header, &items, mb_s,
                        )
                        .map(|bytes| SnapshotWritten {
                            items: header.items,
                            bytes,
                        })
                        .map_err(|e| e.to_string());
                        let _ = reply.send(r);
                    });
                if let Err(e) = spawned {
                    tracing::error!(partition = %state.name, error = %e, "cannot start a snapshot thread");
                }
            }
            PartitionMessage::Export(reply) => {
                let _ = reply.send(state.store.shared());
            }
            PartitionMessage::Load(records, reply) => {
                let mut n = 0;
                for record in records {
                    if state
                        .touched
                        .as_ref()
                        .is_some_and(|t| t.contains(&record.id))
                    {
                        continue;
                    }
                    state.upsert(record);
                    n += 1;
                }
                let _ = reply.send(n);
            }
            PartitionMessage::EndStaging => {
                state.touched = None;
            }
            PartitionMessage::Panic => {
                panic!("partition {} panicked by fault injection", state.name);
            }
            PartitionMessage::Stall(ms) => {
                tracing::warn!(partition = %state.name, ms, "stalled by fault injection");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
        }
        Ok(())
    }
}
