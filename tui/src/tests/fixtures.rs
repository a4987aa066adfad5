//! Fabricated server answers and helpers.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use vsa_protocol::{
    ActorInfo, BoxXywh, CategoryPrediction, HealthReply, HealthState, Histogram,
    InferenceTelemetry, LogLine, RequestMetrics, SearchHit, SearchResponse, ShardTelemetry,
    Telemetry, WeightsInfo,
};

use crate::action::{Action, NetEvent};
use crate::app::App;
use crate::views;

/// A latency histogram holding these observations (µs).
pub(super) fn hist(values: &[(u64, u64)]) -> Histogram {
    let mut h = Histogram::latency();
    for &(v, n) in values {
        let i = h.bounds_us.partition_point(|&b| b < v);
        h.counts[i] += n;
        h.sum_us += v * n;
    }
    h
}

pub(super) fn actor(name: &str, parent: Option<&str>, role: &str) -> ActorInfo {
    ActorInfo {
        name: name.into(),
        parent: parent.map(Into::into),
        role: role.into(),
        state: "running".into(),
        mailbox: None,
        restarts: 0,
        last_error: None,
    }
}

pub(super) fn shard(
    name: &str,
    category: &str,
    searches: u64,
    latency: Histogram,
) -> ShardTelemetry {
    ShardTelemetry {
        name: name.into(),
        category: category.into(),
        items: 1000,
        memory_bytes: 3 * 1024 * 1024,
        searches,
        in_flight: 2,
        latency,
        recovering: false,
        hot: false,
        oversized: false,
    }
}

/// A telemetry answer at `uptime_ms` after `searches` searches (each 150 µs) plus `slow`
/// searches at 40 ms.
pub(super) fn telemetry(uptime_ms: u64, searches: u64, slow: u64) -> Telemetry {
    let latency = hist(&[(150, searches - slow), (40_000, slow)]);
    let mut coordinator = actor("coordinator", Some("root"), "coordinator");
    coordinator.mailbox = Some(3);
    let mut shoes = actor("p/shoes/0", Some("coordinator"), "partition");
    shoes.restarts = 2;
    shoes.last_error = Some("boom: injected panic".into());
    let mut s0 = shard("p/shoes/0", "shoes", searches, latency.clone());
    s0.hot = true;
    let mut s1 = shard(
        "p/bags/0",
        "bags",
        searches / 2,
        hist(&[(150, searches / 2)]),
    );
    s1.oversized = true;
    s1.recovering = true;
    s1.items = 250_000;
    Telemetry {
        server: "vsa 0.1.0".into(),
        uptime_ms,
        items: 12_345,
        epoch: 3,
        health: HealthReply {
            state: HealthState::Degraded,
            checks: vec![
                ("model".into(), HealthState::Healthy, "loaded".into()),
                (
                    "shards".into(),
                    HealthState::Degraded,
                    "1 recovering".into(),
                ),
            ],
        },
        memory_rss_bytes: 3 * 1024 * 1024 * 1024 / 2,
        connections_open: 2,
        connections_refused: 1,
        requests: vec![
            RequestMetrics {
                kind: "search".into(),
                count: searches,
                errors: searches / 100,
                busy: searches / 200,
                latency,
            },
            RequestMetrics {
                kind: "admin".into(),
                count: uptime_ms / 1000,
                errors: 0,
                busy: 0,
                latency: hist(&[(50, uptime_ms / 1000)]),
            },
        ],
        recent_requests: Vec::new(),
        recent_window_ms: 0,
        stages: vec![],
        // Children before parents, to show the tree does not depend on the order.
        actors: vec![
            shoes,
            actor("model-worker-0", Some("inference-pool"), "model-worker"),
            actor("root", None, "root"),
            actor("inference-pool", Some("root"), "inference-pool"),
            coordinator,
            actor("p/bags/0", Some("coordinator"), "partition"),
        ],
        shards: vec![s0, s1],
        inference: InferenceTelemetry {
            workers: 4,
            live_workers: 3,
            queue_depth: 12,
            queue_capacity: 64,
            max_batch: 8,
            batches: uptime_ms / 10,
            images: uptime_ms / 5,
            busy_rejections: 7,
            restarts: 1,
            batch_sizes: vec![50, 30, 20, 10],
        },
        weights: WeightsInfo {
            version: 2,
            components: vec![
                ("visual".into(), 1.0),
                ("colour".into(), 1.0),
                ("quality".into(), 0.0),
                ("ctr".into(), 0.5),
            ],
        },
        log: vec![],
    }
}

pub(super) fn log_line(seq: u64, level: &str, message: &str) -> LogLine {
    LogLine {
        seq,
        unix_ms: 1_700_000_000_000 + seq * 1000,
        level: level.into(),
        target: "vsa_actors::partition".into(),
        message: message.into(),
    }
}

pub(super) fn hit(id: &str, visual: f32, colour: f32, quality: f32, ctr: f32) -> SearchHit {
    SearchHit {
        id: id.into(),
        score: visual + colour + 0.5 * ctr,
        category: "shoes".into(),
        components: vec![
            ("visual".into(), visual),
            ("colour".into(), colour),
            ("quality".into(), quality),
            ("ctr".into(), ctr),
            ("hamming".into(), 40.0),
        ],
    }
}

/// Hits in the server's order under weights visual 1, colour 1, ctr 0.5.
pub(super) fn hits() -> Vec<SearchHit> {
    let mut hits: Vec<SearchHit> = (0..12)
        .map(|i| {
            let i = i as f32;
            // Visual similarity falls with the rank; item-11 has the best CTR.
            let ctr = if i == 11.0 { 0.1 } else { 0.05 };
            hit(&format!("item-{i}"), 0.9 - i * 0.02, 0.1, 0.5, ctr)
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits
}

pub(super) fn search_response() -> SearchResponse {
    SearchResponse {
        query_id: 42,
        hits: hits(),
        category: Some(CategoryPrediction {
            category: "shoes".into(),
            confidence: 0.87,
            alternatives: vec![("bags".into(), 0.1)],
            branches: vec![
                ("knn".into(), "shoes".into(), 0.9),
                ("model".into(), "shoes".into(), 0.8),
            ],
        }),
        roi: Some(BoxXywh {
            x: 10,
            y: 20,
            w: 100,
            h: 80,
        }),
        timings: vec![("decode".into(), 1200), ("embed".into(), 8000)],
        degraded: false,
        epoch: 3,
        weights_version: 2,
    }
}

pub(super) fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(super) fn ch(c: char) -> Action {
    key(KeyCode::Char(c))
}

pub(super) fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(ch(c));
    }
}

/// A connected app that has seen two polls 2 s apart.
pub(super) fn connected_app() -> App {
    let mut app = App::new("127.0.0.1:7878");
    app.update(Action::Net(NetEvent::Connected {
        server: "vsa 0.1.0".into(),
    }));
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(telemetry(10_000, 1000, 0)),
        at_ms: 1000,
    }));
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(telemetry(12_000, 1200, 5)),
        at_ms: 3000,
    }));
    app
}

/// The screen's text, one line per row (trailing spaces trimmed).
pub(super) fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| views::draw(f, app)).expect("draw");
    buffer_text(terminal.backend().buffer())
}

pub(super) fn buffer_text(buf: &ratatui::buffer::Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
