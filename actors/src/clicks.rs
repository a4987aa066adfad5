//! Click feedback: the query log (what each search showed), the `ClickAggregator` actors
//! (per-item decayed, position-corrected CTR and a bounded co-click graph, sharded by item id),
//! the live reranking weights, and training-data export.
//!
//! ```text
//! Engine::search ── hits at positions ──▶ QueryLog (bounded) + Impressions ──▶ ClickAggregator[hash(id) % n]
//! Engine::click  ── checked against the QueryLog ──▶ Click (+ a Batch of co-clicks with the items clicked
//!                                                   for the same query) ──▶ aggregators
//! Engine::clicks ── each click checked the same way ──▶ one Batch per aggregator (not awaited)
//! Engine::search (ctr weight ≠ 0) ── Ctrs(ids) ──▶ aggregators ──▶ rerank
//! ```
//!
//! CTR model: every impression at position `p` (0-based) adds the examination probability
//! `1 / (1 + p)^eta` to the item's impressions, every click adds 1 to its clicks; both decay
//! with `half_life_s`. The smoothed CTR is `(clicks + prior_ctr·prior_strength) /
//! (impressions + prior_strength)`, capped at 1 — an item never shown has the prior.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::durability::record::{decode_payload, encode_framed, parse_header};

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
            query_log: 100_000,
            retain_queries: 10_000,
            retain_age_s: 7 * 86_400,
            rerank_depth: 50,
            virtual_id_min_weight: 2.0,
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
    /// Decayed, position-weighted impressions.
    pub impressions: f64,
    /// Decayed clicks.
    pub clicks: f64,
    /// Time of the last update (s since the Unix epoch).
    pub t: f64,
    /// Co-clicked items and decayed weights, strongest first.
    pub co: Vec<(String, f32)>,
}

impl ItemClicks {
    fn decay_to(&mut self, now: f64, half_life: f64) {
        if now > self.t && half_life > 0.0 {
            let f = 0.5f64.powf((now - self.t) / half_life);
            self.impressions *= f;
            self.clicks *= f;
            for (_, w) in &mut self.co {
                *w *= f as f32;
            }
        }
        self.t = self.t.max(now);
    }

    /// The smoothed CTR at `now`.
    pub fn ctr(&self, now: f64, cfg: &ClickConfig) -> f32 {
        let f = if now > self.t && cfg.half_life_s > 0.0 {
            0.5f64.powf((now - self.t) / cfg.half_life_s)
        } else {
            1.0
        };
        smoothed(self.clicks * f, self.impressions * f, cfg)
    }

    fn memory_bytes(&self) -> usize {
        64 + self.co.iter().map(|(s, _)| 32 + s.len()).sum::<usize>()
    }
}

/// `(clicks + prior·strength) / (impressions + strength)`, capped at 1.
pub fn smoothed(clicks: f64, impressions: f64, cfg: &ClickConfig) -> f32 {
    let v = (clicks + cfg.prior_ctr * cfg.prior_strength) / (impressions + cfg.prior_strength);
    v.clamp(0.0, 1.0) as f32
}

/// Examination probability of a position.
pub fn examination(position: u32, eta: f64) -> f64 {
    1.0 / (1.0 + f64::from(position)).powf(eta)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Which aggregator owns an item.
pub fn aggregator_of(item: &str, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    item.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
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
    /// Settings.
    pub config: ClickConfig,
    /// Where its state is saved (None: in memory only).
    pub file: Option<PathBuf>,
}

/// Click batches the aggregators may be behind before [`crate::Engine::clicks`] answers
/// `Busy`.
pub const CLICK_BATCHES_QUEUED: usize = 64;

/// One aggregator's share of a batch of clicks.
#[derive(Debug, Default)]
pub struct ClickBatch {
    /// Clicked items.
    pub clicks: Vec<String>,
    /// Co-clicks `(item, other)`: `other` was clicked for the same query as `item`.
    pub co: Vec<(String, String)>,
    /// When (s since the Unix epoch).
    pub now: f64,
    /// The engine's count of batches not yet applied: decremented when this one is dropped,
    /// applied or lost with a failed aggregator, so the count cannot leak.
    pub queued: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

impl Drop for ClickBatch {
    fn drop(&mut self) {
        if let Some(q) = self.queued.take() {
            q.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Messages of an aggregator.
#[derive(Debug)]
pub enum AggregatorMessage {
    /// Items shown at positions.
    Impressions(Vec<(String, u32)>, f64),
    /// A click; replies with the item's CTR after it.
    Click(String, f64, RpcReplyPort<f32>),
    /// Smoothed CTRs of items (prior for unknown ones).
    Ctrs(Vec<String>, f64, RpcReplyPort<Vec<f32>>),
    /// The top `n` items by CTR (with at least one click).
    Top(usize, f64, RpcReplyPort<Vec<TopItem>>),
    /// Co-click edges at least this heavy: `(item, other, weight)`.
    Edges(f32, f64, RpcReplyPort<Vec<(String, String, f32)>>),
    /// Save the state now.
    Save(RpcReplyPort<Result<(), String>>),
    /// Counters.
    Stats(RpcReplyPort<AggregatorStats>),
    /// Fault injection: panic.
    Panic,
    /// Clicks and co-clicks of a batch.
    Batch(ClickBatch),
}

/// State of an aggregator.
#[derive(Debug)]
pub struct AggregatorState {
    config: ClickConfig,
    file: Option<PathBuf>,
    items: HashMap<String, ItemClicks>,
    clicks: u64,
    impressions: u64,
    dirty: bool,
}

impl AggregatorState {
    fn entry(&mut self, id: String, now: f64) -> &mut ItemClicks {
        if self.items.len() >= self.config.max_items.max(1) && !self.items.contains_key(&id) {
            self.evict(now);
        }
        let hl = self.config.half_life_s;
        let e = self.items.entry(id).or_insert_with(|| ItemClicks {
            t: now,
            ..ItemClicks::default()
        });
        e.decay_to(now, hl);
        e
    }

    /// Forgets the least active tenth (by decayed impressions + clicks).
    fn evict(&mut self, now: f64) {
        let hl = self.config.half_life_s;
        let mut activity: Vec<(f64, String)> = self
            .items
            .iter_mut()
            .map(|(k, v)| {
                v.decay_to(now, hl);
                (v.impressions + v.clicks, k.clone())
            })
            .collect();
        activity.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = (activity.len() / 10).max(1);
        for (_, k) in activity.into_iter().take(n) {
            self.items.remove(&k);
        }
    }

    fn save(&mut self) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let items: Vec<(&String, &ItemClicks)> = self.items.iter().collect();
        let bytes =
            encode_framed(&(self.clicks, self.impressions, items)).map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::durability::write_atomic(file, &bytes).map_err(|e| e.to_string())?;
        self.dirty = false;
        Ok(())
    }
}

type SavedState = (u64, u64, Vec<(String, ItemClicks)>);

/// Adds one to the edge to `other` in a list kept strongest first (a new edge weighs 1), and
/// keeps the `cap` strongest: the changed edge moves up past the weaker ones, as a stable sort
/// would move it, without sorting the list.
fn add_co_click(co: &mut Vec<(String, f32)>, other: String, cap: usize) {
    // Ids of one catalogue often share their length and prefix: the last byte rejects most
    // before the full comparison.
    let last = other.as_bytes().last().copied();
    let mut i = match co
        .iter()
        .position(|(o, _)| o.as_bytes().last().copied() == last && *o == other)
    {
        Some(i) => {
            co[i].1 += 1.0;
            i
        }
        None => {
            co.push((other, 1.0));
            co.len() - 1
        }
    };
    while i > 0 && co[i - 1].1 < co[i].1 {
        co.swap(i - 1, i);
        i -= 1;
    }
    co.truncate(cap);
}

/// Reads a saved aggregator state.
pub fn load_state(bytes: &[u8]) -> Result<SavedState, String> {
    let (len, crc) = parse_header(bytes)
        .map_err(|e| e.to_string())?
        .ok_or("truncated click state")?;
    let payload = bytes
        .get(
            crate::durability::record::RECORD_HEADER
                ..crate::durability::record::RECORD_HEADER + len,
        )
        .ok_or("truncated click state")?;
    decode_payload(payload, crc).map_err(|e| e.to_string())
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
            config: args.config,
            file: args.file,
            items: HashMap::new(),
            clicks: 0,
            impressions: 0,
            dirty: false,
        };
        if let Some(f) = &state.file {
            match std::fs::read(f) {
                Ok(bytes) => match load_state(&bytes) {
                    Ok((clicks, impressions, items)) => {
                        state.clicks = clicks;
                        state.impressions = impressions;
                        state.items = items.into_iter().collect();
                        tracing::info!(
                            aggregator = args.index,
                            items = state.items.len(),
                            "click state loaded"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(file = %f.display(), error = %e, "click state unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "click state unreadable; starting empty")
                }
            }
            // Save now and then while there is something new.
            let me = myself.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
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
            AggregatorMessage::Impressions(shown, now) => {
                let eta = state.config.position_eta;
                for (id, pos) in shown {
                    state.entry(id, now).impressions += examination(pos, eta);
                    state.impressions += 1;
                }
                state.dirty = true;
            }
            AggregatorMessage::Click(id, now, reply) => {
                let e = state.entry(id, now);
                e.clicks += 1.0;
                let ctr = smoothed(e.clicks, e.impressions, &state.config);
                state.clicks += 1;
                state.dirty = true;
                let _ = reply.send(ctr);
            }
            AggregatorMessage::Batch(mut batch) => {
                let cap = state.config.co_click_edges.max(1);
                for id in std::mem::take(&mut batch.clicks) {
                    state.entry(id, batch.now).clicks += 1.0;
                    state.clicks += 1;
                }
                for (id, other) in std::mem::take(&mut batch.co) {
                    let e = state.entry(id, batch.now);
                    add_co_click(&mut e.co, other, cap);
                }
                state.dirty = true;
                // Dropping the batch takes it off the engine's count.
            }
            AggregatorMessage::Ctrs(ids, now, reply) => {
                let cfg = &state.config;
                let prior = smoothed(0.0, 0.0, cfg);
                let ctrs = ids
                    .iter()
                    .map(|id| state.items.get(id).map_or(prior, |e| e.ctr(now, cfg)))
                    .collect();
                let _ = reply.send(ctrs);
            }
            AggregatorMessage::Top(n, now, reply) => {
                let cfg = &state.config;
                let mut top: Vec<TopItem> = state
                    .items
                    .iter()
                    .filter(|(_, e)| e.clicks > 0.0)
                    .map(|(id, e)| TopItem {
                        id: id.clone(),
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
                for (id, e) in &state.items {
                    let f = if now > e.t && hl > 0.0 {
                        0.5f64.powf((now - e.t) / hl) as f32
                    } else {
                        1.0
                    };
                    for (o, w) in &e.co {
                        if w * f >= min {
                            edges.push((id.clone(), o.clone(), w * f));
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
                let _ = reply.send(AggregatorStats {
                    items: state.items.len() as u64,
                    memory_bytes: state
                        .items
                        .iter()
                        .map(|(k, v)| 48 + k.len() + v.memory_bytes())
                        .sum::<usize>() as u64,
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
    /// Item ids shown, in order.
    pub shown: Vec<String>,
    /// Items clicked so far.
    pub clicked: Vec<String>,
    /// The query embedding, when retained.
    pub anchor: Option<Vec<f32>>,
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
                self.entries.push_back(QueryEntry {
                    at: entry.at,
                    shown: Vec::new(),
                    clicked: Vec::new(),
                    anchor: None,
                });
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
    for c in &entry.clicked {
        let Some(pos) = entry.shown.iter().position(|s| s == c) else {
            continue;
        };
        for n in &entry.shown[..pos] {
            if !entry.clicked.contains(n) {
                out.push((c.clone(), n.clone()));
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
            let mut co: Vec<(String, f32)> = Vec::new();
            for (id, w) in start {
                let id = format!("item-{id:02}");
                if !co.iter().any(|(o, _)| *o == id) {
                    co.push((id, w));
                }
            }
            co.sort_by(|a, b| b.1.total_cmp(&a.1));
            co.truncate(cap);
            let mut reference = co.clone();
            for a in adds {
                let other = format!("item-{a:02}");
                add_co_click(&mut co, other.clone(), cap);
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
            impressions: 10.0,
            clicks: 5.0,
            t: 100.0,
            co: vec![],
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
                QueryEntry {
                    at: now_s(),
                    shown: vec![format!("i{id}")],
                    clicked: vec![],
                    anchor: Some(vec![id as f32]),
                },
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
            QueryEntry {
                at: now_s(),
                shown: vec!["a".into()],
                clicked: vec![],
                anchor: Some(vec![1.0]),
            },
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
            let entry = QueryEntry {
                at: now_s(),
                shown: vec![format!("i{id}")],
                clicked: vec![],
                anchor: Some(vec![id as f32]),
            };
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
        let e = QueryEntry {
            at: 0.0,
            shown: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            clicked: vec!["c".into(), "a".into()],
            anchor: None,
        };
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
        let items = vec![(
            "a".to_string(),
            ItemClicks {
                impressions: 2.0,
                clicks: 1.0,
                t: 5.0,
                co: vec![("b".into(), 1.0)],
            },
        )];
        let refs: Vec<(&String, &ItemClicks)> = items.iter().map(|(k, v)| (k, v)).collect();
        let bytes = encode_framed(&(3u64, 4u64, refs)).unwrap();
        assert_eq!(load_state(&bytes).unwrap(), (3, 4, items));
        assert!(load_state(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(load_state(&bad).is_err());
    }
}
