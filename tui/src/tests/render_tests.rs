use crossterm::event::KeyCode;
use image::{DynamicImage, Rgb, RgbImage};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::Color;
use vsa_protocol::AdminReply;

use super::fixtures::*;
use crate::action::{Action, AdminWhat, NetEvent};
use crate::app::{App, Tab};
use crate::views;
use crate::widgets::{HalfBlocks, Thumbnail};

fn assert_has(screen: &str, wanted: &str) {
    assert!(screen.contains(wanted), "missing {wanted:?} in\n{screen}");
}

#[test]
fn header_and_tabs() {
    let app = connected_app();
    let s = render(&app, 120, 40);
    assert_has(&s, "vsa console — 127.0.0.1:7878 — connected");
    for t in Tab::ALL {
        assert_has(&s, t.title());
    }
    let first = s.lines().next().expect("header");
    assert!(!first.contains("disconnected"), "{first}");
}

#[test]
fn overview_shows_rates_health_and_sparklines() {
    let app = connected_app();
    let s = render(&app, 120, 40);
    assert_has(&s, "server: vsa 0.1.0");
    assert_has(&s, "uptime: 00:00:12");
    assert_has(&s, "items indexed: 12345");
    assert_has(&s, "memory (RSS): 1.5 GiB");
    assert_has(&s, "connections: 2 open, 1 refused");
    assert_has(&s, "search: 100/s");
    assert_has(&s, "errors: 1.0/s");
    assert_has(&s, "busy: 0.5/s");
    assert_has(&s, "state: degraded");
    assert_has(&s, "model: healthy — loaded");
    assert_has(&s, "shards: degraded — 1 recovering");
    assert_has(&s, "search QPS 100/s");
    assert_has(&s, "search p50 1");
    assert_has(&s, "search p99 3");
}

#[test]
fn disconnected_is_shown_clearly() {
    let mut app = connected_app();
    app.update(Action::Net(NetEvent::Disconnected {
        error: "connection refused (os error 111)".into(),
        retry_in_ms: 2000,
    }));
    let s = render(&app, 120, 40);
    let first = s.lines().next().expect("header");
    assert!(
        first.starts_with("vsa console — 127.0.0.1:7878 — disconnected — retrying in 2.0 s"),
        "{first}"
    );
    assert_has(
        &s,
        "disconnected — retrying (connection refused (os error 111))",
    );
    // The last numbers remain.
    assert_has(&s, "items indexed: 12345");
}

#[test]
fn actors_tree_is_indented() {
    let mut app = connected_app();
    app.update(ch('2'));
    let s = render(&app, 120, 30);
    assert_has(&s, "supervision tree — 6 actors");
    let lines: Vec<&str> = s.lines().collect();
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(name))
            .copied()
            .unwrap_or_else(|| panic!("no row for {name} in\n{s}"))
    };
    assert!(row("root").contains("│root"), "{}", row("root"));
    assert!(row("  └ coordinator").contains("coordinator"));
    assert!(row("    └ p/shoes/0").contains("boom: injected panic"));
    assert!(row("    └ model-worker-0").contains("running"));
    // Mailbox: a number where the server counts it, "–" where it cannot.
    assert!(
        row("└ coordinator").contains(" 3 "),
        "{}",
        row("└ coordinator")
    );
    assert!(row("└ inference-pool").contains('–'));
    // Restarts.
    assert!(row("p/shoes/0").contains(" 2 "));
}

#[test]
fn partitions_flags_plan_dialog_and_gauge() {
    let mut app = connected_app();
    app.update(ch('3'));
    let s = render(&app, 130, 30);
    assert_has(&s, "no plan — press p to compute one");
    let shoes = s
        .lines()
        .find(|l| l.contains("p/shoes/0"))
        .expect("shoes row");
    assert!(shoes.contains("HOT"), "{shoes}");
    assert!(shoes.contains("100.0"), "QPS {shoes}");
    assert!(shoes.contains(" ms"), "p99 {shoes}");
    let bags = s
        .lines()
        .find(|l| l.contains("p/bags/0"))
        .expect("bags row");
    assert!(bags.contains("OVERSIZED RECOVERING"), "{bags}");
    assert!(bags.contains("250000"), "{bags}");

    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Plan,
        result: Ok(AdminReply {
            message: "plan 7".into(),
            payload: Some(
                r#"{"plan_id":7,"steps":[{"kind":"split","category":"bags","from":["p/bags/0"],
                "to":["p/bags/0","p/bags/1"],"items_before":250000,"items_after":[125000,125000],
                "reason":"oversized"}],"reason":"1 oversized"}"#
                    .into(),
            ),
        }),
    }));
    app.update(Action::Net(NetEvent::RebalanceStatus(Ok(
        r#"{"state":"running","plan_id":7,"progress":0.45,"message":"copying"}"#.into(),
    ))));
    let s = render(&app, 130, 30);
    assert_has(&s, "plan 7 — 1 steps — 1 oversized");
    assert_has(
        &s,
        "split bags: p/bags/0 → p/bags/0,p/bags/1 (250000 → 125000+125000): oversized",
    );
    assert_has(&s, "rebalance: running plan 7 — copying");
    assert_has(&s, "45%");
    app.update(ch('a'));
    let s = render(&app, 130, 30);
    assert_has(&s, "Apply plan 7? (y/n)");
    app.update(ch('y'));
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Apply(7),
        result: Ok(AdminReply {
            message: "applying plan 7".into(),
            payload: None,
        }),
    }));
    let s = render(&app, 130, 30);
    assert!(!s.contains("(y/n)"));
    assert_eq!(s.lines().last(), Some("applying plan 7"));
}

#[test]
fn inference_workers_queue_and_batches() {
    let mut app = connected_app();
    app.update(ch('4'));
    let s = render(&app, 100, 30);
    assert_has(&s, "workers: 3/4 live   restarts: 1");
    assert_has(&s, "images: 200/s");
    assert_has(&s, "busy rejections: 7 total, 0.0/s");
    assert_has(&s, "queue 12/64");
    assert_has(&s, "batch sizes");
    let labels = s.lines().find(|l| l.contains("≤4")).expect("bucket labels");
    assert!(
        labels.contains('1') && labels.contains('2') && labels.contains("≤8"),
        "{labels}"
    );
    // The biggest bucket's value is drawn on its bar.
    assert_has(&s, "50");
}

#[test]
fn clicks_weights_pending_and_preview() {
    let mut app = connected_app();
    app.update(Action::Net(NetEvent::ClickStats {
        result: Ok(
            r#"{"clicks":12,"impressions":340,"rejected":3,"items_tracked":40,
            "memory_bytes":4096,"bytes_per_item":102.4,"queries_logged":100,"queries_retained":90,
            "top":[{"id":"item-7","ctr":0.31,"clicks":4,"impressions":13}]}"#
                .into(),
        ),
        at_ms: 3000,
    }));
    app.update(ch('5'));
    let s = render(&app, 130, 34);
    assert_has(&s, "clicks: 12  impressions: 340  rejected: 3");
    assert_has(&s, "item-7");
    assert_has(&s, "0.310");
    assert_has(&s, "reranking weights v2");
    assert_has(&s, "visual 1.00");
    assert_has(&s, "ctr 0.50");
    assert!(!s.contains("ctr 0.50*"));
    assert_has(&s, "search an image on 6 Search");

    app.update(Action::Net(NetEvent::Search(Ok(Box::new(
        search_response(),
    )))));
    for _ in 0..3 {
        app.update(key(KeyCode::Down));
    }
    for _ in 0..10 {
        app.update(ch('+'));
    }
    let s = render(&app, 130, 34);
    assert_has(&s, "ctr 1.00*");
    assert_has(&s, "pending weights*");
    assert_has(&s, "current (v2)");
    // Side by side: the 10th row shows item-9 under the current weights and item-11, up
    // from 11th, under the pending ones.
    let moved = s
        .lines()
        .find(|l| l.contains("item-11"))
        .expect("item-11 row");
    assert!(moved.contains("item-9") && moved.contains("new"), "{moved}");
    let kept = s
        .lines()
        .find(|l| l.contains("item-3"))
        .expect("item-3 row");
    assert!(kept.contains('='), "{kept}");
    app.update(key(KeyCode::Esc));
    let s = render(&app, 130, 34);
    assert_has(&s, "ctr 0.50");
    assert!(!s.contains("ctr 1.00*"));
}

#[test]
fn search_results_prediction_and_thumbnail() {
    let mut app = connected_app();
    app.update(ch('6'));
    typed(&mut app, "/data/q.jpg");
    let s = render(&app, 140, 40);
    assert_has(&s, "/data/q.jpg▏");
    app.update(key(KeyCode::Enter));
    let img = RgbImage::from_fn(40, 40, |_, y| {
        if y < 20 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    app.update(Action::Net(NetEvent::QueryImage(Ok(
        Thumbnail::from_image(&DynamicImage::ImageRgb8(img)),
    ))));
    app.update(Action::Net(NetEvent::Search(Ok(Box::new(
        search_response(),
    )))));
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).expect("terminal");
    terminal.draw(|f| views::draw(f, &app)).expect("draw");
    let buf = terminal.backend().buffer().clone();
    let s = buffer_text(&buf);
    assert_has(
        &s,
        "hits — 12 (hit thumbnails: not available over the protocol)",
    );
    assert_has(&s, "category: shoes (0.87)");
    assert_has(&s, "knn: shoes 0.90");
    assert_has(&s, "ROI: x 10 y 20 w 100 h 80");
    assert_has(&s, "timings: 9.2 ms (decode 1.2 ms, embed 8.0 ms)");
    let first = s.lines().find(|l| l.contains("item-0")).expect("first hit");
    assert!(
        first.contains("1.025") && first.contains("0.90") && first.contains("40.00"),
        "{first}"
    );
    // The thumbnail: red upper pixels over blue lower ones somewhere, pure red above them.
    let cells: Vec<_> = buf.content().iter().filter(|c| c.symbol() == "▀").collect();
    assert!(!cells.is_empty(), "no half blocks in\n{s}");
    assert!(
        cells
            .iter()
            .any(|c| c.fg == Color::Rgb(255, 0, 0) && c.bg == Color::Rgb(255, 0, 0))
    );
    assert!(
        cells
            .iter()
            .any(|c| c.fg == Color::Rgb(0, 0, 255) && c.bg == Color::Rgb(0, 0, 255))
    );
}

#[test]
fn search_errors_are_shown() {
    let mut app = connected_app();
    app.update(ch('6'));
    typed(&mut app, "/missing.jpg");
    app.update(key(KeyCode::Enter));
    let e = "cannot read /missing.jpg: No such file or directory (os error 2)".to_owned();
    app.update(Action::Net(NetEvent::QueryImage(Err(e.clone()))));
    app.update(Action::Net(NetEvent::Search(Err(e))));
    let s = render(&app, 140, 40);
    assert_has(&s, "No such file or directory");
    assert_has(&s, "search failed: cannot read /missing.jpg");
}

#[test]
fn log_tail_and_scrolling() {
    let mut app = connected_app();
    let mut t = telemetry(14_000, 1400, 5);
    t.log = (1..=40)
        .map(|i| {
            log_line(
                i,
                if i % 2 == 0 { "ERROR" } else { "WARN" },
                &format!("message {i}"),
            )
        })
        .collect();
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(t),
        at_ms: 5000,
    }));
    app.update(ch('7'));
    let s = render(&app, 100, 20);
    assert_has(&s, "40 lines — following");
    assert_has(&s, "message 40");
    assert_has(&s, "ERROR vsa_actors::partition: message 40");
    assert!(
        !s.contains("message 1\n") && !s.contains("message 2 "),
        "only the tail\n{s}"
    );
    for _ in 0..30 {
        app.update(key(KeyCode::Up));
    }
    let s = render(&app, 100, 20);
    assert_has(&s, "scrolled up 30");
    assert_has(&s, "message 10");
    assert!(!s.contains("message 40"));
}

#[test]
fn help_overlay_lists_keys() {
    let mut app = connected_app();
    app.update(ch('?'));
    let s = render(&app, 100, 30);
    assert_has(&s, "help — ? or Esc closes");
    assert_has(&s, "snapshot every shard (asks y/n)");
    assert_has(&s, "apply the plan (asks y/n)");
    app.update(key(KeyCode::Esc));
    assert!(!render(&app, 100, 30).contains("help — ?"));
}

#[test]
fn tiny_terminals_say_so() {
    let app = connected_app();
    let s = render(&app, 20, 5);
    assert_has(&s, "terminal too small");
    assert_has(&s, "need 60×15");
    assert_has(&s, "have 20×5");
    assert!(!s.contains("1 Overview"));
}

#[test]
fn every_screen_survives_every_size_and_resizes() {
    let mut app = connected_app();
    app.update(Action::Net(NetEvent::Search(Ok(Box::new(
        search_response(),
    )))));
    app.update(Action::Net(NetEvent::QueryImage(Ok(
        Thumbnail::from_image(&DynamicImage::ImageRgb8(RgbImage::new(300, 7))),
    ))));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let sizes = [
        (0, 0),
        (1, 1),
        (20, 5),
        (59, 14),
        (60, 15),
        (61, 16),
        (80, 24),
        (200, 60),
        (60, 100),
        (300, 15),
    ];
    for tab in Tab::ALL {
        app.tab = tab;
        for overlay in 0..3 {
            app.help = overlay == 1;
            app.dialog = (overlay == 2).then_some(crate::app::Dialog::Apply(123_456_789));
            for (w, h) in sizes {
                terminal.backend_mut().resize(w, h);
                terminal.resize(Rect::new(0, 0, w, h)).expect("resize");
                terminal.draw(|f| views::draw(f, &app)).expect("draw");
                let s = buffer_text(terminal.backend().buffer());
                if w >= views::MIN_WIDTH && h >= views::MIN_HEIGHT {
                    match overlay {
                        0 => assert_has(&s, "vsa console"),
                        1 => assert_has(&s, "help —"),
                        _ => assert_has(&s, "Apply plan 123456789? (y/n)"),
                    }
                } else if w >= 18 && h >= 1 {
                    assert_has(&s, "terminal too small");
                }
            }
        }
    }
}

#[test]
fn half_blocks_put_the_upper_pixel_in_front() {
    let mut img = RgbImage::new(2, 2);
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    img.put_pixel(1, 0, Rgb([0, 255, 0]));
    img.put_pixel(0, 1, Rgb([0, 0, 255]));
    img.put_pixel(1, 1, Rgb([9, 9, 9]));
    let thumb = Thumbnail::from_image(&DynamicImage::ImageRgb8(img));
    let mut buf = ratatui::buffer::Buffer::empty(Rect::new(0, 0, 2, 1));
    ratatui::widgets::Widget::render(HalfBlocks::new(&thumb), Rect::new(0, 0, 2, 1), &mut buf);
    assert_eq!(buf[(0, 0)].symbol(), "▀");
    assert_eq!(buf[(0, 0)].fg, Color::Rgb(255, 0, 0));
    assert_eq!(buf[(0, 0)].bg, Color::Rgb(0, 0, 255));
    assert_eq!(buf[(1, 0)].fg, Color::Rgb(0, 255, 0));
    assert_eq!(buf[(1, 0)].bg, Color::Rgb(9, 9, 9));
    // Fitted and centred: a wide picture in a square area leaves rows blank.
    let wide = Thumbnail::from_image(&DynamicImage::ImageRgb8(RgbImage::new(8, 2)));
    let mut buf = ratatui::buffer::Buffer::empty(Rect::new(0, 0, 8, 8));
    ratatui::widgets::Widget::render(HalfBlocks::new(&wide), Rect::new(0, 0, 8, 8), &mut buf);
    let rows_drawn = (0..8).filter(|&y| buf[(0, y)].symbol() == "▀").count();
    assert_eq!(rows_drawn, 1);
    assert_eq!(buf[(0, 3)].symbol(), "▀", "centred vertically");
    // A zero area draws nothing and does not panic.
    let mut buf = ratatui::buffer::Buffer::empty(Rect::new(0, 0, 0, 0));
    ratatui::widgets::Widget::render(HalfBlocks::new(&wide), Rect::new(0, 0, 0, 0), &mut buf);
}

#[test]
fn thumbnails_decode_and_downscale() {
    let big = DynamicImage::ImageRgb8(RgbImage::new(1024, 512));
    let mut png = Vec::new();
    big.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let t = Thumbnail::decode(&png).expect("decode");
    assert_eq!(t.original, (1024, 512));
    assert_eq!((t.image().width(), t.image().height()), (256, 128));
    let err = Thumbnail::decode(b"not an image").expect_err("garbage");
    assert!(err.starts_with("cannot decode"), "{err}");
}

#[test]
fn fallback_without_admin_token() {
    let mut app = App::new("127.0.0.1:7878");
    app.update(Action::Net(NetEvent::Connected {
        server: String::new(),
    }));
    app.update(Action::Net(NetEvent::Fallback {
        error: "unauthorized: bad admin token".into(),
        stats: Box::new(vsa_protocol::StatsReply {
            items: 77,
            shards: vec![],
            inference: vsa_protocol::InferenceStats {
                workers: 1,
                queue_depth: 0,
                queue_capacity: 8,
                batches: 0,
                images: 0,
                busy_rejections: 0,
            },
            restarts: 0,
            qps: 2.5,
            uptime_ms: 61_000,
            epoch: 1,
        }),
        health: vsa_protocol::HealthReply {
            state: vsa_protocol::HealthState::Healthy,
            checks: vec![],
        },
        at_ms: 100,
    }));
    let s = render(&app, 120, 30);
    assert_has(&s, "vsa console — 127.0.0.1:7878 — connected");
    assert_has(&s, "items indexed: 77");
    assert_has(&s, "telemetry refused: unauthorized: bad admin token");
    assert_has(&s, "state: healthy");
}

/// `cargo test -p vsa-tui print_screens -- --ignored --nocapture` shows every screen.
#[test]
#[ignore = "prints the screens for a person to look at"]
fn print_screens() {
    let mut app = connected_app();
    app.update(Action::Net(NetEvent::Search(Ok(Box::new(
        search_response(),
    )))));
    app.update(Action::Net(NetEvent::ClickStats {
        result: Ok(
            r#"{"clicks":12,"impressions":340,"rejected":3,"items_tracked":40,
            "memory_bytes":4096,"bytes_per_item":102.4,"queries_logged":100,"queries_retained":90,
            "top":[{"id":"item-7","ctr":0.31,"clicks":4,"impressions":13}]}"#
                .into(),
        ),
        at_ms: 3000,
    }));
    let mut t = telemetry(14_000, 1400, 5);
    t.log = vec![
        log_line(1, "WARN", "slow shard"),
        log_line(2, "ERROR", "boom"),
    ];
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(t),
        at_ms: 5000,
    }));
    app.weights.pending[3] = Some(1.0);
    for tab in Tab::ALL {
        app.tab = tab;
        println!("{}", render(&app, 100, 30));
    }
}
