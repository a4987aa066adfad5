//! A shard: columns of codes, int8 reduced vectors, scales, biases and ids, appended at the
//! tail; deletes are tombstones (a dense bitset, tested only for scan candidates); an id → row
//! table; attribute postings. The impl is split by operation: updates here, `search.rs`,
//! `snapshot.rs` (serialised form).

pub mod search;
mod snapshot;
#[cfg(test)]
mod tests;

pub use search::{Hit, Query, SearchParams};
pub use snapshot::SHARD_VERSION;

use crate::code::{Code, CodeStore};
use crate::encoder::{Encoded, QueryVector};
use crate::filter::Postings;
use crate::idmap::IdMap;
use crate::{Error, Result};

/// A stored item's reduced vector, dequantised, with its code and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector<const W: usize = 4> {
    /// The item's code.
    pub code: Code<W>,
    /// Dequantised reduced vector.
    pub reduced: Vec<f32>,
    /// The item's bias (`μ·y − |μ|²/2`).
    pub bias: f32,
}

impl<const W: usize> StoredVector<W> {
    /// The stored item as a query vector (search by an existing item's id).
    pub fn into_query(self) -> QueryVector<W> {
        QueryVector {
            code: self.code,
            reduced: self.reduced,
            bias: self.bias,
        }
    }
}

/// One shard of the binary index for `64·W`-bit codes and `dims`-dim rerank vectors.
#[derive(Debug, Clone)]
pub struct Shard<const W: usize = 4> {
    dims: usize,
    codes: CodeStore<W>,
    vectors: Vec<i8>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    ids: Vec<u64>,
    /// Bit r set ⇔ row r is deleted.
    deleted: Vec<u64>,
    deleted_count: usize,
    map: IdMap,
    postings: Postings,
}

impl<const W: usize> Shard<W> {
    /// Code length in bits.
    pub const BITS: usize = 64 * W;

    /// An empty shard for `dims`-dimensional reduced vectors.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            codes: CodeStore::default(),
            vectors: Vec::new(),
            scales: Vec::new(),
            biases: Vec::new(),
            ids: Vec::new(),
            deleted: Vec::new(),
            deleted_count: 0,
            map: IdMap::default(),
            postings: Postings::default(),
        }
    }

    /// Reserves room for `additional` more rows.
    pub fn reserve(&mut self, additional: usize) {
        self.codes.reserve(additional);
        self.vectors.reserve(additional * self.dims);
        self.scales.reserve(additional);
        self.biases.reserve(additional);
        self.ids.reserve(additional);
    }

    /// Reduced-vector dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No live items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows held, live or deleted (compaction drops the deleted).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Deleted rows still held.
    pub fn deleted_rows(&self) -> usize {
        self.deleted_count
    }

    /// Is `id` live here?
    pub fn contains(&self, id: u64) -> bool {
        self.map.get(id, &self.ids).is_some()
    }

    /// Inserts or replaces (upsert = delete + insert) item `id`. Returns whether an older
    /// version was replaced.
    pub fn insert(
        &mut self,
        id: u64,
        item: &Encoded<W>,
        attrs: &[(String, String)],
    ) -> Result<bool> {
        if item.reduced.len() != self.dims {
            return Err(Error::BadInput(format!(
                "reduced vector has {} dims, the shard holds {}",
                item.reduced.len(),
                self.dims
            )));
        }
        if !item.scale.is_finite() || !item.bias.is_finite() {
            return Err(Error::BadInput("non-finite scale or bias".into()));
        }
        if self.ids.len() >= u32::MAX as usize - 1 {
            return Err(Error::Full);
        }
        let replaced = self.delete(id);
        let row = self.ids.len() as u32;
        self.codes.push(item.code);
        self.vectors.extend_from_slice(&item.reduced);
        self.scales.push(item.scale);
        self.biases.push(item.bias);
        self.ids.push(id);
        if self.deleted.len() * 64 < self.ids.len() {
            self.deleted.push(0);
        }
        self.map.insert(row, &self.ids);
        self.postings.add(row, attrs);
        Ok(replaced)
    }

    /// Deletes `id` (a tombstone until compaction). Returns whether it was live.
    pub fn delete(&mut self, id: u64) -> bool {
        match self.map.remove(id, &self.ids) {
            Some(row) => {
                self.deleted[row as usize / 64] |= 1 << (row % 64);
                self.deleted_count += 1;
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    pub(crate) fn is_deleted(&self, row: u32) -> bool {
        self.deleted[row as usize / 64] >> (row % 64) & 1 != 0
    }

    /// The stored (dequantised) vector of a live item, e.g. to search by an existing item.
    pub fn vector(&self, id: u64) -> Option<StoredVector<W>> {
        let row = self.map.get(id, &self.ids)? as usize;
        let s = self.scales[row];
        Some(StoredVector {
            code: self.codes.as_slice()[row],
            reduced: self.vectors[row * self.dims..(row + 1) * self.dims]
                .iter()
                .map(|v| f32::from(*v) * s)
                .collect(),
            bias: self.biases[row],
        })
    }

    /// Attributes of a live item.
    pub fn attributes(&self, id: u64) -> Option<Vec<(String, String)>> {
        let row = self.map.get(id, &self.ids)?;
        Some(self.postings.attrs_of(row))
    }

    /// Live `(id, attributes)` in row order, for rebuilds.
    pub fn live_items(&self) -> impl Iterator<Item = (u64, Vec<(String, String)>)> + '_ {
        let attrs = self.postings.by_row(self.ids.len());
        attrs
            .into_iter()
            .enumerate()
            .filter(|(r, _)| !self.is_deleted(*r as u32))
            .map(|(r, a)| (self.ids[r], a))
    }

    /// Bytes held (capacities of every column, the id table and postings).
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity_bytes()
            + self.vectors.capacity()
            + self.scales.capacity() * 4
            + self.biases.capacity() * 4
            + self.ids.capacity() * 8
            + self.deleted.capacity() * 8
            + self.map.memory_bytes()
            + self.postings.memory_bytes()
            + std::mem::size_of::<Self>()
    }

    /// A new shard holding only the live rows, in the same order (so results, including
    /// tie order, are unchanged). Runs on a `&self` snapshot; the owner swaps it in.
    pub fn compact(&self) -> Self {
        let live = self.len();
        let mut out = Self::new(self.dims);
        out.reserve(live);
        let attrs = self.postings.by_row(self.ids.len());
        for (r, a) in attrs.into_iter().enumerate() {
            if self.is_deleted(r as u32) {
                continue;
            }
            let row = out.ids.len() as u32;
            out.codes.push(self.codes.as_slice()[r]);
            out.vectors
                .extend_from_slice(&self.vectors[r * self.dims..(r + 1) * self.dims]);
            out.scales.push(self.scales[r]);
            out.biases.push(self.biases[r]);
            out.ids.push(self.ids[r]);
            out.postings.add(row, &a);
        }
        out.deleted = vec![0; out.ids.len().div_ceil(64)];
        let mut map = IdMap::default();
        for row in 0..out.ids.len() as u32 {
            map.insert(row, &out.ids);
        }
        out.map = map;
        out
    }
}
