//! Everything that happens to the console is an [`Action`]; everything it asks of the network
//! thread is a [`Command`].
//!
//! Input, ticks, resizes and the network thread's answers all become actions, fed one at a
//! time to [`crate::app::App::update`]; the app answers with commands that the event loop
//! forwards to [`crate::net`]. Neither direction blocks the drawing thread.

use crossterm::event::KeyEvent;
use vsa_protocol::{AdminReply, HealthReply, SearchResponse, StatsReply, Telemetry};

use crate::widgets::Thumbnail;

/// One thing the app reacts to.
#[derive(Debug, Clone)]
pub enum Action {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal changed size (columns, rows).
    Resize(u16, u16),
    /// Time passed (drives timers such as the reconnect countdown).
    Tick,
    /// Stop the console.
    Quit,
    /// The network thread reported something.
    Net(NetEvent),
}

/// What the network thread reports.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A connection (and handshake) succeeded; the server's name.
    Connected {
        /// The server's name and version from its Hello reply.
        server: String,
    },
    /// The connection failed or broke; the poller retries after `retry_in_ms`.
    Disconnected {
        /// Why.
        error: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// A telemetry answer, stamped with the console's clock (ms since it started).
    Telemetry {
        /// The answer.
        telemetry: Box<Telemetry>,
        /// When it arrived.
        at_ms: u64,
    },
    /// Telemetry was refused (no admin token, an older server): the poller fell back to
    /// `Stats` and `Health`.
    Fallback {
        /// Why telemetry was refused.
        error: String,
        /// The server's statistics.
        stats: Box<StatsReply>,
        /// The server's health.
        health: HealthReply,
        /// When it arrived.
        at_ms: u64,
    },
    /// The click statistics payload (JSON), polled with every telemetry.
    ClickStats {
        /// The payload, or the server's refusal.
        result: Result<String, String>,
        /// When it arrived.
        at_ms: u64,
    },
    /// The rebalancer's status payload (JSON), polled with every telemetry.
    RebalanceStatus(Result<String, String>),
    /// The answer to an admin [`Command`].
    Admin {
        /// What was asked.
        what: AdminWhat,
        /// The server's reply or its error message.
        result: Result<AdminReply, String>,
    },
    /// The query image of a search was read and decoded (before the search itself).
    QueryImage(Result<Thumbnail, String>),
    /// A search's answer.
    Search(Result<Box<SearchResponse>, String>),
}

/// Which admin action an [`NetEvent::Admin`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminWhat {
    /// `RebalancePlan`.
    Plan,
    /// `RebalanceApply`.
    Apply(u64),
    /// `RebalanceCancel`.
    Cancel,
    /// `SetRerankWeights`.
    Weights,
    /// `Snapshot`.
    Snapshot,
    /// `PanicActor`.
    Panic(String),
    /// `StallActor`.
    Stall(String),
}

/// What the app asks of the network thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Compute a rebalance plan.
    Plan,
    /// Apply the plan with this id.
    Apply(u64),
    /// Cancel the running rebalance.
    Cancel,
    /// Set the reranking weights.
    SetWeights(Vec<(String, f32)>),
    /// Snapshot every shard.
    Snapshot,
    /// Fault injection: panic the named actor.
    PanicActor(String),
    /// Fault injection: stall the named actor for `millis`.
    StallActor(String, u64),
    /// Read the image at `path`, decode a thumbnail and search with it (`k` hits, explained).
    Search {
        /// The image file.
        path: String,
        /// Hits wanted.
        k: u32,
    },
}
