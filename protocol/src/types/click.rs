//! `Click`: a shopper clicked a result. Impressions are implicit: every search's hits are
//! logged by the server as shown, at their positions, under the response's `query_id`.

use serde::{Deserialize, Serialize};

use super::ErrorReply;

/// A click on result `item_id`, shown at `position` (0-based) for query `query_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickRequest {
    /// The `query_id` of the search response the item was shown in.
    pub query_id: u64,
    /// The clicked item.
    pub item_id: String,
    /// Its 0-based position in that response.
    pub position: u32,
}

/// The answer to a click.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickReply {
    /// The query.
    pub query_id: u64,
    /// The item.
    pub item_id: String,
    /// The item's smoothed CTR after this click.
    pub ctr: f32,
}

/// Most clicks one [`crate::Request::Clicks`] may carry.
pub const MAX_CLICK_BATCH: usize = 10_000;

/// The answer to a batch of clicks ([`crate::Request::Clicks`]): each click is checked like a
/// single one; the good ones are counted even when others are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClicksReply {
    /// New clicks, handed to the aggregators.
    pub accepted: u32,
    /// Clicks on a result already clicked for the same query (counted once, as a single
    /// click would be).
    pub repeated: u32,
    /// The refused ones: their index in the batch and why (an unknown query, an item not
    /// shown at that position).
    pub rejected: Vec<(u32, ErrorReply)>,
}
