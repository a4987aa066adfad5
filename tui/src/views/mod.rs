//! Drawing: [`draw`] renders the whole screen from an [`App`] (header, tabs, the tab's body,
//! the status line, then the help overlay or a confirmation on top). One module per tab.
//!
//! Drawing only reads the app; it never waits on anything, and every layout is computed from
//! the frame's area, guarded against small and zero sizes (below [`MIN_WIDTH`] ×
//! [`MIN_HEIGHT`] only a "terminal too small" message is drawn).

mod actors;
mod clicks;
mod inference;
mod log;
mod overview;
mod partitions;
mod search;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};

use crate::app::{App, Conn, Tab};

/// Narrowest terminal the console lays out.
pub const MIN_WIDTH: u16 = 60;
/// Shortest terminal the console lays out.
pub const MIN_HEIGHT: u16 = 15;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return too_small(frame, area);
    }
    let [header, tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(app)), header);
    let titles = Tab::ALL.iter().map(|t| t.title());
    frame.render_widget(
        Tabs::new(titles)
            .select(app.tab.index())
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)),
        tabs,
    );
    match app.tab {
        Tab::Overview => overview::draw(frame, body, app),
        Tab::Actors => actors::draw(frame, body, app),
        Tab::Partitions => partitions::draw(frame, body, app),
        Tab::Inference => inference::draw(frame, body, app),
        Tab::Clicks => clicks::draw(frame, body, app),
        Tab::Search => search::draw(frame, body, app),
        Tab::Log => log::draw(frame, body, app),
    }
    frame.render_widget(Paragraph::new(status_line(app)), status);
    if let Some(dialog) = &app.dialog {
        confirm(frame, area, &dialog.question());
    } else if app.help {
        help(frame, area);
    }
}

fn too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("terminal too small").bold(),
        Line::from(format!("need {MIN_WIDTH}×{MIN_HEIGHT}")),
        Line::from(format!("have {}×{}", area.width, area.height)),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

/// `vsa console — <addr> — connected` (or `disconnected — retrying in …`).
pub fn header_line(app: &App) -> Line<'static> {
    let prefix = format!("vsa console — {} — ", app.addr);
    let state = match &app.conn {
        Conn::Connecting => Span::styled("connecting…", Style::new().fg(Color::Yellow)),
        Conn::Connected { server } => Span::styled(
            if server.is_empty() {
                "connected".to_owned()
            } else {
                format!("connected — {server}")
            },
            Style::new().fg(Color::Green),
        ),
        Conn::Disconnected { retry_at_ms, .. } => {
            let left = retry_at_ms.saturating_sub(app.now_ms);
            Span::styled(
                format!("disconnected — retrying in {:.1} s", left as f64 / 1000.0),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        }
    };
    Line::from(vec![Span::raw(prefix).bold(), state])
}

fn status_line(app: &App) -> Line<'static> {
    match &app.status {
        Some(s) if s.error => Line::from(s.text.clone()).fg(Color::Red),
        Some(s) => Line::from(s.text.clone()).fg(Color::Cyan),
        None => Line::from("? help · q quit · 1-7/Tab screens · s snapshot").dim(),
    }
}

/// A bordered block with a title.
pub(crate) fn block(title: impl Into<String>) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title.into(), Style::new().bold()))
}

/// A rectangle of at most `w × h` centred in `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// `label: value` as a styled span pair.
pub(crate) fn kv(label: &str, value: impl Into<String>) -> Vec<Span<'static>> {
    vec![
        Span::styled(format!("{label}: "), Style::new().dim()),
        Span::raw(value.into()),
    ]
}

/// The "server gone" banner the data tabs show above stale numbers.
pub(crate) fn disconnected_banner(app: &App) -> Option<Line<'static>> {
    match &app.conn {
        Conn::Disconnected { error, .. } => Some(
            Line::from(format!("disconnected — retrying ({error})"))
                .fg(Color::Red)
                .bold(),
        ),
        Conn::Connecting => Some(Line::from("connecting…").fg(Color::Yellow)),
        Conn::Connected { .. } => None,
    }
}

fn confirm(frame: &mut Frame, area: Rect, question: &str) {
    let width = (question.chars().count() as u16).saturating_add(6);
    let popup = centered(area, width, 5);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(vec![Line::from(""), Line::from(question.to_owned()).bold()])
            .centered()
            .block(block("confirm").border_style(Style::new().fg(Color::Yellow))),
        popup,
    );
}

/// Every key, as the help overlay lists it.
pub const HELP: &[(&str, &str)] = &[
    ("1-7, Tab, Shift-Tab", "switch screen"),
    ("?", "toggle this help"),
    ("q, Ctrl-C", "quit"),
    ("s", "snapshot every shard (asks y/n)"),
    ("Actors ↑/↓", "select an actor"),
    (
        "Actors F / T",
        "panic / stall it (fault injection; asks y/n)",
    ),
    ("Partitions p", "compute a rebalance plan"),
    ("Partitions a", "apply the plan (asks y/n)"),
    ("Partitions c", "cancel the running rebalance"),
    ("Clicks ↑/↓", "select a weight"),
    ("Clicks +/-", "change it by 0.05 (pending, marked *)"),
    ("Clicks e", "type a value, Enter sets it"),
    ("Clicks Enter / Esc", "commit / discard pending weights"),
    (
        "Search / or Enter",
        "edit the image path (focused on arrival)",
    ),
    ("Search Enter / Esc", "search / stop editing"),
    ("Log ↑/↓ PgUp/PgDn", "scroll; Home oldest, End follow"),
];

fn help(frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<22}"), Style::new().fg(Color::Yellow)),
                Span::raw(*what),
            ])
        })
        .collect();
    let popup = centered(
        area,
        area.width.saturating_sub(4).min(72),
        (lines.len() as u16).saturating_add(2),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(block("help — ? or Esc closes")),
        popup,
    );
}
