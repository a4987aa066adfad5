//! Log records and their framing: `[payload length u32 LE][CRC32 of payload u32 LE][payload]`,
//! the payload a bincode [`WalRecord`]. The same framing carries the items of a snapshot.

use half::f16;
use serde::{Deserialize, Serialize};

use super::{DurabilityError, Result};
use crate::store::ItemRecord;

/// Header bytes before each payload.
pub const RECORD_HEADER: usize = 8;
/// Largest payload accepted when reading (a 1280-d item is ~3 KB; metadata is bounded by the
/// protocol's frame limit).
pub const MAX_RECORD: usize = 64 << 20;

/// An item as stored on disk (the embedding as raw f16 bits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskItem {
    /// External id.
    pub id: String,
    /// Category.
    pub category: String,
    /// Filterable attributes.
    pub attributes: Vec<(String, String)>,
    /// Free metadata.
    pub metadata: Vec<(String, String)>,
    /// The normalised embedding as little-endian f16 (2 bytes a value: bincode would spend up
    /// to 3 on a varint u16).
    pub embedding: Vec<u8>,
    /// Colour histogram.
    pub colour: Vec<f32>,
    /// Quality signals.
    pub quality: Vec<(String, f32)>,
}

impl From<&ItemRecord> for DiskItem {
    fn from(r: &ItemRecord) -> Self {
        DiskItem {
            id: r.id.clone(),
            category: r.category.clone(),
            attributes: r.attributes.clone(),
            metadata: r.metadata.clone(),
            embedding: r.embedding.iter().flat_map(|v| v.to_le_bytes()).collect(),
            colour: r.colour.clone(),
            quality: r.quality.clone(),
        }
    }
}

impl From<DiskItem> for ItemRecord {
    fn from(d: DiskItem) -> Self {
        ItemRecord {
            id: d.id,
            category: d.category,
            attributes: d.attributes,
            metadata: d.metadata,
            embedding: d
                .embedding
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect(),
            colour: d.colour,
            quality: d.quality,
        }
    }
}

/// One logged write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    /// Monotonic sequence number (the one acknowledged to the client).
    pub seq: u64,
    /// The write.
    pub op: WalOp,
}

/// A write, with the shard it was routed to (so replay routes it the same way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalOp {
    /// Insert or replace `item` in shard `shard` of its category; `evict` names the shard
    /// that held the id before when it moved (category change).
    Upsert {
        /// The item.
        item: DiskItem,
        /// Shard within `item.category`.
        shard: u32,
        /// `(category, shard)` to delete the id from.
        evict: Option<(String, u32)>,
    },
    /// Delete `id` from `(category, shard)`.
    Delete {
        /// External id.
        id: String,
        /// Its category.
        category: String,
        /// Its shard.
        shard: u32,
    },
    /// From here on `category` has `shards` shards (a rebalance switched its layout): its
    /// items are placed by [`shard_for`]`(id, shards)` and later records use that numbering.
    Layout {
        /// The category.
        category: String,
        /// Its new shard count.
        shards: u32,
    },
}

/// The shard of an item id among `shards` (stable across builds and processes: CRC32).
pub fn shard_for(id: &str, shards: usize) -> usize {
    (crc32fast::hash(id.as_bytes()) as usize) % shards.max(1)
}

/// The header that frames `payload`: its length and CRC32.
pub fn record_header(payload: &[u8]) -> Result<[u8; RECORD_HEADER]> {
    if payload.len() > MAX_RECORD {
        return Err(DurabilityError::Encode(format!(
            "record of {} bytes exceeds {MAX_RECORD}",
            payload.len()
        )));
    }
    let mut head = [0u8; RECORD_HEADER];
    head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    Ok(head)
}

/// Frames one payload: header + bytes.
pub fn frame_payload(payload: &[u8]) -> Result<Vec<u8>> {
    let head = record_header(payload)?;
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Encodes and frames any serialisable value.
pub fn encode_framed<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload = vsa_protocol::frame::encode_body(value)
        .map_err(|e| DurabilityError::Encode(e.to_string()))?;
    frame_payload(&payload)
}

/// Encodes one log record.
pub fn encode_record(record: &WalRecord) -> Result<Vec<u8>> {
    encode_framed(record)
}

/// Reads the header at the start of `bytes`: `Ok(None)` when fewer than [`RECORD_HEADER`]
/// bytes remain, the payload length and CRC otherwise.
pub fn parse_header(bytes: &[u8]) -> Result<Option<(usize, u32)>> {
    let Some(h) = bytes.get(..RECORD_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_RECORD {
        return Err(DurabilityError::Corrupt(format!(
            "record length {len} exceeds {MAX_RECORD}"
        )));
    }
    Ok(Some((len, crc)))
}

/// Checks a payload against its CRC and decodes it (bounded allocation, no panic).
pub fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8], crc: u32) -> Result<T> {
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(DurabilityError::Corrupt(format!(
            "CRC mismatch (stored {crc:08x}, computed {actual:08x})"
        )));
    }
    vsa_protocol::frame::decode_body(payload).map_err(|e| DurabilityError::Corrupt(e.to_string()))
}

/// What scanning a byte buffer of framed records found.
#[derive(Debug, Default)]
pub struct WalScan {
    /// The records up to the first bad one.
    pub records: Vec<WalRecord>,
    /// Bytes of valid records from the start.
    pub valid_len: usize,
    /// Why the scan stopped before the end, if it did.
    pub corruption: Option<String>,
}

/// Decodes consecutive log records from `bytes`, stopping at the first torn or corrupt one.
pub fn decode_records(bytes: &[u8]) -> WalScan {
    let mut scan = WalScan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        match next_record(&bytes[at..]) {
            Ok((record, used)) => {
                scan.records.push(record);
                at += used;
                scan.valid_len = at;
            }
            Err(e) => {
                scan.corruption = Some(format!("at byte {at}: {e}"));
                break;
            }
        }
    }
    scan
}

/// Decodes the record at the start of `bytes`; returns it and the bytes it used.
pub fn next_record(bytes: &[u8]) -> Result<(WalRecord, usize)> {
    let (len, crc) = parse_header(bytes)?
        .ok_or_else(|| DurabilityError::Corrupt("torn record header".into()))?;
    let payload = bytes
        .get(RECORD_HEADER..RECORD_HEADER + len)
        .ok_or_else(|| {
            DurabilityError::Corrupt(format!("torn record: {len}-byte payload cut short"))
        })?;
    Ok((decode_payload(payload, crc)?, RECORD_HEADER + len))
}
