//! Click feedback and reranking through the real server: a simulated, deterministic click
//! stream lifts a lower-ranked item only when the CTR weight is on; old clicks fade; the
//! aggregates survive a restart; bad clicks are refused and counted; training data exports.

use std::time::Duration;

use vsa_protocol::{
    AdminAction, BlockingClient, ClickRequest, ErrorCode, ProtocolError, SearchResponse,
};

use crate::support::{
    ADMIN_TOKEN, DIM, Server, TempDir, item, near_item_0, rank, search_explained as search, vsa,
    wait_until,
};

/// A query near item 0 (one noise draw per seed).
fn query(seed: u64) -> Vec<f32> {
    near_item_0(10_000 + seed)
}

fn set_ctr_weight(client: &mut BlockingClient, w: f32) -> u64 {
    let reply = client
        .admin(AdminAction::SetRerankWeights(vec![("ctr".into(), w)]))
        .expect("weights");
    let v: serde_json::Value = serde_json::from_str(&reply.payload.expect("payload")).unwrap();
    v["version"].as_u64().unwrap()
}

fn click_stats(client: &mut BlockingClient) -> serde_json::Value {
    let reply = client
        .admin(AdminAction::ClickStats { top: 5 })
        .expect("stats");
    serde_json::from_str(&reply.payload.expect("payload")).unwrap()
}

/// Searches `q` and clicks `target` where it is shown, `times` times (a new query each time).
/// The click stats once `clicks` clicks have been applied (the aggregators apply a batch after
/// its reply), or after 10 s: the caller's assertions then say what is missing.
fn stats_once_applied(client: &mut BlockingClient, clicks: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = click_stats(client);
        if s["clicks"] == clicks || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn click_stream(client: &mut BlockingClient, q: &[f32], target: &str, times: usize) {
    for _ in 0..times {
        let r = search(client, q);
        let pos = rank(&r, target).expect("target shown");
        client
            .click(ClickRequest {
                query_id: r.query_id,
                item_id: target.into(),
                position: pos as u32,
            })
            .expect("click");
    }
}

fn catalogue(client: &mut BlockingClient) {
    for n in 0..40 {
        client.upsert(item(n, "things")).unwrap();
    }
}

#[test]
fn clicks_lift_an_item_only_with_the_ctr_weight_and_survive_a_restart() {
    let dir = TempDir::new("clicks");
    let mut server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    catalogue(&mut client);
    let q = query(1);
    let before = search(&mut client, &q);
    assert_eq!(before.hits[0].id, "item-00000");
    let target = before.hits[5].id.clone();
    let components: Vec<&str> = before.hits[0]
        .components
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    for c in ["visual", "colour", "quality", "ctr"] {
        assert!(components.contains(&c), "{components:?}");
    }

    click_stream(&mut client, &q, &target, 30);
    // Weight 0 (the default): the clicks change nothing.
    let still = search(&mut client, &q);
    assert_eq!(rank(&still, &target), Some(5));
    assert_eq!(still.weights_version, before.weights_version);

    let v = set_ctr_weight(&mut client, 1.0);
    assert!(v > before.weights_version);
    let lifted = search(&mut client, &q);
    assert_eq!(lifted.weights_version, v);
    assert!(
        rank(&lifted, &target).is_some_and(|r| r < 5),
        "{:?}",
        lifted.hits
    );
    // A similar query (another photo of the same thing) benefits too.
    let similar = search(&mut client, &query(2));
    assert!(rank(&similar, &target).is_some_and(|r| r < 5));
    let ctr = |r: &SearchResponse| {
        r.hits
            .iter()
            .find(|h| h.id == target)
            .and_then(|h| h.components.iter().find(|c| c.0 == "ctr").map(|c| c.1))
            .unwrap_or(0.0)
    };
    assert!(ctr(&lifted) > 0.5, "{}", ctr(&lifted));

    // Bad clicks: refused with a clear code, counted, and they change nothing.
    let unknown = client.click(ClickRequest {
        query_id: 9_999_999,
        item_id: target.clone(),
        position: 0,
    });
    assert!(
        matches!(unknown, Err(ProtocolError::Server(ref e)) if e.code == ErrorCode::UnknownQuery),
        "{unknown:?}"
    );
    let not_shown = client.click(ClickRequest {
        query_id: lifted.query_id,
        item_id: "item-99999".into(),
        position: 3,
    });
    assert!(
        matches!(not_shown, Err(ProtocolError::Server(ref e)) if e.code == ErrorCode::BadRequest),
        "{not_shown:?}"
    );
    let stats = click_stats(&mut client);
    assert_eq!(stats["clicks"], 30);
    assert_eq!(stats["rejected"], 2);
    assert_eq!(stats["top"][0]["id"], target.as_str());
    assert!(stats["bytes_per_item"].as_u64().unwrap() > 0);

    // Weight back to 0: the visual order again.
    set_ctr_weight(&mut client, 0.0);
    assert_eq!(rank(&search(&mut client, &q), &target), Some(5));

    // Restart: the aggregates are back, and so are the weights with their version (a
    // version a response carried is never reused for other weights).
    let kept = set_ctr_weight(&mut client, 1.0);
    drop(client);
    assert!(server.terminate().success());
    let server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    assert_eq!(click_stats(&mut client)["clicks"], 30);
    let after = search(&mut client, &q);
    assert_eq!(after.weights_version, kept);
    assert!(rank(&after, &target).is_some_and(|r| r < 5));
    assert!(set_ctr_weight(&mut client, 0.0) > kept);
}

/// A `Clicks` batch: good clicks count (repeats once), bad ones are refused one by one with
/// their index and code while the rest of the batch lands; co-clicks of a batch are recorded;
/// an oversized batch is refused whole; the batched clicks lift the item like single ones.
#[test]
fn a_batch_of_clicks_counts_the_good_ones_and_refuses_the_bad_ones() {
    let server = Server::start("");
    let mut client = server.client();
    catalogue(&mut client);
    let q = query(1);
    let first = search(&mut client, &q);
    let target = first.hits[5].id.clone();
    let mut batch = Vec::new();
    for _ in 0..20 {
        let r = search(&mut client, &q);
        let pos = rank(&r, &target).expect("target shown");
        batch.push(ClickRequest {
            query_id: r.query_id,
            item_id: target.clone(),
            position: pos as u32,
        });
        // Its neighbour in the list, clicked for the same query: a co-click.
        batch.push(ClickRequest {
            query_id: r.query_id,
            item_id: r.hits[pos + 1].id.clone(),
            position: pos as u32 + 1,
        });
    }
    let repeat = batch[0].clone();
    batch.push(repeat);
    batch.push(ClickRequest {
        query_id: 9_999_999,
        item_id: target.clone(),
        position: 0,
    });
    batch.push(ClickRequest {
        query_id: first.query_id,
        item_id: "item-99999".into(),
        position: 2,
    });
    let reply = client.clicks(batch).expect("batch");
    assert_eq!((reply.accepted, reply.repeated), (40, 1), "{reply:?}");
    let codes: Vec<(u32, ErrorCode)> = reply.rejected.iter().map(|(i, e)| (*i, e.code)).collect();
    assert_eq!(
        codes,
        vec![(41, ErrorCode::UnknownQuery), (42, ErrorCode::BadRequest)]
    );

    let too_many = vec![batch_click(&first, 0); vsa_protocol::MAX_CLICK_BATCH + 1];
    let refused = client.clicks(too_many);
    assert!(
        matches!(refused, Err(ProtocolError::Server(ref e)) if e.code == ErrorCode::BadRequest),
        "{refused:?}"
    );
    // The aggregators apply a batch after the reply: wait for the counts.
    let stats = stats_once_applied(&mut client, 40);
    assert_eq!(stats["clicks"], 40, "{stats}");
    assert_eq!(stats["rejected"], 2);
    set_ctr_weight(&mut client, 1.0);
    let lifted = search(&mut client, &q);
    assert!(
        rank(&lifted, &target).is_some_and(|r| r < 5),
        "{:?}",
        lifted.hits
    );
    // The co-clicks became edges: one virtual-ID group holds the target and its neighbour.
    let neighbour = first.hits[6].id.clone();
    let export = client
        .admin(AdminAction::ExportClicks {
            offset: 0,
            limit: 1,
        })
        .expect("export");
    let export: serde_json::Value =
        serde_json::from_str(&export.payload.expect("payload")).unwrap();
    let groups = export["virtual_ids"].as_array().expect("virtual ids");
    assert!(
        groups.iter().any(|g| {
            let items = g["items"].as_array().expect("items");
            items.iter().any(|i| i == target.as_str())
                && items.iter().any(|i| i == neighbour.as_str())
        }),
        "{groups:?}"
    );
}

/// The query log keeps the last `clicks.query_log` searches, whether they have reached it or
/// still wait in the engine to be taken in: a click on an older search is refused as
/// `unknown_query`, in a batch and alone, and a click on a newer one counts.
#[test]
fn a_click_on_a_search_older_than_the_query_log_is_refused() {
    let server = Server::start("[clicks]\nquery_log = 3\n");
    let mut client = server.client();
    catalogue(&mut client);
    let searches: Vec<SearchResponse> = (0..5).map(|s| search(&mut client, &query(s))).collect();
    let reply = client
        .clicks(searches.iter().map(|r| batch_click(r, 0)).collect())
        .expect("batch");
    assert_eq!((reply.accepted, reply.repeated), (3, 0), "{reply:?}");
    let codes: Vec<(u32, ErrorCode)> = reply.rejected.iter().map(|(i, e)| (*i, e.code)).collect();
    assert_eq!(
        codes,
        vec![(0, ErrorCode::UnknownQuery), (1, ErrorCode::UnknownQuery)]
    );
    let old = client.click(batch_click(&searches[1], 1));
    assert!(
        matches!(old, Err(ProtocolError::Server(ref e)) if e.code == ErrorCode::UnknownQuery),
        "{old:?}"
    );
    client
        .click(batch_click(&searches[4], 1))
        .expect("a click on the newest search");
    // Past the log's length again: the searches still waiting to be taken in are bounded too.
    let more: Vec<SearchResponse> = (5..12).map(|s| search(&mut client, &query(s))).collect();
    let reply = client
        .clicks(vec![batch_click(&more[3], 0), batch_click(&more[6], 0)])
        .expect("batch");
    assert_eq!(reply.accepted, 1, "{reply:?}");
    assert_eq!(reply.rejected.len(), 1, "{reply:?}");
    assert_eq!(reply.rejected[0].0, 0);
}

fn batch_click(r: &SearchResponse, pos: usize) -> ClickRequest {
    ClickRequest {
        query_id: r.query_id,
        item_id: r.hits[pos].id.clone(),
        position: pos as u32,
    }
}

/// `clicks.save_every_s` bounds what a crash loses: clicks older than one interval are on disk
/// when the process is killed with SIGKILL (no shutdown save) and are back after the restart.
#[test]
fn a_crash_keeps_the_clicks_saved_before_the_last_interval() {
    let dir = TempDir::new("clicks-crash");
    let config = "[clicks]\nsave_every_s = 1\n";
    let mut server = Server::start_in(dir.path(), config);
    let mut client = server.client();
    catalogue(&mut client);
    let q = query(4);
    let target = search(&mut client, &q).hits[5].id.clone();
    click_stream(&mut client, &q, &target, 10);
    assert_eq!(click_stats(&mut client)["clicks"], 10);
    // Two save intervals.
    std::thread::sleep(Duration::from_millis(2500));
    drop(client);
    server.kill9();
    let server = Server::start_in(dir.path(), config);
    let mut client = server.client();
    let stats = click_stats(&mut client);
    assert_eq!(stats["clicks"], 10, "{stats}");
    assert_eq!(stats["top"][0]["id"], target.as_str());
}

#[test]
fn old_clicks_fade() {
    let server = Server::start("[clicks]\nhalf_life_s = 0.5\n");
    let mut client = server.client();
    catalogue(&mut client);
    let q = query(3);
    let target = search(&mut client, &q).hits[6].id.clone();
    set_ctr_weight(&mut client, 1.0);
    click_stream(&mut client, &q, &target, 20);
    assert!(rank(&search(&mut client, &q), &target).is_some_and(|r| r < 6));
    // Twenty half-lives later the clicks weigh nothing: the visual order is back.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(rank(&search(&mut client, &q), &target), Some(6));
}

#[test]
fn clicks_export_as_triplets_and_virtual_ids() {
    let server = Server::start("");
    let mut client = server.client();
    catalogue(&mut client);
    let q = query(4);
    let first = search(&mut client, &q);
    let (a, b) = (first.hits[2].id.clone(), first.hits[4].id.clone());
    // Three queries where the shopper clicks both a and b: a co-click edge of weight 3.
    for _ in 0..3 {
        let r = search(&mut client, &q);
        for id in [&a, &b] {
            client
                .click(ClickRequest {
                    query_id: r.query_id,
                    item_id: id.clone(),
                    position: rank(&r, id).unwrap() as u32,
                })
                .unwrap();
        }
    }
    let out = crate::support::TempDir::new("export");
    let addr = server.addr.to_string();
    let o = vsa(&[
        "export-clicks",
        "--addr",
        &addr,
        "--admin-token",
        ADMIN_TOKEN,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let triplets = std::fs::read_to_string(out.path().join("triplets.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = triplets
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per query: a (pos 2) over the two unclicked above it, b (pos 4) over the three above
    // it that were not clicked.
    assert_eq!(lines.len(), 3 * (2 + 3), "{triplets}");
    for t in &lines {
        assert_eq!(t["anchor"].as_array().unwrap().len(), DIM);
        assert!(t["positive"] == a.as_str() || t["positive"] == b.as_str());
        assert!(t["negative"] != a.as_str() && t["negative"] != b.as_str());
    }
    let virtual_ids = std::fs::read_to_string(out.path().join("virtual_ids.jsonl")).unwrap();
    let mut pair = vec![a.clone(), b.clone()];
    pair.sort();
    let v: serde_json::Value = serde_json::from_str(virtual_ids.lines().next().unwrap()).unwrap();
    assert_eq!(v["items"], serde_json::json!(pair));
}

/// A batch of clicks on ten searches' results, sent while an eleventh search, from another
/// connection, is held in flight by a stalled partition (`StallActor`; the search waits for
/// it until `index.partition_timeout_ms`, 4 s here, then answers `degraded`). Returns the stats
/// once every accepted click has been applied, the clicks accepted, and whether the clicks
/// were answered while the held search still was not (a search held whatever the CPU load,
/// unlike a search load, which leaves the lowest-priority click thread no core on a busy
/// machine until the searches pause).
fn clicks_beside_a_held_search(server: &Server) -> (serde_json::Value, u64, bool) {
    let mut client = server.client();
    catalogue(&mut client);
    let shown: Vec<SearchResponse> = (0..10)
        .map(|i| search(&mut client, &query(500 + i)))
        .collect();
    let batch: Vec<ClickRequest> = shown
        .iter()
        .flat_map(|r| (0..r.hits.len()).map(move |p| batch_click(r, p)))
        .collect();
    client
        .admin(AdminAction::StallActor {
            name: "p/things/0".into(),
            millis: 5_000,
        })
        .expect("stall");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = {
        let (mut c, answered) = (server.client(), answered.clone());
        std::thread::spawn(move || {
            let r = search(&mut c, &query(900));
            answered.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        })
    };
    // Until the held search has reached the stalled partition.
    let arrived = wait_until(Duration::from_secs(10), || {
        let t = client.telemetry(0).expect("telemetry");
        t.shards.iter().any(|s| s.in_flight > 0)
    });
    assert!(arrived, "the held search never arrived");
    let accepted = u64::from(client.clicks(batch).expect("clicks").accepted);
    let beside = !answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(held.join().expect("held search").degraded);
    (stats_once_applied(&mut client, accepted), accepted, beside)
}

/// The click work makes way for searches in flight (`clicks.yield_to_searches_us`): while a
/// search is held in flight, the runs of click work wait for it — the longest wait, then on
/// (it does not end in time) — and every accepted click is still applied; with the wait set
/// to 0, the same clicks beside the same held search wait for nothing.
#[test]
fn click_work_waits_for_searches_in_flight_and_loses_nothing() {
    const HOLD: &str = "[index]\npartition_timeout_ms = 4000\n\n";
    let server = Server::start(&format!("{HOLD}[clicks]\nyield_to_searches_us = 2000\n"));
    let (stats, accepted, beside) = clicks_beside_a_held_search(&server);
    assert!(
        beside,
        "the clicks were answered only after the held search"
    );
    assert!(accepted > 0);
    assert_eq!(stats["clicks"], accepted, "{stats}");
    assert_eq!(stats["rejected"], 0);
    // The checks ran before the reply, so beside the held search: each of their runs waited
    // its longest and gave up. (The aggregators apply the batch after the reply: theirs may
    // have waited too.)
    let gave_up = stats["yield_gave_up"].as_u64().unwrap();
    assert!(gave_up > 0, "{stats}");
    assert!(
        stats["yielded_to_searches"].as_u64().unwrap() >= gave_up,
        "{stats}"
    );

    let server = Server::start(&format!("{HOLD}[clicks]\nyield_to_searches_us = 0\n"));
    let (stats, accepted, beside) = clicks_beside_a_held_search(&server);
    assert!(
        beside,
        "the clicks were answered only after the held search"
    );
    assert_eq!(stats["yielded_to_searches"], 0, "{stats}");
    assert_eq!(stats["clicks"], accepted, "{stats}");
}
