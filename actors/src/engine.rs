//! [`Engine`]: the query and ingest paths, called by the server for every request.
//!
//! It holds only handles (the pool's channel, the coordinator's address, the published routing
//! table), so it is cheap to share between connection tasks, and the actors behind it can
//! restart without the server noticing. Searches read the current routing snapshot and fan out
//! to partitions concurrently; each returns its top hits and the engine merges them (a partition
//! that fails or times out is left out and the answer is flagged `degraded`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use ractor::{Actor, ActorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use vsa_index::{Filter, Query};
use vsa_models::image::RgbImage;
use vsa_models::{CategoryCodebook, ClassifierHead, DecodeLimits, Manifest, Preprocessor, Rect};
use vsa_protocol::{
    ActorInfo, InferenceTelemetry, ShardTelemetry, StageMetrics, Telemetry, WeightsInfo,
};
use vsa_protocol::{
    BoxXywh, CategoryPrediction, ClickReply, ClickRequest, ClicksReply, DeleteReply, ErrorReply,
    FilterClause, HealthReply, HealthState, InferenceStats, ItemContent, MAX_CLICK_BATCH,
    QueryInput, Request, Scope, SearchHit, SearchRequest, SearchResponse, ShardStats, StatsReply,
    UpsertReply, UpsertRequest,
};

use crate::clicks::{
    AggregatorArguments, AggregatorMessage, CLICK_BATCHES_QUEUED, ClickBatch, ClickConfig,
    ClickRuntime, ClickTable, Counted, IMPRESSION_BATCHES_QUEUED, IMPRESSION_FLUSH,
    IMPRESSIONS_PENDING, Impressions, PREFETCH_RUN, QueryEntry, QueryLog, RerankWeights,
    aggregator_of, item_key, now_s,
};
use crate::coordinator::{
    CoordinatorArguments, CoordinatorMessage, IndexConfig, PartitionSlot, RoutingTable,
};
use crate::durability::StorageConfig;
use crate::error::{EngineError, Result};
use crate::inference::{InferencePoolArguments, PoolChannel, PoolConfig, PoolHandle};
use crate::partition::{PartitionHit, PartitionMessage, PartitionQuery, WhitenedQuery};
use crate::quality::{CategoryModel, Preset, QualityConfig};
use crate::search_gate::SearchGate;
use crate::store::ItemRecord;
use crate::supervisor::{FailureLog, Root, RootArguments, RootMessage};
use crate::telemetry::{HistogramSet, InFlight, ShardMeters};
use crate::whitening::Whitener;

/// Limits on what clients send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest encoded image (bytes).
    pub max_image_bytes: usize,
    /// Largest image (width × height).
    pub max_pixels: u64,
    /// Largest image side.
    pub max_side: u32,
    /// Largest `k`.
    pub max_k: u32,
    /// Longest item id (bytes).
    pub max_id_len: usize,
    /// Most attributes per item.
    pub max_attributes: usize,
    /// Images decoded at once (the rest wait).
    pub decode_concurrency: usize,
    /// Photo searches served at once; one more is answered `busy` at once, before any work
    /// (admission control: what keeps admitted queries fast under overload). 0: as many as
    /// model workers (measured: admitted p99 within 1.3× of unloaded at twice the sustainable
    /// rate; docs/BENCHMARKS.md §6).
    pub max_queries_in_flight: usize,
    /// How long a photo search may wait for a free slot before it is answered `busy` (ms):
    /// absorbs short bursts of closed-loop clients without letting a queue build.
    pub admission_wait_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = DecodeLimits::default();
        Self {
            max_image_bytes: d.max_bytes,
            max_pixels: d.max_pixels,
            max_side: d.max_side,
            max_k: 1000,
            max_id_len: 256,
            max_attributes: 128,
            decode_concurrency: 4,
            max_queries_in_flight: 0,
            admission_wait_ms: 0,
        }
    }
}

/// Search behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Neighbours that vote for the category.
    pub vote_k: usize,
    /// Temperature of the vote weights `exp((s − s₁) / t)`.
    pub vote_temperature: f32,
    /// Temperature of the model branch's softmax over category-centroid cosines.
    pub centroid_temperature: f32,
    /// The `logits` model branch: a stored (unit) embedding is scaled by this before the
    /// classifier head, standing for the raw pooled embedding's length (measured: mean
    /// norm of the bundled model's 224×224 catalogue embeddings).
    pub logit_scale: f32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            vote_k: 30,
            vote_temperature: 0.01,
            centroid_temperature: 0.02,
            logit_scale: LOGIT_SCALE,
        }
    }
}

/// Everything the engine needs to start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Inference pool.
    pub pool: PoolConfig,
    /// Index and routing.
    pub index: IndexConfig,
    /// Input limits.
    pub limits: LimitsConfig,
    /// Search behaviour.
    pub search: SearchConfig,
    /// Query presets and ingest augmentation.
    pub quality: QualityConfig,
    /// Write-ahead log and snapshots.
    pub storage: StorageConfig,
    /// Click feedback and reranking.
    pub clicks: ClickConfig,
}

/// Searches per second over the last few seconds.
#[derive(Debug, Default)]
struct RateMeter {
    buckets: [AtomicU64; 16],
    stamps: [AtomicU64; 16],
}

impl RateMeter {
    fn tick(&self, now_s: u64) {
        let i = (now_s % 16) as usize;
        if self.stamps[i].swap(now_s, Ordering::Relaxed) != now_s {
            self.buckets[i].store(0, Ordering::Relaxed);
        }
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn rate(&self, now_s: u64) -> f32 {
        let window = 10u64;
        let total: u64 = (1..=window)
            .filter_map(|back| {
                let s = now_s.checked_sub(back)?;
                let i = (s % 16) as usize;
                (self.stamps[i].load(Ordering::Relaxed) == s)
                    .then(|| self.buckets[i].load(Ordering::Relaxed))
            })
            .sum();
        total as f32 / window as f32
    }
}

/// The query and ingest paths over the running actor system.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    manifest: Manifest,
    pool: PoolHandle,
    routing: watch::Receiver<Arc<RoutingTable>>,
    coordinator: watch::Receiver<Option<ActorRef<CoordinatorMessage>>>,
    root: ActorRef<RootMessage>,
    root_restarts: Arc<AtomicU64>,
    decode_slots: Semaphore,
    query_slots: Semaphore,
    started: Instant,
    queries: AtomicU64,
    rate: RateMeter,
    aggregators: watch::Receiver<Vec<ActorRef<AggregatorMessage>>>,
    query_log: std::sync::Mutex<QueryLog>,
    weights: std::sync::RwLock<RerankWeights>,
    /// Where the weights are kept across restarts (None: in memory only).
    weights_file: Option<std::path::PathBuf>,
    clicks_rejected: AtomicU64,
    /// Click batches sent to the aggregators and not yet applied.
    click_batches_queued: Arc<AtomicUsize>,
    /// Where the aggregators save their state (None: in memory only).
    click_dir: Option<std::path::PathBuf>,
    /// The aggregators' items, read for CTRs (one table per aggregator).
    click_tables: Vec<ClickTable>,
    /// Impressions not yet sent to the aggregators, and searches not yet in the query log.
    pending_impressions: std::sync::Mutex<PendingImpressions>,
    /// Click requests handed to the click thread and not yet checked.
    clicks_in_check: Arc<AtomicUsize>,
    /// Batches of impressions alone sent and not yet applied.
    impression_batches_queued: Arc<AtomicUsize>,
    /// Impressions dropped because the aggregators were too far behind.
    impressions_dropped: AtomicU64,
    /// The aggregators' thread (stops when the engine is dropped).
    click_runtime: ClickRuntime,
    /// The searches in flight, which the click work makes way for.
    search_gate: Arc<SearchGate>,
    failures: FailureLog,
    shard_meters: ShardMeters,
    stages: HistogramSet,
    /// The model's classifier head, when a preset uses the `logits` category branch.
    head: Option<Arc<ClassifierHead>>,
    /// The category codebook over that head, rebuilt after each fit of the centroids.
    codebook: Arc<std::sync::RwLock<Option<Arc<CategoryCodebook>>>>,
    /// Learned whitening: ingest pairs and the fitted transform.
    whitener: Arc<Whitener>,
}

/// Impressions kept in the engine until the next flush, one list per aggregator, and the
/// searches that showed them until the query log takes them in. A search takes only this
/// lock: the query log's is held by the click thread (lowest priority) while it checks a run
/// of clicks, and a search must never wait for that thread.
#[derive(Debug, Default)]
struct PendingImpressions {
    per: Vec<Vec<Impressions>>,
    searches: usize,
    queries: std::collections::VecDeque<(u64, QueryEntry)>,
}

impl Inner {
    /// The query log, with the searches that are waiting for it taken in (the log's lock,
    /// then the pending lock: the same order everywhere).
    fn query_log(&self) -> Result<std::sync::MutexGuard<'_, QueryLog>> {
        let mut log = self
            .query_log
            .lock()
            .map_err(|_| EngineError::Internal("query log poisoned".into()))?;
        self.take_queries(&mut log);
        Ok(log)
    }

    /// Moves the searches waiting in the pending list into `log`.
    fn take_queries(&self, log: &mut QueryLog) {
        let queries = self
            .pending_impressions
            .lock()
            .map(|mut p| std::mem::take(&mut p.queries))
            .unwrap_or_default();
        for (id, entry) in queries {
            log.push(id, entry, &self.config.clicks);
        }
    }

    /// Checks a batch of clicks against the query log (on the click thread) and hands the
    /// good ones to the aggregators, one message per aggregator.
    fn check_clicks(&self, mut batch: Vec<ClickRequest>) -> Result<ClicksReply> {
        let aggs = self.aggregators.borrow().clone();
        if aggs.is_empty() {
            return Err(EngineError::Unavailable("no click aggregator".into()));
        }
        let queued = &self.click_batches_queued;
        let mut work = empty_batches(aggs.len());
        // The impressions of the searches before these clicks go first, in the same message.
        for (w, impressions) in work.iter_mut().zip(self.take_impressions(aggs.len())) {
            w.impressions = impressions;
        }
        let mut reply = ClicksReply::default();
        // The items clicked before each click for its query (one buffer for the batch).
        let co_clicks = self.config.clicks.co_clicks_per_click;
        let mut before = Vec::with_capacity(co_clicks);
        for (r, run) in batch.chunks_mut(PREFETCH_RUN).enumerate() {
            // The log's lock is taken per run, not per batch: the impression flusher, which
            // takes the waiting searches in when the log is free, finds it free often. Before
            // each run, the searches in flight go first.
            self.search_gate.wait_quiet();
            let mut log = self.query_log()?;
            log.prefetch(run.iter().map(|c| c.query_id));
            for (j, req) in run.iter_mut().enumerate() {
                let i = r * PREFETCH_RUN + j;
                match check_click(&mut log, req, co_clicks, &mut before) {
                    Err(e) => {
                        self.clicks_rejected.fetch_add(1, Ordering::Relaxed);
                        reply
                            .rejected
                            .push((i as u32, ErrorReply::new(e.code(), e.to_string())));
                    }
                    Ok(None) => reply.repeated += 1,
                    Ok(Some(key)) => {
                        route_co_clicks(&mut work, key, &before);
                        work[aggregator_of(key, aggs.len())]
                            .clicks
                            .push((key, std::mem::take(&mut req.item_id)));
                        reply.accepted += 1;
                    }
                }
            }
        }
        let now = now_s();
        for (a, mut w) in aggs.iter().zip(work) {
            if w.clicks.is_empty() && w.co.is_empty() && w.impressions.is_empty() {
                continue;
            }
            w.now = now;
            // A failed send drops the batch, which takes it off the count.
            if let Err(e) = a.send_message(AggregatorMessage::Batch(w.counted(queued))) {
                tracing::warn!(error = %e, "a click aggregator is gone; its share of a batch is lost");
            }
        }
        Ok(reply)
    }

    /// Takes the pending impressions, one list per aggregator (empty lists when none).
    fn take_impressions(&self, aggregators: usize) -> Vec<Vec<Impressions>> {
        let mut per = self
            .pending_impressions
            .lock()
            .map(|mut p| {
                p.searches = 0;
                std::mem::take(&mut p.per)
            })
            .unwrap_or_default();
        per.resize_with(aggregators, Vec::new);
        per
    }

    /// Sends the pending impressions on, one batch per aggregator; drops (and counts) them
    /// while the aggregators are [`IMPRESSION_BATCHES_QUEUED`] batches behind.
    fn flush_impressions(&self) {
        let aggs = self.aggregators.borrow().clone();
        let per = self.take_impressions(aggs.len());
        let queued = &self.impression_batches_queued;
        for (a, impressions) in aggs.iter().zip(per) {
            if impressions.is_empty() {
                continue;
            }
            if queued.load(Ordering::Relaxed) >= IMPRESSION_BATCHES_QUEUED {
                let n: usize = impressions.iter().map(|i| i.mine.len()).sum();
                self.impressions_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            let batch = ClickBatch {
                impressions,
                clicks: Vec::new(),
                co: Vec::new(),
                now: now_s(),
                queued: None,
            };
            let _ = a.send_message(AggregatorMessage::Batch(batch.counted(queued)));
        }
    }
}

/// An item image's embedding, colour histogram and quality signals.
type ItemFeatures = (Vec<f32>, Vec<f32>, Vec<(String, f32)>);

/// Quality signals from an item's metadata: `seller_rating` (0–5) and `quality` (0–1).
fn metadata_quality(metadata: &[(String, String)]) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    for (k, v) in metadata {
        let Ok(x) = v.trim().parse::<f32>() else {
            continue;
        };
        if !x.is_finite() {
            continue;
        }
        match k.as_str() {
            "seller_rating" => out.push(("seller_rating".to_string(), (x / 5.0).clamp(0.0, 1.0))),
            "quality" => out.push(("quality".to_string(), x.clamp(0.0, 1.0))),
            _ => {}
        }
    }
    out
}

/// An image turned into model input.
struct Prepared {
    tensor: Vec<f32>,
    height: u32,
    width: u32,
}

impl Prepared {
    /// The model input of an image already at the size it is to run at.
    fn from_image(pre: &Preprocessor, img: &RgbImage) -> Result<Prepared> {
        let (width, height) = img.dimensions();
        let mut tensor = vec![0.0; 3 * width as usize * height as usize];
        pre.normalise_into(img, &mut tensor)?;
        Ok(Prepared {
            tensor,
            height,
            width,
        })
    }
}

impl Engine {
    /// Starts the supervision tree (model workers load the model; ONNX Runtime must already
    /// be initialised with [`vsa_models::runtime::init`]).
    pub async fn start(config: EngineConfig, manifest: Manifest) -> Result<Engine> {
        let channel = PoolChannel::new(config.pool.clone());
        let pool = channel.handle();
        let (routing_tx, routing_rx) = watch::channel(Arc::new(RoutingTable::default()));
        let (coord_tx, coord_rx) = watch::channel(None);
        let restarts = Arc::new(AtomicU64::new(0));
        let (agg_tx, agg_rx) = watch::channel(Vec::new());
        let failures = FailureLog::default();
        let click_dir = config.storage.dir.as_ref().map(|d| d.join("clicks"));
        let weights_file = click_dir.as_ref().map(|d| d.join("weights.json"));
        let weights = weights_file
            .as_deref()
            .map_or_else(RerankWeights::default, load_weights);
        let click_runtime = ClickRuntime::start()
            .map_err(|e| EngineError::Internal(format!("starting the click runtime: {e}")))?;
        let search_gate = Arc::new(SearchGate::new(Duration::from_micros(
            config.clicks.yield_to_searches_us,
        )));
        let count = config.clicks.aggregators.max(1);
        let click_tables: Vec<ClickTable> = (0..count).map(|_| ClickTable::default()).collect();
        let aggregators = (0..count)
            .map(|index| AggregatorArguments {
                index,
                count,
                config: config.clicks.clone(),
                dir: click_dir.clone(),
                runtime: Some(click_runtime.handle()),
                table: click_tables[index].clone(),
                gate: search_gate.clone(),
            })
            .collect();
        let args = RootArguments {
            pool: InferencePoolArguments {
                channel,
                manifest: manifest.clone(),
            },
            coordinator: CoordinatorArguments {
                config: config.index.clone(),
                routing: routing_tx,
                storage: config.storage.clone(),
                failures: failures.clone(),
                embedding_dim: Some(manifest.outputs.embedding_dim),
            },
            coordinator_ref: coord_tx,
            restarts: restarts.clone(),
            aggregators,
            aggregator_refs: agg_tx,
            failures: failures.clone(),
        };
        let (root, _) = Actor::spawn(None, Root, args)
            .await
            .map_err(|e| EngineError::Internal(format!("starting the actor system: {e}")))?;
        let decode = config.limits.decode_concurrency.max(1);
        let head = load_head(&config.quality, &manifest);
        let codebook = Arc::new(std::sync::RwLock::new(None));
        if let Some(h) = &head {
            tokio::spawn(keep_codebook(
                routing_rx.clone(),
                h.clone(),
                codebook.clone(),
                config.search.logit_scale,
                config.index.fit_sample,
            ));
        }
        let queries = match config.limits.max_queries_in_flight {
            0 => config.pool.workers.max(1),
            n => n,
        };
        let whitener = Arc::new(Whitener::new(
            config.quality.whitening.clone(),
            manifest.outputs.embedding_dim,
            config.storage.dir.clone(),
        ));
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                manifest,
                pool,
                routing: routing_rx,
                coordinator: coord_rx,
                root,
                root_restarts: restarts,
                decode_slots: Semaphore::new(decode),
                query_slots: Semaphore::new(queries),
                started: Instant::now(),
                queries: AtomicU64::new(0),
                rate: RateMeter::default(),
                aggregators: agg_rx,
                query_log: std::sync::Mutex::new(QueryLog::default()),
                clicks_in_check: Arc::new(AtomicUsize::new(0)),
                search_gate,
                weights: std::sync::RwLock::new(weights),
                weights_file,
                clicks_rejected: AtomicU64::new(0),
                click_batches_queued: Arc::new(AtomicUsize::new(0)),
                click_dir,
                click_tables,
                pending_impressions: std::sync::Mutex::new(PendingImpressions::default()),
                impression_batches_queued: Arc::new(AtomicUsize::new(0)),
                impressions_dropped: AtomicU64::new(0),
                click_runtime,
                failures,
                shard_meters: ShardMeters::default(),
                stages: HistogramSet::default(),
                head,
                codebook,
                whitener,
            }),
        };
        // Impressions reach the aggregators within IMPRESSION_FLUSH however few searches come.
        // The flusher runs on the engine's runtime, not the aggregators' lowest-priority
        // thread: it takes the lock that every search's impressions go through, and a search
        // must never wait for a preempted low-priority thread to let go of it.
        let inner = Arc::downgrade(&engine.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(IMPRESSION_FLUSH).await;
                match inner.upgrade() {
                    Some(inner) => {
                        inner.flush_impressions();
                        // Never waits: while the click thread holds the log, the searches
                        // stay pending until it (or the next tick) takes them in.
                        if let Ok(mut log) = inner.query_log.try_lock() {
                            inner.take_queries(&mut log);
                        }
                    }
                    None => break,
                }
            }
        });
        Ok(engine)
    }

    /// Stops every actor (model workers end when the last handle is dropped).
    pub fn shutdown(&self) {
        self.inner.root.stop(Some("shutdown".into()));
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn coordinator(&self) -> Result<ActorRef<CoordinatorMessage>> {
        self.inner
            .coordinator
            .borrow()
            .clone()
            .ok_or_else(|| EngineError::Unavailable("coordinator not running".into()))
    }

    fn decode_limits(&self) -> DecodeLimits {
        let l = &self.inner.config.limits;
        DecodeLimits {
            max_bytes: l.max_image_bytes,
            max_pixels: l.max_pixels,
            max_side: l.max_side,
        }
    }

    /// Decodes an image off the async executor (at most `decode_concurrency` at once).
    async fn decode(&self, bytes: Vec<u8>) -> Result<Arc<RgbImage>> {
        let _slot = self
            .inner
            .decode_slots
            .acquire()
            .await
            .map_err(|_| EngineError::Unavailable("shutting down".into()))?;
        let limits = self.decode_limits();
        tokio::task::spawn_blocking(move || -> Result<Arc<RgbImage>> {
            Ok(Arc::new(vsa_models::decode_rgb(&bytes, &limits)?))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("decode task: {e}")))?
    }

    /// Runs `make` with a fresh [`Preprocessor`] off the async executor.
    async fn preprocess(
        &self,
        make: impl FnOnce(&mut Preprocessor) -> Result<Vec<Prepared>> + Send + 'static,
    ) -> Result<Vec<Prepared>> {
        let input = self.inner.manifest.input.clone();
        tokio::task::spawn_blocking(move || make(&mut Preprocessor::new(input.mean, input.scale)))
            .await
            .map_err(|e| EngineError::Internal(format!("preprocess task: {e}")))?
    }

    /// Turns regions of `img` (each `None` = the whole image, or a box), optionally rotated
    /// first, into model inputs of `width × height`, off the async executor.
    async fn tensors(
        &self,
        img: Arc<RgbImage>,
        views: Vec<(Option<Rect>, f32)>,
        width: u32,
        height: u32,
    ) -> Result<Vec<Prepared>> {
        self.preprocess(move |pre| {
            views
                .into_iter()
                .map(|(rect, angle)| {
                    let resized = if angle == 0.0 {
                        pre.resize(&img, rect, width, height)?
                    } else {
                        let rotated = vsa_models::rotate_white(&img, angle);
                        pre.resize(&rotated, rect, width, height)?
                    };
                    Prepared::from_image(pre, &resized)
                })
                .collect()
        })
        .await
    }

    /// The whole of `img` at `width` × `height`, once per Gaussian blur σ in `sigmas`.
    async fn blurred(
        &self,
        img: Arc<RgbImage>,
        sigmas: Vec<f32>,
        width: u32,
        height: u32,
    ) -> Result<Vec<Prepared>> {
        self.preprocess(move |pre| {
            let resized = pre.resize(&img, None, width, height)?;
            sigmas
                .into_iter()
                .map(|sigma| {
                    let blurred = vsa_models::image::imageops::blur(&resized, sigma);
                    Prepared::from_image(pre, &blurred)
                })
                .collect()
        })
        .await
    }

    /// `n` synthetic real-shot views of a catalogue image at `size` × `size`
    /// ([`vsa_models::query_view`]), seeded by the image's pixels so a re-ingest repeats them.
    async fn synthetic_views(
        &self,
        img: Arc<RgbImage>,
        n: usize,
        size: u32,
    ) -> Result<Vec<Prepared>> {
        self.preprocess(move |pre| {
            // FNV-1a: the same pixels give the same views with any build.
            let seed = img.as_raw().iter().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
            });
            // A view only teaches the whitening: an image it cannot be made from (tiny)
            // is still ingested, with fewer views.
            (0..n as u64)
                .filter_map(
                    |i| match vsa_models::query_view(&img, size, seed.wrapping_add(i)) {
                        Ok(view) => Some(Prepared::from_image(pre, &view)),
                        Err(e) => {
                            tracing::debug!(error = %e, "no whitening view for this item");
                            None
                        }
                    },
                )
                .collect()
        })
        .await
    }

    /// Runs prepared inputs through the pool and returns their L2-normalised embeddings.
    async fn embed_prepared(&self, prepared: Vec<Prepared>) -> Result<Vec<Vec<f32>>> {
        let jobs = prepared
            .into_iter()
            .map(|p| (p.height, p.width, p.tensor))
            .collect();
        let outs = self.inner.pool.infer_many(jobs).await?;
        Ok(outs
            .into_iter()
            .map(|o| {
                let mut e = o.embedding;
                vsa_models::l2_normalise(&mut e);
                e
            })
            .collect())
    }

    /// A catalogue item's index vector: the normalised sum of its embeddings at the configured
    /// rotations (white fill), so a rotated real-shot photo still lands near it.
    async fn embed_item(&self, bytes: Vec<u8>) -> Result<ItemFeatures> {
        let img = self.decode(bytes).await?;
        let colour = vsa_models::colour_histogram(&img, None);
        let quality = vsa_models::quality_signals(&img);
        let input = &self.inner.manifest.input;
        let views = self
            .inner
            .config
            .quality
            .ingest_rotations
            .iter()
            .map(|a| (None, *a))
            .collect();
        let blurs = self.inner.config.quality.ingest_blurs.clone();
        let mut prepared = self
            .tensors(img.clone(), views, input.width, input.height)
            .await?;
        if !blurs.is_empty() {
            prepared.extend(
                self.blurred(img.clone(), blurs, input.width, input.height)
                    .await?,
            );
        }
        let summed = prepared.len();
        let whitener = self.inner.whitener.clone();
        if whitener.views() > 0 {
            prepared.extend(
                self.synthetic_views(img, whitener.views(), input.width)
                    .await?,
            );
        }
        let mut sum = vec![0.0f32; self.inner.manifest.outputs.embedding_dim];
        let mut embeddings = self.embed_prepared(prepared).await?;
        let views = embeddings.split_off(summed.min(embeddings.len()));
        for e in embeddings {
            for (s, x) in sum.iter_mut().zip(&e) {
                *s += x;
            }
        }
        vsa_models::l2_normalise(&mut sum);
        if !views.is_empty() && whitener.add(&views, &sum) {
            tokio::task::spawn_blocking(move || whitener.fit());
        }
        Ok((sum, colour, quality))
    }

    /// The preset a request asks for (or the configured default).
    fn preset(&self, name: Option<&str>) -> Result<&Preset> {
        let q = &self.inner.config.quality;
        let name = name.unwrap_or(&q.default_preset);
        q.presets.get(name).ok_or_else(|| {
            EngineError::BadRequest(format!(
                "unknown preset {name:?}; known: {}",
                q.presets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// A query photo → 1–8 query vectors, the region searched (the user's box, or the localised
    /// object: crops + the feature map averaged in the first box, or else the whole photo) and
    /// that region's colour histogram.
    async fn query_vectors(
        &self,
        bytes: Vec<u8>,
        preset: &Preset,
        user_box: Option<BoxXywh>,
        routing: &RoutingTable,
        timings: &mut Vec<(String, u64)>,
    ) -> Result<(Vec<Vec<f32>>, Option<BoxXywh>, Vec<f32>)> {
        let input = &self.inner.manifest.input;
        let (size_w, size_h) = (input.width, input.height);
        let t = Instant::now();
        let img = self.decode(bytes).await?;
        timings.push(("decode".into(), micros(t)));
        if let Some(b) = user_box {
            let rect = Rect {
                x: b.x as f32,
                y: b.y as f32,
                w: b.w as f32,
                h: b.h as f32,
            }
            .clamp_to(img.width(), img.height())
            .ok_or_else(|| {
                EngineError::BadRequest(format!(
                    "box {},{},{},{} is outside the {}x{} image",
                    b.x,
                    b.y,
                    b.w,
                    b.h,
                    img.width(),
                    img.height()
                ))
            })?;
            let t = Instant::now();
            let colour = vsa_models::colour_histogram(&img, Some(rect));
            let prepared = self
                .tensors(img, vec![(Some(rect), 0.0)], size_w, size_h)
                .await?;
            let vectors = self.embed_prepared(prepared).await?;
            timings.push(("embed".into(), micros(t)));
            return Ok((vectors, Some(to_box(rect)), colour));
        }
        let prototypes = routing.prototypes.clone().filter(|_| preset.localise);
        let Some(prototypes) = prototypes else {
            let t = Instant::now();
            let colour = vsa_models::colour_histogram(&img, None);
            let prepared = self.tensors(img, vec![(None, 0.0)], size_w, size_h).await?;
            let vectors = self.embed_prepared(prepared).await?;
            timings.push(("embed".into(), micros(t)));
            return Ok((vectors, None, colour));
        };
        let t = Instant::now();
        let mut map_pass = self
            .tensors(
                img.clone(),
                vec![(None, 0.0)],
                preset.map_width,
                preset.map_height,
            )
            .await?;
        let p = map_pass
            .pop()
            .ok_or_else(|| EngineError::Internal("no map input".into()))?;
        let out = self.inner.pool.infer(p.height, p.width, p.tensor).await?;
        timings.push(("map".into(), micros(t)));
        let t = Instant::now();
        let fm = out.feature_map;
        let (iw, ih) = img.dimensions();
        let wanted = preset.crops.max(1);
        let shrink = preset.shrink;
        let soft = preset.soft_map_vector;
        let (boxes, soft) = tokio::task::spawn_blocking(move || {
            let boxes = vsa_models::localise(&fm, &prototypes, iw, ih, wanted, shrink)
                .into_iter()
                .map(|(cb, r)| (fm.mean_over(cb.y0, cb.y1, cb.x0, cb.x1), r))
                .collect::<Vec<_>>();
            let soft = soft.then(|| {
                vsa_models::roi::soft_pool(&fm, &vsa_models::roi::similarity_map(&fm, &prototypes))
            });
            (boxes, soft)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("localise task: {e}")))?;
        timings.push(("localise".into(), micros(t)));
        let mut vectors = Vec::new();
        if preset.whole_vector {
            let mut e = out.embedding;
            vsa_models::l2_normalise(&mut e);
            vectors.push(e);
        }
        let Some((first_map, first_rect)) = boxes.first().cloned() else {
            // Nothing stood out: the whole photo.
            let colour = vsa_models::colour_histogram(&img, None);
            let prepared = self.tensors(img, vec![(None, 0.0)], size_w, size_h).await?;
            vectors.extend(self.embed_prepared(prepared).await?);
            return Ok((vectors, None, colour));
        };
        let t = Instant::now();
        let colour = vsa_models::colour_histogram(&img, Some(first_rect));
        let loose = (preset.loose_crop > 0.0)
            .then(|| widened(first_rect, preset.loose_crop, iw, ih))
            .flatten();
        let views: Vec<(Option<Rect>, f32)> = boxes
            .iter()
            .take(preset.crops)
            .map(|(_, r)| (Some(*r), 0.0))
            .chain(loose.map(|r| (Some(r), 0.0)))
            .chain(preset.whole_crop.then_some((None, 0.0)))
            .collect();
        if !views.is_empty() {
            let prepared = self.tensors(img, views, size_w, size_h).await?;
            vectors.extend(self.embed_prepared(prepared).await?);
        }
        if preset.map_vector || vectors.is_empty() {
            let mut m = first_map;
            vsa_models::l2_normalise(&mut m);
            vectors.push(m);
        }
        if preset.all_map_vectors {
            for (mut m, _) in boxes.into_iter().skip(1) {
                vsa_models::l2_normalise(&mut m);
                vectors.push(m);
            }
        }
        if let Some(mut m) = soft {
            vsa_models::l2_normalise(&mut m);
            vectors.push(m);
        }
        vectors.truncate(8);
        timings.push(("embed".into(), micros(t)));
        Ok((vectors, Some(to_box(first_rect)), colour))
    }

    fn check_embedding(&self, v: &[f32]) -> Result<Vec<f32>> {
        let dim = self.inner.manifest.outputs.embedding_dim;
        if v.len() != dim {
            return Err(EngineError::BadRequest(format!(
                "embedding has {} dimensions, the model's have {dim}",
                v.len()
            )));
        }
        if !v.iter().all(|x| x.is_finite()) || v.iter().all(|x| *x == 0.0) {
            return Err(EngineError::BadRequest(
                "embedding must be finite and non-zero".into(),
            ));
        }
        let mut e = v.to_vec();
        vsa_models::l2_normalise(&mut e);
        Ok(e)
    }

    /// Runs a search.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        // In flight until it returns: the click work waits for it (`clicks.yield_to_searches_us`;
        // while that is 0, the default, a search touches no shared counter for it).
        let gate = &self.inner.search_gate;
        let _in_flight = gate.is_on().then(|| gate.enter());
        let limits = &self.inner.config.limits;
        if req.k == 0 || req.k > limits.max_k {
            return Err(EngineError::BadRequest(format!(
                "k must be in 1..={}, got {}",
                limits.max_k, req.k
            )));
        }
        let filter = filter_from(&req.filter)?;
        let preset = self.preset(req.options.preset.as_deref())?;
        let routing = self.inner.routing.borrow().clone();
        let mut timings = Vec::new();
        let mut exclude = None;
        let mut roi = None;
        let mut colour = None;
        // Admission control for photo queries: a free slot, and room in the model's queue.
        let _slot = match req.query {
            QueryInput::Image(_) => {
                let wait = Duration::from_millis(limits.admission_wait_ms);
                let slot = match self.inner.query_slots.try_acquire() {
                    Ok(s) => Some(s),
                    Err(_) => tokio::time::timeout(wait, self.inner.query_slots.acquire())
                        .await
                        .ok()
                        .and_then(|r| r.ok()),
                };
                if slot.is_none() {
                    self.inner.pool.count_busy();
                    return Err(EngineError::Busy("too many searches in flight"));
                }
                slot
            }
            _ => None,
        };
        if matches!(req.query, QueryInput::Image(_)) {
            // Every image this query will embed: the whole-photo pass, then the crops.
            let images = if preset.localise && req.options.roi.is_none() {
                1 + preset.crops
                    + usize::from(preset.whole_crop)
                    + usize::from(preset.loose_crop > 0.0)
            } else {
                1 + usize::from(preset.whole_crop)
            };
            self.inner
                .pool
                .admit(images.min(self.inner.config.pool.queue_capacity))?;
        }
        let vectors = match req.query {
            QueryInput::Image(bytes) => {
                let (v, r, c) = self
                    .query_vectors(bytes, preset, req.options.roi, &routing, &mut timings)
                    .await?;
                roi = r;
                colour = Some((c, preset.colour_weight)).filter(|(_, w)| *w != 0.0);
                v
            }
            QueryInput::Embedding(v) => vec![self.check_embedding(&v)?],
            QueryInput::ItemId(id) => {
                let e = self.item_embedding(&id).await?;
                exclude = Some(id);
                vec![e]
            }
        };
        let search_cfg = &self.inner.config.search;
        // The model branch of category prediction runs before the search, so a scoped
        // search can use it to pick partitions.
        let model_branch = match (&req.category, preset.category_model, &routing.centroids) {
            (Some(_), _, _) => Vec::new(),
            (None, CategoryModel::Centroid, Some(c)) => {
                centroid_distribution(&vectors, c, search_cfg.centroid_temperature)
            }
            (None, CategoryModel::Centroid, None) => Vec::new(),
            (None, CategoryModel::Logits, _) => self.logit_distribution(&vectors).await,
        };
        let top_n = match req.options.scope {
            Some(Scope::All) => 0,
            Some(Scope::TopCategories(n)) => n as usize,
            None => preset.top_categories as usize,
        };
        let slots: Vec<_> = match &req.category {
            Some(c) => routing
                .categories
                .get(c)
                .ok_or_else(|| EngineError::UnknownCategory(c.clone()))?
                .iter()
                .collect(),
            None if top_n > 0 && !model_branch.is_empty() => model_branch
                .iter()
                .take(top_n)
                .filter_map(|(c, _)| routing.categories.get(c))
                .flatten()
                .collect(),
            None => routing.slots().collect(),
        };
        let encoded = encode_query(&routing, &vectors);
        let k = req.k as usize;
        let weights = self
            .inner
            .weights
            .read()
            .map(|w| w.clone())
            .unwrap_or_default();
        // Quality and CTR can lift items from below the top k: fetch a deeper list to rerank.
        let reranks = weights.quality != 0.0 || weights.ctr != 0.0;
        let depth = if reranks {
            k.max(self.inner.config.clicks.rerank_depth)
        } else {
            k
        };
        let want = depth.max(search_cfg.vote_k);
        let clicks_cfg = &self.inner.config.clicks;
        let anchor = (clicks_cfg.retain_queries > 0)
            .then(|| vectors.first().cloned())
            .flatten();
        let mut query = PartitionQuery {
            vectors,
            encoded,
            k: want,
            candidates: req
                .options
                .candidates
                .map_or(self.inner.config.index.candidates, |c| c as usize)
                .clamp(1, 100_000),
            filter,
            exclude,
            colour,
            second_weight: preset.second_weight,
            whitened: None,
        };
        if preset.whitened > 0.0
            && let Some(w) = self.inner.whitener.current()
        {
            let t: Vec<Vec<f32>> = query
                .vectors
                .iter()
                .filter_map(|v| w.transform_query(v))
                .collect();
            if t.len() == query.vectors.len() {
                query.whitened = Some(WhitenedQuery {
                    whitening: w,
                    vectors: t,
                    weight: preset.whitened,
                });
            }
        }
        // A shard being rebuilt from disk is left out: the answer says `degraded`.
        let recovering = slots.iter().filter(|s| s.recovering).count();
        let slots: Vec<_> = slots.into_iter().filter(|s| !s.recovering).collect();
        let t = Instant::now();
        let (mut hits, failed) = self.fan_out(&slots, Arc::new(query.clone())).await;
        let mut degraded = recovering > 0 || failed;
        if preset.query_expansion > 0
            && query.vectors.len() < 8
            && let Some(v) = self
                .expanded_vector(
                    &query.vectors,
                    &hits,
                    preset.query_expansion,
                    preset.qe_alpha,
                )
                .await
        {
            query.vectors.push(v);
            query.encoded = encode_query(&routing, &query.vectors);
            let (again, failed) = self.fan_out(&slots, Arc::new(query)).await;
            hits = again;
            degraded |= failed;
        }
        timings.push(("search".into(), micros(t)));
        let category = if req.category.is_none() {
            let knn = vote_distribution(&hits, search_cfg.vote_k, search_cfg.vote_temperature);
            let knn_weight = if preset.confidence_fusion {
                knn.first().map_or(1.0, |(_, p)| *p)
            } else {
                preset.knn_weight
            };
            let fused = fuse_distributions(&knn, &model_branch, knn_weight);
            if preset.category_weight != 0.0 {
                for h in &mut hits {
                    let p = fused
                        .iter()
                        .find(|(c, _)| *c == h.category)
                        .map_or(0.0, |f| f.1);
                    // Part of the visual score the rerank weighs (and `--explain` shows).
                    h.visual += preset.category_weight * p;
                    h.score += preset.category_weight * p;
                }
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
            }
            predict_category(fused, &knn, &model_branch, preset.hierarchical_category)
        } else {
            None
        };
        // Rerank: the documented combination of visual, colour, quality and CTR.
        hits.truncate(depth);
        // An explained answer shows every component, the CTR too, so an operator can see what
        // a CTR weight would do before setting it.
        let ctrs = if weights.ctr != 0.0 || req.options.explain {
            let t = Instant::now();
            let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
            let c = self.ctrs(&ids);
            timings.push(("ctr".into(), micros(t)));
            c
        } else {
            vec![0.0; hits.len()]
        };
        let mut ranked: Vec<(f32, f32, PartitionHit)> = hits
            .into_iter()
            .zip(ctrs)
            .map(|(h, ctr)| (weights.score(h.visual, h.colour, h.quality, ctr), ctr, h))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        ranked.truncate(k);
        let explain = req.options.explain;
        let hits: Vec<SearchHit> = ranked
            .into_iter()
            .map(|(score, ctr, h)| SearchHit {
                components: if explain {
                    let mut c = vec![
                        ("visual".to_string(), h.visual),
                        ("colour".to_string(), h.colour),
                        ("quality".to_string(), h.quality),
                        ("ctr".to_string(), ctr),
                    ];
                    if let Some(d) = h.hamming {
                        c.push(("hamming".to_string(), d as f32));
                    }
                    c
                } else {
                    Vec::new()
                },
                id: h.id,
                score,
                category: h.category,
            })
            .collect();
        timings.push(("total".into(), micros(started)));
        for (stage, us) in &timings {
            self.inner.stages.get(stage).record_us(*us);
        }
        let query_id = self.inner.queries.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.rate.tick(self.inner.started.elapsed().as_secs());
        self.log_impressions(query_id, &hits, anchor);
        Ok(SearchResponse {
            query_id,
            hits,
            category,
            roi,
            timings,
            degraded,
            epoch: routing.epoch,
            weights_version: weights.version,
        })
    }

    /// Sends one query to every slot and merges the answers, best first; `true` when a
    /// partition failed to answer.
    async fn fan_out(
        &self,
        slots: &[&PartitionSlot],
        query: Arc<PartitionQuery>,
    ) -> (Vec<PartitionHit>, bool) {
        let timeout = self.inner.config.index.partition_timeout_ms;
        let answers = join_all(slots.iter().map(|slot| {
            let q = query.clone();
            let meter = self.inner.shard_meters.get(&slot.name);
            async move {
                let _in_flight = InFlight::start(meter);
                ractor::call_t!(slot.actor, PartitionMessage::Search, timeout, q)
            }
        }))
        .await;
        let mut failed = false;
        let mut hits: Vec<PartitionHit> = Vec::new();
        for (slot, a) in slots.iter().zip(answers) {
            match a {
                Ok(h) => hits.extend(h),
                Err(e) => {
                    failed = true;
                    tracing::warn!(partition = %slot.name, error = %e, "partition did not answer a search");
                }
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        (hits, failed)
    }

    /// α-query expansion: the query vector closest to the top hit plus the top `n` hits'
    /// stored vectors weighted by `max(s, 0)^alpha`, normalised (`None` without hits).
    async fn expanded_vector(
        &self,
        vectors: &[Vec<f32>],
        hits: &[PartitionHit],
        n: usize,
        alpha: f32,
    ) -> Option<Vec<f32>> {
        let top = hits.iter().take(n).collect::<Vec<_>>();
        let stored = join_all(top.iter().map(|h| self.item_embedding(&h.id))).await;
        let neighbours: Vec<(f32, Vec<f32>)> = top
            .iter()
            .zip(stored)
            .filter_map(|(h, e)| e.ok().map(|e| (h.visual, e)))
            .collect();
        expand_query(vectors, &neighbours, alpha)
    }

    /// The `logits` model branch: the mean class probabilities of the query vectors through
    /// the category codebook (empty until the codebook is built).
    async fn logit_distribution(&self, vectors: &[Vec<f32>]) -> Vec<(String, f32)> {
        let Some(head) = self.inner.head.clone() else {
            return Vec::new();
        };
        let book = self.inner.codebook.read().ok().and_then(|b| b.clone());
        let Some(book) = book else {
            return Vec::new();
        };
        let scale = self.inner.config.search.logit_scale;
        let vectors = vectors.to_vec();
        tokio::task::spawn_blocking(move || {
            book.distribution(&mean_probabilities(&head, &vectors, scale))
        })
        .await
        .unwrap_or_default()
    }

    /// Remembers what a search showed and counts the impressions: both wait in the pending
    /// list (one short lock), for the query log and the aggregators to take them.
    fn log_impressions(&self, query_id: u64, hits: &[SearchHit], anchor: Option<Vec<f32>>) {
        if hits.is_empty() {
            return;
        }
        let now = now_s();
        let entry = QueryEntry::new(now, hits.iter().map(|h| h.id.clone()).collect(), anchor);
        let aggs = self.inner.aggregators.borrow().clone();
        let mut per: Vec<Vec<(u32, u64)>> = vec![Vec::new(); aggs.len()];
        for (pos, key) in entry.keys.iter().enumerate() {
            per[aggregator_of(*key, aggs.len())].push((pos as u32, *key));
        }
        let shown = entry.shown.clone();
        // Kept here and sent on in batches: a search wakes no aggregator.
        let full = {
            let Ok(mut pending) = self.inner.pending_impressions.lock() else {
                return;
            };
            // Bounded by the log's own length: older searches would leave the log anyway.
            if pending.queries.len() >= self.inner.config.clicks.query_log.max(1) {
                pending.queries.pop_front();
            }
            pending.queries.push_back((query_id, entry));
            if aggs.is_empty() {
                return;
            }
            pending.per.resize_with(aggs.len(), Vec::new);
            for (slot, mine) in pending.per.iter_mut().zip(per) {
                if !mine.is_empty() {
                    slot.push(Impressions {
                        shown: shown.clone(),
                        mine,
                        now,
                    });
                }
            }
            pending.searches += 1;
            pending.searches >= IMPRESSIONS_PENDING
        };
        if full {
            self.inner.flush_impressions();
        }
    }

    /// Smoothed CTRs of items (the prior for items without history), read from the
    /// aggregators' tables: no message, so a CTR-weighted search never waits for the
    /// aggregators' low-priority thread (it sees what they have applied so far).
    fn ctrs(&self, ids: &[String]) -> Vec<f32> {
        let cfg = &self.inner.config.clicks;
        let prior = crate::clicks::smoothed(0.0, 0.0, cfg);
        let tables = &self.inner.click_tables;
        let mut out = vec![prior; ids.len()];
        if tables.is_empty() {
            return out;
        }
        let now = now_s();
        let keys: Vec<u64> = ids.iter().map(|id| item_key(id)).collect();
        for (a, table) in tables.iter().enumerate() {
            let items = crate::clicks::read_table(table);
            for (slot, key) in out.iter_mut().zip(&keys) {
                if aggregator_of(*key, tables.len()) == a
                    && let Some(e) = items.get(key)
                {
                    *slot = e.ctr(now, cfg);
                }
            }
        }
        out
    }

    /// A click on a result: checked against the query log (it must have been shown there, at
    /// that position), then counted for the item and as a co-click with the items clicked
    /// before for the same query. A rejected click is counted.
    pub async fn click(&self, req: ClickRequest) -> Result<ClickReply> {
        let (req, before) = self
            .on_click_thread(move |inner| {
                let mut before = Vec::new();
                let checked = inner.query_log().and_then(|mut log| {
                    let co_clicks = inner.config.clicks.co_clicks_per_click;
                    check_click(&mut log, &req, co_clicks, &mut before).inspect_err(|_| {
                        inner.clicks_rejected.fetch_add(1, Ordering::Relaxed);
                    })
                });
                (req, checked.map(|key| key.map(|key| (key, before))))
            })
            .await?;
        let before = before?;
        let aggs = self.inner.aggregators.borrow().clone();
        if aggs.is_empty() {
            return Err(EngineError::Unavailable("no click aggregator".into()));
        }
        self.inner.flush_impressions(); // ahead of the click, in the same mailboxes
        let now = now_s();
        let owner_of = |key| &aggs[aggregator_of(key, aggs.len())];
        let ctr = match before {
            Some((key, before)) => {
                // The click is a call, for the CTR the reply carries; its co-clicks follow it
                // as a batch would carry them (the owner applies them after the click).
                let answer = ractor::call_t!(
                    owner_of(key),
                    AggregatorMessage::Click,
                    2000,
                    key,
                    req.item_id.clone(),
                    now
                )?;
                let mut work = empty_batches(aggs.len());
                route_co_clicks(&mut work, key, &before);
                for (a, mut w) in aggs.iter().zip(work) {
                    if !w.co.is_empty() {
                        w.now = now;
                        let _ = a.send_message(AggregatorMessage::Batch(w));
                    }
                }
                answer
            }
            // A repeat: the CTR as searches read it.
            None => self
                .ctrs(std::slice::from_ref(&req.item_id))
                .first()
                .copied()
                .unwrap_or(0.0),
        };
        Ok(ClickReply {
            query_id: req.query_id,
            item_id: req.item_id,
            ctr,
        })
    }

    /// A batch of clicks ([`Request::Clicks`](vsa_protocol::Request::Clicks)): each checked
    /// as [`Engine::click`] checks one, the good ones handed to the aggregators in one message
    /// per aggregator (the clicks and both directions of every co-click), without waiting for
    /// them. `Busy` while the aggregators are more than [`CLICK_BATCHES_QUEUED`] batches behind.
    /// An oversized batch is refused here, before the Busy check, so it is `bad_request`
    /// however far behind the aggregators are.
    pub async fn clicks(&self, batch: Vec<ClickRequest>) -> Result<ClicksReply> {
        let batch = within_click_batch_limit(batch)?;
        self.clicks_with(move || Ok(batch)).await
    }

    /// [`Engine::clicks`] for the body of a [`Request::Clicks`] frame, decoded on the click
    /// thread: the item ids it allocates (one per click) are then allocated and freed on
    /// that thread, where the aggregators keep or drop them, instead of being allocated on a
    /// thread that serves searches and freed on another (with glibc, a free into another
    /// thread's arena takes that arena's lock). An undecodable body is
    /// [`EngineError::Undecodable`].
    pub async fn clicks_encoded(&self, body: Vec<u8>) -> Result<ClicksReply> {
        self.clicks_with(
            move || match vsa_protocol::frame::decode_body::<Request>(&body) {
                Ok(Request::Clicks(batch)) => within_click_batch_limit(batch),
                Ok(other) => Err(EngineError::BadRequest(format!(
                    "a {} request where clicks were expected",
                    other.kind()
                ))),
                Err(e) => Err(EngineError::Undecodable(e)),
            },
        )
        .await
    }

    /// Checks the clicks that `batch` yields (within [`MAX_CLICK_BATCH`]: the callers see to
    /// it) on the click thread; Busy while the aggregators or the checks are
    /// [`CLICK_BATCHES_QUEUED`] batches behind.
    async fn clicks_with(
        &self,
        batch: impl FnOnce() -> Result<Vec<ClickRequest>> + Send + 'static,
    ) -> Result<ClicksReply> {
        let queued = &self.inner.click_batches_queued;
        if queued.load(Ordering::Relaxed) >= CLICK_BATCHES_QUEUED
            || self.inner.clicks_in_check.load(Ordering::Relaxed) >= CLICK_BATCHES_QUEUED
        {
            return Err(EngineError::Busy(
                "the click aggregators are behind; retry shortly",
            ));
        }
        let in_check = Counted::on(&self.inner.clicks_in_check);
        self.on_click_thread(move |inner| {
            let _in_check = in_check;
            inner.check_clicks(batch()?)
        })
        .await?
    }

    /// Runs `f` on the click thread (the aggregators' lowest-priority runtime): the checks
    /// against the query log hold its lock there, never on the threads that run searches,
    /// so a search neither waits for them nor shares its CPU with them.
    async fn on_click_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> R + Send + 'static,
    ) -> Result<R> {
        let inner = self.inner.clone();
        self.inner
            .click_runtime
            .handle()
            .spawn(async move { f(&inner) })
            .await
            .map_err(|e| EngineError::Internal(format!("checking clicks failed: {e}")))
    }

    /// Replaces reranking weights (`(component, weight)`; empty: just read them).
    pub fn set_weights(&self, changes: &[(String, f32)]) -> Result<RerankWeights> {
        let mut w = self
            .inner
            .weights
            .write()
            .map_err(|_| EngineError::Internal("weights lock poisoned".into()))?;
        let next = w.apply(changes).map_err(EngineError::BadRequest)?;
        if changes.is_empty() {
            return Ok(next);
        }
        // Kept before they take effect, so a version a response carried is never reused
        // after a restart.
        if let Some(file) = &self.inner.weights_file {
            let bytes = serde_json::to_vec_pretty(&next)
                .map_err(|e| EngineError::Internal(format!("weights: {e}")))?;
            file.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .map_err(|e| EngineError::Internal(format!("{}: {e}", file.display())))
                .and_then(|()| {
                    crate::durability::write_atomic(file, &bytes)
                        .map_err(|e| EngineError::Internal(e.to_string()))
                })?;
        }
        *w = next.clone();
        Ok(next)
    }

    /// Click totals, rejected clicks, top items by CTR, memory: JSON.
    pub async fn click_stats(&self, top: usize) -> Result<serde_json::Value> {
        self.inner.flush_impressions();
        let aggs = self.inner.aggregators.borrow().clone();
        let now = now_s();
        let mut items = 0u64;
        let mut memory = 0u64;
        let mut clicks = 0u64;
        let mut impressions = 0u64;
        let mut best = Vec::new();
        for a in &aggs {
            let s = ractor::call_t!(a, AggregatorMessage::Stats, 2000)?;
            items += s.items;
            memory += s.memory_bytes;
            clicks += s.clicks;
            impressions += s.impressions;
            best.extend(ractor::call_t!(a, AggregatorMessage::Top, 2000, top, now)?);
        }
        best.sort_by(|a, b| b.ctr.total_cmp(&a.ctr).then_with(|| a.id.cmp(&b.id)));
        best.truncate(top);
        let (logged, retained) = self
            .inner
            .query_log()
            .map(|l| (l.len(), l.retained()))
            .unwrap_or((0, 0));
        let weights = self.set_weights(&[])?;
        let (yielded, gave_up) = self.inner.search_gate.waits();
        Ok(serde_json::json!({
            "clicks": clicks,
            "impressions": impressions,
            "rejected": self.inner.clicks_rejected.load(Ordering::Relaxed),
            "impressions_dropped": self.inner.impressions_dropped.load(Ordering::Relaxed),
            "items_tracked": items,
            "memory_bytes": memory,
            "bytes_per_item": memory.checked_div(items).unwrap_or(0),
            "queries_logged": logged,
            "queries_retained": retained,
            // Runs of click work that waited for searches in flight, and those of them that
            // waited the longest (`clicks.yield_to_searches_us`) and went on beside them.
            "yielded_to_searches": yielded,
            "yield_gave_up": gave_up,
            "weights": weights,
            "top": best,
        }))
    }

    /// A page of training data: triplets from retained, clicked queries (anchor = the query
    /// embedding, positive = a clicked hit, negative = an unclicked hit shown above it) and, on
    /// the first page, the virtual ids (co-click clusters).
    pub async fn export_clicks(&self, offset: u64, limit: usize) -> Result<serde_json::Value> {
        let (page, next) = self
            .inner
            .query_log()
            .map(|l| l.clicked_page(offset, limit.clamp(1, 1000)))?;
        let mut triplets = Vec::new();
        for (qid, entry) in &page {
            for (positive, negative) in crate::clicks::triplets(entry) {
                triplets.push(serde_json::json!({
                    "query_id": qid,
                    "anchor": entry.anchor,
                    "positive": positive,
                    "negative": negative,
                }));
            }
        }
        let virtual_ids = if offset == 0 {
            let aggs = self.inner.aggregators.borrow().clone();
            let min = self.inner.config.clicks.virtual_id_min_weight;
            let now = now_s();
            let mut keyed = Vec::new();
            for a in &aggs {
                keyed.extend(ractor::call_t!(
                    a,
                    AggregatorMessage::Edges,
                    5000,
                    min,
                    now
                )?);
            }
            // Edges name their far end by key; co-clicks are filed both ways, so the far end
            // is the near end of some other edge (an end with no edge of its own left, its
            // list cut at the cap or the item forgotten, goes unnamed and its edge is left out).
            let names: std::collections::HashMap<u64, String> = keyed
                .iter()
                .map(|(id, _, _)| (item_key(id), id.clone()))
                .collect();
            let edges: Vec<(String, String, f32)> = keyed
                .into_iter()
                .filter_map(|(id, other, w)| names.get(&other).map(|o| (id, o.clone(), w)))
                .collect();
            crate::clicks::components(&edges)
                .into_iter()
                .enumerate()
                .map(|(i, items)| serde_json::json!({"virtual_id": i, "items": items}))
                .collect()
        } else {
            Vec::new()
        };
        Ok(serde_json::json!({
            "triplets": triplets,
            "virtual_ids": virtual_ids,
            "next": next,
        }))
    }

    async fn item_embedding(&self, id: &str) -> Result<Vec<f32>> {
        let coordinator = self.coordinator()?;
        let slot = ractor::call_t!(
            coordinator,
            CoordinatorMessage::Locate,
            2000,
            id.to_string()
        )?
        .ok_or_else(|| EngineError::UnknownItem(id.to_string()))?;
        ractor::call_t!(
            slot.actor,
            PartitionMessage::GetEmbedding,
            2000,
            id.to_string()
        )?
        .ok_or_else(|| EngineError::UnknownItem(id.to_string()))
    }

    fn check_item(&self, req: &UpsertRequest) -> Result<()> {
        let l = &self.inner.config.limits;
        let bad = |m: String| Err(EngineError::BadRequest(m));
        if req.id.is_empty() || req.id.len() > l.max_id_len || req.id.chars().any(char::is_control)
        {
            return bad(format!(
                "item id must be 1..={} printable bytes",
                l.max_id_len
            ));
        }
        if req.category.is_empty()
            || req.category.len() > 256
            || req.category.chars().any(char::is_control)
        {
            return bad("category must be 1..=256 printable bytes".into());
        }
        if req.attributes.len() > l.max_attributes {
            return bad(format!("at most {} attributes", l.max_attributes));
        }
        if req
            .attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.contains('=') || k.len() > 128 || v.len() > 256)
        {
            return bad(
                "attribute keys must be 1..=128 bytes without '=', values ≤ 256 bytes".into(),
            );
        }
        Ok(())
    }

    /// Inserts or replaces an item.
    pub async fn upsert(&self, req: UpsertRequest) -> Result<UpsertReply> {
        self.check_item(&req)?;
        let (embedding, colour, mut quality) = match req.content {
            ItemContent::Image(bytes) => self.embed_item(bytes).await?,
            ItemContent::Embedding(v) => (self.check_embedding(&v)?, Vec::new(), Vec::new()),
        };
        quality.extend(metadata_quality(&req.metadata));
        let mut attributes = req.attributes;
        // The derived colour attribute, unless the manifest gave one.
        if !attributes.iter().any(|(k, _)| k == "color")
            && let Some(name) = vsa_models::colour_name(&colour)
        {
            attributes.push(("color".to_string(), name.to_string()));
        }
        let mut record = ItemRecord::new(
            req.id.clone(),
            req.category,
            attributes,
            req.metadata,
            &embedding,
        );
        record.colour = colour;
        record.quality = quality;
        let coordinator = self.coordinator()?;
        let outcome = ractor::call_t!(coordinator, CoordinatorMessage::Upsert, 10_000, record)??;
        Ok(UpsertReply {
            id: req.id,
            seq: outcome.seq,
            replaced: outcome.existed,
        })
    }

    /// Deletes an item (deleting an unknown id is not an error: `existed` is false).
    pub async fn delete(&self, id: String) -> Result<DeleteReply> {
        let coordinator = self.coordinator()?;
        let outcome =
            ractor::call_t!(coordinator, CoordinatorMessage::Delete, 10_000, id.clone())??;
        Ok(DeleteReply {
            id,
            seq: outcome.seq,
            existed: outcome.existed,
        })
    }

    /// Fault injection: panics a partition by name (`p/<category>/<shard>`) or, with
    /// `inference-worker`, kills one model worker. Returns false for an unknown name.
    pub async fn panic_actor(&self, name: &str) -> Result<bool> {
        if name == "inference-worker" {
            self.inner.pool.poison_one()?;
            return Ok(true);
        }
        let coordinator = self.coordinator()?;
        Ok(ractor::call_t!(
            coordinator,
            CoordinatorMessage::PanicPartition,
            2000,
            name.to_string()
        )?)
    }

    /// Fault injection: stalls a partition's message handling for `ms`. False for an
    /// unknown name.
    ///
    /// `rebuild/<partition>` (e.g. `rebuild/p/shoes/0`) holds that shard's rebuilds from disk
    /// instead: one started within `ms` (after a panic) waits until then, so the window in
    /// which searches leave the shard out and answer `degraded` lasts as long as the
    /// operator wants; `ms = 0` releases the hold.
    pub async fn stall_actor(&self, name: &str, ms: u64) -> Result<bool> {
        if let Some(partition) = name.strip_prefix("rebuild/") {
            return self.hold_rebuild(partition, ms);
        }
        let coordinator = self.coordinator()?;
        Ok(ractor::call_t!(
            coordinator,
            CoordinatorMessage::StallPartition,
            2000,
            name.to_string(),
            ms
        )?)
    }

    /// Fault injection: holds (or, with `ms = 0`, releases) the rebuilds of `partition`.
    fn hold_rebuild(&self, partition: &str, ms: u64) -> Result<bool> {
        let Some(dir) = self.inner.config.storage.dir.as_ref() else {
            return Err(EngineError::BadRequest(
                "no data folder: a failed shard restarts empty, there is no rebuild to hold".into(),
            ));
        };
        let routing = self.inner.routing.borrow().clone();
        let Some(slot) = routing.slots().find(|s| s.name == partition) else {
            return Ok(false);
        };
        let key = (slot.category.clone(), slot.shard as u32);
        let until = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms));
        crate::durability::recovery::hold_rebuild(dir, &key, until);
        Ok(true)
    }

    /// A rebalance command (plan, apply, cancel, status): `(message, JSON payload)`.
    pub async fn rebalance(
        &self,
        cmd: crate::coordinator::RebalanceCommand,
    ) -> Result<(String, Option<String>)> {
        let coordinator = self.coordinator()?;
        ractor::call_t!(coordinator, CoordinatorMessage::Rebalance, 30_000, cmd)?
            .map_err(EngineError::BadRequest)
    }

    /// Snapshots every shard now (a checkpoint) and truncates the log behind it.
    pub async fn checkpoint(&self) -> Result<String> {
        let coordinator = self.coordinator()?;
        let r = ractor::call_t!(
            coordinator,
            |port| CoordinatorMessage::Checkpoint(Some(port)),
            600_000
        )?;
        let msg = r.map_err(EngineError::Unavailable)?;
        self.save_clicks().await?;
        self.save_whitening().await?;
        Ok(msg)
    }

    /// Saves the learned whitening's pairs and fit (with the data folder; no-op without).
    pub async fn save_whitening(&self) -> Result<()> {
        let whitener = self.inner.whitener.clone();
        tokio::task::spawn_blocking(move || whitener.save())
            .await
            .map_err(|e| EngineError::Internal(format!("whitening save task: {e}")))?
            .map_err(EngineError::Unavailable)
    }

    /// The learned whitening: `(pairs accumulated, directions of the fit in force or 0,
    /// pairs that fit used)`.
    pub fn whitening_state(&self) -> (u64, usize, u64) {
        let w = &self.inner.whitener;
        let fit = w.current();
        (
            w.pairs(),
            fit.as_ref().map_or(0, |f| f.rank()),
            fit.as_ref().map_or(0, |f| f.pairs()),
        )
    }

    /// Saves the click aggregators' state (with the data folder; no-op without).
    pub async fn save_clicks(&self) -> Result<()> {
        self.inner.flush_impressions();
        let aggs = self.inner.aggregators.borrow().clone();
        for a in &aggs {
            ractor::call_t!(a, AggregatorMessage::Save, 30_000)?
                .map_err(EngineError::Unavailable)?;
        }
        if let Some(dir) = &self.inner.click_dir {
            // Every aggregator has its items in its own current file now.
            crate::clicks::remove_legacy_states(dir);
        }
        Ok(())
    }

    /// The binary encoder in force: `(generation, encoder fits finished since boot)`;
    /// generation 0 while none is fitted (exact search). After a restart that restored the
    /// checkpoint's model state the generation is the stored one and no fit has run.
    pub fn encoder_state(&self) -> (u64, u64) {
        let routing = self.inner.routing.borrow();
        (
            routing.encoder.as_ref().map_or(0, |e| e.generation),
            routing.encoder_fits,
        )
    }

    /// Statistics of every part.
    pub async fn stats(&self) -> StatsReply {
        let routing = self.inner.routing.borrow().clone();
        let shards = join_all(routing.slots().map(|slot| async move {
            let s = ractor::call_t!(slot.actor, PartitionMessage::Stats, 1000).ok();
            ShardStats {
                name: slot.name.clone(),
                category: slot.category.clone(),
                items: s.as_ref().map_or(0, |s| s.items),
                memory_bytes: s.as_ref().map_or(0, |s| s.memory_bytes),
                queue_depth: 0,
                searches: s.as_ref().map_or(0, |s| s.searches),
            }
        }))
        .await;
        let pool = self.inner.pool.snapshot();
        let now = self.inner.started.elapsed();
        StatsReply {
            items: shards.iter().map(|s| s.items).sum(),
            shards,
            inference: InferenceStats {
                workers: pool.workers as u32,
                queue_depth: pool.queue_depth as u32,
                queue_capacity: pool.queue_capacity as u32,
                batches: pool.batches,
                images: pool.images,
                busy_rejections: pool.busy_rejections,
            },
            restarts: routing.restarts
                + pool.restarts
                + self.inner.root_restarts.load(Ordering::Relaxed),
            qps: self.inner.rate.rate(now.as_secs()),
            uptime_ms: now.as_millis() as u64,
            epoch: routing.epoch,
        }
    }

    /// What the operator console shows of the engine: the supervision tree, shards with their
    /// meters, the pool, weights, health and per-stage query latency. The server adds its own
    /// parts (request metrics, connections, log tail).
    pub async fn telemetry(&self) -> Telemetry {
        let health = self.health().await;
        let routing = self.inner.routing.borrow().clone();
        let stats = join_all(routing.slots().map(|slot| async move {
            ractor::call_t!(slot.actor, PartitionMessage::Stats, 1000).ok()
        }))
        .await;
        let pool = self.inner.pool.snapshot();
        let cfg = &self.inner.config.index;
        let slots: Vec<&PartitionSlot> = routing.slots().collect();
        // Hot = the rebalancer's test: recent load (decayed searches/s) over the factor × mean.
        let mean_load = if slots.len() > 1 {
            stats.iter().flatten().map(|s| s.recent_load).sum::<f64>() / slots.len() as f64
        } else {
            0.0
        };
        let shards: Vec<ShardTelemetry> = slots
            .iter()
            .zip(&stats)
            .map(|(slot, s)| {
                let meter = self.inner.shard_meters.get(&slot.name);
                let searches = s.as_ref().map_or(0, |s| s.searches);
                let items = s.as_ref().map_or(0, |s| s.items);
                ShardTelemetry {
                    name: slot.name.clone(),
                    category: slot.category.clone(),
                    items,
                    memory_bytes: s.as_ref().map_or(0, |s| s.memory_bytes),
                    searches,
                    in_flight: meter.in_flight.load(Ordering::Relaxed),
                    latency: meter.latency.snapshot(),
                    recovering: slot.recovering,
                    hot: mean_load > 0.0
                        && s.as_ref().map_or(0.0, |s| s.recent_load)
                            > cfg.rebalance_hot_factor * mean_load,
                    oversized: items > cfg.rebalance_split_items,
                }
            })
            .collect();
        let actors = self.actor_tree(&routing, &pool, &shards);
        let weights = self.set_weights(&[]).unwrap_or_default();
        Telemetry {
            server: format!("vsa {}", env!("CARGO_PKG_VERSION")),
            uptime_ms: self.inner.started.elapsed().as_millis() as u64,
            items: shards.iter().map(|s| s.items).sum(),
            epoch: routing.epoch,
            health,
            memory_rss_bytes: crate::telemetry::rss_bytes(),
            connections_open: 0,
            connections_refused: 0,
            requests: Vec::new(),
            recent_requests: Vec::new(),
            recent_window_ms: 0,
            stages: self
                .inner
                .stages
                .snapshot()
                .into_iter()
                .map(|(stage, latency)| StageMetrics { stage, latency })
                .collect(),
            actors,
            shards,
            inference: InferenceTelemetry {
                workers: pool.workers as u32,
                live_workers: pool.live_workers as u32,
                queue_depth: pool.queue_depth as u32,
                queue_capacity: pool.queue_capacity as u32,
                max_batch: self.inner.config.pool.max_batch as u32,
                batches: pool.batches,
                images: pool.images,
                busy_rejections: pool.busy_rejections,
                restarts: pool.restarts,
                batch_sizes: pool.batch_sizes.clone(),
            },
            weights: WeightsInfo {
                version: weights.version,
                components: vec![
                    ("visual".into(), weights.visual),
                    ("colour".into(), weights.colour),
                    ("quality".into(), weights.quality),
                    ("ctr".into(), weights.ctr),
                ],
            },
            log: Vec::new(),
        }
    }

    /// The write-ahead log's counters (absent without a data folder).
    pub fn wal_stats(&self) -> Option<Arc<crate::durability::wal::WalStats>> {
        self.inner.routing.borrow().wal.clone()
    }

    /// The supervision tree, parents first: root → pool (→ model workers), coordinator
    /// (→ partitions), click aggregators.
    fn actor_tree(
        &self,
        routing: &RoutingTable,
        pool: &crate::inference::PoolSnapshot,
        shards: &[ShardTelemetry],
    ) -> Vec<ActorInfo> {
        let failures = &self.inner.failures;
        let status = |s: ractor::ActorStatus| format!("{s:?}").to_lowercase();
        let node = |name: &str, parent: Option<&str>, role: &str, state: String| {
            let f = failures.get(name).unwrap_or_default();
            ActorInfo {
                name: name.to_string(),
                parent: parent.map(str::to_string),
                role: role.to_string(),
                state,
                mailbox: None,
                restarts: f.restarts,
                last_error: (!f.last_error.is_empty()).then_some(f.last_error),
            }
        };
        let root = self.inner.root.get_cell();
        let coordinator = self.inner.coordinator.borrow().clone();
        let aggregators = self.inner.aggregators.borrow().clone();
        let known: Vec<ractor::ActorId> = coordinator
            .iter()
            .map(|c| c.get_id())
            .chain(aggregators.iter().map(|a| a.get_id()))
            .collect();
        let pool_cell = root
            .get_children()
            .into_iter()
            .find(|c| !known.contains(&c.get_id()));
        let mut out = vec![node("root", None, "root", status(root.get_status()))];
        let mut p = node(
            "inference-pool",
            Some("root"),
            "inference-pool",
            pool_cell.map_or_else(|| "missing".to_string(), |c| status(c.get_status())),
        );
        p.mailbox = Some(pool.queue_depth as u64);
        out.push(p);
        let mut w = node(
            "model-workers",
            Some("inference-pool"),
            "model-worker",
            format!("{}/{} alive", pool.live_workers, pool.workers),
        );
        w.restarts = pool.restarts;
        out.push(w);
        out.push(node(
            "coordinator",
            Some("root"),
            "coordinator",
            coordinator
                .as_ref()
                .map_or_else(|| "missing".to_string(), |c| status(c.get_status())),
        ));
        for (slot, shard) in routing.slots().zip(shards) {
            let state = if slot.recovering {
                "recovering".to_string()
            } else {
                status(slot.actor.get_status())
            };
            let mut n = node(&slot.name, Some("coordinator"), "partition", state);
            n.mailbox = Some(shard.in_flight);
            out.push(n);
        }
        for (i, a) in aggregators.iter().enumerate() {
            out.push(node(
                &format!("clicks/{i}"),
                Some("root"),
                "click-aggregator",
                status(a.get_status()),
            ));
        }
        out
    }

    /// Health: the model workers and every partition.
    pub async fn health(&self) -> HealthReply {
        let pool = self.inner.pool.snapshot();
        let model = if pool.live_workers == 0 {
            (HealthState::Down, "no model worker alive".to_string())
        } else if pool.live_workers < pool.workers {
            (
                HealthState::Degraded,
                format!("{}/{} model workers alive", pool.live_workers, pool.workers),
            )
        } else {
            (HealthState::Healthy, format!("{} workers", pool.workers))
        };
        let routing = self.inner.routing.borrow().clone();
        let answers = join_all(routing.slots().map(|slot| async move {
            ractor::call_t!(slot.actor, PartitionMessage::Stats, 1000).is_ok()
        }))
        .await;
        let total = answers.len();
        let ok = answers.iter().filter(|a| **a).count();
        let recovering = routing.slots().filter(|s| s.recovering).count();
        let shards = if recovering > 0 {
            (
                HealthState::Degraded,
                format!("{recovering}/{total} shards recovering from disk"),
            )
        } else if ok == total {
            (HealthState::Healthy, format!("{total} shards ok"))
        } else {
            (
                HealthState::Degraded,
                format!("{ok}/{total} shards answering"),
            )
        };
        let coordinator = match self.coordinator() {
            Ok(c) if ractor::call_t!(c, CoordinatorMessage::ItemCount, 1000).is_ok() => {
                (HealthState::Healthy, "ok".to_string())
            }
            _ => (HealthState::Down, "coordinator not answering".to_string()),
        };
        let mut checks = vec![
            ("model".to_string(), model.0, model.1),
            ("shards".to_string(), shards.0, shards.1),
            ("coordinator".to_string(), coordinator.0, coordinator.1),
        ];
        if let Some(wal) = &routing.wal {
            let errors = wal.errors.load(Ordering::Relaxed);
            let mut msg = format!(
                "{} writes logged, last snapshot at seq {}",
                wal.records.load(Ordering::Relaxed),
                routing.checkpoint_seq
            );
            if !routing.recovery_report.is_empty() {
                msg.push_str(&format!(
                    "; boot recovery skipped: {}",
                    routing.recovery_report.join(" | ")
                ));
            }
            let state = if errors > 0 {
                msg.push_str(&format!("; {errors} log append failures"));
                HealthState::Degraded
            } else {
                HealthState::Healthy
            };
            checks.push(("storage".to_string(), state, msg));
        }
        let state = checks
            .iter()
            .map(|c| c.1)
            .max_by_key(|s| match s {
                HealthState::Healthy => 0,
                HealthState::Degraded => 1,
                HealthState::Down => 2,
            })
            .unwrap_or(HealthState::Healthy);
        HealthReply { state, checks }
    }
}

fn to_box(r: Rect) -> BoxXywh {
    BoxXywh {
        x: r.x.round() as u32,
        y: r.y.round() as u32,
        w: (r.w.round() as u32).max(1),
        h: (r.h.round() as u32).max(1),
    }
}

fn micros(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `r` grown by `by` × its side (half on each side, centred), clamped to the image.
fn widened(r: Rect, by: f32, width: u32, height: u32) -> Option<Rect> {
    let (dw, dh) = (r.w * by / 2.0, r.h * by / 2.0);
    // Whole pixels, so the crop stays inside the image after the resizer's rounding.
    let x0 = (r.x - dw).floor().max(0.0);
    let y0 = (r.y - dh).floor().max(0.0);
    let x1 = (r.x + r.w + dw).ceil().min(width as f32);
    let y1 = (r.y + r.h + dh).ceil().min(height as f32);
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
    .clamp_to(width, height)
}

/// The query vectors encoded for the binary index, when an encoder is fitted.
fn encode_query(routing: &RoutingTable, vectors: &[Vec<f32>]) -> Option<(u64, Query)> {
    routing.encoder.as_ref().map(|eg| {
        let vectors = vectors
            .iter()
            .filter_map(|v| eg.encoder.encode_query(v).ok())
            .collect();
        (eg.generation, Query { vectors })
    })
}

/// The αQE vector: the query vector most similar to the first neighbour, plus every
/// neighbour `(score, unit vector)` weighted by `max(score, 0)^alpha`, normalised.
pub fn expand_query(
    vectors: &[Vec<f32>],
    neighbours: &[(f32, Vec<f32>)],
    alpha: f32,
) -> Option<Vec<f32>> {
    let (_, first) = neighbours.first()?;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let best = vectors
        .iter()
        .max_by(|a, b| dot(a, first).total_cmp(&dot(b, first)))?;
    let mut q = best.clone();
    for (s, v) in neighbours {
        let w = s.max(0.0).powf(alpha);
        for (a, x) in q.iter_mut().zip(v) {
            *a += w * x;
        }
    }
    vsa_models::l2_normalise(&mut q);
    q.iter().all(|x| x.is_finite()).then_some(q)
}

/// The mean of the head's class probabilities over unit vectors scaled by `scale`.
pub fn mean_probabilities(head: &ClassifierHead, vectors: &[Vec<f32>], scale: f32) -> Vec<f32> {
    let mut mean = vec![0.0f32; head.classes];
    for v in vectors {
        for (m, p) in mean.iter_mut().zip(head.probabilities(v, scale)) {
            *m += p / vectors.len() as f32;
        }
    }
    mean
}

/// Default `[search] logit_scale`: the mean norm of the bundled model's raw 224×224 pooled
/// embeddings over the clipart-public-v1 catalogue.
const LOGIT_SCALE: f32 = 16.5;

/// The classifier head, read from the model file only when some preset uses it.
fn load_head(quality: &QualityConfig, manifest: &Manifest) -> Option<Arc<ClassifierHead>> {
    let wanted = quality
        .presets
        .values()
        .any(|p| p.category_model == CategoryModel::Logits);
    let output = manifest.outputs.logits.as_deref()?;
    if !wanted {
        return None;
    }
    let head = manifest
        .read_model_bytes()
        .ok()
        .and_then(|b| ClassifierHead::from_onnx(&b, output))
        .filter(|h| h.dim == manifest.outputs.embedding_dim);
    if head.is_none() {
        tracing::warn!("no classifier head in the model file: the logits category branch is off");
    }
    head.map(Arc::new)
}

/// Rebuilds the category codebook whenever the coordinator publishes new centroids (after
/// each fit): every partition's sample through the head, summed per category. Ends with the
/// routing table's sender.
async fn keep_codebook(
    mut routing: watch::Receiver<Arc<RoutingTable>>,
    head: Arc<ClassifierHead>,
    codebook: Arc<std::sync::RwLock<Option<Arc<CategoryCodebook>>>>,
    scale: f32,
    fit_sample: usize,
) {
    let mut built_for: Option<Arc<crate::coordinator::CategoryCentroids>> = None;
    loop {
        let table = routing.borrow_and_update().clone();
        let fresh = match (&table.centroids, &built_for) {
            (Some(c), Some(b)) => !Arc::ptr_eq(c, b),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if fresh {
            built_for = table.centroids.clone();
            let slots: Vec<PartitionSlot> = table.slots().cloned().collect();
            let per = fit_sample / slots.len().max(1) + 1;
            let mut samples: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
            for slot in &slots {
                if let Ok(v) = ractor::call_t!(slot.actor, PartitionMessage::Sample, 10_000, per) {
                    samples.push((slot.category.clone(), v));
                }
            }
            let head = head.clone();
            let built = tokio::task::spawn_blocking(move || {
                let mut sums: std::collections::BTreeMap<String, Vec<f32>> = Default::default();
                for (category, vectors) in samples {
                    let acc = sums
                        .entry(category)
                        .or_insert_with(|| vec![0.0; head.classes]);
                    for v in &vectors {
                        for (a, p) in acc.iter_mut().zip(head.probabilities(v, scale)) {
                            *a += p;
                        }
                    }
                }
                CategoryCodebook::new(sums.into_iter().collect())
            })
            .await
            .ok()
            .flatten();
            if let Ok(mut slot) = codebook.write() {
                *slot = built.map(Arc::new);
            }
        }
        // Centroids change with every size change below the fit threshold: coalesce.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if routing.changed().await.is_err() {
            return;
        }
    }
}

fn filter_from(clauses: &[FilterClause]) -> Result<Option<Filter>> {
    if clauses.is_empty() {
        return Ok(None);
    }
    let mut f = Filter::default();
    for c in clauses {
        if c.key.is_empty() || c.values.is_empty() {
            return Err(EngineError::BadRequest(
                "a filter clause needs a key and at least one value".into(),
            ));
        }
        f = f.with(c.key.clone(), c.values.iter().cloned());
    }
    Ok(Some(f))
}

/// The weights saved in `file`; the defaults when there is none or it is unreadable (said in
/// the log).
fn load_weights(file: &std::path::Path) -> RerankWeights {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %file.display(), error = %e, "reranking weights unreadable; using the defaults");
            RerankWeights::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RerankWeights::default(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "reranking weights unreadable; using the defaults");
            RerankWeights::default()
        }
    }
}

/// One empty batch per aggregator.
fn empty_batches(aggregators: usize) -> Vec<ClickBatch> {
    (0..aggregators).map(|_| ClickBatch::default()).collect()
}

/// Files the co-clicks of a new click on `item` with each of `before` (the items clicked
/// earlier for the same query), both directions, in the batch of the aggregator that owns
/// each edge's first item: `item`'s own edges first and side by side, so its owner looks
/// the item up once for all of them.
fn route_co_clicks(work: &mut [ClickBatch], item: u64, before: &[u64]) {
    let n = work.len();
    let own = &mut work[aggregator_of(item, n)].co;
    own.extend(before.iter().map(|&other| (item, other)));
    for &other in before {
        work[aggregator_of(other, n)].co.push((other, item));
    }
}

/// `batch`, or `bad_request` when it holds more than [`MAX_CLICK_BATCH`] clicks.
fn within_click_batch_limit(batch: Vec<ClickRequest>) -> Result<Vec<ClickRequest>> {
    if batch.len() > MAX_CLICK_BATCH {
        return Err(EngineError::BadRequest(format!(
            "{} clicks in one batch; at most {MAX_CLICK_BATCH}",
            batch.len()
        )));
    }
    Ok(batch)
}

/// Checks a click against the query log: it must have been shown there, at that position.
/// `Some(the item's key)` for a new click (now marked as clicked), with `before` set to the
/// keys of (at most `co_clicks` of) the items clicked before for the same query; `None` for a
/// repeat.
fn check_click(
    log: &mut QueryLog,
    req: &ClickRequest,
    co_clicks: usize,
    before: &mut Vec<u64>,
) -> Result<Option<u64>> {
    let Some(entry) = log.get_mut(req.query_id) else {
        return Err(EngineError::UnknownQuery(req.query_id));
    };
    // By key: the shown ids themselves stay untouched (a 64-bit match is the id's, but for a
    // ~2⁻⁶⁴ chance).
    let key = item_key(&req.item_id);
    match entry.keys.get(req.position as usize) {
        Some(k) if *k == key => {}
        _ => {
            return Err(EngineError::BadRequest(format!(
                "item {:?} was not shown at position {} for query {}",
                req.item_id, req.position, req.query_id
            )));
        }
    }
    if entry.clicked.contains(req.position) {
        return Ok(None); // a repeated click on the same result counts once
    }
    before.clear();
    before.extend(
        entry
            .clicked
            .iter()
            .take(co_clicks)
            .filter_map(|p| entry.keys.get(p as usize).copied()),
    );
    entry.clicked.insert(req.position);
    Ok(Some(key))
}

/// Pailitao's search branch of category prediction: the top `vote_k` neighbours vote for
/// their category with weight `exp((s − s₁) / t)`; confidence is the winner's share.
pub fn vote_category(hits: &[PartitionHit], vote_k: usize, t: f32) -> Option<CategoryPrediction> {
    fuse_categories(&vote_distribution(hits, vote_k, t), &[], 1.0)
}

/// The kNN vote as a distribution over categories, best first (empty without hits).
pub fn vote_distribution(hits: &[PartitionHit], vote_k: usize, t: f32) -> Vec<(String, f32)> {
    let Some(top) = hits.first().map(|h| h.score) else {
        return Vec::new();
    };
    let t = if t > 0.0 { t } else { 0.01 };
    let mut votes: Vec<(String, f32)> = Vec::new();
    for h in hits.iter().take(vote_k.max(1)) {
        let w = ((h.score - top) / t).exp();
        match votes.iter_mut().find(|(c, _)| c == &h.category) {
            Some(v) => v.1 += w,
            None => votes.push((h.category.clone(), w)),
        }
    }
    normalised(votes)
}

/// The model branch: a softmax over the best cosine of any query vector with each category's
/// centroid (the catalogue's mean embedding of that category), best first.
pub fn centroid_distribution(
    vectors: &[Vec<f32>],
    centroids: &[(String, Vec<f32>)],
    t: f32,
) -> Vec<(String, f32)> {
    let t = if t > 0.0 { t } else { 0.02 };
    let scores: Vec<(String, f32)> = centroids
        .iter()
        .map(|(c, m)| {
            let best = vectors
                .iter()
                .map(|v| v.iter().zip(m).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::NEG_INFINITY, f32::max);
            (c.clone(), best)
        })
        .collect();
    let top = scores.iter().map(|s| s.1).fold(f32::NEG_INFINITY, f32::max);
    normalised(
        scores
            .into_iter()
            .map(|(c, s)| (c, ((s - top) / t).exp()))
            .collect(),
    )
}

fn normalised(mut v: Vec<(String, f32)>) -> Vec<(String, f32)> {
    let total: f32 = v.iter().map(|x| x.1).sum();
    if total.is_nan() || total <= 0.0 {
        return Vec::new();
    }
    v.iter_mut().for_each(|x| x.1 /= total);
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Fuses the kNN vote (weight `knn_weight`) with the model branch (the rest) into one
/// prediction; either may be empty, then the other decides alone. The branches' own top
/// answers are reported in `branches`.
pub fn fuse_categories(
    knn: &[(String, f32)],
    model: &[(String, f32)],
    knn_weight: f32,
) -> Option<CategoryPrediction> {
    predict_category(
        fuse_distributions(knn, model, knn_weight),
        knn,
        model,
        false,
    )
}

/// The fused distribution of [`fuse_categories`], best first (empty when both are).
pub fn fuse_distributions(
    knn: &[(String, f32)],
    model: &[(String, f32)],
    knn_weight: f32,
) -> Vec<(String, f32)> {
    let w = match (knn.is_empty(), model.is_empty()) {
        (true, true) => return Vec::new(),
        (false, true) => 1.0,
        (true, false) => 0.0,
        (false, false) => knn_weight.clamp(0.0, 1.0),
    };
    let mut fused: Vec<(String, f32)> = Vec::new();
    for (dist, weight) in [(knn, w), (model, 1.0 - w)] {
        for (c, p) in dist {
            match fused.iter_mut().find(|(f, _)| f == c) {
                Some(f) => f.1 += weight * p,
                None => fused.push((c.clone(), weight * p)),
            }
        }
    }
    normalised(fused)
}

/// The top level of a category path (`animals/birds` → `animals`).
pub fn top_level(category: &str) -> &str {
    category.split('/').next().unwrap_or(category)
}

/// A prediction from a fused distribution (best first): its best category or, `hierarchical`,
/// the best category of the top level with the largest summed probability.
pub fn predict_category(
    mut fused: Vec<(String, f32)>,
    knn: &[(String, f32)],
    model: &[(String, f32)],
    hierarchical: bool,
) -> Option<CategoryPrediction> {
    if hierarchical && let Some(level) = best_top_level(&fused) {
        // Stable: within the chosen top level, and among the rest, the order stays.
        fused.sort_by_key(|(c, _)| top_level(c) != level);
    }
    let mut branches = Vec::new();
    for (name, dist) in [("knn", knn), ("model", model)] {
        if let Some((c, p)) = dist.first() {
            branches.push((name.to_string(), c.clone(), *p));
        }
    }
    let mut it = fused.into_iter();
    let (category, confidence) = it.next()?;
    Some(CategoryPrediction {
        category,
        confidence,
        alternatives: it.take(4).collect(),
        branches,
    })
}

/// The top level with the largest summed probability (ties: the first met, i.e. the one
/// holding the more probable category).
fn best_top_level(dist: &[(String, f32)]) -> Option<String> {
    let mut levels: Vec<(&str, f32)> = Vec::new();
    for (c, p) in dist {
        let l = top_level(c);
        match levels.iter_mut().find(|(x, _)| *x == l) {
            Some(x) => x.1 += p,
            None => levels.push((l, *p)),
        }
    }
    levels
        .into_iter()
        .fold(None, |best: Option<(&str, f32)>, x| match best {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        })
        .map(|(l, _)| l.to_string())
}

/// How long to wait for the system to settle in tests and at shutdown.
pub const SETTLE: Duration = Duration::from_millis(50);
