//! `vsa console`: the operator console (ratatui), a client of the TCP protocol with the admin
//! token. The console itself lives in `vsa-tui`; this only maps flags to its options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::client_common::ConnArgs;

/// Arguments of `vsa console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Server address and session token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The admin token (the server's `admin.token`); telemetry and every action need it.
    #[arg(long, env = "VSA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub refresh_ms: u64,
    /// Where the console writes its own log (never to the screen).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Runs the console until the operator quits.
pub fn run(args: ConsoleArgs) -> anyhow::Result<i32> {
    vsa_tui::run(vsa_tui::ConsoleOptions {
        addr: args.conn.addr,
        token: args.conn.token,
        admin_token: args.admin_token,
        refresh: Duration::from_millis(args.refresh_ms),
        log_file: args.log_file,
    })?;
    Ok(0)
}
