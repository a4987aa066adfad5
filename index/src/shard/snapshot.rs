//! The shard's serialised form (bincode, standard config): the columns as they are, tombstones
//! included, and postings as roaring's portable bytes. The id table is rebuilt on load.

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::Shard;
use crate::filter::Postings;
use crate::idmap::IdMap;
use crate::{Error, Result};

/// Format version of a serialised [`Shard`].
pub const SHARD_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    words: u32,
    dims: u32,
    codes: Vec<u64>,
    vectors: Vec<i8>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    ids: Vec<u64>,
    deleted: Vec<u64>,
    postings: Vec<(String, Vec<ValueBitmap>)>,
}

/// A posting value and its roaring bitmap in roaring's portable format.
type ValueBitmap = (String, Vec<u8>);

impl<const W: usize> Shard<W> {
    /// Serialises the shard.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut postings = Vec::new();
        for (k, vals) in &self.postings.map {
            let mut vs = Vec::new();
            for (v, bm) in vals {
                let mut b = Vec::with_capacity(bm.serialized_size());
                bm.serialize_into(&mut b)
                    .map_err(|e| Error::Codec(e.to_string()))?;
                vs.push((v.clone(), b));
            }
            postings.push((k.clone(), vs));
        }
        let snap = Snapshot {
            version: SHARD_VERSION,
            words: W as u32,
            dims: self.dims as u32,
            codes: self.codes.as_slice().iter().flatten().copied().collect(),
            vectors: self.vectors.clone(),
            scales: self.scales.clone(),
            biases: self.biases.clone(),
            ids: self.ids.clone(),
            deleted: self.deleted.clone(),
            postings,
        };
        bincode::serde::encode_to_vec(&snap, bincode::config::standard())
            .map_err(|e| Error::Codec(e.to_string()))
    }

    /// Reads what [`Shard::to_bytes`] wrote, checking version and shapes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (s, _): (Snapshot, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| Error::Codec(e.to_string()))?;
        let bad = |m: &str| Error::Codec(format!("shard snapshot: {m}"));
        if s.version != SHARD_VERSION {
            return Err(bad(&format!(
                "version {} (this build reads {SHARD_VERSION})",
                s.version
            )));
        }
        let n = s.ids.len();
        let dims = s.dims as usize;
        if s.words as usize != W
            || s.codes.len() != n * W
            || s.vectors.len() != n * dims
            || s.scales.len() != n
            || s.biases.len() != n
            || s.deleted.len() != n.div_ceil(64)
        {
            return Err(bad("column lengths disagree"));
        }
        let mut shard = Self::new(dims);
        shard.codes = s
            .codes
            .chunks_exact(W.max(1))
            .map(|c| {
                let mut a = [0u64; W];
                a.copy_from_slice(c);
                a
            })
            .collect();
        shard.vectors = s.vectors;
        shard.scales = s.scales;
        shard.biases = s.biases;
        shard.ids = s.ids;
        shard.deleted = s.deleted;
        shard.deleted_count = (0..n as u32).filter(|&r| shard.is_deleted(r)).count();
        let mut map = IdMap::default();
        for row in 0..n as u32 {
            if !shard.is_deleted(row) {
                if map.get(shard.ids[row as usize], &shard.ids).is_some() {
                    return Err(bad("an id is live twice"));
                }
                map.insert(row, &shard.ids);
            }
        }
        shard.map = map;
        let mut postings = Postings::default();
        for (k, vals) in s.postings {
            let entry = postings.map.entry(k).or_default();
            for (v, b) in vals {
                let bm =
                    RoaringBitmap::deserialize_from(&b[..]).map_err(|e| bad(&e.to_string()))?;
                entry.insert(v, bm);
            }
        }
        shard.postings = postings;
        Ok(shard)
    }
}
