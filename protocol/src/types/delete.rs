//! `Delete`: remove a catalogue item.

use serde::{Deserialize, Serialize};

/// Delete the item with this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// Item id.
    pub id: String,
}

/// The answer to a delete: durable when this arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReply {
    /// The item id.
    pub id: String,
    /// The write-ahead log sequence number of the delete.
    pub seq: u64,
    /// Whether the item existed (deleting an unknown id is not an error).
    pub existed: bool,
}
