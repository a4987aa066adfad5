//! Search: one Hamming pass for all query vectors (threaded over row chunks), the filter and
//! tombstones tested only for rows under the current bound, exact top-R by (distance, row),
//! then int8 rerank of the R candidates and top-k by approximate cosine.

use serde::{Deserialize, Serialize};

use super::Shard;
use crate::code::Code;
use crate::encoder::QueryVector;
use crate::filter::Filter;
use crate::scan::{self, Kernel, TopR};
use crate::{Error, Result};

/// At most this many vectors per query (crops of one photo).
pub const MAX_QUERY_VECTORS: usize = 8;

/// A query: 1–8 vectors; an item scores the best of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query<const W: usize = 4> {
    /// The query vectors.
    pub vectors: Vec<QueryVector<W>>,
}

impl<const W: usize> Query<W> {
    /// A query of one vector.
    pub fn single(v: QueryVector<W>) -> Self {
        Self { vectors: vec![v] }
    }
}

/// How to search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Results wanted.
    pub k: usize,
    /// Hamming candidates reranked (R); at least `k` are used.
    pub candidates: usize,
    /// Scan threads (1 = the caller's thread only).
    pub threads: usize,
    /// Rerank with the int8 vectors; if false, hits are the Hamming top-k and the score is
    /// `1 − 2·hamming/bits` (the cosine the code alone implies).
    pub rerank: bool,
    /// Force a scan kernel (tests, benchmarks); `None` picks the best this CPU has for the
    /// query ([`crate::scan::best_kernel_for`]). One the CPU lacks falls back to portable.
    #[serde(default)]
    pub kernel: Option<Kernel>,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self {
            k: 10,
            candidates: 500,
            threads: 1,
            rerank: true,
            kernel: None,
        }
    }
}

/// One result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Item id.
    pub id: u64,
    /// Approximate cosine of the original embeddings (best over the query's vectors).
    pub score: f32,
    /// Minimum Hamming distance over the query's vectors.
    pub hamming: u32,
    /// Index of the query vector that scored best.
    pub vector: u8,
}

/// Rows per thread below which a search does not split (tiny under test, so the property
/// tests exercise the threaded merge).
#[cfg(not(test))]
const MIN_ROWS_PER_THREAD: usize = 16 * 1024;
#[cfg(test)]
const MIN_ROWS_PER_THREAD: usize = 16;

impl<const W: usize> Shard<W> {
    /// Searches the shard. `filter`: AND across clauses, OR within one.
    pub fn search(
        &self,
        query: &Query<W>,
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        if query.vectors.len() > MAX_QUERY_VECTORS {
            return Err(Error::BadInput(format!(
                "{} query vectors (at most {MAX_QUERY_VECTORS})",
                query.vectors.len()
            )));
        }
        if let Some(v) = query
            .vectors
            .iter()
            .find(|v| params.rerank && v.reduced.len() != self.dims)
        {
            return Err(Error::BadInput(format!(
                "query vector has {} dims, the shard holds {}",
                v.reduced.len(),
                self.dims
            )));
        }
        if query.vectors.is_empty() || params.k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let r = params.candidates.max(params.k);
        let codes: Vec<Code<W>> = query.vectors.iter().map(|v| v.code).collect();
        let cands = self.candidates(&codes, r, params, filter);
        Ok(if params.rerank {
            self.rerank(query, &cands, params.k)
        } else {
            self.hamming_hits(&codes, &cands, params.k)
        })
    }

    /// Exact Hamming top-`r` of live rows passing `filter`, as (distance, row) sorted.
    pub(crate) fn candidates(
        &self,
        codes: &[Code<W>],
        r: usize,
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Vec<(u32, u32)> {
        let kernel = params
            .kernel
            .unwrap_or_else(|| scan::best_kernel_for::<W>(codes.len()));
        let rows = self.codes.len();
        let allowed = filter.and_then(|f| self.postings.resolve(f));
        match allowed {
            Some(bm) if (bm.len() as usize) * 16 < rows => {
                // Selective filter: visit only its rows (ascending, so ties stay by row).
                let mut top = TopR::new(r, Self::BITS);
                for row in bm.iter() {
                    if (row as usize) < rows && !self.is_deleted(row) {
                        let (d, _) =
                            scan::min_distance(&self.codes.as_slice()[row as usize], codes);
                        top.push(d, row);
                    }
                }
                top.finish()
            }
            Some(bm) => {
                let mut bits = vec![0u64; rows.div_ceil(64)];
                for row in bm.iter().take_while(|&r| (r as usize) < rows) {
                    bits[row as usize / 64] |= 1 << (row % 64);
                }
                let bits = &bits;
                self.scan_chunks(
                    kernel,
                    codes,
                    r,
                    params.threads,
                    &move |s: &Self, row: u32| {
                        bits[row as usize / 64] >> (row % 64) & 1 != 0 && !s.is_deleted(row)
                    },
                )
            }
            None => self.scan_chunks(kernel, codes, r, params.threads, &|s: &Self, row: u32| {
                !s.is_deleted(row)
            }),
        }
    }

    fn scan_chunks<F>(
        &self,
        kernel: Kernel,
        codes: &[Code<W>],
        r: usize,
        threads: usize,
        accept: &F,
    ) -> Vec<(u32, u32)>
    where
        F: Fn(&Self, u32) -> bool + Sync,
    {
        let rows = self.codes.len();
        let threads = threads.clamp(1, rows.div_ceil(MIN_ROWS_PER_THREAD).max(1));
        let run = |lo: usize, hi: usize| {
            let mut top = TopR::new(r, Self::BITS);
            scan::scan(
                kernel,
                &self.codes.as_slice()[lo..hi],
                lo as u32,
                codes,
                &mut top,
                &mut |row| accept(self, row),
            );
            top.finish()
        };
        if threads == 1 {
            return run(0, rows);
        }
        // Chunks start on 64-byte boundaries (multiples of 8 codes) so SIMD loads stay aligned.
        let per = rows.div_ceil(threads).next_multiple_of(8);
        let chunks = (0..threads).map(|t| ((t * per).min(rows), ((t + 1) * per).min(rows)));
        let parts = crate::linalg::on_blocks(chunks, |(_, (lo, hi))| run(lo, hi));
        scan::merge(parts, r)
    }

    fn rerank(&self, query: &Query<W>, cands: &[(u32, u32)], k: usize) -> Vec<Hit> {
        let dims = self.dims;
        let mut hits: Vec<(Hit, u32)> = cands
            .iter()
            .map(|&(d, row)| {
                let r = row as usize;
                let v = &self.vectors[r * dims..(r + 1) * dims];
                let item = self.scales[r];
                let bias = self.biases[r];
                let mut best = (f32::NEG_INFINITY, 0u8);
                for (j, q) in query.vectors.iter().enumerate() {
                    let s = item * dot_f32_i8(&q.reduced, v) + bias + q.bias;
                    if s > best.0 {
                        best = (s, j as u8);
                    }
                }
                (
                    Hit {
                        id: self.ids[r],
                        score: best.0,
                        hamming: d,
                        vector: best.1,
                    },
                    row,
                )
            })
            .collect();
        hits.sort_unstable_by(|a, b| b.0.score.total_cmp(&a.0.score).then(a.1.cmp(&b.1)));
        hits.truncate(k);
        hits.into_iter().map(|(h, _)| h).collect()
    }

    fn hamming_hits(&self, codes: &[Code<W>], cands: &[(u32, u32)], k: usize) -> Vec<Hit> {
        cands
            .iter()
            .take(k)
            .map(|&(d, row)| {
                let (_, j) = scan::min_distance(&self.codes.as_slice()[row as usize], codes);
                Hit {
                    id: self.ids[row as usize],
                    score: 1.0 - 2.0 * d as f32 / Self::BITS as f32,
                    hamming: d,
                    vector: j,
                }
            })
            .collect()
    }
}

/// `Σ q[i]·v[i]` with the i8 converted on the fly (16 lanes of partial sums → vectorised).
#[inline]
pub(crate) fn dot_f32_i8(q: &[f32], v: &[i8]) -> f32 {
    let mut acc = [0f32; 16];
    let cq = q.chunks_exact(16);
    let cv = v.chunks_exact(16);
    let (rq, rv) = (cq.remainder(), cv.remainder());
    for (a, b) in cq.zip(cv) {
        for i in 0..16 {
            acc[i] += a[i] * f32::from(b[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in rq.iter().zip(rv) {
        s += a * f32::from(*b);
    }
    s
}
