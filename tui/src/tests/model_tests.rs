use super::fixtures::*;
use crate::model::*;

#[test]
fn rates_come_from_the_difference_of_two_polls() {
    let prev = telemetry(10_000, 1000, 0);
    let now = telemetry(12_000, 1200, 5);
    let w = Window::between(&prev, &now).expect("a window");
    assert_eq!(w.secs, 2.0);
    assert_eq!(w.search_qps, 100.0);
    // 12 search errors - 10 = 2 over 2 s; busy 6 - 5 = 1.
    assert_eq!(w.errors_per_s, 1.0);
    assert_eq!(w.busy_per_s, 0.5);
    // search 200 + admin 2 requests.
    assert_eq!(w.requests_per_s, 101.0);
    assert_eq!(w.images_per_s, 200.0);
    assert_eq!(w.batches_per_s, 100.0);
    assert_eq!(w.busy_rejections_per_s, 0.0);
}

#[test]
fn p99_is_windowed_not_cumulative() {
    let prev = telemetry(10_000, 1000, 0);
    let now = telemetry(12_000, 1200, 5);
    let w = Window::between(&prev, &now).expect("a window");
    // 5 slow searches of the 200 in the window: 2.5% are 40 ms.
    let p99 = w.search_p99_us.expect("p99");
    assert!((20_000..=50_000).contains(&p99), "windowed p99 {p99}");
    let p50 = w.search_p50_us.expect("p50");
    assert!((100..=200).contains(&p50), "p50 {p50}");
    // Cumulatively only 5 of 1200 are slow, so the all-time p99 would hide them.
    let all_time = now.requests[0].latency.quantile(0.99).expect("p99");
    assert!(all_time <= 200, "all-time p99 {all_time}");
}

#[test]
fn a_restart_or_no_time_gives_no_window() {
    let a = telemetry(10_000, 1000, 0);
    let b = telemetry(2_000, 10, 0);
    assert_eq!(Window::between(&a, &b), None);
    assert_eq!(Window::between(&a, &a), None);
}

#[test]
fn shard_rates_and_new_shards() {
    let prev = telemetry(10_000, 1000, 0);
    let mut now = telemetry(12_000, 1200, 5);
    now.shards
        .push(shard("p/shoes/1", "shoes", 500, hist(&[(150, 500)])));
    let w = Window::between(&prev, &now).expect("a window");
    let s0 = w.shard("p/shoes/0").expect("shoes 0");
    assert_eq!(s0.qps, Some(100.0));
    assert!((20_000..=50_000).contains(&s0.p99_us.expect("p99")));
    let bags = w.shard("p/bags/0").expect("bags");
    assert_eq!(bags.qps, Some(50.0));
    // A shard born in the window has no rate yet (its counter started at its birth).
    let new = w.shard("p/shoes/1").expect("new shard");
    assert_eq!(new.qps, None);
    assert_eq!(new.p99_us, None);
}

#[test]
fn the_tree_puts_children_under_parents() {
    let t = telemetry(10_000, 1000, 0);
    let tree: Vec<(usize, &str)> = actor_tree(&t.actors)
        .into_iter()
        .map(|(d, a)| (d, a.name.as_str()))
        .collect();
    assert_eq!(
        tree,
        vec![
            (0, "root"),
            (1, "inference-pool"),
            (2, "model-worker-0"),
            (1, "coordinator"),
            (2, "p/shoes/0"),
            (2, "p/bags/0"),
        ]
    );
}

#[test]
fn the_tree_shows_orphans_and_survives_cycles() {
    let actors = vec![
        actor("a", Some("b"), "x"),
        actor("b", Some("a"), "x"),
        actor("lost", Some("gone"), "x"),
    ];
    let tree: Vec<(usize, &str)> = actor_tree(&actors)
        .into_iter()
        .map(|(d, a)| (d, a.name.as_str()))
        .collect();
    assert_eq!(tree, vec![(0, "lost"), (0, "a"), (0, "b")]);
}

const PLAN: &str = r#"{"plan_id":7,"steps":[
  {"kind":"split","category":"shoes","from":["p/shoes/0"],"to":["p/shoes/0","p/shoes/1"],
   "items_before":250000,"items_after":[125000,125000],"reason":"oversized"},
  {"kind":"merge","category":"hats","from":["p/hats/0","p/hats/1"],"to":["p/hats/0"],
   "items_before":90,"items_after":[90],"reason":"tiny"}],
  "reason":"1 oversized, 1 tiny"}"#;

#[test]
fn plans_parse_and_describe() {
    let plan = Plan::parse(PLAN).expect("plan");
    assert_eq!(plan.plan_id, 7);
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(plan.reason, "1 oversized, 1 tiny");
    assert_eq!(
        plan.steps[0].describe(),
        "split shoes: p/shoes/0 → p/shoes/0,p/shoes/1 (250000 → 125000+125000): oversized"
    );
    assert_eq!(plan.steps[1].kind, "merge");
    assert_eq!(plan.steps[1].items_after, vec![90]);
    // Lenient: an empty plan without steps is fine; garbage is an error, not a panic.
    assert_eq!(
        Plan::parse(r#"{"plan_id":3}"#).expect("empty").steps,
        vec![]
    );
    assert!(Plan::parse("not json").is_err());
}

#[test]
fn status_weights_and_click_stats_parse() {
    let s = RebalanceStatus::parse(
        r#"{"state":"running","plan_id":7,"progress":0.45,"message":"copying p/shoes/0"}"#,
    )
    .expect("status");
    assert!(s.running());
    assert_eq!(s.plan_id, Some(7));
    assert_eq!(s.progress, 0.45);
    let idle =
        RebalanceStatus::parse(r#"{"state":"idle","plan_id":null,"progress":0,"message":""}"#)
            .expect("idle");
    assert!(!idle.running());
    assert_eq!(idle.plan_id, None);

    let w = Weights::parse(r#"{"version":5,"visual":1.0,"colour":0.5,"quality":0.1,"ctr":0.25}"#)
        .expect("weights");
    assert_eq!(w.version, 5);
    assert_eq!(
        w.components,
        vec![
            ("visual".to_owned(), 1.0),
            ("colour".to_owned(), 0.5),
            ("quality".to_owned(), 0.1),
            ("ctr".to_owned(), 0.25)
        ]
    );
    assert_eq!(w.get("ctr"), 0.25);
    assert_eq!(w.get("nope"), 0.0);

    let c = ClickStats::parse(
        r#"{"clicks":12.5,"impressions":340,"rejected":3,"items_tracked":40,"memory_bytes":4096,
            "bytes_per_item":102.4,"queries_logged":100,"queries_retained":90,
            "weights":{"version":5,"visual":1,"colour":1,"quality":0,"ctr":0.5},
            "top":[{"id":"item-7","ctr":0.31,"clicks":4,"impressions":13}]}"#,
    )
    .expect("clicks");
    assert_eq!(c.clicks, 12.5);
    assert_eq!(c.impressions, 340.0);
    assert_eq!(c.rejected, 3);
    assert_eq!(c.items_tracked, 40);
    assert_eq!(c.weights.as_ref().map(|w| w.get("ctr")), Some(0.5));
    assert_eq!(c.top.len(), 1);
    assert_eq!(c.top[0].id, "item-7");
    assert_eq!(c.top[0].ctr, 0.31);
}

fn w(visual: f32, colour: f32, quality: f32, ctr: f32) -> Vec<(String, f32)> {
    vec![
        ("visual".into(), visual),
        ("colour".into(), colour),
        ("quality".into(), quality),
        ("ctr".into(), ctr),
    ]
}

#[test]
fn rescoring_follows_the_ranking_formula() {
    let h = hit("a", 0.8, 0.2, 0.5, 0.1);
    let s = rescore(&h, &w(1.0, 0.5, 2.0, 10.0));
    assert!((s - (0.8 + 0.1 + 1.0 + 1.0)).abs() < 1e-6, "{s}");
}

#[test]
fn the_preview_reranks_with_pending_weights_and_shows_movement() {
    let hits = vec![
        hit("a", 0.9, 0.0, 0.1, 0.0),
        hit("b", 0.8, 0.0, 0.9, 0.0),
        hit("c", 0.7, 0.0, 0.5, 0.0),
        hit("d", 0.1, 0.0, 1.0, 0.0),
    ];
    // Quality weight 1: b 1.7, c 1.2, d 1.1, a 1.0.
    let rows = rerank(&hits, &w(1.0, 0.0, 1.0, 0.0), 3);
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["b", "c", "d"]);
    let moves: Vec<String> = rows.iter().map(|r| r.movement(3)).collect();
    assert_eq!(moves, vec!["▲1", "▲1", "new"]);
    // "a" fell out of the top 3; with visual only, the server's order stands.
    let same = rerank(&hits, &w(1.0, 0.0, 0.0, 0.0), 4);
    assert_eq!(
        same.iter().map(|r| r.movement(4)).collect::<Vec<_>>(),
        vec!["=", "=", "=", "="]
    );
    let down = rerank(&hits, &w(-1.0, 0.0, 0.0, 0.0), 4);
    assert_eq!(down[0].id, "d");
    assert_eq!(down[3].movement(4), "▼3");
}

#[test]
fn the_preview_of_the_fixture_brings_the_high_ctr_item_in() {
    let hits = hits();
    assert_eq!(hits.len(), 12);
    assert_eq!(hits[10].id, "item-11", "below the shown top 10 at first");
    let rows = rerank(&hits, &w(1.0, 1.0, 0.0, 1.0), 10);
    let row = rows
        .iter()
        .find(|r| r.id == "item-11")
        .expect("moved into the top 10");
    assert_eq!(row.movement(10), "new");
    assert!(!rows.iter().any(|r| r.id == "item-9"), "item-9 dropped out");
}

#[test]
fn formatting() {
    assert_eq!(fmt_uptime(3_723_000), "01:02:03");
    assert_eq!(fmt_uptime(90_061_000), "1d 01:01:01");
    assert_eq!(fmt_bytes(512), "512 B");
    assert_eq!(fmt_bytes(1536), "1.5 KiB");
    assert_eq!(fmt_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    assert_eq!(fmt_us(None), "–");
    assert_eq!(fmt_us(Some(850)), "850 µs");
    assert_eq!(fmt_us(Some(1_234)), "1.2 ms");
    assert_eq!(fmt_us(Some(1_500_000)), "1.50 s");
    assert_eq!(fmt_rate(12.34), "12.3/s");
    assert_eq!(fmt_rate(1234.0), "1234/s");
    assert_eq!(fmt_clock(1_700_000_000_000), "22:13:20");
}
