//! 1 Overview: uptime, items, memory, connections, request/error/busy rates, health with each
//! check, and sparklines of search QPS and windowed p50/p99.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline, Wrap};
use vsa_protocol::{HealthReply, HealthState};

use super::{block, disconnected_banner, kv};
use crate::app::App;
use crate::model::{fmt_bytes, fmt_rate, fmt_uptime, fmt_us};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let [banner_area, top, charts] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(10),
        Constraint::Min(0),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let [info, health] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
    frame.render_widget(
        Paragraph::new(info_lines(app))
            .block(block("server"))
            .wrap(Wrap { trim: true }),
        info,
    );
    let health_reply = app
        .latest
        .as_ref()
        .map(|s| &s.telemetry.health)
        .or(app.fallback.as_ref().map(|(_, h)| h));
    frame.render_widget(
        Paragraph::new(health_lines(health_reply))
            .block(block("health"))
            .wrap(Wrap { trim: true }),
        health,
    );
    sparklines(frame, charts, app);
}

fn info_lines(app: &App) -> Vec<Line<'static>> {
    if let Some(sample) = &app.latest {
        let t = &sample.telemetry;
        let w = app.window.as_ref();
        let rate =
            |f: fn(&crate::model::Window) -> f64| w.map_or("–".to_owned(), |w| fmt_rate(f(w)));
        vec![
            Line::from(
                [
                    kv("server", t.server.clone()),
                    vec![Span::raw("  ")],
                    kv("uptime", fmt_uptime(t.uptime_ms)),
                ]
                .concat(),
            ),
            Line::from(
                [
                    kv("items indexed", t.items.to_string()),
                    vec![Span::raw("  ")],
                    kv("epoch", t.epoch.to_string()),
                ]
                .concat(),
            ),
            Line::from(kv(
                "memory (RSS)",
                if t.memory_rss_bytes == 0 {
                    "–".to_owned()
                } else {
                    fmt_bytes(t.memory_rss_bytes)
                },
            )),
            Line::from(kv(
                "connections",
                format!(
                    "{} open, {} refused",
                    t.connections_open, t.connections_refused
                ),
            )),
            Line::from(
                [
                    kv("search", rate(|w| w.search_qps)),
                    vec![Span::raw("  ")],
                    kv("all requests", rate(|w| w.requests_per_s)),
                ]
                .concat(),
            ),
            Line::from(
                [
                    kv("errors", rate(|w| w.errors_per_s)),
                    vec![Span::raw("  ")],
                    kv("busy", rate(|w| w.busy_per_s)),
                ]
                .concat(),
            ),
            Line::from(kv(
                "weights",
                format!(
                    "v{} ({})",
                    t.weights.version,
                    t.weights
                        .components
                        .iter()
                        .map(|(c, w)| format!("{c} {w:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        ]
    } else if let Some((stats, _)) = &app.fallback {
        let mut lines = vec![
            Line::from(kv("uptime", fmt_uptime(stats.uptime_ms))),
            Line::from(kv("items indexed", stats.items.to_string())),
            Line::from(kv("qps (server)", format!("{:.1}", stats.qps))),
            Line::from(kv("restarts", stats.restarts.to_string())),
        ];
        if let Some(e) = &app.telemetry_error {
            lines.push(
                Line::from(format!("telemetry refused: {e} (is --admin-token set?)"))
                    .fg(Color::Yellow),
            );
        }
        lines
    } else {
        vec![Line::from("no data yet").dim()]
    }
}

fn state_span(state: HealthState) -> Span<'static> {
    match state {
        HealthState::Healthy => Span::styled("healthy", Style::new().fg(Color::Green).bold()),
        HealthState::Degraded => Span::styled("degraded", Style::new().fg(Color::Yellow).bold()),
        HealthState::Down => Span::styled("down", Style::new().fg(Color::Red).bold()),
    }
}

fn health_lines(health: Option<&HealthReply>) -> Vec<Line<'static>> {
    let Some(h) = health else {
        return vec![Line::from("unknown").dim()];
    };
    let mut lines = vec![Line::from(vec![Span::raw("state: "), state_span(h.state)])];
    for (name, state, detail) in &h.checks {
        let mut spans = vec![Span::raw(format!("{name}: ")), state_span(*state)];
        if !detail.is_empty() {
            spans.push(Span::raw(format!(" — {detail}")).dim());
        }
        lines.push(Line::from(spans));
    }
    lines
}

fn tail(series: &std::collections::VecDeque<u64>, width: u16) -> Vec<u64> {
    let n = usize::from(width.saturating_sub(2)).max(1);
    let skip = series.len().saturating_sub(n);
    series.iter().skip(skip).copied().collect()
}

fn sparklines(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 {
        return;
    }
    let areas = Layout::vertical([Constraint::Fill(1); 3]).split(area);
    let w = app.window.as_ref();
    let h = &app.history;
    let charts = [
        (
            format!(
                "search QPS {}",
                w.map_or("–".to_owned(), |w| fmt_rate(w.search_qps))
            ),
            &h.qps,
            Color::Cyan,
        ),
        (
            format!("search p50 {}", fmt_us(w.and_then(|w| w.search_p50_us))),
            &h.p50_us,
            Color::Green,
        ),
        (
            format!("search p99 {}", fmt_us(w.and_then(|w| w.search_p99_us))),
            &h.p99_us,
            Color::Magenta,
        ),
    ];
    for ((title, series, colour), chart) in charts.into_iter().zip(areas.iter()) {
        let data = tail(series, chart.width);
        frame.render_widget(
            Sparkline::default()
                .block(block(title))
                .data(&data)
                .style(Style::new().fg(colour)),
            *chart,
        );
    }
}
