//! `vsa-tui`: the operator console (ratatui + crossterm), a client of `vsa-protocol` only.
//!
//! It owns the terminal while [`run`] runs: seven screens (overview, actors, partitions,
//! inference, clicks and ranking, search, log) over the server's `Telemetry` admin answer and
//! the other admin actions. It depends on no server crate, so the server's insides can change
//! without breaking it.
//!
//! Shape (components + actions + event loop):
//! - [`action`]: [`action::Action`] (keys, ticks, resizes, network events) in,
//!   [`action::Command`] (what to ask the server) out;
//! - [`app`]: the state and `App::update(Action)`; no terminal, no network;
//! - [`model`]: the view-model: rates and windowed percentiles from two polls, the actor tree,
//!   plan / status / weights / click payloads, the client-side reranking preview;
//! - [`net`]: the background poller thread (blocking client, reconnect with backoff);
//! - [`views`]: drawing, one module per tab; never blocks;
//! - [`widgets`]: the half-block image renderer for the query thumbnail;
//! - [`terminal`]: raw mode / alternate screen with a `Drop` guard and a panic hook, logging
//!   to a file.

pub mod action;
pub mod app;
pub mod model;
pub mod net;
pub mod terminal;
pub mod views;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};
use vsa_protocol::ClientOptions;

use crate::action::Action;
use crate::app::App;

/// How the console connects and refreshes.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// `host:port` of the server's TCP protocol.
    pub addr: String,
    /// The session token sent in the Hello handshake (the server's API key, when it
    /// requires one).
    pub token: Option<String>,
    /// The admin token (telemetry and every admin action need it).
    pub admin_token: Option<String>,
    /// Time between polls.
    pub refresh: Duration,
    /// Where logs go (nowhere when `None`; never the screen).
    pub log_file: Option<PathBuf>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            addr: "127.0.0.1:7878".to_owned(),
            token: None,
            admin_token: None,
            refresh: Duration::from_secs(1),
            log_file: None,
        }
    }
}

/// Longest wait for input before the loop looks at the network and the clock again.
const FRAME: Duration = Duration::from_millis(50);
/// Redraw at least this often (timers such as the reconnect countdown).
const TICK: Duration = Duration::from_millis(250);

/// Runs the console until the operator quits; owns the terminal meanwhile. Network failures
/// never end it (it shows "disconnected" and retries); only terminal failures do.
pub fn run(options: ConsoleOptions) -> anyhow::Result<()> {
    terminal::init_logging(options.log_file.as_deref())?;
    let clock = Instant::now();
    let mut client = ClientOptions::named(concat!("vsa-tui ", env!("CARGO_PKG_VERSION")));
    client.token = options.token.clone();
    client.admin_token = options.admin_token.clone();
    client.connect_timeout = Some(Duration::from_secs(1));
    client.request_timeout = Some(Duration::from_secs(10).max(options.refresh * 3));
    let (command_tx, command_rx) = crossbeam_channel::unbounded();
    let (event_tx, event_rx) = crossbeam_channel::unbounded();
    let config = net::NetConfig {
        addr: options.addr.clone(),
        client,
        refresh: options.refresh.max(Duration::from_millis(100)),
        clock,
    };
    // Not joined: a request in flight may take up to its timeout; dropping `command_tx` makes
    // the thread end after it.
    let _poller = net::spawn(config, command_rx, event_tx)?;
    tracing::info!(addr = %options.addr, "console started");

    let mut guard = terminal::TerminalGuard::enter()?;
    let mut app = App::new(options.addr);
    let mut last_tick = Instant::now();
    let mut dirty = true;
    while !app.quit {
        if dirty {
            guard.terminal.draw(|frame| views::draw(frame, &app))?;
            dirty = false;
        }
        let mut actions = Vec::new();
        if event::poll(FRAME)? {
            loop {
                match event::read()? {
                    Event::Key(key) => actions.push(Action::Key(key)),
                    Event::Resize(w, h) => actions.push(Action::Resize(w, h)),
                    _ => {}
                }
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        actions.extend(event_rx.try_iter());
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            actions.push(Action::Tick);
        }
        app.set_now(clock.elapsed().as_millis() as u64);
        for action in actions {
            dirty = true;
            app.update(action);
        }
        for command in app.take_commands() {
            tracing::debug!(?command, "command");
            // The poller restarts itself after a panic, so a send only fails at exit.
            let _ = command_tx.send(command);
        }
    }
    drop(guard);
    tracing::info!("console stopped");
    Ok(())
}
