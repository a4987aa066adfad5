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
            let s = dot_f16(q, &self.embedding);
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
            let s = dot_f16(q, &self.embedding);
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

/// Dot product of an f32 vector with an f16 one, over the shorter length: the exact score of
/// every item a search reranks (and of every item of a catalogue too small for the binary
/// index). AVX2 + FMA + F16C where the CPU has them (eight values a step, four accumulators),
/// else a portable loop with eight partial sums.
pub fn dot_f16(q: &[f32], e: &[f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the features the kernel is compiled for were detected just now.
        return unsafe { dot_f16_avx2(q, e) };
    }
    dot_f16_portable(q, e)
}

/// The portable form of [`dot_f16`] (eight partial sums, so it vectorises).
pub fn dot_f16_portable(q: &[f32], e: &[f16]) -> f32 {
    let n = q.len().min(e.len());
    let whole = n - n % 8;
    let mut acc = [0f32; 8];
    for (a, b) in q[..whole].chunks_exact(8).zip(e[..whole].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * b[l].to_f32();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in q[whole..n].iter().zip(&e[whole..n]) {
        s += a * b.to_f32();
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(q: &[f32], e: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = q.len().min(e.len());
    let (qp, ep) = (q.as_ptr(), e.as_ptr().cast::<u16>());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: reads 8 f32 and 8 f16 at i + 8k, and i + 8k + 8 ≤ n.
            let (x, h) = unsafe {
                (
                    _mm256_loadu_ps(qp.add(i + 8 * k)),
                    _mm_loadu_si128(ep.add(i + 8 * k).cast()),
                )
            };
            *a = _mm256_fmadd_ps(x, _mm256_cvtph_ps(h), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: reads 8 f32 and 8 f16 at i, and i + 8 ≤ n.
        let (x, h) = unsafe {
            (
                _mm256_loadu_ps(qp.add(i)),
                _mm_loadu_si128(ep.add(i).cast()),
            )
        };
        acc[0] = _mm256_fmadd_ps(x, _mm256_cvtph_ps(h), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    let x = _mm_add_ss(x, _mm_shuffle_ps::<1>(x, x));
    let mut sum = _mm_cvtss_f32(x);
    for j in i..n {
        sum += q[j] * e[j].to_f32();
    }
    sum
}
