//! `vsa-appliance`: the `vsa` binary's library. Binaries stay thin: `main.rs` parses arguments
//! and calls [`cli::run`]; everything testable lives here.
//!
//! Modules:
//! - [`cli`]: clap definitions and dispatch of subcommands.
//! - [`commands`]: one module per subcommand.
//! - [`logging`]: tracing subscriber set-up.

pub mod cli;
pub mod commands;
pub mod logging;
