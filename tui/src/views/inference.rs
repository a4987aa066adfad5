//! 4 Inference: workers, queue depth against its bound, images/s, busy rejections and the
//! batch-size histogram.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Gauge, Paragraph};

use super::{block, disconnected_banner, kv};
use crate::app::App;
use crate::model::fmt_rate;

/// The label of batch-size bucket `i`: batches of size in `(2^(i-1), 2^i]`.
pub(crate) fn bucket_label(i: usize) -> String {
    match i {
        0 => "1".to_owned(),
        1 => "2".to_owned(),
        _ => format!("≤{}", 1u64 << i.min(63)),
    }
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let banner = disconnected_banner(app);
    let [banner_area, info_area, gauge_area, chart_area] = Layout::vertical([
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(area);
    if let Some(banner) = banner {
        frame.render_widget(Paragraph::new(banner), banner_area);
    }
    let Some(sample) = &app.latest else {
        frame.render_widget(
            Paragraph::new("no telemetry yet").block(block("inference pool")),
            info_area,
        );
        return;
    };
    let i = &sample.telemetry.inference;
    let w = app.window.as_ref();
    let rate = |f: fn(&crate::model::Window) -> f64| w.map_or("–".to_owned(), |w| fmt_rate(f(w)));
    let mean_batch = if i.batches == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}", i.images as f64 / i.batches as f64)
    };
    let workers_style = if i.live_workers < i.workers {
        Style::new().fg(Color::Red)
    } else {
        Style::new().fg(Color::Green)
    };
    let lines = vec![
        Line::from(vec![
            Span::raw("workers: "),
            Span::styled(
                format!("{}/{} live", i.live_workers, i.workers),
                workers_style,
            ),
            Span::raw(format!("   restarts: {}", i.restarts)),
        ]),
        Line::from(
            [
                kv("images", rate(|w| w.images_per_s)),
                vec![Span::raw("   ")],
                kv("batches", rate(|w| w.batches_per_s)),
                vec![Span::raw("   ")],
                kv("mean batch", mean_batch),
                vec![Span::raw("   ")],
                kv("max batch", i.max_batch.to_string()),
            ]
            .concat(),
        ),
        Line::from(kv(
            "busy rejections",
            format!(
                "{} total, {}",
                i.busy_rejections,
                rate(|w| w.busy_rejections_per_s)
            ),
        )),
        Line::from(kv(
            "since boot",
            format!("{} images in {} batches", i.images, i.batches),
        )),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(block("inference pool")),
        info_area,
    );
    let ratio = if i.queue_capacity == 0 {
        0.0
    } else {
        (f64::from(i.queue_depth) / f64::from(i.queue_capacity)).clamp(0.0, 1.0)
    };
    frame.render_widget(
        Gauge::default()
            .block(block("queue"))
            .gauge_style(Style::new().fg(if ratio > 0.8 { Color::Red } else { Color::Cyan }))
            .ratio(ratio)
            .label(format!("queue {}/{}", i.queue_depth, i.queue_capacity)),
        gauge_area,
    );
    if chart_area.height < 3 || chart_area.width < 4 {
        return;
    }
    let n = i.batch_sizes.len().max(1) as u16;
    let bar_width = (chart_area.width.saturating_sub(2) / n)
        .saturating_sub(1)
        .clamp(1, 8);
    let bars: Vec<Bar> = i
        .batch_sizes
        .iter()
        .enumerate()
        .map(|(k, &v)| Bar::default().value(v).label(Line::from(bucket_label(k))))
        .collect();
    frame.render_widget(
        BarChart::default()
            .block(block("batch sizes (batches per size bucket, since boot)"))
            .data(BarGroup::default().bars(&bars))
            .bar_width(bar_width)
            .bar_gap(1)
            .bar_style(Style::new().fg(Color::Cyan)),
        chart_area,
    );
}
