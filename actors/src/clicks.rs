//! Click feedback: the query log (what each search showed), the `ClickAggregator` actors
//! (per-item decayed, position-corrected CTR and a bounded co-click graph, sharded by item id),
//! the live reranking weights, and training-data export.
//!
//! ```text
//! Engine::search ── hits at positions ──▶ pending (query entries + impressions; one short lock)
//! pending queries ── when the QueryLog (bounded) is next locked ──▶ QueryLog
//! pending impressions ── every 100 ms, or ahead of the next clicks ──▶ ClickAggregator[key % n]
//! Engine::click  ── checked against the QueryLog, on the click thread ──▶ Click (+ a Batch of
//!                   co-clicks with the items clicked for the same query) ──▶ aggregators
//! Engine::clicks ── each click checked the same way, on the click thread ──▶ one Batch per
//!                   aggregator (not awaited); Engine::clicks_encoded decodes the frame
//!                   there first
//! Engine::search (ctr weight ≠ 0) ── reads the aggregators' ClickTables ──▶ rerank
//! ```
//!
//! Items are known to the aggregators by a stable 64-bit key of their id ([`item_key`]): the
//! key chooses the owning aggregator, indexes its table and names the co-click neighbours, so
//! absorbing a click compares and hashes integers, never strings; the id itself is stored once
//! per tracked item (for the top list and the export). The aggregators run on their own
//! runtime thread at the lowest CPU priority ([`ClickRuntime`]), so click work yields the
//! cores to searches instead of queueing them behind it; searches leave their impressions in
//! the engine, which sends them on in batches (every 100 ms, or ahead of the next clicks).
//!
//! CTR model: every impression at position `p` (0-based) adds the examination probability
//! `1 / (1 + p)^eta` to the item's impressions, every click adds 1 to its clicks; both decay
//! with `half_life_s`. The smoothed CTR is `(clicks + prior_ctr·prior_strength) /
//! (impressions + prior_strength)`, capped at 1 — an item never shown has the prior.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::durability::record::{decode_payload, encode_framed, parse_header};
use crate::search_gate::SearchGate;

/// `[clicks]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickConfig {
    /// Aggregator actors (items are spread over them by a hash of their id).
    pub aggregators: usize,
    /// Impressions and clicks lose half their weight in this time (s).
    pub half_life_s: f64,
    /// Position bias: examination probability `1 / (1 + position)^eta`.
    pub position_eta: f64,
    /// Prior CTR of an item without history.
    pub prior_ctr: f64,
    /// Weight of the prior, in impressions.
    pub prior_strength: f64,
    /// Most items tracked per aggregator; beyond, the least active are forgotten.
    pub max_items: usize,
    /// Most co-click neighbours kept per item (the weakest go).
    pub co_click_edges: usize,
    /// A click is linked (both ways) with at most this many of the results clicked before it
    /// for the same query — those shown highest — so a click costs bounded work however many
    /// results of the query were clicked.
    pub co_clicks_per_click: usize,
    /// Searches remembered for attributing clicks (ids shown, positions).
    pub query_log: usize,
    /// Searches whose query embedding is kept for training export (0: none, for privacy).
    pub retain_queries: usize,
    /// Retained query embeddings are dropped after this age (s).
    pub retain_age_s: u64,
    /// Hits fetched per search for reranking when the quality or CTR weight is non-zero.
    pub rerank_depth: usize,
    /// Co-click edges at least this heavy join two items in one virtual id (export).
    pub virtual_id_min_weight: f32,
    /// The aggregates are saved this often (s) while they change: what a crash (`kill -9`)
    /// can lose of the clicks (a clean shutdown and every snapshot save them too).
    pub save_every_s: u64,
    /// Before each short run of click work (a run of checks, of one aggregator's updates),
    /// the click thread waits for the searches in flight to end, for at most this long (µs;
    /// 0, the default: it never waits and only its lowest CPU priority keeps it out of their
    /// way). Off by default: under a search load that never pauses, 2 ms waits turned the
    /// click work into bursts that cost the searches' p99 more (+36 % against +11 %, see
    /// docs/BENCHMARKS.md §5). See [`crate::search_gate`].
    pub yield_to_searches_us: u64,
}

impl Default for ClickConfig {
    fn default() -> Self {
        Self {
            aggregators: 2,
            half_life_s: 7.0 * 86_400.0,
            position_eta: 1.0,
            prior_ctr: 0.05,
            prior_strength: 20.0,
            max_items: 1_000_000,
            co_click_edges: 32,
            co_clicks_per_click: 3,
            query_log: 100_000,
            retain_queries: 10_000,
            retain_age_s: 7 * 86_400,
            rerank_depth: 50,
            virtual_id_min_weight: 2.0,
            save_every_s: 30,
            yield_to_searches_us: 0,
        }
    }
}

/// The live reranking weights: `score = visual·w_visual + colour·w_colour + quality·w_quality
/// + ctr·w_ctr`, where `visual` is the cosine similarity (best over the query's vectors),
/// `colour` the preset's colour term, `quality` the item's ingest-time quality in `[0, 1]` and
/// `ctr` its smoothed click-through rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankWeights {
    /// Increases with every change; search responses carry it.
    pub version: u64,
    /// Weight of visual similarity.
    pub visual: f32,
    /// Weight of the colour term.
    pub colour: f32,
    /// Weight of item quality.
    pub quality: f32,
    /// Weight of the smoothed CTR.
    pub ctr: f32,
}

impl Default for RerankWeights {
    fn default() -> Self {
        Self {
            version: 1,
            visual: 1.0,
            colour: 1.0,
            quality: 0.0,
            ctr: 0.0,
        }
    }
}

impl RerankWeights {
    /// Applies `(component, weight)` pairs; unknown components are an error (nothing changes).
    pub fn apply(&self, changes: &[(String, f32)]) -> Result<RerankWeights, String> {
        let mut next = self.clone();
        for (name, w) in changes {
            if !w.is_finite() {
                return Err(format!("weight of {name} must be finite"));
            }
            match name.as_str() {
                "visual" => next.visual = *w,
                "colour" | "color" => next.colour = *w,
                "quality" => next.quality = *w,
                "ctr" => next.ctr = *w,
                other => {
                    return Err(format!(
                        "unknown reranking component {other:?}; known: visual, colour, quality, ctr"
                    ));
                }
            }
        }
        if !changes.is_empty() {
            next.version += 1;
        }
        Ok(next)
    }

    /// The final score of a hit.
    pub fn score(&self, visual: f32, colour: f32, quality: f32, ctr: f32) -> f32 {
        self.visual * visual + self.colour * colour + self.quality * quality + self.ctr * ctr
    }
}

/// One item's click history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemClicks {
    /// The item's id.
    pub id: String,
    /// Decayed, position-weighted impressions.
    pub impressions: f64,
    /// Decayed clicks.
    pub clicks: f64,
    /// Time of the last update of the counts (s since the Unix epoch).
    pub t: f64,
    /// Co-clicked items (by [`item_key`]) and their weights as of `co_t`, strongest first:
    /// at time `t` an edge weighs `w · 2^(−(t − co_t) / half-life)`.
    pub co: Vec<(u64, f32)>,
    /// The time the co-click weights are given at. A new co-click is added to them scaled up
    /// to that time (see [`ItemClicks::co_gain`]), so neither an impression nor a co-click
    /// has to decay the whole list.
    pub co_t: f64,
}

/// The most a co-click is scaled up to its list's time base before the list is decayed to
/// the present instead (2¹⁶: sixteen half-lives; see [`ItemClicks::co_gain`]).
const CO_GAIN_REBASE: f64 = 65_536.0;

/// How much a weight decays from `then` to `now` with this half-life (1 when not later).
fn decay(then: f64, now: f64, half_life: f64) -> f64 {
    if now > then && half_life > 0.0 {
        (-(now - then) / half_life).exp2()
    } else {
        1.0
    }
}

impl ItemClicks {
    fn decay_to(&mut self, now: f64, half_life: f64) {
        if now > self.t {
            let f = decay(self.t, now, half_life);
            self.impressions *= f;
            self.clicks *= f;
            self.t = now;
        }
    }

    /// What one co-click at `now` weighs as of `co_t`: `2^((now − co_t) / half-life)` (1 when
    /// `now` is not later), so the list keeps one time base and every edge decays alike (its
    /// order by weight is the order of the decayed weights). Once that gain would pass
    /// [`CO_GAIN_REBASE`] the list is decayed to `now` first (`co_t = now`, gain 1), which
    /// keeps the weights well within an `f32`'s range and precision: one pass over the list
    /// every sixteen half-lives instead of one per batch that touches the item.
    fn co_gain(&mut self, now: f64, half_life: f64) -> f32 {
        let gain = 1.0 / decay(self.co_t, now, half_life);
        if gain <= CO_GAIN_REBASE {
            return gain as f32;
        }
        let f = (1.0 / gain) as f32;
        for (_, w) in &mut self.co {
            *w *= f;
        }
        self.co_t = now;
        1.0
    }

    /// The smoothed CTR at `now`.
    pub fn ctr(&self, now: f64, cfg: &ClickConfig) -> f32 {
        let f = decay(self.t, now, cfg.half_life_s);
        smoothed(self.clicks * f, self.impressions * f, cfg)
    }

    /// Bytes this entry holds: its slot in the table (key, control byte, the struct), the id
    /// and the co-click list's allocation.
    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<(u64, ItemClicks)>()
            + 1
            + self.id.capacity()
            + self.co.capacity() * std::mem::size_of::<(u64, f32)>()
    }
}

/// The 64-bit key of an item id: FNV-1a, then the splitmix64 finaliser (so the low bits, which
/// choose the aggregator and the table bucket, depend on every byte). Stable across builds and
/// Rust versions — saved click state is keyed by it. Two ids share a key with probability
/// about n²/2⁶⁵ (3·10⁻⁸ for a million tracked items); they would then share their counts.
pub fn item_key(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A hasher for keys that are already well mixed ([`item_key`]): passes them through.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// A table keyed by [`item_key`].
pub type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// `(clicks + prior·strength) / (impressions + strength)`, capped at 1.
pub fn smoothed(clicks: f64, impressions: f64, cfg: &ClickConfig) -> f32 {
    let v = (clicks + cfg.prior_ctr * cfg.prior_strength) / (impressions + cfg.prior_strength);
    v.clamp(0.0, 1.0) as f32
}

/// Examination probability of a position.
pub fn examination(position: u32, eta: f64) -> f64 {
    if eta == 1.0 {
        return 1.0 / (1.0 + f64::from(position));
    }
    1.0 / (1.0 + f64::from(position)).powf(eta)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Which of `n` aggregators owns the item with this key.
pub fn aggregator_of(key: u64, n: usize) -> usize {
    (key % n.max(1) as u64) as usize
}

/// A top item by CTR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopItem {
    /// Item id.
    pub id: String,
    /// Smoothed CTR.
    pub ctr: f32,
    /// Decayed clicks.
    pub clicks: f64,
    /// Decayed, position-weighted impressions.
    pub impressions: f64,
}

/// Counters of one aggregator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregatorStats {
    /// Items tracked.
    pub items: u64,
    /// Approximate memory.
    pub memory_bytes: u64,
    /// Clicks absorbed.
    pub clicks: u64,
    /// Impressions absorbed.
    pub impressions: u64,
}

/// The aggregator actor.
#[derive(Debug, Default)]
pub struct ClickAggregator;

/// Arguments of an aggregator.
#[derive(Debug, Clone)]
pub struct AggregatorArguments {
    /// Its number.
    pub index: usize,
    /// How many aggregators there are (the items it owns: `aggregator_of(key, count) == index`).
    pub count: usize,
    /// Settings.
    pub config: ClickConfig,
    /// The folder of the aggregators' saved states (None: in memory only). Each saves its own
    /// `aggregator-{index}.clicks` there and, at start, takes the items it owns from every
    /// state file in it, so a change of the aggregator count loses nothing.
    pub dir: Option<PathBuf>,
    /// The runtime the aggregator runs on (None: the caller's).
    pub runtime: Option<tokio::runtime::Handle>,
    /// Its items, which the engine reads CTRs from (kept across restarts of the actor, which
    /// refills it from the saved state).
    pub table: ClickTable,
    /// The searches in flight, which its updates make way for.
    pub gate: Arc<SearchGate>,
}

impl AggregatorArguments {
    fn file(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("aggregator-{}.{STATE_EXT}", self.index)))
    }
}

/// The extension of saved aggregator states (items keyed by [`item_key`]).
const STATE_EXT: &str = "clicks";
/// The extension of the states saved before items had keys (read at start, then removed by
/// [`remove_legacy_states`] once every aggregator has saved its own).
const LEGACY_EXT: &str = "state";

/// Spawns an aggregator linked to `supervisor`, on its runtime when it has one.
pub async fn spawn_aggregator(
    args: AggregatorArguments,
    supervisor: ractor::ActorCell,
) -> Result<ActorRef<AggregatorMessage>, ActorProcessingErr> {
    match args.runtime.clone() {
        None => Ok(Actor::spawn_linked(None, ClickAggregator, args, supervisor)
            .await?
            .0),
        Some(rt) => {
            let spawned = rt
                .spawn(async move {
                    Actor::spawn_linked(None, ClickAggregator, args, supervisor)
                        .await
                        .map(|(r, _)| r)
                })
                .await
                .map_err(|e| format!("spawning a click aggregator: {e}"))?;
            Ok(spawned?)
        }
    }
}

/// The aggregators' own runtime: one thread at the lowest CPU priority (Linux `SCHED_IDLE`,
/// [`crate::lower_thread_priority`]), so click work runs while searches leave a core free and
/// a waking search preempts it at once. Under a load that leaves no core free for long, the
/// queues stay bounded: `Clicks` answers `Busy` ([`CLICK_BATCHES_QUEUED`]) and impressions
/// beyond [`IMPRESSION_BATCHES_QUEUED`] are dropped and counted.
#[derive(Debug)]
pub struct ClickRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ClickRuntime {
    /// Starts the runtime thread.
    pub fn start() -> std::io::Result<ClickRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("vsa-clicks".into())
            .spawn(move || {
                crate::lower_thread_priority();
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(ClickRuntime {
            handle,
            stop: Some(stop),
        })
    }

    /// Where to spawn the aggregators.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for ClickRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Click batches the aggregators may be behind before [`crate::Engine::clicks`] answers
/// `Busy`.
pub const CLICK_BATCHES_QUEUED: usize = 64;

/// Searches whose impressions may wait in the engine before they are sent on (they are sent
/// at least every [`IMPRESSION_FLUSH`] anyway, and ahead of any click).
pub const IMPRESSIONS_PENDING: usize = 256;

/// The longest impressions wait in the engine.
pub const IMPRESSION_FLUSH: Duration = Duration::from_millis(100);

/// Batches of impressions alone the aggregators may be behind; beyond, new ones are dropped
/// (and counted: `impressions_dropped` in the click stats) rather than queued without bound.
pub const IMPRESSION_BATCHES_QUEUED: usize = 256;

/// One aggregator's share of a batch of clicks (and of the impressions before them).
#[derive(Debug, Default)]
pub struct ClickBatch {
    /// Impressions of searches made before these clicks (applied first).
    pub impressions: Vec<Impressions>,
    /// Clicked items: key and id.
    pub clicks: Vec<(u64, String)>,
    /// Co-clicks `(item, other)` by key: `other` was clicked for the same query as `item`.
    pub co: Vec<(u64, u64)>,
    /// When (s since the Unix epoch).
    pub now: f64,
    /// The engine's count of batches not yet applied: released when this one is dropped,
    /// applied or lost with a failed aggregator, so the count cannot leak.
    pub queued: Option<Counted>,
}

impl ClickBatch {
    /// The batch, counted in `queued` until it is applied or dropped.
    pub fn counted(mut self, queued: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        self.queued = Some(Counted::on(queued));
        self
    }
}

/// One unit of a shared count, held while the work it counts waits or runs: released when
/// dropped, so work that is applied, refused or lost with a failed task or actor cannot leak
/// it.
#[derive(Debug)]
pub struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    /// Adds one to `count`, until the returned value is dropped.
    pub fn on(count: &Arc<std::sync::atomic::AtomicUsize>) -> Counted {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Items shown by one search, for one aggregator: the search's ids (shared with the query
/// log) and, for each of this aggregator's items, its index there, its key and position.
#[derive(Debug)]
pub struct Impressions {
    /// Every id the search showed.
    pub shown: Arc<[String]>,
    /// `(index into shown, key)`: the position is the index.
    pub mine: Vec<(u32, u64)>,
    /// When (s since the Unix epoch).
    pub now: f64,
}

/// A co-click edge for export: `(item id, other item's key, decayed weight)`.
pub type Edge = (String, u64, f32);

/// Messages of an aggregator.
#[derive(Debug)]
pub enum AggregatorMessage {
    /// A click (key, id); replies with the item's CTR after it.
    Click(u64, String, f64, RpcReplyPort<f32>),
    /// The top `n` items by CTR (with at least one click).
    Top(usize, f64, RpcReplyPort<Vec<TopItem>>),
    /// Co-click edges at least this heavy.
    Edges(f32, f64, RpcReplyPort<Vec<Edge>>),
    /// Save the state now.
    Save(RpcReplyPort<Result<(), String>>),
    /// Counters.
    Stats(RpcReplyPort<AggregatorStats>),
    /// Fault injection: panic.
    Panic,
    /// Clicks and co-clicks of a batch.
    Batch(ClickBatch),
}

/// An aggregator's items, shared with the engine for reading: the aggregator writes it (one
/// write lock per run of at most [`WRITE_RUN`] entries), and a search reads its CTRs there instead of waiting for the
/// aggregators' low-priority thread to answer a message.
pub type ClickTable = Arc<std::sync::RwLock<KeyMap<ItemClicks>>>;

/// The table for writing (a panic while it was held leaves it usable: the aggregator's
/// restart reloads it from the saved state).
fn write_table(table: &ClickTable) -> std::sync::RwLockWriteGuard<'_, KeyMap<ItemClicks>> {
    table.write().unwrap_or_else(|p| p.into_inner())
}

/// The table for reading.
pub fn read_table(table: &ClickTable) -> std::sync::RwLockReadGuard<'_, KeyMap<ItemClicks>> {
    table.read().unwrap_or_else(|p| p.into_inner())
}

/// How many independent lookups are started together (see [`crate::prefetch`]): enough to
/// overlap their cache misses, few enough that the lines are still in L1 when used.
pub const PREFETCH_RUN: usize = 16;

/// Most entries an aggregator changes under one write lock of its table (see the `Batch`
/// message): a reader waits for at most this many updates.
const WRITE_RUN: usize = 64;

/// State of an aggregator.
#[derive(Debug)]
pub struct AggregatorState {
    config: ClickConfig,
    file: Option<PathBuf>,
    items: ClickTable,
    clicks: u64,
    impressions: u64,
    dirty: bool,
    gate: Arc<SearchGate>,
}

/// The entry of `key`, made (with the id `name` gives) when new; decayed to `now`.
fn entry<'a>(
    items: &'a mut KeyMap<ItemClicks>,
    config: &ClickConfig,
    key: u64,
    name: impl FnOnce() -> String,
    now: f64,
) -> &'a mut ItemClicks {
    let hl = config.half_life_s;
    if items.len() >= config.max_items.max(1) && !items.contains_key(&key) {
        evict(items, hl, now);
    }
    let e = items.entry(key).or_insert_with(|| ItemClicks {
        id: name(),
        t: now,
        co_t: now,
        ..ItemClicks::default()
    });
    e.decay_to(now, hl);
    e
}

/// Forgets the least active tenth (by decayed impressions + clicks).
fn evict(items: &mut KeyMap<ItemClicks>, hl: f64, now: f64) {
    let mut activity: Vec<(f64, u64)> = items
        .iter_mut()
        .map(|(k, v)| {
            v.decay_to(now, hl);
            (v.impressions + v.clicks, *k)
        })
        .collect();
    activity.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = (activity.len() / 10).max(1);
    for (_, k) in activity.into_iter().take(n) {
        items.remove(&k);
    }
}

impl AggregatorState {
    fn save(&mut self) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let bytes = {
            let items = read_table(&self.items);
            let items: Vec<&ItemClicks> = items.values().collect();
            encode_framed(&(self.clicks, self.impressions, items)).map_err(|e| e.to_string())?
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::durability::write_atomic(file, &bytes).map_err(|e| e.to_string())?;
        self.dirty = false;
        Ok(())
    }

    /// Takes the items this aggregator owns from every saved state in `dir` (the newest
    /// version of an item wins); the totals come from its own file. Unreadable files are
    /// logged and skipped.
    fn load(&mut self, dir: &Path, index: usize, count: usize) {
        let Ok(listing) = std::fs::read_dir(dir) else {
            return;
        };
        let table = self.items.clone();
        let mut items_now = write_table(&table);
        let own = format!("aggregator-{index}.{STATE_EXT}");
        let own_legacy = format!("aggregator-{index}.{LEGACY_EXT}");
        let mut have_own = false;
        let mut foreign = false;
        let mut paths: Vec<PathBuf> = listing.flatten().map(|e| e.path()).collect();
        paths.sort();
        // Current states last, so they override the legacy ones' totals.
        paths.sort_by_key(|p| p.extension().is_some_and(|x| x == STATE_EXT));
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let legacy = name.ends_with(&format!(".{LEGACY_EXT}"));
            if !name.starts_with("aggregator-")
                || !(legacy || name.ends_with(&format!(".{STATE_EXT}")))
            {
                continue;
            }
            let loaded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    if legacy {
                        load_legacy_state(&bytes)
                    } else {
                        load_state(&bytes)
                    }
                });
            let (clicks, impressions, items) = match loaded {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "click state unreadable; skipped");
                    continue;
                }
            };
            if name == own || (name == own_legacy && !have_own) {
                self.clicks = clicks;
                self.impressions = impressions;
                have_own |= name == own;
            }
            let is_own = name == own;
            for item in items {
                let key = item_key(&item.id);
                if aggregator_of(key, count) != index {
                    foreign |= is_own;
                    continue;
                }
                foreign |= !is_own;
                match items_now.get(&key) {
                    Some(have) if have.t >= item.t => {}
                    _ => {
                        items_now.insert(key, item);
                    }
                }
            }
        }
        // Items came from, or belong in, another file: write this one anew at the next save.
        self.dirty = foreign;
    }
}

/// `(clicks, impressions, items)` of a saved state.
type SavedState = (u64, u64, Vec<ItemClicks>);

/// Adds `by` to the edge to `other` in a list kept strongest first (a new edge weighs `by`),
/// and keeps the `cap` strongest: the changed edge moves up past the weaker ones, as a stable
/// sort would move it, without sorting the list.
fn add_co_click(co: &mut Vec<(u64, f32)>, other: u64, by: f32, cap: usize) {
    let mut i = match co.iter().position(|(o, _)| *o == other) {
        Some(i) => {
            co[i].1 += by;
            i
        }
        None => {
            co.push((other, by));
            co.len() - 1
        }
    };
    while i > 0 && co[i - 1].1 < co[i].1 {
        co.swap(i - 1, i);
        i -= 1;
    }
    co.truncate(cap);
}

/// The framed payload of a saved state.
fn state_payload(bytes: &[u8]) -> Result<(&[u8], u32), String> {
    let (len, crc) = parse_header(bytes)
        .map_err(|e| e.to_string())?
        .ok_or("truncated click state")?;
    let payload = bytes
        .get(
            crate::durability::record::RECORD_HEADER
                ..crate::durability::record::RECORD_HEADER + len,
        )
        .ok_or("truncated click state")?;
    Ok((payload, crc))
}

/// Reads a saved aggregator state.
pub fn load_state(bytes: &[u8]) -> Result<SavedState, String> {
    let (payload, crc) = state_payload(bytes)?;
    decode_payload(payload, crc).map_err(|e| e.to_string())
}

/// An item as states before keys saved it (neighbours by id).
#[derive(Debug, Deserialize)]
struct LegacyItemClicks {
    impressions: f64,
    clicks: f64,
    t: f64,
    co: Vec<(String, f32)>,
}

/// Reads a state saved before items had keys.
fn load_legacy_state(bytes: &[u8]) -> Result<SavedState, String> {
    let (payload, crc) = state_payload(bytes)?;
    let (clicks, impressions, items): (u64, u64, Vec<(String, LegacyItemClicks)>) =
        decode_payload(payload, crc).map_err(|e| e.to_string())?;
    let items = items
        .into_iter()
        .map(|(id, e)| ItemClicks {
            id,
            impressions: e.impressions,
            clicks: e.clicks,
            t: e.t,
            co: e.co.into_iter().map(|(o, w)| (item_key(&o), w)).collect(),
            co_t: e.t,
        })
        .collect();
    Ok((clicks, impressions, items))
}

/// Removes the states saved before items had keys (call once every aggregator has saved).
pub fn remove_legacy_states(dir: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for path in listing.flatten().map(|e| e.path()) {
        let legacy = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with("aggregator-") && n.ends_with(&format!(".{LEGACY_EXT}"))
        });
        if legacy && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "removing an old click state failed");
        }
    }
}

impl Actor for ClickAggregator {
    type Msg = AggregatorMessage;
    type State = AggregatorState;
    type Arguments = AggregatorArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = AggregatorState {
            config: args.config.clone(),
            file: args.file(),
            items: args.table.clone(),
            clicks: 0,
            impressions: 0,
            dirty: false,
            gate: args.gate.clone(),
        };
        // A restarted aggregator starts again from the saved state.
        write_table(&state.items).clear();
        if let Some(dir) = &args.dir {
            state.load(dir, args.index, args.count.max(1));
            let n = read_table(&state.items).len();
            if n > 0 {
                tracing::info!(aggregator = args.index, items = n, "click state loaded");
            }
            // Save now and then while there is something new.
            let me = myself.clone();
            let every = Duration::from_secs(state.config.save_every_s.max(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let (tx, _rx) = ractor::concurrency::oneshot();
                    if me.send_message(AggregatorMessage::Save(tx.into())).is_err() {
                        break;
                    }
                }
            });
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
            AggregatorMessage::Click(key, id, now, reply) => {
                let mut items = write_table(&state.items);
                let e = entry(&mut items, &state.config, key, || id, now);
                e.clicks += 1.0;
                let ctr = smoothed(e.clicks, e.impressions, &state.config);
                state.clicks += 1;
                state.dirty = true;
                let _ = reply.send(ctr);
            }
            AggregatorMessage::Batch(mut batch) => {
                let cap = state.config.co_click_edges.max(1);
                let hl = state.config.half_life_s;
                let eta = state.config.position_eta;
                let cfg = &state.config;
                // The table's write lock is taken per run of entries, never for a whole
                // batch: this thread runs at the lowest priority and any search can preempt
                // it, so a CTR-weighted search that finds the lock held waits for the rest of
                // one run (microseconds), not of a batch.
                let gate = &state.gate;
                for shown in std::mem::take(&mut batch.impressions) {
                    for run in shown.mine.chunks(WRITE_RUN) {
                        gate.wait_quiet();
                        let mut items = write_table(&state.items);
                        for &(pos, key) in run {
                            let name =
                                || shown.shown.get(pos as usize).cloned().unwrap_or_default();
                            entry(&mut items, cfg, key, name, shown.now).impressions +=
                                examination(pos, eta);
                        }
                        state.impressions += run.len() as u64;
                    }
                }
                let mut clicks = std::mem::take(&mut batch.clicks).into_iter().peekable();
                while clicks.peek().is_some() {
                    gate.wait_quiet();
                    let mut items = write_table(&state.items);
                    for (key, id) in clicks.by_ref().take(WRITE_RUN) {
                        entry(&mut items, cfg, key, || id, batch.now).clicks += 1.0;
                        state.clicks += 1;
                    }
                }
                for run in batch.co.chunks(PREFETCH_RUN) {
                    gate.wait_quiet();
                    let mut items = write_table(&state.items);
                    // The lists of a run load side by side (each is several cache lines,
                    // rarely still cached), then change. A click's co-clicks from its own
                    // side come together (see `route_co_clicks`): one lookup for the group.
                    let groups = || run.chunk_by(|a, b| a.0 == b.0);
                    for group in groups() {
                        if let Some(e) = items.get(&group[0].0) {
                            crate::prefetch(&e.co);
                        }
                    }
                    for group in groups() {
                        // Both ends were clicked, so the item is tracked unless it was
                        // evicted since: an edge of an untracked item is dropped with it.
                        if let Some(e) = items.get_mut(&group[0].0) {
                            let by = e.co_gain(batch.now, hl);
                            for &(_, other) in group {
                                add_co_click(&mut e.co, other, by, cap);
                            }
                        }
                    }
                }
                state.dirty = true;
                // Dropping the batch takes it off the engine's count.
            }
            AggregatorMessage::Top(n, now, reply) => {
                let cfg = &state.config;
                let mut top: Vec<TopItem> = read_table(&state.items)
                    .values()
                    .filter(|e| e.clicks > 0.0)
                    .map(|e| TopItem {
                        id: e.id.clone(),
                        ctr: e.ctr(now, cfg),
                        clicks: e.clicks,
                        impressions: e.impressions,
                    })
                    .collect();
                top.sort_by(|a, b| b.ctr.total_cmp(&a.ctr).then_with(|| a.id.cmp(&b.id)));
                top.truncate(n);
                let _ = reply.send(top);
            }
            AggregatorMessage::Edges(min, now, reply) => {
                let hl = state.config.half_life_s;
                let mut edges = Vec::new();
                for e in read_table(&state.items).values() {
                    let f = decay(e.co_t, now, hl) as f32;
                    for (o, w) in &e.co {
                        if w * f >= min {
                            edges.push((e.id.clone(), *o, w * f));
                        }
                    }
                }
                let _ = reply.send(edges);
            }
            AggregatorMessage::Save(reply) => {
                let r = if state.dirty { state.save() } else { Ok(()) };
                if let Err(e) = &r {
                    tracing::error!(error = %e, "saving click state failed");
                }
                let _ = reply.send(r);
            }
            AggregatorMessage::Stats(reply) => {
                let items = read_table(&state.items);
                let _ = reply.send(AggregatorStats {
                    items: items.len() as u64,
                    memory_bytes: items.values().map(ItemClicks::memory_bytes).sum::<usize>()
                        as u64,
                    clicks: state.clicks,
                    impressions: state.impressions,
                });
            }
            AggregatorMessage::Panic => panic!("click aggregator panicked by fault injection"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.dirty
            && let Err(e) = state.save()
        {
            tracing::error!(error = %e, "saving click state at stop failed");
        }
        Ok(())
    }
}

/// One remembered search.
#[derive(Debug, Clone)]
pub struct QueryEntry {
    /// When (s since the Unix epoch).
    pub at: f64,
    /// Item ids shown, in order (shared with the impressions sent to the aggregators).
    pub shown: Arc<[String]>,
    /// Their keys ([`item_key`]), in the same order.
    pub keys: Vec<u64>,
    /// Positions clicked so far.
    pub clicked: Positions,
    /// The query embedding, when retained.
    pub anchor: Option<Vec<f32>>,
}

impl QueryEntry {
    /// A search that showed `shown` at `at`.
    pub fn new(at: f64, shown: Vec<String>, anchor: Option<Vec<f32>>) -> QueryEntry {
        QueryEntry {
            at,
            keys: shown.iter().map(|s| item_key(s)).collect(),
            shown: shown.into(),
            clicked: Positions::default(),
            anchor,
        }
    }
}

/// A set of result positions: a bit mask for the first 64 (no allocation), a list beyond.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Positions {
    low: u64,
    high: Vec<u32>,
}

impl Positions {
    /// True when `p` is in the set.
    pub fn contains(&self, p: u32) -> bool {
        if p < 64 {
            self.low & (1 << p) != 0
        } else {
            self.high.contains(&p)
        }
    }

    /// Adds `p`.
    pub fn insert(&mut self, p: u32) {
        if p < 64 {
            self.low |= 1 << p;
        } else if !self.high.contains(&p) {
            self.high.push(p);
            self.high.sort_unstable();
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_empty()
    }

    /// The positions, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut low = self.low;
        std::iter::from_fn(move || {
            (low != 0).then(|| {
                let p = low.trailing_zeros();
                low &= low - 1;
                p
            })
        })
        .chain(self.high.iter().copied())
    }
}

/// The bounded log of recent searches.
#[derive(Debug, Default)]
pub struct QueryLog {
    first_id: u64,
    entries: VecDeque<QueryEntry>,
    retained: usize,
    /// No entry below this id holds an embedding: where the retention pass starts, so a
    /// search costs O(1) however long the log is.
    anchors_from: u64,
}

impl QueryLog {
    /// Records search `id` (ids are consecutive: they come from one counter).
    pub fn push(&mut self, id: u64, mut entry: QueryEntry, cfg: &ClickConfig) {
        if self.entries.is_empty() {
            self.first_id = id;
        }
        // Ids may arrive slightly out of order (concurrent searches): pad the gap.
        let expected = self.first_id + self.entries.len() as u64;
        if id < self.first_id {
            return;
        }
        if id >= expected {
            for _ in expected..id {
                self.entries
                    .push_back(QueryEntry::new(entry.at, Vec::new(), None));
            }
            if cfg.retain_queries == 0 {
                entry.anchor = None;
            }
            if entry.anchor.is_some() {
                self.retained += 1;
                self.anchors_from = self.anchors_from.min(id);
            }
            self.entries.push_back(entry);
        } else if let Some(slot) = self.entries.get_mut((id - self.first_id) as usize) {
            if cfg.retain_queries == 0 {
                entry.anchor = None;
            }
            if slot.anchor.is_some() {
                self.retained -= 1;
            }
            if entry.anchor.is_some() {
                self.retained += 1;
                self.anchors_from = self.anchors_from.min(id);
            }
            *slot = entry;
        }
        while self.entries.len() > cfg.query_log.max(1) {
            if let Some(e) = self.entries.pop_front()
                && e.anchor.is_some()
            {
                self.retained -= 1;
            }
            self.first_id += 1;
        }
        // Retention of query embeddings: by count (oldest first) and by age.
        let oldest_ok = entry_time_limit(cfg);
        if self.retained > cfg.retain_queries || oldest_ok.is_some() {
            let mut excess = self.retained.saturating_sub(cfg.retain_queries);
            let start = self.anchors_from.saturating_sub(self.first_id);
            let mut first_kept = self.first_id + self.entries.len() as u64;
            for (i, e) in self.entries.iter_mut().enumerate().skip(start as usize) {
                if e.anchor.is_none() {
                    continue;
                }
                let too_old = oldest_ok.is_some_and(|t| e.at < t);
                if excess > 0 || too_old {
                    e.anchor = None;
                    self.retained -= 1;
                    excess = excess.saturating_sub(1);
                } else {
                    first_kept = self.first_id + i as u64;
                    break;
                }
            }
            self.anchors_from = first_kept;
        }
    }

    /// Starts loading the entries of the queries `ids` and then their shown keys (see
    /// [`crate::prefetch`]): checking a batch of clicks then waits for about one round of
    /// cache misses per run of `ids` instead of two or three per click.
    pub fn prefetch(&self, ids: impl Iterator<Item = u64> + Clone) {
        for id in ids.clone() {
            if let Some(e) = self.get(id) {
                crate::prefetch(std::slice::from_ref(e));
            }
        }
        for id in ids {
            if let Some(e) = self.get(id) {
                crate::prefetch(&e.keys);
            }
        }
    }

    fn get(&self, id: u64) -> Option<&QueryEntry> {
        let i = id.checked_sub(self.first_id)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The entry of query `id`.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut QueryEntry> {
        let i = id.checked_sub(self.first_id)?;
        self.entries
            .get_mut(usize::try_from(i).ok()?)
            .filter(|e| !e.shown.is_empty())
    }

    /// Remembered searches with at least one click and a retained embedding, from the
    /// `offset`-th entry on: `(query id, entry)`.
    pub fn clicked_page(&self, offset: u64, limit: usize) -> (Vec<(u64, QueryEntry)>, Option<u64>) {
        let mut out = Vec::new();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in self.entries.iter().enumerate().skip(start) {
            if out.len() >= limit {
                return (out, Some(i as u64));
            }
            if !e.clicked.is_empty() && e.anchor.is_some() {
                out.push((self.first_id + i as u64, e.clone()));
            }
        }
        (out, None)
    }

    /// Remembered searches.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Searches whose embedding is retained.
    pub fn retained(&self) -> usize {
        self.retained
    }
}

fn entry_time_limit(cfg: &ClickConfig) -> Option<f64> {
    (cfg.retain_age_s > 0).then(|| now_s() - cfg.retain_age_s as f64)
}

/// Triplets of one retained, clicked query: `(positive, negative)` pairs where the negative
/// was shown above the positive and not clicked.
pub fn triplets(entry: &QueryEntry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in entry.clicked.iter() {
        let Some(positive) = entry.shown.get(c as usize) else {
            continue;
        };
        for (n, negative) in entry.shown.iter().enumerate().take(c as usize) {
            if !entry.clicked.contains(n as u32) {
                out.push((positive.clone(), negative.clone()));
            }
        }
    }
    out
}

/// Connected components (size ≥ 2) of an undirected graph given as edges: the "virtual ids".
pub fn components(edges: &[(String, String, f32)]) -> Vec<Vec<String>> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (a, b, _) in edges {
        let n = index.len();
        index.entry(a).or_insert(n);
        let n = index.len();
        index.entry(b).or_insert(n);
    }
    let mut parent: Vec<usize> = (0..index.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for (a, b, _) in edges {
        let (ia, ib) = (index[a.as_str()], index[b.as_str()]);
        let (ra, rb) = (find(&mut parent, ia), find(&mut parent, ib));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (name, i) in &index {
        let r = find(&mut parent, *i);
        groups.entry(r).or_default().push((*name).to_string());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().filter(|g| g.len() >= 2).collect();
    for g in &mut out {
        g.sort();
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The co-click list update equals "find or push, stable sort strongest first,
        /// truncate", the form it replaced.
        #[test]
        fn co_click_updates_equal_the_sorted_form(
            start in proptest::collection::vec((0u8..12, 0.1f32..5.0), 0..20),
            adds in proptest::collection::vec(0u8..16, 1..40),
            cap in 1usize..24,
        ) {
            let mut co: Vec<(u64, f32)> = Vec::new();
            for (id, w) in start {
                let id = item_key(&format!("item-{id:02}"));
                if !co.iter().any(|(o, _)| *o == id) {
                    co.push((id, w));
                }
            }
            co.sort_by(|a, b| b.1.total_cmp(&a.1));
            co.truncate(cap);
            let mut reference = co.clone();
            for a in adds {
                let other = item_key(&format!("item-{a:02}"));
                add_co_click(&mut co, other, 1.0, cap);
                match reference.iter_mut().find(|(o, _)| *o == other) {
                    Some((_, w)) => *w += 1.0,
                    None => reference.push((other, 1.0)),
                }
                reference.sort_by(|a, b| b.1.total_cmp(&a.1));
                reference.truncate(cap);
                prop_assert_eq!(&co, &reference);
            }
        }
    }

    /// A co-click added later weighs what it would had the list been decayed to its time,
    /// before and after the list is rebased (gain past 2¹⁶).
    #[test]
    fn co_clicks_keep_one_time_base_and_rebase() {
        let (a, b) = (item_key("a"), item_key("b"));
        let mut e = ItemClicks::default();
        let hl = 10.0;
        let by = e.co_gain(0.0, hl);
        add_co_click(&mut e.co, a, by, 4);
        // Ten seconds later (one half-life): `a` weighs 0.5 now, `b` 1.
        let by = e.co_gain(10.0, hl);
        assert_eq!((by, e.co_t), (2.0, 0.0));
        add_co_click(&mut e.co, b, by, 4);
        let now = |e: &ItemClicks, t: f64| -> Vec<(u64, f32)> {
            let f = decay(e.co_t, t, hl) as f32;
            e.co.iter().map(|(o, w)| (*o, w * f)).collect()
        };
        assert_eq!(now(&e, 10.0), vec![(b, 1.0), (a, 0.5)]);
        // Twenty half-lives on: past 2^16 the list is decayed to now, the gain is 1 again.
        let by = e.co_gain(210.0, hl);
        assert_eq!((by, e.co_t), (1.0, 210.0));
        add_co_click(&mut e.co, a, by, 4);
        let w = now(&e, 210.0);
        assert_eq!(w[0].0, a);
        assert!((w[0].1 - (1.0 + 0.5 / 1_048_576.0)).abs() < 1e-6);
        assert!((w[1].1 - 1.0 / 1_048_576.0).abs() < 1e-9);
        // No decay without a half-life, nor when the clock goes back.
        assert_eq!(e.co_gain(300.0, 0.0), 1.0);
        assert_eq!(e.co_gain(100.0, hl), 1.0);
    }

    #[test]
    fn ctr_is_smoothed_position_corrected_and_decays() {
        let cfg = ClickConfig {
            half_life_s: 10.0,
            ..ClickConfig::default()
        };
        let prior = smoothed(0.0, 0.0, &cfg);
        assert!((prior - 0.05).abs() < 1e-6);
        // A click at position 9 (examined 1/10 as often) is worth more than one at 0.
        let low = smoothed(1.0, examination(9, 1.0) * 5.0, &cfg);
        let top = smoothed(1.0, examination(0, 1.0) * 5.0, &cfg);
        assert!(low > top);
        let mut e = ItemClicks {
            id: "a".into(),
            impressions: 10.0,
            clicks: 5.0,
            t: 100.0,
            co: vec![],
            co_t: 100.0,
        };
        let fresh = e.ctr(100.0, &cfg);
        let later = e.ctr(200.0, &cfg);
        assert!(
            fresh > later && (later - prior).abs() < 0.01,
            "{fresh} {later}"
        );
        e.decay_to(110.0, 10.0);
        assert!((e.clicks - 2.5).abs() < 1e-9);
    }

    #[test]
    fn weights_apply_and_version() {
        let w = RerankWeights::default();
        let n = w.apply(&[("ctr".into(), 2.0)]).unwrap();
        assert_eq!((n.ctr, n.version), (2.0, w.version + 1));
        assert!(w.apply(&[("likes".into(), 1.0)]).is_err());
        assert!(w.apply(&[("ctr".into(), f32::NAN)]).is_err());
        assert_eq!(w.apply(&[]).unwrap(), w);
    }

    #[test]
    fn query_log_is_bounded_and_drops_embeddings_by_count() {
        let cfg = ClickConfig {
            query_log: 5,
            retain_queries: 2,
            ..ClickConfig::default()
        };
        let mut log = QueryLog::default();
        for id in 1..=8u64 {
            log.push(
                id,
                QueryEntry::new(now_s(), vec![format!("i{id}")], Some(vec![id as f32])),
                &cfg,
            );
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.retained(), 2);
        assert!(log.get_mut(3).is_none());
        assert!(log.get_mut(4).is_some_and(|e| e.anchor.is_none()));
        assert!(log.get_mut(8).is_some_and(|e| e.anchor.is_some()));
        let off = ClickConfig {
            retain_queries: 0,
            ..cfg
        };
        let mut log = QueryLog::default();
        log.push(
            1,
            QueryEntry::new(now_s(), vec!["a".into()], Some(vec![1.0])),
            &off,
        );
        assert_eq!(log.retained(), 0);
        // A long log, searches slightly out of order: the newest embeddings are the ones kept.
        let long = ClickConfig {
            query_log: 100_000,
            retain_queries: 10,
            ..ClickConfig::default()
        };
        let mut log = QueryLog::default();
        for n in 0..50_000u64 {
            let id = 1 + (n ^ 1); // 2, 1, 4, 3, ...
            let entry = QueryEntry::new(now_s(), vec![format!("i{id}")], Some(vec![id as f32]));
            log.push(id, entry, &long);
        }
        assert_eq!(log.retained(), 10);
        let kept: Vec<u64> = (1..=50_000u64)
            .filter(|&id| log.get_mut(id).is_some_and(|e| e.anchor.is_some()))
            .collect();
        assert_eq!(kept, (49_991..=50_000).collect::<Vec<_>>());
    }

    #[test]
    fn triplets_and_virtual_ids() {
        let mut e = QueryEntry::new(
            0.0,
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            None,
        );
        e.clicked.insert(2);
        e.clicked.insert(0);
        assert_eq!(triplets(&e), vec![("c".to_string(), "b".to_string())]);
        let edges = vec![
            ("a".to_string(), "b".to_string(), 3.0),
            ("b".to_string(), "c".to_string(), 2.0),
            ("x".to_string(), "y".to_string(), 2.0),
        ];
        assert_eq!(
            components(&edges),
            vec![
                vec!["a".to_string(), "b".into(), "c".into()],
                vec!["x".to_string(), "y".into()]
            ]
        );
    }

    #[test]
    fn saved_state_round_trips_and_damage_is_an_error() {
        let items = vec![ItemClicks {
            id: "a".into(),
            impressions: 2.0,
            clicks: 1.0,
            t: 5.0,
            co: vec![(item_key("b"), 1.0)],
            co_t: 5.0,
        }];
        let refs: Vec<&ItemClicks> = items.iter().collect();
        let bytes = encode_framed(&(3u64, 4u64, refs)).unwrap();
        assert_eq!(load_state(&bytes).unwrap(), (3, 4, items));
        assert!(load_state(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(load_state(&bad).is_err());
    }

    /// What the states saved before keys held, as they were written.
    #[derive(Serialize)]
    struct OldItem {
        impressions: f64,
        clicks: f64,
        t: f64,
        co: Vec<(String, f32)>,
    }

    fn old_state(items: &[(&str, f64, f64)]) -> Vec<u8> {
        let items: Vec<(String, OldItem)> = items
            .iter()
            .map(|&(id, clicks, t)| {
                (
                    id.to_string(),
                    OldItem {
                        impressions: 10.0,
                        clicks,
                        t,
                        co: vec![("other".into(), 2.0)],
                    },
                )
            })
            .collect();
        encode_framed(&(7u64, 70u64, items)).unwrap()
    }

    fn loaded(dir: &Path, index: usize, count: usize) -> AggregatorState {
        let mut s = AggregatorState {
            config: ClickConfig::default(),
            file: Some(dir.join(format!("aggregator-{index}.{STATE_EXT}"))),
            items: ClickTable::default(),
            clicks: 0,
            impressions: 0,
            dirty: false,
            gate: Arc::new(SearchGate::new(Duration::ZERO)),
        };
        s.load(dir, index, count);
        s
    }

    /// Items move to the aggregator that owns them whatever file they were saved in (another
    /// aggregator count, or the states from before keys), the newest version wins, and once
    /// every aggregator has saved, the old files can go without losing an item.
    #[test]
    fn states_are_taken_by_owner_from_every_file_and_old_ones_are_read() {
        let dir = std::env::temp_dir().join(format!("vsa-click-states-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ids: Vec<String> = (0..40).map(|i| format!("sku-{i}")).collect();
        // One aggregator used to hold everything, in the old format; a newer state of sku-0
        // lies in a current file.
        let old: Vec<(&str, f64, f64)> = ids.iter().map(|i| (i.as_str(), 1.0, 10.0)).collect();
        std::fs::write(dir.join("aggregator-0.state"), old_state(&old)).unwrap();
        let newer = ItemClicks {
            id: "sku-0".into(),
            impressions: 1.0,
            clicks: 5.0,
            t: 20.0,
            co: vec![],
            co_t: 20.0,
        };
        let bytes = encode_framed(&(1u64, 1u64, vec![&newer])).unwrap();
        std::fs::write(dir.join("aggregator-2.clicks"), bytes).unwrap();
        let mut states: Vec<AggregatorState> = (0..3).map(|i| loaded(&dir, i, 3)).collect();
        let total: usize = states.iter().map(|s| read_table(&s.items).len()).sum();
        assert_eq!(total, ids.len());
        for (i, s) in states.iter().enumerate() {
            assert!(
                read_table(&s.items)
                    .keys()
                    .all(|k| aggregator_of(*k, 3) == i)
            );
        }
        let sku0 = item_key("sku-0");
        let owner = &states[aggregator_of(sku0, 3)];
        assert_eq!(read_table(&owner.items)[&sku0].clicks, 5.0);
        let sku1 = read_table(&states[aggregator_of(item_key("sku-1"), 3)].items)
            [&item_key("sku-1")]
            .clone();
        assert_eq!(sku1.co, vec![(item_key("other"), 2.0)]);
        assert!(states.iter().all(|s| s.dirty));
        for s in &mut states {
            s.save().unwrap();
        }
        remove_legacy_states(&dir);
        assert!(!&dir.join("aggregator-0.state").exists());
        // Back to two aggregators: nothing lost.
        let states: Vec<AggregatorState> = (0..2).map(|i| loaded(&dir, i, 2)).collect();
        let total: usize = states.iter().map(|s| read_table(&s.items).len()).sum();
        assert_eq!(total, ids.len());
        assert_eq!(
            read_table(&states[aggregator_of(sku0, 2)].items)[&sku0].clicks,
            5.0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// The position set equals a sorted set of the same inserts.
        #[test]
        fn positions_equal_a_sorted_set(ps in proptest::collection::vec(0u32..150, 0..40)) {
            let mut set = Positions::default();
            let mut reference = std::collections::BTreeSet::new();
            for p in ps {
                set.insert(p);
                reference.insert(p);
                prop_assert!(set.contains(p));
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), reference.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(set.is_empty(), reference.is_empty());
            prop_assert!(!set.contains(150));
        }
    }

    #[test]
    fn item_keys_are_stable_and_spread() {
        // Pinned: saved states are keyed by these values.
        assert_eq!(item_key(""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(item_key("sku-1"), 0xf6ba_4edd_272e_0924);
        assert_ne!(item_key("sku-1"), item_key("sku-2"));
        let mut per = [0usize; 4];
        for i in 0..4000 {
            per[aggregator_of(item_key(&format!("item-{i:06}")), 4)] += 1;
        }
        assert!(per.iter().all(|&n| (850..1150).contains(&n)), "{per:?}");
    }
}
