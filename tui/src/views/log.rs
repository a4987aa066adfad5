//! 7 Log: the server's recent warnings and errors, accumulated across polls, scrollable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, disconnected_banner};
use crate::app::App;
use crate::model::fmt_clock;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let [banner_area, log_area] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(0),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let visible = usize::from(log_area.height.saturating_sub(2));
    let len = app.log.len();
    let end = len.saturating_sub(app.log_scroll);
    let start = end.saturating_sub(visible);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .map(|l| {
            let level = if l.level.eq_ignore_ascii_case("error") {
                Style::new().fg(Color::Red).bold()
            } else {
                Style::new().fg(Color::Yellow)
            };
            Line::from(vec![
                Span::raw(format!("{} ", fmt_clock(l.unix_ms))).dim(),
                Span::styled(format!("{:<5} ", l.level), level),
                Span::raw(format!("{}: ", l.target)).dim(),
                Span::raw(l.message.clone()),
            ])
        })
        .collect();
    let place = if app.log_scroll == 0 {
        "following".to_owned()
    } else {
        format!("scrolled up {}", app.log_scroll)
    };
    let body = if lines.is_empty() {
        vec![Line::from("no warnings or errors").dim()]
    } else {
        lines
    };
    frame.render_widget(
        Paragraph::new(body).block(block(format!(
            "server log (warnings, errors; UTC) — {len} lines — {place}"
        ))),
        log_area,
    );
}
