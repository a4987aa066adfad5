//! 6 Search: a path input, the query's thumbnail (half blocks), the predicted category, ROI
//! and timings, and the hits with their score components.
//!
//! Only the query has a thumbnail: hits are catalogue ids, and the protocol does not carry
//! catalogue images (the console cannot read the server's files), so hit thumbnails would
//! need a protocol change (see the crate README).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::{block, kv};
use crate::app::App;
use crate::model::{COMPONENTS, component, fmt_us};
use crate::widgets::HalfBlocks;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.search;
    let [input_area, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(area);
    let (title, input) = if s.editing {
        (
            "image path — Enter search · Esc stop editing",
            Line::from(vec![
                Span::raw(s.input.clone()),
                Span::raw("▏").fg(Color::Yellow),
            ]),
        )
    } else {
        (
            "image path — / or Enter to edit",
            Line::from(s.input.clone()),
        )
    };
    frame.render_widget(
        Paragraph::new(input).block(block(title).border_style(if s.editing {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        })),
        input_area,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(body);
    let [thumb_area, info_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(9)]).areas(left);
    let thumb_block = block("query");
    let inner = thumb_block.inner(thumb_area);
    frame.render_widget(thumb_block, thumb_area);
    match (&s.thumbnail, &s.thumbnail_error) {
        (Some(t), _) => frame.render_widget(HalfBlocks::new(t), inner),
        (None, Some(e)) => frame.render_widget(
            Paragraph::new(e.clone())
                .fg(Color::Red)
                .wrap(Wrap { trim: true }),
            inner,
        ),
        (None, None) => frame.render_widget(Paragraph::new("no query yet").dim(), inner),
    }
    frame.render_widget(
        Paragraph::new(info_lines(app))
            .wrap(Wrap { trim: true })
            .block(block("prediction")),
        info_area,
    );
    draw_hits(frame, right, app);
}

fn info_lines(app: &App) -> Vec<Line<'static>> {
    let s = &app.search;
    if s.busy {
        return vec![Line::from("searching…").fg(Color::Yellow)];
    }
    if let Some(e) = &s.error {
        return vec![Line::from(format!("error: {e}")).fg(Color::Red)];
    }
    let Some(r) = &s.response else {
        return vec![Line::from("type a path and press Enter").dim()];
    };
    let mut lines = Vec::new();
    match &r.category {
        Some(c) => {
            lines.push(Line::from(kv(
                "category",
                format!("{} ({:.2})", c.category, c.confidence),
            )));
            if !c.alternatives.is_empty() {
                let alts: Vec<String> = c
                    .alternatives
                    .iter()
                    .take(3)
                    .map(|(a, p)| format!("{a} {p:.2}"))
                    .collect();
                lines.push(Line::from(kv("alternatives", alts.join(", "))));
            }
            for (branch, cat, p) in &c.branches {
                lines.push(Line::from(kv(branch, format!("{cat} {p:.2}"))));
            }
        }
        None => lines.push(Line::from(kv("category", "(given)"))),
    }
    lines.push(Line::from(kv(
        "ROI",
        r.roi.map_or("–".to_owned(), |b| {
            format!("x {} y {} w {} h {}", b.x, b.y, b.w, b.h)
        }),
    )));
    let total: u64 = r.timings.iter().map(|(_, us)| us).sum();
    let stages: Vec<String> = r
        .timings
        .iter()
        .map(|(stage, us)| format!("{stage} {}", fmt_us(Some(*us))))
        .collect();
    lines.push(Line::from(kv(
        "timings",
        format!("{} ({})", fmt_us(Some(total)), stages.join(", ")),
    )));
    lines.push(Line::from(kv(
        "epoch / weights",
        format!("{} / v{}", r.epoch, r.weights_version),
    )));
    if r.degraded {
        lines.push(Line::from("DEGRADED: some partitions did not answer").fg(Color::Red));
    }
    lines
}

fn draw_hits(frame: &mut Frame, area: Rect, app: &App) {
    let hits = app
        .search
        .response
        .as_ref()
        .map(|r| r.hits.as_slice())
        .unwrap_or_default();
    let visible = usize::from(area.height.saturating_sub(3));
    let names: Vec<&str> = COMPONENTS.iter().copied().chain(["hamming"]).collect();
    let rows: Vec<Row> = hits
        .iter()
        .take(visible)
        .enumerate()
        .map(|(i, h)| {
            let mut cells = vec![
                Cell::from((i + 1).to_string()),
                Cell::from(h.id.clone()),
                Cell::from(format!("{:.3}", h.score)),
                Cell::from(h.category.clone()),
            ];
            cells.extend(names.iter().map(|c| {
                if h.components.iter().any(|(n, _)| n == c) {
                    Cell::from(format!("{:.2}", component(h, c)))
                } else {
                    Cell::from("–")
                }
            }));
            Row::new(cells)
        })
        .collect();
    let mut header = vec!["#", "id", "score", "category"];
    header.extend(names.iter().copied());
    let title = format!(
        "hits — {} (hit thumbnails: not available over the protocol)",
        hits.len()
    );
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(3),
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(header).bold())
        .block(block(title)),
        area,
    );
}
