//! `InferencePool`: W model workers on dedicated OS threads, each with its own ort session, fed
//! through one bounded crossbeam channel, with dynamic batching.
//!
//! ```text
//! callers ──try_send──▶ [bounded channel] ──▶ worker 0 (thread, Embedder) ─┐
//!   (full → Busy)                         └─▶ worker 1 (thread, Embedder) ─┴▶ oneshot replies
//!                     InferencePool actor: spawns workers, checks them every 200 ms,
//!                     respawns a dead one (counted as a restart), reports stats.
//! ```
//!
//! Dynamic batching: a worker takes the first job, then keeps collecting jobs *of the same
//! input shape* until it has `max_batch` or `max_wait_us` has passed since the first; a job of
//! another shape is carried over to the next batch (224×224 crops and 640×480 whole photos do
//! not mix). ort is blocking, so it never runs on the async executor. The channel is created
//! outside the actor, so a restarted pool actor keeps serving the same handles.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use vsa_models::{Batch, Embedder, EmbedderOptions, FeatureMap, Manifest};

use crate::error::{EngineError, Result};

/// Pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Model worker threads (each holds one ort session).
    pub workers: usize,
    /// ort intra-op threads per session.
    pub intra_threads: usize,
    /// Largest batch a worker runs.
    pub max_batch: usize,
    /// How long a worker waits for more jobs of the same shape after the first (µs).
    pub max_wait_us: u64,
    /// Jobs that may wait in the queue; beyond that callers get `Busy`.
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            intra_threads: 1,
            max_batch: 8,
            max_wait_us: 2000,
            queue_capacity: 256,
        }
    }
}

/// What the model returns for one job.
#[derive(Debug, Clone)]
pub struct InferenceOutput {
    /// Pooled embedding (not normalised).
    pub embedding: Vec<f32>,
    /// Final feature map.
    pub feature_map: FeatureMap,
    /// Classifier logits (empty when the model has none).
    pub logits: Vec<f32>,
}

/// One normalised CHW image waiting for the model.
#[derive(Debug)]
pub struct Job {
    height: u32,
    width: u32,
    tensor: Vec<f32>,
    reply: Option<oneshot::Sender<Result<InferenceOutput>>>,
    poison: bool,
}

/// Counters shared by the workers, the actor and the handles.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Batches run.
    pub batches: AtomicU64,
    /// Images run.
    pub images: AtomicU64,
    /// Jobs refused because the queue was full.
    pub busy_rejections: AtomicU64,
    /// Workers alive now.
    pub live_workers: AtomicUsize,
    /// Workers restarted after dying.
    pub restarts: AtomicU64,
    /// Batch-size histogram: bucket i counts batches of size in `(2^(i-1), 2^i]`.
    pub batch_sizes: [AtomicU64; 8],
}

/// A point-in-time copy of the pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Configured workers.
    pub workers: usize,
    /// Workers alive.
    pub live_workers: usize,
    /// Jobs waiting.
    pub queue_depth: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Batches run.
    pub batches: u64,
    /// Images run.
    pub images: u64,
    /// Jobs refused with `Busy`.
    pub busy_rejections: u64,
    /// Worker restarts.
    pub restarts: u64,
    /// Batch-size histogram (buckets 1, 2, 3–4, 5–8, 9–16, 17–32, 33–64, >64).
    pub batch_sizes: Vec<u64>,
}

/// The caller's side of the pool: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    tx: Sender<Job>,
    stats: Arc<PoolStats>,
    config: PoolConfig,
}

impl PoolHandle {
    /// Admission control: `Busy` at once (and counted) when the queue has no room for `n`
    /// more images, so an overloaded server refuses a query *before* decoding it and
    /// embedding part of it, instead of after. Reserves nothing: `submit` still decides.
    pub fn admit(&self, n: usize) -> Result<()> {
        let cap = self.tx.capacity().unwrap_or(usize::MAX);
        if self.tx.len().saturating_add(n) > cap {
            self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Busy("inference queue full"));
        }
        Ok(())
    }

    /// Counts a request refused with `Busy` before it reached the queue.
    pub fn count_busy(&self) {
        self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues one image; `Busy` at once when the queue is full.
    pub fn submit(
        &self,
        height: u32,
        width: u32,
        tensor: Vec<f32>,
    ) -> Result<oneshot::Receiver<Result<InferenceOutput>>> {
        let expected = 3 * height as usize * width as usize;
        if tensor.len() != expected || expected == 0 {
            return Err(EngineError::BadRequest(format!(
                "tensor of {} floats for a {width}x{height} image",
                tensor.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            height,
            width,
            tensor,
            reply: Some(reply),
            poison: false,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::Busy("inference queue full"))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(EngineError::Unavailable("inference pool stopped".into()))
            }
        }
    }

    /// Runs several images (submitted together so they can share batches) and waits for all.
    pub async fn infer_many(
        &self,
        jobs: Vec<(u32, u32, Vec<f32>)>,
    ) -> Result<Vec<InferenceOutput>> {
        let receivers = jobs
            .into_iter()
            .map(|(h, w, t)| self.submit(h, w, t))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(receivers.len());
        for rx in receivers {
            let result = rx
                .await
                .map_err(|_| EngineError::Unavailable("inference worker died".into()))?;
            out.push(result?);
        }
        Ok(out)
    }

    /// Runs one image.
    pub async fn infer(
        &self,
        height: u32,
        width: u32,
        tensor: Vec<f32>,
    ) -> Result<InferenceOutput> {
        let mut v = self.infer_many(vec![(height, width, tensor)]).await?;
        v.pop()
            .ok_or_else(|| EngineError::Internal("no inference output".into()))
    }

    /// The pool's counters now.
    pub fn snapshot(&self) -> PoolSnapshot {
        let s = &self.stats;
        PoolSnapshot {
            workers: self.config.workers,
            live_workers: s.live_workers.load(Ordering::Relaxed),
            queue_depth: self.tx.len(),
            queue_capacity: self.config.queue_capacity,
            batches: s.batches.load(Ordering::Relaxed),
            images: s.images.load(Ordering::Relaxed),
            busy_rejections: s.busy_rejections.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
            batch_sizes: s
                .batch_sizes
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Asks one worker to die (fault injection): the pool actor notices and restarts it.
    pub fn poison_one(&self) -> Result<()> {
        self.tx
            .try_send(Job {
                height: 0,
                width: 0,
                tensor: Vec::new(),
                reply: None,
                poison: true,
            })
            .map_err(|_| EngineError::Busy("inference queue full"))
    }
}

/// The channel both sides share; made once, outlives pool actor restarts.
#[derive(Debug, Clone)]
pub struct PoolChannel {
    handle: PoolHandle,
    rx: Receiver<Job>,
}

impl PoolChannel {
    /// A bounded channel for `config`.
    pub fn new(config: PoolConfig) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.max(1));
        Self {
            handle: PoolHandle {
                tx,
                stats: Arc::new(PoolStats::default()),
                config,
            },
            rx,
        }
    }

    /// The callers' handle.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }
}

/// The pool actor (config type of the four names: `InferencePool`, `InferencePoolMessage`,
/// `InferencePoolState`, `InferencePoolArguments`).
#[derive(Debug, Default)]
pub struct InferencePool;

/// Arguments of the pool actor.
#[derive(Debug, Clone)]
pub struct InferencePoolArguments {
    /// The shared channel.
    pub channel: PoolChannel,
    /// The model to load in every worker.
    pub manifest: Manifest,
}

/// Messages of the pool actor.
#[derive(Debug)]
pub enum InferencePoolMessage {
    /// Check the workers; respawn dead ones.
    Check,
    /// Current counters.
    Snapshot(RpcReplyPort<PoolSnapshot>),
}

/// State of the pool actor.
#[derive(Debug)]
pub struct InferencePoolState {
    args: InferencePoolArguments,
    workers: Vec<Option<JoinHandle<()>>>,
    next_worker_id: usize,
}

impl Actor for InferencePool {
    type Msg = InferencePoolMessage;
    type State = InferencePoolState;
    type Arguments = InferencePoolArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> std::result::Result<Self::State, ActorProcessingErr> {
        let n = args.channel.handle.config.workers.max(1);
        let mut state = InferencePoolState {
            args,
            workers: Vec::with_capacity(n),
            next_worker_id: 0,
        };
        for _ in 0..n {
            let w = spawn_worker(&mut state).await?;
            state.workers.push(Some(w));
        }
        ractor::time::send_interval(Duration::from_millis(200), myself.get_cell(), || {
            InferencePoolMessage::Check
        });
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        match message {
            InferencePoolMessage::Check => {
                for i in 0..state.workers.len() {
                    let dead = state.workers[i]
                        .as_ref()
                        .is_none_or(JoinHandle::is_finished);
                    if dead {
                        if let Some(h) = state.workers[i].take() {
                            let _ = h.join();
                        }
                        tracing::warn!(worker = i, "inference worker died; restarting it");
                        let w = spawn_worker(state).await?;
                        state.workers[i] = Some(w);
                        state
                            .args
                            .channel
                            .handle
                            .stats
                            .restarts
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            InferencePoolMessage::Snapshot(reply) => {
                let _ = reply.send(state.args.channel.handle.snapshot());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        // Workers end by themselves when every sender is gone; do not block the executor
        // joining them here.
        state.workers.clear();
        Ok(())
    }
}

/// Starts one worker thread and waits (without blocking the executor) until its model loaded.
async fn spawn_worker(
    state: &mut InferencePoolState,
) -> std::result::Result<JoinHandle<()>, ActorProcessingErr> {
    let id = state.next_worker_id;
    state.next_worker_id += 1;
    let manifest = state.args.manifest.clone();
    let rx = state.args.channel.rx.clone();
    let stats = state.args.channel.handle.stats.clone();
    let config = state.args.channel.handle.config.clone();
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = std::thread::Builder::new()
        .name(format!("vsa-infer-{id}"))
        .spawn(move || {
            let options = EmbedderOptions {
                intra_threads: config.intra_threads,
            };
            let embedder = match Embedder::load(&manifest, &options) {
                Ok(e) => {
                    let _ = ready_tx.send(Ok(()));
                    e
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            stats.live_workers.fetch_add(1, Ordering::Relaxed);
            let _alive = LiveGuard(stats.clone());
            worker_loop(embedder, &rx, &config, &stats);
        })?;
    match ready_rx.await {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(format!("inference worker {id}: {e}").into()),
        Err(_) => Err(format!("inference worker {id} died while loading the model").into()),
    }
}

/// Decrements the live-worker count however the thread ends (return or panic).
struct LiveGuard(Arc<PoolStats>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live_workers.fetch_sub(1, Ordering::Relaxed);
    }
}

fn worker_loop(mut embedder: Embedder, rx: &Receiver<Job>, config: &PoolConfig, stats: &PoolStats) {
    let max_batch = config.max_batch.max(1);
    let max_wait = Duration::from_micros(config.max_wait_us);
    let mut carry: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match carry.pop_front() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // every handle is gone: shut down
            },
        };
        if first.poison {
            panic!("inference worker poisoned by fault injection");
        }
        let shape = (first.height, first.width);
        let mut jobs = vec![first];
        // Jobs carried over from the last round with this shape go first.
        let mut i = 0;
        while i < carry.len() && jobs.len() < max_batch {
            if (carry[i].height, carry[i].width) == shape && !carry[i].poison {
                if let Some(j) = carry.remove(i) {
                    jobs.push(j);
                }
            } else {
                i += 1;
            }
        }
        let deadline = Instant::now() + max_wait;
        while jobs.len() < max_batch {
            match rx.recv_deadline(deadline) {
                Ok(j) if !j.poison && (j.height, j.width) == shape => jobs.push(j),
                Ok(j) => carry.push_back(j),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        run_batch(&mut embedder, jobs, stats);
    }
}

fn run_batch(embedder: &mut Embedder, jobs: Vec<Job>, stats: &PoolStats) {
    let (h, w) = (jobs[0].height, jobs[0].width);
    let mut batch = Batch::new(h, w);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        match batch.push_normalised(&job.tensor) {
            Ok(()) => replies.push(job.reply),
            Err(e) => {
                if let Some(r) = job.reply {
                    let _ = r.send(Err(e.into()));
                }
            }
        }
    }
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.images.fetch_add(n as u64, Ordering::Relaxed);
    let bucket = (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize;
    stats.batch_sizes[bucket.min(7)].fetch_add(1, Ordering::Relaxed);
    match embedder.run(&batch) {
        Ok(out) => {
            let parts = out
                .embeddings
                .into_iter()
                .zip(out.feature_maps)
                .zip(out.logits);
            for (reply, ((embedding, feature_map), logits)) in replies.into_iter().zip(parts) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(InferenceOutput {
                        embedding,
                        feature_map,
                        logits,
                    }));
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "inference batch failed");
            for r in replies.into_iter().flatten() {
                let _ = r.send(Err(EngineError::Internal(format!(
                    "inference failed: {msg}"
                ))));
            }
        }
    }
}
