//! The wire types: one [`Request`] enum, one [`Response`] enum, one small module per kind.
//!
//! # Evolution rules
//!
//! Bodies are bincode (standard config) through serde, which is positional:
//! - enum variants travel as their index, so new variants are only ever **appended** (never
//!   reordered or removed) — this holds for `Request`, `Response`, `AdminAction` and every
//!   other enum here;
//! - struct fields have no names on the wire, so adding, removing or reordering a field is a
//!   breaking change: add a new variant instead, or bump [`PROTOCOL_VERSION`];
//! - never use `#[serde(skip_serializing_if)]` or `#[serde(flatten)]` (bincode cannot
//!   represent them);
//! - [`crate::ErrorCode`] travels as its string, so the code table may grow freely.
//!
//! The golden-bytes tests in `types/tests.rs` pin the variant indices.

mod admin;
mod bytes;
mod click;
mod delete;
mod error_reply;
mod health;
mod hello;
mod rebalance;
mod search;
mod stats;
mod telemetry;
mod upsert;

pub use admin::{AdminAction, AdminReply, AdminRequest};
pub use click::{ClickReply, ClickRequest, ClicksReply, MAX_CLICK_BATCH};
pub use delete::{DeleteReply, DeleteRequest};
pub use error_reply::ErrorReply;
pub use health::{HealthCheck, HealthReply, HealthState};
pub use hello::{Hello, HelloReply};
pub use rebalance::{RebalancePlan, RebalanceStatus, RebalanceStep};
pub use search::{
    BoxXywh, CategoryPrediction, FilterClause, QueryInput, Scope, SearchHit, SearchOptions,
    SearchRequest, SearchResponse,
};
pub use stats::{InferenceStats, ShardStats, StatsReply};
pub use telemetry::{
    ActorInfo, Histogram, InferenceTelemetry, LATENCY_BOUNDS_US, LogLine, RequestMetrics,
    ShardTelemetry, StageMetrics, Telemetry, WeightsInfo,
};
pub use upsert::{ItemContent, UpsertReply, UpsertRequest};

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// The protocol version this crate speaks; exchanged in [`Hello`] / [`HelloReply`].
pub const PROTOCOL_VERSION: u32 = 2;

/// A client's request. The first request on a connection must be [`Request::Hello`].
///
/// Variants are only ever appended (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Opens the session: protocol version, client name, optional token.
    Hello(Hello),
    /// Visual search.
    Search(SearchRequest),
    /// Insert or replace an item.
    Upsert(UpsertRequest),
    /// Delete an item.
    Delete(DeleteRequest),
    /// Server statistics.
    Stats,
    /// Health of the server and its parts.
    Health,
    /// An administrative action (needs the admin token).
    Admin(AdminRequest),
    /// A click on a search result (feedback for reranking).
    Click(ClickRequest),
    /// Counters and latency histograms for monitoring (answered with `Response::Telemetry`
    /// without the log tail); needs no admin token.
    Metrics,
    /// Clicks in one frame (at most [`MAX_CLICK_BATCH`]), for senders that forward a click
    /// stream: checked one by one like [`Request::Click`], absorbed without a reply per click.
    Clicks(Vec<ClickRequest>),
}

impl Request {
    /// A short, stable name for logs and metrics (`"search"`, `"admin"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Hello(_) => "hello",
            Request::Search(_) => "search",
            Request::Upsert(_) => "upsert",
            Request::Delete(_) => "delete",
            Request::Stats => "stats",
            Request::Health => "health",
            Request::Admin(_) => "admin",
            Request::Click(_) => "click",
            Request::Metrics => "metrics",
            Request::Clicks(_) => "clicks",
        }
    }

    /// Whether a frame body holds a [`Request::Clicks`], read from its variant tag alone:
    /// bincode's standard config writes the tag as the body's first byte (a varint, one byte
    /// below 251), so a server can route a click batch before decoding it. A body this says
    /// yes to may still fail to decode.
    pub fn is_clicks_body(body: &[u8]) -> bool {
        /// `Clicks`' variant index (pinned by the golden bytes in the tests).
        const CLICKS_TAG: u8 = 9;
        body.first() == Some(&CLICKS_TAG)
    }
}

/// The server's answer to one [`Request`]; answers come back in request order.
///
/// Variants are only ever appended (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello(HelloReply),
    /// Answer to [`Request::Search`].
    SearchResults(SearchResponse),
    /// Answer to [`Request::Upsert`].
    Upserted(UpsertReply),
    /// Answer to [`Request::Delete`].
    Deleted(DeleteReply),
    /// Answer to [`Request::Stats`].
    Stats(StatsReply),
    /// Answer to [`Request::Health`].
    Health(HealthReply),
    /// Answer to [`Request::Admin`].
    Admin(AdminReply),
    /// Any request failed; the connection stays open.
    Error(ErrorReply),
    /// Answer to [`Request::Click`].
    Clicked(ClickReply),
    /// Answer to [`AdminAction::Telemetry`].
    Telemetry(Box<Telemetry>),
    /// Answer to [`Request::Clicks`].
    ClicksAccepted(ClicksReply),
}

impl Response {
    /// A `Response::Error` with this code and message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorReply::new(code, message))
    }

    /// A short, stable name for logs and error messages (`"search_results"`, `"error"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Hello(_) => "hello",
            Response::SearchResults(_) => "search_results",
            Response::Upserted(_) => "upserted",
            Response::Deleted(_) => "deleted",
            Response::Stats(_) => "stats",
            Response::Health(_) => "health",
            Response::Admin(_) => "admin",
            Response::Error(_) => "error",
            Response::Clicked(_) => "clicked",
            Response::Telemetry(_) => "telemetry",
            Response::ClicksAccepted(_) => "clicks_accepted",
        }
    }
}

#[cfg(test)]
mod tests;
