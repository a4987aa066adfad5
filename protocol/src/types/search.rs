//! `Search`: a photo (or an item, or an embedding) in, ranked catalogue items out.

use serde::{Deserialize, Serialize};

/// A visual search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// What to search with.
    pub query: QueryInput,
    /// How many hits to return.
    pub k: u32,
    /// A category hint; when absent the server predicts one.
    pub category: Option<String>,
    /// Attribute filters: AND across clauses, OR within a clause's values.
    pub filter: Vec<FilterClause>,
    /// Tuning knobs; `SearchOptions::default()` is the server's defaults.
    pub options: SearchOptions,
}

impl SearchRequest {
    /// A search for `k` hits with no hint, no filter and default options.
    pub fn new(query: QueryInput, k: u32) -> SearchRequest {
        SearchRequest {
            query,
            k,
            category: None,
            filter: Vec::new(),
            options: SearchOptions::default(),
        }
    }
}

/// What a search starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueryInput {
    /// Encoded image bytes (JPEG, PNG or WebP).
    Image(#[serde(with = "super::bytes")] Vec<u8>),
    /// An item already in the catalogue ("more like this").
    ItemId(String),
    /// A raw embedding from the model contract's `embedding` output.
    Embedding(Vec<f32>),
}

/// One attribute filter clause: the item's `key` attribute must be one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterClause {
    /// Attribute name, e.g. `"colour"`.
    pub key: String,
    /// Accepted values (OR).
    pub values: Vec<String>,
}

/// Optional search knobs; every `None` means "the server's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchOptions {
    /// A named server-side preset of weights and candidate counts.
    pub preset: Option<String>,
    /// The user's region of interest in the photo; skips localisation.
    pub roi: Option<BoxXywh>,
    /// Which partitions to search.
    pub scope: Option<Scope>,
    /// How many Hamming candidates to rerank (R).
    pub candidates: Option<u32>,
    /// Return per-hit score components.
    pub explain: bool,
}

/// An axis-aligned box in pixels of the original image: top-left corner, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoxXywh {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// Which partitions a search fans out to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Every partition.
    All,
    /// Only the partitions of the N most likely categories.
    TopCategories(u32),
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Server-assigned id of this query (for click attribution and logs).
    pub query_id: u64,
    /// Hits, best first.
    pub hits: Vec<SearchHit>,
    /// The category the server predicted (absent when the request gave one).
    pub category: Option<CategoryPrediction>,
    /// The region the server searched with (the user's or the localised one).
    pub roi: Option<BoxXywh>,
    /// Per-stage timings: `(stage, microseconds)`.
    pub timings: Vec<(String, u64)>,
    /// Some partitions did not answer; the hits may be incomplete.
    pub degraded: bool,
    /// The routing epoch the search ran against.
    pub epoch: u64,
    /// Version of the reranking weights that ordered the hits (see `AdminAction::SetRerankWeights`).
    pub weights_version: u64,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Item id.
    pub id: String,
    /// Final score; higher is better.
    pub score: f32,
    /// The item's category.
    pub category: String,
    /// Score components (`hamming`, `rerank`, `colour`, `quality`, ...) when `explain` was set.
    pub components: Vec<(String, f32)>,
}

/// The server's category prediction for a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryPrediction {
    /// The chosen category.
    pub category: String,
    /// Its confidence in `[0, 1]`.
    pub confidence: f32,
    /// Runner-up categories with their confidences.
    pub alternatives: Vec<(String, f32)>,
    /// What each branch predicted before fusion: `(branch, category, confidence)`, e.g.
    /// `("knn", ..)` (the neighbours' vote) and `("model", ..)` (nearest category centroid).
    pub branches: Vec<(String, String, f32)>,
}
