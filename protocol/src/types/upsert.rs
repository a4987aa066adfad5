//! `Upsert`: insert or replace a catalogue item.

use serde::{Deserialize, Serialize};

/// Insert an item, or replace the item with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpsertRequest {
    /// Item id (unique across the catalogue).
    pub id: String,
    /// The item's picture or its precomputed embedding.
    pub content: ItemContent,
    /// The item's category (decides its partition).
    pub category: String,
    /// Filterable attributes: `(key, value)`; a key may repeat.
    pub attributes: Vec<(String, String)>,
    /// Opaque metadata returned with the item; not searchable.
    pub metadata: Vec<(String, String)>,
}

/// What an item is indexed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemContent {
    /// Encoded image bytes (JPEG, PNG or WebP).
    Image(#[serde(with = "super::bytes")] Vec<u8>),
    /// A precomputed embedding (the model contract's `embedding` output).
    Embedding(Vec<f32>),
}

/// The answer to an upsert: the write is durable when this arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertReply {
    /// The item id.
    pub id: String,
    /// The write-ahead log sequence number of the write.
    pub seq: u64,
    /// An item with this id existed and was replaced.
    pub replaced: bool,
}
