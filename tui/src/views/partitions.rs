//! 3 Partitions: per shard items, memory, QPS, windowed p99, in-flight and flags; below, the
//! current rebalance plan and the rebalancer's progress.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Gauge, Paragraph, Row, Table, Wrap};

use super::{block, disconnected_banner};
use crate::app::App;
use crate::model::{fmt_bytes, fmt_us};

/// `HOT OVERSIZED RECOVERING`, as they apply.
pub(crate) fn flags(s: &vsa_protocol::ShardTelemetry) -> String {
    let mut f = Vec::new();
    if s.hot {
        f.push("HOT");
    }
    if s.oversized {
        f.push("OVERSIZED");
    }
    if s.recovering {
        f.push("RECOVERING");
    }
    f.join(" ")
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let plan_lines = plan_lines(app);
    let plan_height = (plan_lines.len() as u16 + 2).min(area.height / 3).max(3);
    let [banner_area, table_area, plan_area, gauge_area] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(3),
        Constraint::Length(plan_height),
        Constraint::Length(3),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let shards = app
        .latest
        .as_ref()
        .map(|s| s.telemetry.shards.as_slice())
        .unwrap_or_default();
    let visible = usize::from(table_area.height.saturating_sub(3));
    let rows: Vec<Row> = shards
        .iter()
        .take(visible)
        .map(|s| {
            let w = app.window.as_ref().and_then(|w| w.shard(&s.name));
            let flags = flags(s);
            Row::new(vec![
                Cell::from(s.name.clone()),
                Cell::from(s.category.clone()),
                Cell::from(s.items.to_string()),
                Cell::from(fmt_bytes(s.memory_bytes)),
                Cell::from(
                    w.and_then(|w| w.qps)
                        .map_or("–".to_owned(), |q| format!("{q:.1}")),
                ),
                Cell::from(fmt_us(w.and_then(|w| w.p99_us))),
                Cell::from(s.in_flight.to_string()),
                Cell::from(flags.clone()).style(if flags.is_empty() {
                    Style::new()
                } else {
                    Style::new().fg(Color::Red).bold()
                }),
            ])
        })
        .collect();
    let more = shards.len().saturating_sub(visible);
    let title = if more > 0 {
        format!("shards — {} ({more} more below)", shards.len())
    } else {
        format!("shards — {}", shards.len())
    };
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new([
                "shard",
                "category",
                "items",
                "memory",
                "QPS",
                "p99",
                "in-flight",
                "flags",
            ])
            .bold(),
        )
        .block(block(title)),
        table_area,
    );
    frame.render_widget(
        Paragraph::new(plan_lines)
            .wrap(Wrap { trim: true })
            .block(block("rebalance plan — p plan · a apply · c cancel")),
        plan_area,
    );
    let (title, ratio, label) = match (&app.rebalance, &app.rebalance_error) {
        (Some(r), _) => {
            let plan = r.plan_id.map_or(String::new(), |id| format!(" plan {id}"));
            let mut title = format!("rebalance: {}{plan}", r.state);
            if !r.message.is_empty() {
                title.push_str(" — ");
                title.push_str(&r.message);
            }
            let ratio = f64::from(r.progress.clamp(0.0, 1.0));
            (title, ratio, format!("{:.0}%", ratio * 100.0))
        }
        (None, Some(e)) => (format!("rebalance: unknown ({e})"), 0.0, String::new()),
        (None, None) => ("rebalance: unknown".to_owned(), 0.0, String::new()),
    };
    frame.render_widget(
        Gauge::default()
            .block(block(title))
            .gauge_style(Style::new().fg(Color::Cyan))
            .ratio(ratio)
            .label(label),
        gauge_area,
    );
}

fn plan_lines(app: &App) -> Vec<Line<'static>> {
    match &app.plan {
        None => vec![Line::from("no plan — press p to compute one").dim()],
        Some(plan) => {
            let mut lines = vec![
                Line::from(format!(
                    "plan {} — {} steps{}",
                    plan.plan_id,
                    plan.steps.len(),
                    if plan.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", plan.reason)
                    }
                ))
                .bold(),
            ];
            lines.extend(
                plan.steps
                    .iter()
                    .map(|s| Line::from(format!("  {}", s.describe()))),
            );
            lines
        }
    }
}
