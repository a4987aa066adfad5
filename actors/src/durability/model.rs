//! Model files: the catalogue-side model state a checkpoint was taken with, so a restart
//! does not have to refit before binary search and localisation work again.
//!
//! `snapshots/model-<seq>.bin`: `b"VSAMODL\0"`, format version (u32 LE), then framed records
//! (length + CRC32, as in the log): a bincode [`ModelHeader`], then, as the header says, the
//! encoder's own bytes ([`Encoder::to_bytes`]), the prototypes and the category centroids.
//! Written to a temporary file, fsynced and renamed into place.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vsa_index::Encoder;
use vsa_models::Prototypes;

use super::record::{RECORD_HEADER, decode_payload, encode_framed, frame_payload, parse_header};
use super::{DurabilityError, Result, write_atomic};
use crate::coordinator::CategoryCentroids;

/// First bytes of every model file.
pub const MAGIC: &[u8; 8] = b"VSAMODL\0";
/// Format version written (and the only one read).
pub const VERSION: u32 = 1;

/// The file name of the model state of the checkpoint at `seq`.
pub fn file_name(seq: u64) -> String {
    format!("model-{seq:020}.bin")
}

/// What a model file holds, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelState {
    /// The fitted encoder, when there was one.
    pub encoder: Option<StoredEncoder>,
    /// The localisation prototypes and the catalogue size they were computed at.
    pub prototypes: Option<(Arc<Prototypes>, u64)>,
    /// Category → normalised mean embedding.
    pub centroids: Option<Arc<CategoryCentroids>>,
}

/// The encoder with the coordinator's bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEncoder {
    /// The generation the coordinator gave it (new fits continue after it).
    pub generation: u64,
    /// Catalogue size when it was fitted (the next refit is due at `refit_growth` × this).
    pub fitted_at: u64,
    /// The encoder.
    pub encoder: Arc<Encoder>,
}

/// The first record: what follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelHeader {
    /// `(generation, fitted_at)` when an encoder record follows.
    pub encoder: Option<(u64, u64)>,
    /// The catalogue size the prototypes were computed at, when a prototypes record follows.
    pub prototypes: Option<u64>,
    /// Whether a centroids record follows.
    pub centroids: bool,
}

/// Prototypes as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DiskPrototypes {
    dim: u64,
    data: Vec<f32>,
}

impl ModelState {
    /// Nothing fitted yet: no file is worth writing.
    pub fn is_empty(&self) -> bool {
        self.encoder.is_none() && self.prototypes.is_none() && self.centroids.is_none()
    }

    /// Checks that every part was made for embeddings of `dim` values (the model loaded
    /// now); [`DurabilityError::Incompatible`] names the first part that was not.
    pub fn check_dim(&self, dim: usize) -> Result<()> {
        let wrong = |what: &str, had: usize| {
            Err(DurabilityError::Incompatible(format!(
                "the stored {what} is for {had}-dimensional embeddings; the model now loaded \
                 makes {dim}"
            )))
        };
        if let Some(e) = &self.encoder
            && e.encoder.input_dims() != dim
        {
            return wrong("encoder", e.encoder.input_dims());
        }
        if let Some((p, _)) = &self.prototypes
            && p.dim != dim
        {
            return wrong("prototypes", p.dim);
        }
        if let Some(c) = &self.centroids
            && let Some((_, v)) = c.iter().find(|(_, v)| v.len() != dim)
        {
            return wrong("category centroids", v.len());
        }
        Ok(())
    }
}

/// Encodes `state` as a model file's bytes.
pub fn encode(state: &ModelState) -> Result<Vec<u8>> {
    let header = ModelHeader {
        encoder: state.encoder.as_ref().map(|e| (e.generation, e.fitted_at)),
        prototypes: state.prototypes.as_ref().map(|(_, at)| *at),
        centroids: state.centroids.is_some(),
    };
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&encode_framed(&header)?);
    if let Some(e) = &state.encoder {
        let bytes = e
            .encoder
            .to_bytes()
            .map_err(|e| DurabilityError::Encode(e.to_string()))?;
        out.extend_from_slice(&frame_payload(&bytes)?);
    }
    if let Some((p, _)) = &state.prototypes {
        out.extend_from_slice(&encode_framed(&DiskPrototypes {
            dim: p.dim as u64,
            data: p.data.clone(),
        })?);
    }
    if let Some(c) = &state.centroids {
        out.extend_from_slice(&encode_framed(c.as_ref())?);
    }
    Ok(out)
}

/// Writes `state` to `path` atomically; returns its size in bytes.
pub fn write(path: &Path, state: &ModelState) -> Result<u64> {
    let bytes = encode(state)?;
    write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads and verifies a model file.
pub fn read(path: &Path) -> Result<ModelState> {
    let bytes = std::fs::read(path).map_err(DurabilityError::io(path))?;
    decode(&bytes).map_err(|e| match e {
        DurabilityError::Corrupt(m) => DurabilityError::Corrupt(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Decodes a model file held in memory (never panics; allocation bounded by the input size).
pub fn decode(bytes: &[u8]) -> Result<ModelState> {
    let corrupt = |m: String| DurabilityError::Corrupt(m);
    let Some(head) = bytes.get(..12) else {
        return Err(corrupt("header: truncated".into()));
    };
    if &head[..8] != MAGIC {
        return Err(corrupt("not a vsa model file (bad magic)".into()));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(corrupt(format!(
            "model file format version {version}; this build reads version {VERSION}"
        )));
    }
    let mut rest = &bytes[12..];
    let header: ModelHeader = decode_payload_of(next_payload(&mut rest, "model header")?)
        .map_err(|e| corrupt(format!("model header: {e}")))?;
    let encoder = match header.encoder {
        Some((generation, fitted_at)) => {
            let (payload, crc) = next_payload(&mut rest, "encoder")?;
            check_crc(payload, crc).map_err(|e| corrupt(format!("encoder: {e}")))?;
            let encoder =
                Encoder::from_bytes(payload).map_err(|e| corrupt(format!("encoder: {e}")))?;
            Some(StoredEncoder {
                generation,
                fitted_at,
                encoder: Arc::new(encoder),
            })
        }
        None => None,
    };
    let prototypes = match header.prototypes {
        Some(at) => {
            let p: DiskPrototypes = decode_payload_of(next_payload(&mut rest, "prototypes")?)
                .map_err(|e| corrupt(format!("prototypes: {e}")))?;
            let dim = usize::try_from(p.dim).unwrap_or(0);
            if dim == 0
                || !p.data.len().is_multiple_of(dim)
                || p.data.iter().any(|x| !x.is_finite())
            {
                return Err(corrupt(format!(
                    "prototypes: {} values do not make finite {}-dimensional rows",
                    p.data.len(),
                    p.dim
                )));
            }
            Some((Arc::new(Prototypes { dim, data: p.data }), at))
        }
        None => None,
    };
    let centroids = if header.centroids {
        let c: CategoryCentroids = decode_payload_of(next_payload(&mut rest, "centroids")?)
            .map_err(|e| corrupt(format!("centroids: {e}")))?;
        if c.iter().flat_map(|(_, v)| v).any(|x| !x.is_finite()) {
            return Err(corrupt("centroids: a value is not finite".into()));
        }
        Some(Arc::new(c))
    } else {
        None
    };
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} unexpected bytes after the last record",
            rest.len()
        )));
    }
    Ok(ModelState {
        encoder,
        prototypes,
        centroids,
    })
}

/// The next framed payload and its stored CRC; advances `rest` past it.
fn next_payload<'a>(rest: &mut &'a [u8], what: &str) -> Result<(&'a [u8], u32)> {
    let (len, crc) = parse_header(rest)
        .map_err(|e| DurabilityError::Corrupt(format!("{what}: {e}")))?
        .ok_or_else(|| DurabilityError::Corrupt(format!("{what}: truncated")))?;
    let payload = rest
        .get(RECORD_HEADER..RECORD_HEADER + len)
        .ok_or_else(|| DurabilityError::Corrupt(format!("{what}: truncated")))?;
    *rest = &rest[RECORD_HEADER + len..];
    Ok((payload, crc))
}

fn decode_payload_of<T: serde::de::DeserializeOwned>((payload, crc): (&[u8], u32)) -> Result<T> {
    decode_payload(payload, crc)
}

fn check_crc(payload: &[u8], crc: u32) -> std::result::Result<(), String> {
    let actual = crc32fast::hash(payload);
    if actual == crc {
        Ok(())
    } else {
        Err(format!(
            "CRC mismatch (stored {crc:08x}, computed {actual:08x})"
        ))
    }
}
