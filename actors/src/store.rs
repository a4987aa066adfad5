//! The partition's item table: external ids, categories, attributes, metadata and the full
//! normalised embedding (f16) of every item.
//!
//! The embeddings are the source of truth the binary shard is built from: an encoder refit
//! re-encodes every item from them, searches before the first fit are exact over them, and the
//! shard's Hamming candidates are reranked exactly with them. Cost: 2 bytes × 1280 per item.

use std::collections::HashMap;
use std::sync::Arc;

use half::f16;
use vsa_index::Filter;

/// One catalogue item as the partition keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    /// External id.
    pub id: String,
    /// Category.
    pub category: String,
    /// `key=value` attributes (filterable).
    pub attributes: Vec<(String, String)>,
    /// Free metadata (returned, not indexed).
    pub metadata: Vec<(String, String)>,
    /// L2-normalised embedding, f16.
    pub embedding: Vec<f16>,
    /// Colour histogram of the object (`vsa_models::COLOURS` bins; empty when unknown).
    pub colour: Vec<f32>,
    /// Quality signals in `[0, 1]` (`resolution`, `sharpness`, `coverage`, `seller_rating`...).
    pub quality: Vec<(String, f32)>,
}

impl ItemRecord {
    /// Builds a record from an f32 embedding, normalising it.
    pub fn new(
        id: String,
        category: String,
        attributes: Vec<(String, String)>,
        metadata: Vec<(String, String)>,
        embedding: &[f32],
    ) -> Self {
        let mut e = embedding.to_vec();
        vsa_models::l2_normalise(&mut e);
        Self {
            id,
            category,
            attributes,
            metadata,
            embedding: e.into_iter().map(f16::from_f32).collect(),
            colour: Vec::new(),
            quality: Vec::new(),
        }
    }

    /// The combined quality score in `[0, 1]`.
    pub fn quality_score(&self) -> f32 {
        vsa_models::quality_score(&self.quality)
    }

    /// The embedding as f32.
    pub fn embedding_f32(&self) -> Vec<f32> {
        self.embedding.iter().map(|v| v.to_f32()).collect()
    }

    /// Best dot product of this item's embedding with any of `queries` (normalised f32), and
    /// the index of that query vector.
    pub fn best_dot(&self, queries: &[Vec<f32>]) -> (f32, u8) {
        let mut best = (f32::NEG_INFINITY, 0u8);
        for (qi, q) in queries.iter().enumerate() {
            let s: f32 = q
                .iter()
                .zip(&self.embedding)
                .map(|(a, b)| a * b.to_f32())
                .sum();
            if s > best.0 {
                best = (s, u8::try_from(qi).unwrap_or(u8::MAX));
            }
        }
        best
    }

    /// Like [`ItemRecord::best_dot`], plus `second_weight` × the second-best dot product:
    /// an item several of the query's crops agree on ranks above one a single crop likes.
    pub fn best_dot_with_second(&self, queries: &[Vec<f32>], second_weight: f32) -> (f32, u8) {
        if second_weight == 0.0 || queries.len() < 2 {
            return self.best_dot(queries);
        }
        let mut best = (f32::NEG_INFINITY, 0u8);
        let mut second = f32::NEG_INFINITY;
        for (qi, q) in queries.iter().enumerate() {
            let s: f32 = q
                .iter()
                .zip(&self.embedding)
                .map(|(a, b)| a * b.to_f32())
                .sum();
            if s > best.0 {
                second = best.0;
                best = (s, u8::try_from(qi).unwrap_or(u8::MAX));
            } else if s > second {
                second = s;
            }
        }
        (best.0 + second_weight * second, best.1)
    }

    /// True when the item satisfies the filter (AND across clauses, OR within).
    pub fn matches(&self, filter: &Filter) -> bool {
        filter.clauses.iter().all(|(key, values)| {
            self.attributes
                .iter()
                .any(|(k, v)| k == key && values.iter().any(|x| x == v))
        })
    }
}

/// Items of one partition, keyed by a partition-local u64 (the shard's item id).
#[derive(Debug, Default)]
pub struct ItemStore {
    by_id: HashMap<String, u64>,
    records: HashMap<u64, Arc<ItemRecord>>,
    next_key: u64,
}

impl ItemStore {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Inserts or replaces; returns the new key and the replaced key, if any.
    pub fn upsert(&mut self, record: ItemRecord) -> (u64, Option<u64>) {
        let old = self.by_id.remove(&record.id);
        if let Some(k) = old {
            self.records.remove(&k);
        }
        let key = self.next_key;
        self.next_key += 1;
        self.by_id.insert(record.id.clone(), key);
        self.records.insert(key, Arc::new(record));
        (key, old)
    }

    /// Removes an item; returns its key.
    pub fn remove(&mut self, id: &str) -> Option<u64> {
        let k = self.by_id.remove(id)?;
        self.records.remove(&k);
        Some(k)
    }

    /// The record of a key.
    pub fn get(&self, key: u64) -> Option<&ItemRecord> {
        self.records.get(&key).map(|r| &**r)
    }

    /// The record of an external id.
    pub fn get_by_id(&self, id: &str) -> Option<&ItemRecord> {
        self.by_id
            .get(id)
            .and_then(|k| self.records.get(k))
            .map(|r| &**r)
    }

    /// Every `(key, record)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &ItemRecord)> {
        self.records.iter().map(|(k, r)| (*k, &**r))
    }

    /// Shared handles on every record (cheap: a snapshot writes them while the partition goes
    /// on serving).
    pub fn shared(&self) -> Vec<Arc<ItemRecord>> {
        self.records.values().cloned().collect()
    }

    /// Approximate heap bytes of the table.
    pub fn memory_bytes(&self) -> usize {
        self.records
            .values()
            .map(|r| {
                96 + r.id.len() * 2
                    + r.category.len()
                    + r.embedding.len() * 2
                    + r.attributes
                        .iter()
                        .chain(&r.metadata)
                        .map(|(k, v)| 48 + k.len() + v.len())
                        .sum::<usize>()
            })
            .sum()
    }
}
