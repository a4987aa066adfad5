//! `vsa-appliance`: the `vsa` binary's library. Binaries stay thin: `main.rs` parses arguments
//! and calls [`cli::run`]; everything testable lives here.
//!
//! Modules:
//! - [`cli`]: clap definitions and dispatch of subcommands.
//! - [`commands`]: one module per subcommand.
//! - [`logging`]: tracing subscriber set-up and the tail of recent warnings/errors.
//! - [`metrics`]: per request kind counters and latency histograms.
//! - [`settings`]: layered, validated settings.
//! - [`security`]: API keys and roles, the constant-time token check, rate limits.
//! - [`tls`]: the rustls acceptor of the TCP protocol.
//! - [`http`]: the HTTP side (actix-web): health, readiness, metrics, JSON search.
//! - [`server`]: the TCP server and request dispatch.

pub mod cli;
pub mod commands;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod security;
pub mod server;
pub mod settings;
pub mod tls;
