//! 2 Actors: the supervision tree, indented by parent, with state, mailbox depth, restarts
//! and the last error; `F`/`T` inject a fault into the selected actor (after a y/n).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{block, disconnected_banner};
use crate::app::App;

/// Rows of a window of `len` rows, `visible` high, that keeps `selected` in view.
pub(crate) fn scroll_window(len: usize, visible: usize, selected: usize) -> (usize, usize) {
    if visible == 0 {
        return (0, 0);
    }
    let start = selected
        .saturating_sub(visible - 1)
        .min(len.saturating_sub(visible));
    (start, (start + visible).min(len))
}

fn state_style(state: &str) -> Style {
    match state {
        "running" | "live" => Style::new().fg(Color::Green),
        "recovering" | "starting" | "restarting" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red),
    }
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let [banner_area, table_area, hint] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let rows = app.actor_rows();
    let visible = usize::from(table_area.height.saturating_sub(3));
    let (start, end) = scroll_window(rows.len(), visible, app.actor_selected);
    let body: Vec<Row> = rows
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, (depth, a))| {
            let selected = start + i == app.actor_selected;
            let marker = if *depth == 0 { "" } else { "└ " };
            let row = Row::new(vec![
                Cell::from(format!("{}{marker}{}", "  ".repeat(*depth), a.name)),
                Cell::from(a.role.clone()),
                Cell::from(a.state.clone()).style(state_style(&a.state)),
                Cell::from(a.mailbox.map_or("–".to_owned(), |m| m.to_string())),
                Cell::from(a.restarts.to_string()).style(if a.restarts > 0 {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                }),
                Cell::from(a.last_error.clone().unwrap_or_default())
                    .style(Style::new().fg(Color::Red)),
            ]);
            if selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let title = format!("supervision tree — {} actors", rows.len());
    let table = Table::new(
        body,
        [
            Constraint::Min(18),
            Constraint::Length(16),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "actor",
            "role",
            "state",
            "mailbox",
            "restarts",
            "last error",
        ])
        .bold(),
    )
    .block(block(title));
    frame.render_widget(table, table_area);
    frame.render_widget(
        Paragraph::new(Line::from(
            "↑/↓ select · F panic the selected actor · T stall it (fault injection, if enabled)",
        ))
        .dim(),
        hint,
    );
}
