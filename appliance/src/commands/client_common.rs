//! What the client subcommands (`ingest`, `search`, `eval`, `health`, `stats`) share: the
//! `--addr`/`--token` arguments, connecting with one-line errors, the tokio runtime they run
//! on, the retry policy for retryable server answers (`busy`, `not_ready`, ...), the progress
//! bar and small formatting helpers.
//!
//! The subcommands only use `vsa-protocol`'s [`Client`], never the server's insides, so they
//! keep working while the server changes. Errors are built as single-line `anyhow` messages
//! (no context chains), because `main` prints them with `{:?}`.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Serialize, Serializer};
use vsa_protocol::{Client, ClientOptions, ErrorCode, ProtocolError};

/// The default server address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// Where the server is and how to open a session with it.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Address of the vsa server (host:port).
    #[arg(long, env = "VSA_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Session token sent in the Hello handshake.
    #[arg(long, env = "VSA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnArgs {
    /// Client options for the subcommand `command` (named `vsa-cli <command> <version>` in
    /// the server's logs) with this token.
    pub fn options(&self, command: &str) -> ClientOptions {
        ClientOptions {
            token: self.token.clone(),
            ..ClientOptions::named(format!("vsa-cli {command} {}", env!("CARGO_PKG_VERSION")))
        }
    }
}

/// Connects and performs the handshake; failures become one line naming the address:
/// `cannot reach vsa at ADDR: ...` (refused, unresolvable, timed out) or
/// `vsa at ADDR refused the session: CODE: ...` (e.g. `unauthorized`).
pub async fn connect(addr: &str, options: ClientOptions) -> anyhow::Result<Client> {
    Client::connect_with(addr, options)
        .await
        .map_err(|e| connect_error(addr, &e))
}

/// The one-line error for a failed [`connect`].
pub fn connect_error(addr: &str, e: &ProtocolError) -> anyhow::Error {
    match e {
        ProtocolError::Server(reply) => {
            anyhow::anyhow!("vsa at {addr} refused the session: {reply}")
        }
        ProtocolError::VersionMismatch { .. } => anyhow::anyhow!("vsa at {addr}: {e}"),
        other => anyhow::anyhow!("cannot reach vsa at {addr}: {}", plain(other)),
    }
}

/// A protocol error as text without the `i/o error: ` prefix of `Io`, for one-line messages.
pub fn plain(e: &ProtocolError) -> String {
    match e {
        ProtocolError::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A failure as `(code, message)`: a server's code and message, or the code the protocol
/// crate assigns to a local failure.
pub fn code_and_message(e: &ProtocolError) -> (String, String) {
    match e {
        ProtocolError::Server(reply) => (reply.code.as_str().to_owned(), reply.message.clone()),
        other => (other.code().as_str().to_owned(), plain(other)),
    }
}

/// Runs `fut` to completion on a fresh current-thread tokio runtime (the binary's `main` is
/// synchronous; the client work is I/O-bound, so one thread is enough).
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the tokio runtime: {e}"))?;
    Ok(runtime.block_on(fut))
}

/// How retryable server answers (`busy`, `not_ready`, `unavailable`, `timeout`) are retried:
/// exponential backoff from `first`, capped at `max_delay`, at most `max_retries` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the first retry.
    pub first: Duration,
    /// The longest delay between two tries.
    pub max_delay: Duration,
    /// Retries before giving up.
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    /// 50 ms, doubling, capped at 1 s, 8 retries: about 4.5 s of backoff in all.
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_retries: 8,
        }
    }
}

impl RetryPolicy {
    /// For measuring tools (eval) that must not lose a query to `busy`: the server refuses
    /// extra searches at once (admission control), so a retry costs it almost nothing; 50 ms
    /// doubling to 250 ms, 1200 retries (about 5 minutes: retries are not queued, so with 8
    /// clients on 2 model workers one query can lose the race many times in a row; 60 retries
    /// lost one query in 400 on a slow day).
    pub fn patient() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_millis(50),
            max_delay: Duration::from_millis(250),
            max_retries: 1200,
        }
    }

    /// The delay before retry number `retry` (0-based), or `None` when retries are used up.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        Some(self.first.saturating_mul(factor).min(self.max_delay))
    }

    /// Whether an answer with this code is worth retrying.
    pub fn retries(code: ErrorCode) -> bool {
        code.retryable()
    }
}

/// A progress bar on stderr, or a hidden one when `show` is false or stderr is not a
/// terminal. `what` names the unit (`items`, `queries`).
pub fn progress_bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}} {{msg}}"
    );
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar
}

/// Prints a line to stderr without tearing the progress bar.
pub fn eprint_above(bar: &ProgressBar, line: &str) {
    bar.suspend(|| eprintln!("{line}"));
}

/// Serializes `(key, value)` pairs as a JSON object, keeping their order (stage timings,
/// score components).
#[derive(Debug, Clone, Copy)]
pub struct OrderedMap<'a, V>(pub &'a [(String, V)]);

impl<V: Serialize> Serialize for OrderedMap<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Microseconds as milliseconds with two decimals, e.g. `1.23 ms`.
pub fn fmt_ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// A byte count with a binary unit, e.g. `12.3 MiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as `1h 02m 03s`, `2m 03s` or `4.5s`.
pub fn fmt_uptime(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_stop() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (0..10).map(|r| policy.delay(r)).collect();
        assert_eq!(delays[0], Some(Duration::from_millis(50)));
        assert_eq!(delays[1], Some(Duration::from_millis(100)));
        assert_eq!(delays[5], Some(Duration::from_secs(1)));
        assert_eq!(delays[7], Some(Duration::from_secs(1)));
        assert_eq!(delays[8], None);
        let total: Duration = delays.iter().flatten().sum();
        assert!(total < Duration::from_secs(5), "{total:?}");
        assert!(RetryPolicy::retries(ErrorCode::Busy));
        assert!(!RetryPolicy::retries(ErrorCode::InvalidImage));
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_ms(1234), "1.23 ms");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(fmt_uptime(4500), "4.5s");
        assert_eq!(fmt_uptime(123_000), "2m 03s");
        assert_eq!(fmt_uptime(3_723_000), "1h 02m 03s");
    }

    #[test]
    fn conn_args_make_options() {
        let args = ConnArgs {
            addr: DEFAULT_ADDR.into(),
            token: Some("t".into()),
        };
        let options = args.options("ingest");
        assert_eq!(options.token.as_deref(), Some("t"));
        assert!(options.client_name.starts_with("vsa-cli ingest "));
    }
}
