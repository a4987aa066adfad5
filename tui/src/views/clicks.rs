//! 5 Clicks: click and impression rates, totals, the top items by CTR, the live reranking
//! weights with the weight editor, and the preview of the last search's top 10 re-scored
//! with the pending weights (client-side, from the hits' explain components).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, disconnected_banner, kv};
use crate::app::App;
use crate::model::{COMPONENTS, fmt_bytes, fmt_rate, rerank};

/// Hits shown in each column of the preview.
pub(crate) const PREVIEW_TOP: usize = 10;

/// The weight line: `ctr 0.50`, or `ctr 0.55*` when pending.
pub(crate) fn weight_label(app: &App, i: usize) -> String {
    let w = &app.weights;
    match w.pending[i] {
        Some(v) => format!("{} {v:.2}*", COMPONENTS[i]),
        None => format!("{} {:.2}", COMPONENTS[i], w.live.get(COMPONENTS[i])),
    }
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let [banner_area, main] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(0),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(main);
    let [totals, weights, top] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Min(0),
    ])
    .areas(left);
    draw_totals(frame, totals, app);
    draw_weights(frame, weights, app);
    draw_top(frame, top, app);
    draw_preview(frame, right, app);
}

fn draw_totals(frame: &mut Frame, area: Rect, app: &App) {
    let lines = match (&app.clicks, &app.clicks_error) {
        (Some(c), _) => vec![
            Line::from(
                [
                    kv(
                        "click rate",
                        app.click_rate.map_or("–".to_owned(), fmt_rate),
                    ),
                    vec![Span::raw("  ")],
                    kv(
                        "impressions",
                        app.impression_rate.map_or("–".to_owned(), fmt_rate),
                    ),
                ]
                .concat(),
            ),
            Line::from(
                [
                    kv("clicks", format!("{:.0}", c.clicks)),
                    vec![Span::raw("  ")],
                    kv("impressions", format!("{:.0}", c.impressions)),
                    vec![Span::raw("  ")],
                    kv("rejected", c.rejected.to_string()),
                ]
                .concat(),
            ),
            Line::from(kv(
                "items tracked",
                format!(
                    "{} ({}, {:.0} B/item)",
                    c.items_tracked,
                    fmt_bytes(c.memory_bytes),
                    c.bytes_per_item
                ),
            )),
            Line::from(kv(
                "queries",
                format!(
                    "{} logged, {} retained",
                    c.queries_logged, c.queries_retained
                ),
            )),
        ],
        (None, Some(e)) => {
            vec![Line::from(format!("click stats unavailable: {e}")).fg(Color::Yellow)]
        }
        (None, None) => vec![Line::from("no click stats yet").dim()],
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block("clicks")),
        area,
    );
}

fn draw_weights(frame: &mut Frame, area: Rect, app: &App) {
    let w = &app.weights;
    let mut lines: Vec<Line> = (0..COMPONENTS.len())
        .map(|i| {
            let selected = i == w.selected;
            let mut style = Style::new();
            if w.pending[i].is_some() {
                style = style.fg(Color::Yellow).add_modifier(Modifier::BOLD);
            }
            if selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Line::from(vec![
                Span::raw(if selected { "> " } else { "  " }),
                Span::styled(weight_label(app, i), style),
            ])
        })
        .collect();
    if let Some(text) = &w.typing {
        lines.push(
            Line::from(format!(
                "{} = {text}▏ (Enter sets, Esc cancels)",
                COMPONENTS[w.selected]
            ))
            .fg(Color::Yellow),
        );
    } else if w.committing {
        lines.push(Line::from("committing…").fg(Color::Yellow));
    } else if w.has_pending() {
        lines.push(Line::from("* pending — Enter commits, Esc discards").fg(Color::Yellow));
    } else {
        lines.push(Line::from("↑/↓ select · +/- 0.05 · e type").dim());
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(format!("reranking weights v{}", w.live.version))),
        area,
    );
}

fn draw_top(frame: &mut Frame, area: Rect, app: &App) {
    let top = app
        .clicks
        .as_ref()
        .map(|c| c.top.as_slice())
        .unwrap_or_default();
    let visible = usize::from(area.height.saturating_sub(3));
    let rows: Vec<Row> = top
        .iter()
        .take(visible.min(10))
        .map(|t| {
            Row::new(vec![
                Cell::from(t.id.clone()),
                Cell::from(format!("{:.3}", t.ctr)),
                Cell::from(format!("{:.0}", t.clicks)),
                Cell::from(format!("{:.0}", t.impressions)),
            ])
        })
        .collect();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(10),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["item", "ctr", "clicks", "impr."]).bold())
        .block(block("top items by CTR")),
        area,
    );
}

fn draw_preview(frame: &mut Frame, area: Rect, app: &App) {
    let Some(response) = &app.search.response else {
        frame.render_widget(
            Paragraph::new(
                "search an image on 6 Search to preview the ranking under pending weights",
            )
            .wrap(Wrap { trim: true })
            .block(block("ranking preview")),
            area,
        );
        return;
    };
    let hits = &response.hits;
    let pending = app.weights.effective_all();
    let after = rerank(hits, &pending, PREVIEW_TOP);
    let [before_area, after_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let before_rows: Vec<Row> = hits
        .iter()
        .take(PREVIEW_TOP)
        .enumerate()
        .map(|(i, h)| {
            Row::new(vec![
                Cell::from((i + 1).to_string()),
                Cell::from(h.id.clone()),
                Cell::from(format!("{:.3}", h.score)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(3),
        Constraint::Min(6),
        Constraint::Length(6),
    ];
    frame.render_widget(
        Table::new(before_rows, widths)
            .header(Row::new(["#", "item", "score"]).bold())
            .block(block(format!("current (v{})", response.weights_version))),
        before_area,
    );
    let after_rows: Vec<Row> = after
        .iter()
        .map(|r| {
            let movement = r.movement(PREVIEW_TOP);
            let style = if movement.starts_with('▲') || movement == "new" {
                Style::new().fg(Color::Green)
            } else if movement.starts_with('▼') {
                Style::new().fg(Color::Red)
            } else {
                Style::new().dim()
            };
            Row::new(vec![
                Cell::from((r.new_rank + 1).to_string()),
                Cell::from(r.id.clone()),
                Cell::from(format!("{:.3}", r.score)),
                Cell::from(movement).style(style),
            ])
        })
        .collect();
    let title = if app.weights.has_pending() {
        "pending weights*"
    } else {
        "re-scored (no pending edits)"
    };
    frame.render_widget(
        Table::new(
            after_rows,
            [
                Constraint::Length(3),
                Constraint::Min(6),
                Constraint::Length(6),
                Constraint::Length(4),
            ],
        )
        .header(Row::new(["#", "item", "score", "move"]).bold())
        .block(block(title)),
        after_area,
    );
}
