//! Live shard rebalancing through the real server: split and merge under a concurrent ingest
//! and search load, then the same answers as a fresh index; a crash mid-apply recovers one
//! whole layout; a second apply is refused.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vsa_protocol::{AdminAction, BlockingClient, QueryInput, SearchRequest};

use crate::support::{ADMIN_TOKEN, Server, TempDir, embedding, item, vsa, wait_until};

/// Exact search (no binary encoder) so any layout gives the same answers; small thresholds.
const CONFIG: &str = "[index]\nfit_threshold = 1000000\nrebalance_split_items = 60\nrebalance_merge_items = 40\nrebalance_grace_ms = 200\n";

fn plan(client: &mut BlockingClient) -> serde_json::Value {
    let r = client.admin(AdminAction::RebalancePlan).expect("plan");
    serde_json::from_str(&r.payload.expect("payload")).expect("json")
}

fn status(client: &mut BlockingClient) -> serde_json::Value {
    let r = client.admin(AdminAction::RebalanceStatus).expect("status");
    serde_json::from_str(&r.payload.expect("payload")).expect("json")
}

fn apply_and_wait(client: &mut BlockingClient, plan_id: u64) {
    client
        .admin(AdminAction::RebalanceApply { plan_id })
        .expect("apply");
    assert!(
        wait_until(Duration::from_secs(60), || status(client)["state"]
            == "done"),
        "{}",
        status(client)
    );
}

fn shards_of(client: &mut BlockingClient, category: &str) -> Vec<(String, u64)> {
    client
        .stats()
        .unwrap()
        .shards
        .into_iter()
        .filter(|s| s.category == category)
        .map(|s| (s.name, s.items))
        .collect()
}

fn top10(client: &mut BlockingClient, q: u64) -> Vec<String> {
    let v: Vec<f32> = embedding(q)
        .iter()
        .zip(embedding(q + 77_777))
        .map(|(a, b)| a + 0.5 * b)
        .collect();
    client
        .search(SearchRequest::new(QueryInput::Embedding(v), 10))
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn split_and_merge_under_load_match_a_fresh_index() {
    let server = Server::start(CONFIG);
    let mut client = server.client();
    for n in 0..200 {
        client.upsert(item(n, "things")).unwrap();
    }
    assert_eq!(shards_of(&mut client, "things").len(), 1);

    // Load: a writer adding items, a reader searching, for the whole operation.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let searches = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let mut c = server.client();
        std::thread::spawn(move || {
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) && n < 1400 {
                c.upsert(item(n, "things"))
                    .expect("write during a rebalance");
                acked.lock().unwrap().insert(n);
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let reader = {
        let (stop, failures, searches) = (stop.clone(), failures.clone(), searches.clone());
        let mut c = server.client();
        std::thread::spawn(move || {
            let mut q = 0;
            while !stop.load(Ordering::Relaxed) {
                match c.search(SearchRequest::new(
                    QueryInput::Embedding(embedding(q % 200)),
                    5,
                )) {
                    Ok(r) if !r.hits.is_empty() => searches.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
                q += 1;
            }
        })
    };

    // Split, planned and applied through the CLI as an operator would.
    let addr = server.addr.to_string();
    let out = vsa(&[
        "rebalance",
        "--addr",
        &addr,
        "--admin-token",
        ADMIN_TOKEN,
        "--plan",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let payload: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).expect("plan json")).unwrap();
    let step = &payload["steps"][0];
    assert_eq!(step["kind"], "split", "{text}");
    let m = step["to"].as_array().unwrap().len();
    assert!(m >= 2);
    let planned: u64 = step["items_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(planned, step["items_before"].as_u64().unwrap());
    let id = payload["plan_id"].as_u64().unwrap().to_string();
    let out = vsa(&[
        "rebalance",
        "--addr",
        &addr,
        "--admin-token",
        ADMIN_TOKEN,
        "--apply",
        &id,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(wait_until(Duration::from_secs(60), || status(&mut client)
        ["state"]
        == "done"));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "searches failed");
    assert!(searches.load(Ordering::Relaxed) > 0);
    let acked: BTreeSet<u64> = acked.lock().unwrap().clone();
    let shards = shards_of(&mut client, "things");
    assert_eq!(shards.len(), m, "{shards:?}");
    let total: u64 = shards.iter().map(|s| s.1).sum();
    assert_eq!(
        total,
        200 + acked.len() as u64,
        "every item in exactly one shard"
    );
    assert_eq!(client.stats().unwrap().items, total);

    // Merge: most items go, the plan merges the shards back.
    let mut live: BTreeSet<u64> = (0..200).chain(acked.iter().copied()).collect();
    for n in live.clone().into_iter().filter(|n| n % 8 != 0) {
        client.delete(format!("item-{n:05}")).unwrap();
        live.remove(&n);
    }
    let p = plan(&mut client);
    assert_eq!(p["steps"][0]["kind"], "merge", "{p}");
    apply_and_wait(&mut client, p["plan_id"].as_u64().unwrap());
    let shards = shards_of(&mut client, "things");
    assert!(shards.len() < m, "{shards:?}");
    assert_eq!(shards.iter().map(|s| s.1).sum::<u64>(), live.len() as u64);

    // The same answers as a fresh index of the same items.
    let fresh = Server::start(CONFIG);
    let mut f = fresh.client();
    for &n in &live {
        f.upsert(item(n, "things")).unwrap();
    }
    for q in 0..20 {
        assert_eq!(top10(&mut client, q), top10(&mut f, q), "query {q}");
    }
}

#[test]
fn a_crash_mid_apply_recovers_one_whole_layout() {
    let dir = TempDir::new("rebalance-crash");
    let mut server = Server::start_in(dir.path(), CONFIG);
    let mut client = server.client();
    for n in 0..150 {
        client.upsert(item(n, "things")).unwrap();
    }
    // Hold the copy: the old shard is stalled, so the apply cannot reach its switch.
    client
        .admin(AdminAction::StallActor {
            name: "p/things/0".into(),
            millis: 5000,
        })
        .unwrap();
    let p = plan(&mut client);
    let id = p["plan_id"].as_u64().unwrap();
    client
        .admin(AdminAction::RebalanceApply { plan_id: id })
        .unwrap();
    assert_eq!(status(&mut client)["state"], "running");
    // A second apply is refused while one runs.
    let again = client.admin(AdminAction::RebalanceApply { plan_id: id });
    assert!(again.is_err(), "{again:?}");
    // Writes during the copy wait behind the stalled shard: sent, not acknowledged.
    let mut pipelined = server.client();
    for n in 150..160 {
        pipelined
            .send(vsa_protocol::Request::Upsert(item(n, "things")))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();

    // Old layout, nothing acknowledged lost, nothing doubled.
    let mut server = Server::start_in(dir.path(), CONFIG);
    let mut client = server.client();
    let shards = shards_of(&mut client, "things");
    assert_eq!(shards.len(), 1, "{shards:?}");
    let count = shards[0].1;
    assert!((150..=160).contains(&count), "{count}");
    for n in 0..150 {
        let r = client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(n)), 1))
            .unwrap();
        assert_eq!(r.hits[0].id, format!("item-{n:05}"));
    }
    for n in 150..160 {
        client.upsert(item(n, "things")).unwrap();
    }
    assert_eq!(shards_of(&mut client, "things")[0].1, 160);

    // This time let it finish, then crash: the new layout comes back.
    let p = plan(&mut client);
    let m = p["steps"][0]["to"].as_array().unwrap().len();
    apply_and_wait(&mut client, p["plan_id"].as_u64().unwrap());
    for n in 160..170 {
        client.upsert(item(n, "things")).unwrap();
    }
    client.delete("item-00003").unwrap();
    server.kill9();
    let server = Server::start_in(dir.path(), CONFIG);
    let mut client = server.client();
    let shards = shards_of(&mut client, "things");
    assert_eq!(shards.len(), m, "{shards:?}");
    assert_eq!(shards.iter().map(|s| s.1).sum::<u64>(), 169);
    for n in (0..170).filter(|n| *n != 3) {
        let r = client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(n)), 1))
            .unwrap();
        assert_eq!(r.hits[0].id, format!("item-{n:05}"));
    }
}
