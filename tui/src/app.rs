//! The console's state and its one entry point, [`App::update`]: every [`Action`] goes
//! through it, and what it wants from the server comes out as [`Command`]s
//! ([`App::take_commands`]). Nothing here touches the terminal or the network, so tests drive
//! it with fabricated actions.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use vsa_protocol::{HealthReply, LogLine, SearchResponse, StatsReply, Telemetry};

use crate::action::{Action, AdminWhat, Command, NetEvent};
use crate::model::{
    self, COMPONENTS, ClickStats, Payload as _, Plan, RebalanceStatus, Weights, Window,
};
use crate::widgets::Thumbnail;

/// Points kept for the sparklines.
pub const HISTORY: usize = 240;
/// Log lines kept.
pub const LOG_KEEP: usize = 5000;
/// Hits asked of a search (the preview re-scores all of them).
pub const SEARCH_K: u32 = 50;
/// One `+`/`-` press on a weight.
pub const WEIGHT_STEP: f32 = 0.05;
/// How long the stall fault lasts.
pub const STALL_MS: u64 = 5000;

/// The screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Uptime, rates, latency, health.
    Overview,
    /// The supervision tree.
    Actors,
    /// Shards and rebalancing.
    Partitions,
    /// The inference pool.
    Inference,
    /// Clicks and the reranking weights.
    Clicks,
    /// Search with a query image.
    Search,
    /// The server's warnings and errors.
    Log,
}

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 7] = [
        Tab::Overview,
        Tab::Actors,
        Tab::Partitions,
        Tab::Inference,
        Tab::Clicks,
        Tab::Search,
        Tab::Log,
    ];

    /// The tab's title, e.g. `1 Overview` (stable: end-to-end tests look for it).
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "1 Overview",
            Tab::Actors => "2 Actors",
            Tab::Partitions => "3 Partitions",
            Tab::Inference => "4 Inference",
            Tab::Clicks => "5 Clicks",
            Tab::Search => "6 Search",
            Tab::Log => "7 Log",
        }
    }

    /// Its 0-based position.
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn offset(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// The connection as the console knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    /// No answer yet.
    Connecting,
    /// Connected to this server.
    Connected {
        /// Its name and version.
        server: String,
    },
    /// Lost (or never made); the poller retries at `retry_at_ms` (console clock).
    Disconnected {
        /// Why.
        error: String,
        /// When the next attempt is due.
        retry_at_ms: u64,
    },
}

/// A question waiting for `y`/`n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// Apply this plan.
    Apply(u64),
    /// Snapshot now.
    Snapshot,
    /// Panic this actor.
    Panic(String),
    /// Stall this actor.
    Stall(String),
}

impl Dialog {
    /// The question (stable text: `Apply plan <id>? (y/n)`).
    pub fn question(&self) -> String {
        match self {
            Dialog::Apply(id) => format!("Apply plan {id}? (y/n)"),
            Dialog::Snapshot => "Snapshot every shard now? (y/n)".to_owned(),
            Dialog::Panic(name) => format!("Panic actor {name}? (y/n)"),
            Dialog::Stall(name) => format!("Stall actor {name} for {STALL_MS} ms? (y/n)"),
        }
    }

    fn command(&self) -> Command {
        match self {
            Dialog::Apply(id) => Command::Apply(*id),
            Dialog::Snapshot => Command::Snapshot,
            Dialog::Panic(name) => Command::PanicActor(name.clone()),
            Dialog::Stall(name) => Command::StallActor(name.clone(), STALL_MS),
        }
    }
}

/// The status line: the outcome of the last action.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// What to say.
    pub text: String,
    /// Whether it is a failure.
    pub error: bool,
}

/// A telemetry answer and when it came.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The answer.
    pub telemetry: Telemetry,
    /// Console clock, ms.
    pub at_ms: u64,
}

/// Sparkline series, one point per poll window.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Search QPS (rounded).
    pub qps: VecDeque<u64>,
    /// Windowed search p50, µs.
    pub p50_us: VecDeque<u64>,
    /// Windowed search p99, µs.
    pub p99_us: VecDeque<u64>,
}

impl History {
    fn push(&mut self, w: &Window) {
        for (series, v) in [
            (&mut self.qps, w.search_qps.round() as u64),
            (&mut self.p50_us, w.search_p50_us.unwrap_or(0)),
            (&mut self.p99_us, w.search_p99_us.unwrap_or(0)),
        ] {
            series.push_back(v);
            while series.len() > HISTORY {
                series.pop_front();
            }
        }
    }
}

/// The weight editor of the Clicks tab.
#[derive(Debug, Clone, Default)]
pub struct WeightEditor {
    /// The live weights (from telemetry, or the last `SetRerankWeights` answer).
    pub live: Weights,
    /// Pending edits, one per [`COMPONENTS`] entry.
    pub pending: [Option<f32>; 4],
    /// The selected component.
    pub selected: usize,
    /// A value being typed for the selected component.
    pub typing: Option<String>,
    /// A commit is in flight.
    pub committing: bool,
}

impl WeightEditor {
    /// Whether any edit is pending.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// The weight of component `i` as it would be after a commit.
    pub fn effective(&self, i: usize) -> f32 {
        self.pending[i].unwrap_or_else(|| self.live.get(COMPONENTS[i]))
    }

    /// Every component with its effective weight (what a commit sends).
    pub fn effective_all(&self) -> Vec<(String, f32)> {
        COMPONENTS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), self.effective(i)))
            .collect()
    }

    /// The live weights as `(component, weight)` for every component.
    pub fn live_all(&self) -> Vec<(String, f32)> {
        COMPONENTS
            .iter()
            .map(|c| (c.to_string(), self.live.get(c)))
            .collect()
    }

    fn nudge(&mut self, by: f32) {
        let i = self.selected;
        let v = ((self.effective(i) + by) * 100.0).round() / 100.0;
        self.set(i, v);
    }

    fn set(&mut self, i: usize, v: f32) {
        let v = v.clamp(-10.0, 10.0);
        self.pending[i] = if (v - self.live.get(COMPONENTS[i])).abs() < 1e-6 {
            None
        } else {
            Some(v)
        };
    }
}

/// The Search tab.
#[derive(Debug, Clone, Default)]
pub struct SearchState {
    /// The path being typed.
    pub input: String,
    /// Whether keys go to the input.
    pub editing: bool,
    /// A search is in flight.
    pub busy: bool,
    /// The last searched path.
    pub path: Option<String>,
    /// The query's thumbnail.
    pub thumbnail: Option<Thumbnail>,
    /// Why there is no thumbnail.
    pub thumbnail_error: Option<String>,
    /// The last answer.
    pub response: Option<SearchResponse>,
    /// The last search's failure.
    pub error: Option<String>,
}

/// The console's whole state.
#[derive(Debug)]
pub struct App {
    /// The server's address (shown in the header).
    pub addr: String,
    /// The console clock, ms (advanced by ticks and network events).
    pub now_ms: u64,
    /// The shown tab.
    pub tab: Tab,
    /// The connection.
    pub conn: Conn,
    /// The help overlay is open.
    pub help: bool,
    /// An open confirmation.
    pub dialog: Option<Dialog>,
    /// The status line.
    pub status: Option<Status>,
    /// The newest telemetry.
    pub latest: Option<Sample>,
    /// The window between the two newest telemetries.
    pub window: Option<Window>,
    /// Sparkline series.
    pub history: History,
    /// Why telemetry is refused (then `fallback` has what `Stats`/`Health` said).
    pub telemetry_error: Option<String>,
    /// `Stats` and `Health` when telemetry is refused.
    pub fallback: Option<(StatsReply, HealthReply)>,
    /// The newest click statistics.
    pub clicks: Option<ClickStats>,
    /// Why there are none.
    pub clicks_error: Option<String>,
    /// Clicks per second between the two newest click statistics.
    pub click_rate: Option<f64>,
    /// Impressions per second, likewise.
    pub impression_rate: Option<f64>,
    clicks_prev: Option<(u64, f64, f64)>,
    /// The last computed plan.
    pub plan: Option<Plan>,
    /// The rebalancer's status.
    pub rebalance: Option<RebalanceStatus>,
    /// Why the status is unknown.
    pub rebalance_error: Option<String>,
    /// The weight editor.
    pub weights: WeightEditor,
    /// The Search tab.
    pub search: SearchState,
    /// Accumulated server log lines, oldest first.
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the newest (0: follow the tail).
    pub log_scroll: usize,
    log_last_seq: u64,
    /// The selected row of the Actors tab.
    pub actor_selected: usize,
    commands: Vec<Command>,
    /// The console should exit.
    pub quit: bool,
}

impl App {
    /// A console for the server at `addr`.
    pub fn new(addr: impl Into<String>) -> App {
        App {
            addr: addr.into(),
            now_ms: 0,
            tab: Tab::Overview,
            conn: Conn::Connecting,
            help: false,
            dialog: None,
            status: None,
            latest: None,
            window: None,
            history: History::default(),
            telemetry_error: None,
            fallback: None,
            clicks: None,
            clicks_error: None,
            click_rate: None,
            impression_rate: None,
            clicks_prev: None,
            plan: None,
            rebalance: None,
            rebalance_error: None,
            weights: WeightEditor::default(),
            search: SearchState::default(),
            log: VecDeque::new(),
            log_scroll: 0,
            log_last_seq: 0,
            actor_selected: 0,
            commands: Vec::new(),
            quit: false,
        }
    }

    /// Whether the console is connected.
    pub fn connected(&self) -> bool {
        matches!(self.conn, Conn::Connected { .. })
    }

    /// The commands produced since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    fn ok(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn fail(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) {
        match action {
            Action::Key(key) => self.key(key),
            Action::Resize(..) | Action::Tick => {}
            Action::Quit => self.quit = true,
            Action::Net(event) => self.net(event),
        }
    }

    /// Advances the console clock (the event loop calls it before each batch).
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// The actors in tree order (see [`model::actor_tree`]).
    pub fn actor_rows(&self) -> Vec<(usize, &vsa_protocol::ActorInfo)> {
        self.latest
            .as_ref()
            .map(|s| model::actor_tree(&s.telemetry.actors))
            .unwrap_or_default()
    }

    fn net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected { server } => {
                self.conn = Conn::Connected { server };
            }
            NetEvent::Disconnected { error, retry_in_ms } => {
                self.conn = Conn::Disconnected {
                    error,
                    retry_at_ms: self.now_ms + retry_in_ms,
                };
                self.weights.committing = false;
                self.search.busy = false;
            }
            NetEvent::Telemetry { telemetry, at_ms } => self.telemetry(*telemetry, at_ms),
            NetEvent::Fallback {
                error,
                stats,
                health,
                ..
            } => {
                self.telemetry_error = Some(error);
                self.fallback = Some((*stats, health));
            }
            NetEvent::ClickStats { result, at_ms } => {
                match result.and_then(|json| ClickStats::parse(&json)) {
                    Ok(stats) => self.click_stats(stats, at_ms),
                    Err(e) => self.clicks_error = Some(e),
                }
            }
            NetEvent::RebalanceStatus(result) => {
                match result.and_then(|json| RebalanceStatus::parse(&json)) {
                    Ok(status) => {
                        self.rebalance = Some(status);
                        self.rebalance_error = None;
                    }
                    Err(e) => self.rebalance_error = Some(e),
                }
            }
            NetEvent::Admin { what, result } => self.admin(what, result),
            NetEvent::QueryImage(result) => match result {
                Ok(t) => {
                    self.search.thumbnail = Some(t);
                    self.search.thumbnail_error = None;
                }
                Err(e) => {
                    self.search.thumbnail = None;
                    self.search.thumbnail_error = Some(e);
                }
            },
            NetEvent::Search(result) => {
                self.search.busy = false;
                match result {
                    Ok(response) => {
                        let n = response.hits.len();
                        self.search.response = Some(*response);
                        self.search.error = None;
                        self.ok(format!("search: {n} hits"));
                    }
                    Err(e) => {
                        self.search.response = None;
                        self.fail(format!("search failed: {e}"));
                        self.search.error = Some(e);
                    }
                }
            }
        }
    }

    fn telemetry(&mut self, telemetry: Telemetry, at_ms: u64) {
        let restarted = self
            .latest
            .as_ref()
            .is_some_and(|prev| telemetry.uptime_ms < prev.telemetry.uptime_ms);
        if restarted {
            self.log_last_seq = 0;
        }
        if let Some(prev) = &self.latest {
            self.window = Window::between(&prev.telemetry, &telemetry);
            if let Some(w) = &self.window {
                self.history.push(w);
            }
        }
        for line in &telemetry.log {
            if line.seq > self.log_last_seq {
                self.log_last_seq = line.seq;
                self.log.push_back(line.clone());
                if self.log_scroll > 0 {
                    // Keep the operator's place while new lines arrive.
                    self.log_scroll += 1;
                }
            }
        }
        while self.log.len() > LOG_KEEP {
            self.log.pop_front();
        }
        if telemetry.weights.version != self.weights.live.version
            || self.weights.live.components.is_empty()
        {
            self.weights.live = Weights {
                version: telemetry.weights.version,
                components: telemetry.weights.components.clone(),
            };
        }
        let n = telemetry.actors.len();
        self.actor_selected = self.actor_selected.min(n.saturating_sub(1));
        self.telemetry_error = None;
        self.fallback = None;
        self.latest = Some(Sample { telemetry, at_ms });
    }

    fn click_stats(&mut self, stats: ClickStats, at_ms: u64) {
        if let Some((then, clicks, impressions)) = self.clicks_prev
            && at_ms > then
            && stats.clicks >= clicks
        {
            let secs = (at_ms - then) as f64 / 1000.0;
            self.click_rate = Some((stats.clicks - clicks) / secs);
            self.impression_rate = Some((stats.impressions - impressions).max(0.0) / secs);
        }
        self.clicks_prev = Some((at_ms, stats.clicks, stats.impressions));
        self.clicks_error = None;
        self.clicks = Some(stats);
    }

    fn admin(&mut self, what: AdminWhat, result: Result<vsa_protocol::AdminReply, String>) {
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                if what == AdminWhat::Weights {
                    self.weights.committing = false;
                }
                let label = match &what {
                    AdminWhat::Plan => "plan".to_owned(),
                    AdminWhat::Apply(id) => format!("apply plan {id}"),
                    AdminWhat::Cancel => "cancel".to_owned(),
                    AdminWhat::Weights => "set weights".to_owned(),
                    AdminWhat::Snapshot => "snapshot".to_owned(),
                    AdminWhat::Panic(name) => format!("panic {name}"),
                    AdminWhat::Stall(name) => format!("stall {name}"),
                };
                self.fail(format!("{label} failed: {e}"));
                return;
            }
        };
        match what {
            AdminWhat::Plan => match reply.payload.as_deref().map(Plan::parse) {
                Some(Ok(plan)) => {
                    let steps = plan.steps.len();
                    let id = plan.plan_id;
                    self.plan = Some(plan);
                    if steps == 0 {
                        self.ok(format!("plan {id}: nothing to do — {}", reply.message));
                    } else {
                        self.ok(format!("plan {id}: {steps} steps — press a to apply"));
                    }
                }
                Some(Err(e)) => self.fail(e),
                None => self.fail(format!("plan: no payload ({})", reply.message)),
            },
            AdminWhat::Weights => {
                self.weights.committing = false;
                if let Some(Ok(w)) = reply.payload.as_deref().map(Weights::parse) {
                    self.weights.live = w;
                }
                self.weights.pending = [None; 4];
                self.weights.typing = None;
                self.ok(reply.message);
                // Show the server's ranking under the new weights.
                if let Some(path) = self.search.path.clone() {
                    self.search.busy = true;
                    self.commands.push(Command::Search { path, k: SEARCH_K });
                }
            }
            AdminWhat::Apply(_)
            | AdminWhat::Cancel
            | AdminWhat::Snapshot
            | AdminWhat::Panic(_)
            | AdminWhat::Stall(_) => self.ok(reply.message),
        }
    }

    fn key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            self.quit = true;
            return;
        }
        if let Some(dialog) = self.dialog.clone() {
            match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.dialog = None;
                    self.commands.push(dialog.command());
                    self.ok("sent…");
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.dialog = None;
                    self.ok("cancelled");
                }
                _ => {}
            }
            return;
        }
        if self.help {
            match key.code {
                KeyCode::Char('?') | KeyCode::Esc => self.help = false,
                KeyCode::Char('q') => self.quit = true,
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Tab => return self.switch(self.tab.offset(1)),
            KeyCode::BackTab => return self.switch(self.tab.offset(-1)),
            _ => {}
        }
        // Text entry takes every other key.
        if self.tab == Tab::Search && self.search.editing {
            return self.search_input(key);
        }
        if self.tab == Tab::Clicks && self.weights.typing.is_some() {
            return self.weight_input(key);
        }
        match key.code {
            KeyCode::Char('q') => return self.quit = true,
            KeyCode::Char('?') => return self.help = true,
            KeyCode::Char('s') => return self.dialog = Some(Dialog::Snapshot),
            KeyCode::Char(c @ '1'..='7') => {
                let i = c as usize - '1' as usize;
                return self.switch(Tab::ALL[i]);
            }
            _ => {}
        }
        match self.tab {
            Tab::Actors => self.actors_key(key),
            Tab::Partitions => self.partitions_key(key),
            Tab::Clicks => self.clicks_key(key),
            Tab::Search => {
                if matches!(
                    key.code,
                    KeyCode::Char('/') | KeyCode::Char('i') | KeyCode::Enter
                ) {
                    self.search.editing = true;
                }
            }
            Tab::Log => self.log_key(key),
            Tab::Overview | Tab::Inference => {}
        }
    }

    fn switch(&mut self, tab: Tab) {
        self.tab = tab;
        // Landing on Search focuses the path input, so "6, type, Enter" searches.
        self.search.editing = tab == Tab::Search;
    }

    fn search_input(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => self.search.editing = false,
            KeyCode::Enter => {
                let path = self.search.input.trim().to_owned();
                if path.is_empty() {
                    self.fail("type the path of an image, then Enter");
                    return;
                }
                self.search.editing = false;
                self.search.busy = true;
                self.search.path = Some(path.clone());
                self.ok(format!("searching with {path}…"));
                self.commands.push(Command::Search { path, k: SEARCH_K });
            }
            KeyCode::Backspace => {
                self.search.input.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.search.input.clear();
            }
            KeyCode::Char(c) => self.search.input.push(c),
            _ => {}
        }
    }

    fn weight_input(&mut self, key: KeyEvent) {
        let Some(text) = self.weights.typing.as_mut() else {
            return;
        };
        match key.code {
            KeyCode::Esc => self.weights.typing = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if c.is_ascii_digit() || c == '.' || c == '-' => text.push(c),
            KeyCode::Enter => {
                let typed = text.clone();
                self.weights.typing = None;
                match typed.parse::<f32>() {
                    Ok(v) if v.is_finite() => {
                        let i = self.weights.selected;
                        self.weights.set(i, v);
                        self.ok(format!(
                            "{} {v:.2} pending — Enter commits, Esc discards",
                            COMPONENTS[i]
                        ));
                    }
                    _ => self.fail(format!("not a number: {typed:?}")),
                }
            }
            _ => {}
        }
    }

    fn actors_key(&mut self, key: KeyEvent) {
        let n = self.actor_rows().len();
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.actor_selected = self.actor_selected.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.actor_selected = (self.actor_selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Char('F') | KeyCode::Char('T') => {
                let name = self
                    .actor_rows()
                    .get(self.actor_selected)
                    .map(|(_, a)| a.name.clone());
                match name {
                    Some(name) if key.code == KeyCode::Char('F') => {
                        self.dialog = Some(Dialog::Panic(name));
                    }
                    Some(name) => self.dialog = Some(Dialog::Stall(name)),
                    None => self.fail("no actor selected"),
                }
            }
            _ => {}
        }
    }

    fn partitions_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Char('p') => {
                self.commands.push(Command::Plan);
                self.ok("computing a plan…");
            }
            KeyCode::Char('a') => match &self.plan {
                Some(plan) if !plan.steps.is_empty() => {
                    self.dialog = Some(Dialog::Apply(plan.plan_id));
                }
                Some(_) => self.fail("the plan has no steps: nothing to apply"),
                None => self.fail("no plan: press p to compute one"),
            },
            KeyCode::Char('c') => {
                self.commands.push(Command::Cancel);
                self.ok("cancelling…");
            }
            _ => {}
        }
    }

    fn clicks_key(&mut self, key: KeyEvent) {
        let w = &mut self.weights;
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => w.selected = w.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                w.selected = (w.selected + 1).min(COMPONENTS.len() - 1);
            }
            KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Right => w.nudge(WEIGHT_STEP),
            KeyCode::Char('-') | KeyCode::Char('_') | KeyCode::Left => w.nudge(-WEIGHT_STEP),
            KeyCode::Char('e') | KeyCode::Char('.') => w.typing = Some(String::new()),
            KeyCode::Enter => {
                if !w.has_pending() {
                    self.fail("no pending weights: +/- or e to edit");
                    return;
                }
                w.committing = true;
                let all = w.effective_all();
                self.commands.push(Command::SetWeights(all));
                self.ok("setting weights…");
            }
            KeyCode::Esc if w.has_pending() => {
                w.pending = [None; 4];
                self.ok("pending weights discarded");
            }
            _ => {}
        }
    }

    fn log_key(&mut self, key: KeyEvent) {
        let max = self.log.len().saturating_sub(1);
        self.log_scroll = match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.log_scroll + 1,
            KeyCode::Down | KeyCode::Char('j') => self.log_scroll.saturating_sub(1),
            KeyCode::PageUp => self.log_scroll + 10,
            KeyCode::PageDown => self.log_scroll.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => max,
            KeyCode::End | KeyCode::Char('G') => 0,
            _ => self.log_scroll,
        }
        .min(max);
    }
}
