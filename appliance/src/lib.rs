//! `vsa-appliance`: the `vsa` binary's library. Binaries stay thin: `main.rs` parses arguments
//! and calls [`cli::run`]; everything testable lives here.
//!
//! Modules:
//! - [`cli`]: clap definitions and dispatch of subcommands.
//! - [`commands`]: one module per subcommand.
//! - [`logging`]: tracing subscriber set-up and the tail of recent warnings/errors.
//! - [`metrics`]: per request kind counters and latency histograms.
//! - [`settings`]: layered, validated settings.
//! - [`server`]: the TCP server and request dispatch.

pub mod cli;
pub mod commands;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod settings;
