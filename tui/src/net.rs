//! The background poller: one std thread with a [`BlockingClient`] that connects (with
//! backoff, at most [`MAX_BACKOFF`] between attempts), polls telemetry, click statistics and
//! the rebalancer's status every refresh, runs the app's [`Command`]s, and reports everything
//! as [`NetEvent`]s. The drawing thread never waits on it.
//!
//! A network failure drops the connection and schedules a reconnect; a server's refusal
//! (`ProtocolError::Server`) is reported as a value and keeps the connection. A panic inside
//! the poller is caught and the poller starts over, so the console never loses its network
//! side.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use vsa_protocol::{
    AdminAction, AdminReply, BlockingClient, ClientOptions, ProtocolError, QueryInput,
    SearchRequest,
};

use crate::action::{Action, AdminWhat, Command, NetEvent};
use crate::widgets::Thumbnail;

/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The first wait after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Top items asked of `ClickStats`.
pub const CLICK_TOP: u32 = 10;

/// What the poller needs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `host:port` of the server.
    pub addr: String,
    /// Client options (name, admin token, timeouts).
    pub client: ClientOptions,
    /// Time between polls.
    pub refresh: Duration,
    /// The console's clock origin (events are stamped with ms since it).
    pub clock: Instant,
}

/// Starts the poller thread. It ends when `commands`' sender is dropped (or `events`' receiver).
pub fn spawn(
    config: NetConfig,
    commands: Receiver<Command>,
    events: Sender<Action>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vsa-tui-net".into())
        .spawn(move || {
            loop {
                let mut poller = Poller::new(config.clone(), commands.clone(), events.clone());
                match catch_unwind(AssertUnwindSafe(|| poller.run())) {
                    Ok(()) => return,
                    Err(_) => {
                        tracing::error!("the network poller panicked; starting over");
                        std::thread::sleep(MIN_BACKOFF);
                    }
                }
            }
        })
}

/// The next wait after one of `current`: doubled, at least [`MIN_BACKOFF`], at most
/// [`MAX_BACKOFF`].
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// A failure's text for the screen: a server's refusal as `code: message`.
pub fn describe(e: &ProtocolError) -> String {
    match e {
        ProtocolError::Server(reply) => reply.to_string(),
        other => other.to_string(),
    }
}

/// Whether the connection is lost after this error (anything but a server's answer).
fn breaks_connection(e: &ProtocolError) -> bool {
    !matches!(e, ProtocolError::Server(_))
}

/// Stops the poller: the app has gone.
struct Gone;

struct Poller {
    config: NetConfig,
    commands: Receiver<Command>,
    events: Sender<Action>,
    client: Option<BlockingClient>,
    backoff: Duration,
    next_attempt: Instant,
    next_poll: Instant,
    log_after: u64,
    last_uptime: Option<u64>,
}

impl Poller {
    fn new(config: NetConfig, commands: Receiver<Command>, events: Sender<Action>) -> Poller {
        let now = Instant::now();
        Poller {
            config,
            commands,
            events,
            client: None,
            backoff: Duration::ZERO,
            next_attempt: now,
            next_poll: now,
            log_after: 0,
            last_uptime: None,
        }
    }

    fn now_ms(&self) -> u64 {
        self.config.clock.elapsed().as_millis() as u64
    }

    fn emit(&self, event: NetEvent) -> Result<(), Gone> {
        self.events.send(Action::Net(event)).map_err(|_| Gone)
    }

    fn run(&mut self) {
        while self.step().is_ok() {}
    }

    fn step(&mut self) -> Result<(), Gone> {
        let deadline = if self.client.is_some() {
            self.next_poll
        } else {
            self.next_attempt
        };
        match self.commands.recv_deadline(deadline) {
            Ok(command) => self.handle(command),
            Err(RecvTimeoutError::Disconnected) => Err(Gone),
            Err(RecvTimeoutError::Timeout) => {
                if self.client.is_some() {
                    self.next_poll = Instant::now() + self.config.refresh;
                    self.poll()
                } else {
                    self.connect()
                }
            }
        }
    }

    fn connect(&mut self) -> Result<(), Gone> {
        match BlockingClient::connect_with(self.config.addr.as_str(), self.config.client.clone()) {
            Ok(client) => {
                tracing::info!(addr = %self.config.addr, "connected");
                let server = client.server().server.clone();
                self.client = Some(client);
                self.backoff = Duration::ZERO;
                self.next_poll = Instant::now();
                self.emit(NetEvent::Connected { server })
            }
            Err(e) => {
                self.backoff = next_backoff(self.backoff);
                self.next_attempt = Instant::now() + self.backoff;
                tracing::debug!(addr = %self.config.addr, error = %e, "connect failed");
                self.emit(NetEvent::Disconnected {
                    error: describe(&e),
                    retry_in_ms: self.backoff.as_millis() as u64,
                })
            }
        }
    }

    /// Drops the connection after a network failure and reports it.
    fn lost(&mut self, e: &ProtocolError) -> Result<(), Gone> {
        tracing::info!(addr = %self.config.addr, error = %e, "connection lost");
        self.client = None;
        self.backoff = MIN_BACKOFF;
        self.next_attempt = Instant::now() + self.backoff;
        self.emit(NetEvent::Disconnected {
            error: describe(e),
            retry_in_ms: self.backoff.as_millis() as u64,
        })
    }

    /// Runs one call on the connection; `Ok(None)` when there is none or it just broke (the
    /// loss is already reported).
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut BlockingClient) -> vsa_protocol::Result<T>,
    ) -> Result<Option<Result<T, ProtocolError>>, Gone> {
        let Some(client) = self.client.as_mut() else {
            return Ok(None);
        };
        match f(client) {
            Err(e) if breaks_connection(&e) || !client.is_usable() => {
                self.lost(&e)?;
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    fn poll(&mut self) -> Result<(), Gone> {
        let log_after = self.log_after;
        let Some(answer) = self.call(|c| c.telemetry(log_after))? else {
            return Ok(());
        };
        match answer {
            Ok(mut telemetry) => {
                let restarted = self.last_uptime.is_some_and(|u| telemetry.uptime_ms < u);
                if restarted && log_after > 0 {
                    // The server restarted: its log numbering started over.
                    tracing::info!("server restarted; reading its log from the start");
                    match self.call(|c| c.telemetry(0))? {
                        Some(Ok(again)) => telemetry = again,
                        Some(Err(_)) => {}
                        None => return Ok(()),
                    }
                }
                self.last_uptime = Some(telemetry.uptime_ms);
                if let Some(last) = telemetry.log.iter().map(|l| l.seq).max() {
                    self.log_after = last;
                } else if restarted {
                    self.log_after = 0;
                }
                let at_ms = self.now_ms();
                self.emit(NetEvent::Telemetry {
                    telemetry: Box::new(telemetry),
                    at_ms,
                })?;
            }
            Err(refused) => {
                let Some(Ok(stats)) = self.call(|c| c.stats())? else {
                    return Ok(());
                };
                let Some(Ok(health)) = self.call(|c| c.health())? else {
                    return Ok(());
                };
                let at_ms = self.now_ms();
                self.emit(NetEvent::Fallback {
                    error: describe(&refused),
                    stats: Box::new(stats),
                    health,
                    at_ms,
                })?;
            }
        }
        if let Some(answer) = self.call(|c| c.admin(AdminAction::ClickStats { top: CLICK_TOP }))? {
            let at_ms = self.now_ms();
            self.emit(NetEvent::ClickStats {
                result: payload(answer),
                at_ms,
            })?;
        }
        if let Some(answer) = self.call(|c| c.admin(AdminAction::RebalanceStatus))? {
            self.emit(NetEvent::RebalanceStatus(payload(answer)))?;
        }
        Ok(())
    }

    fn admin(&mut self, what: AdminWhat, action: AdminAction) -> Result<(), Gone> {
        let result = match self.call(|c| c.admin(action))? {
            Some(answer) => answer.map_err(|e| describe(&e)),
            None => Err("not connected".to_owned()),
        };
        self.emit(NetEvent::Admin { what, result })?;
        // Show the effect (a plan applied, weights changed) without waiting a refresh.
        self.next_poll = Instant::now();
        Ok(())
    }

    fn handle(&mut self, command: Command) -> Result<(), Gone> {
        match command {
            Command::Plan => self.admin(AdminWhat::Plan, AdminAction::RebalancePlan),
            Command::Apply(plan_id) => self.admin(
                AdminWhat::Apply(plan_id),
                AdminAction::RebalanceApply { plan_id },
            ),
            Command::Cancel => self.admin(AdminWhat::Cancel, AdminAction::RebalanceCancel),
            Command::SetWeights(w) => {
                self.admin(AdminWhat::Weights, AdminAction::SetRerankWeights(w))
            }
            Command::Snapshot => self.admin(AdminWhat::Snapshot, AdminAction::Snapshot),
            Command::PanicActor(name) => self.admin(
                AdminWhat::Panic(name.clone()),
                AdminAction::PanicActor { name },
            ),
            Command::StallActor(name, millis) => self.admin(
                AdminWhat::Stall(name.clone()),
                AdminAction::StallActor { name, millis },
            ),
            Command::Search { path, k } => self.search(&path, k),
        }
    }

    fn search(&mut self, path: &str, k: u32) -> Result<(), Gone> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let error = format!("cannot read {path}: {e}");
                self.emit(NetEvent::QueryImage(Err(error.clone())))?;
                return self.emit(NetEvent::Search(Err(error)));
            }
        };
        // A picture this console cannot decode may still be one the server can: search anyway.
        self.emit(NetEvent::QueryImage(Thumbnail::decode(&bytes)))?;
        let mut request = SearchRequest::new(QueryInput::Image(bytes), k);
        request.options.explain = true;
        let result = match self.call(|c| c.search(request))? {
            Some(answer) => answer.map(Box::new).map_err(|e| describe(&e)),
            None => Err("not connected".to_owned()),
        };
        self.emit(NetEvent::Search(result))
    }
}

/// An admin answer's JSON payload, or why there is none.
fn payload(answer: Result<AdminReply, ProtocolError>) -> Result<String, String> {
    match answer {
        Ok(AdminReply {
            payload: Some(p), ..
        }) => Ok(p),
        Ok(AdminReply { message, .. }) => Err(format!("no payload: {message}")),
        Err(e) => Err(describe(&e)),
    }
}
