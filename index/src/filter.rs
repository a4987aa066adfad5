//! Attribute filters: `key=value` postings (roaring bitmaps of row positions), combined as AND
//! across keys and OR within a key, applied during the scan.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

/// A filter: every clause must match (AND); a clause matches if the item has any of its values
/// for that key (OR). An empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// `(key, accepted values)` clauses.
    pub clauses: Vec<(String, Vec<String>)>,
}

impl Filter {
    /// A filter with one clause `key ∈ values`.
    pub fn with(
        mut self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.clauses
            .push((key.into(), values.into_iter().map(Into::into).collect()));
        self
    }
}

/// Postings: key → value → rows having that attribute.
#[derive(Debug, Clone, Default)]
pub(crate) struct Postings {
    pub(crate) map: BTreeMap<String, BTreeMap<String, RoaringBitmap>>,
}

impl Postings {
    pub(crate) fn add(&mut self, row: u32, attrs: &[(String, String)]) {
        for (k, v) in attrs {
            self.map
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(row);
        }
    }

    /// Rows matching `filter` (may include deleted rows; the caller masks those).
    /// `None` means "every row" (an empty filter).
    pub(crate) fn resolve(&self, filter: &Filter) -> Option<RoaringBitmap> {
        let mut acc: Option<RoaringBitmap> = None;
        for (key, values) in &filter.clauses {
            let mut any = RoaringBitmap::new();
            if let Some(vals) = self.map.get(key) {
                for v in values {
                    if let Some(bm) = vals.get(v) {
                        any |= bm;
                    }
                }
            }
            acc = Some(match acc {
                None => any,
                Some(a) => a & any,
            });
        }
        acc
    }

    /// Attributes per row, for the rows in `0..rows` (inverted postings).
    pub(crate) fn by_row(&self, rows: usize) -> Vec<Vec<(String, String)>> {
        let mut out = vec![Vec::new(); rows];
        for (k, vals) in &self.map {
            for (v, bm) in vals {
                for r in bm {
                    if let Some(slot) = out.get_mut(r as usize) {
                        slot.push((k.clone(), v.clone()));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn attrs_of(&self, row: u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, vals) in &self.map {
            for (v, bm) in vals {
                if bm.contains(row) {
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.map
            .iter()
            .map(|(k, vals)| {
                k.capacity()
                    + 48
                    + vals
                        .iter()
                        .map(|(v, bm)| v.capacity() + 48 + bm.serialized_size())
                        .sum::<usize>()
            })
            .sum()
    }
}
