//! Durability, tested as an operator meets it: the real `vsa serve` over TCP, killed with
//! `kill -9`, its shards panicked under load, its files damaged on disk, restarted with the
//! binary encoder its last checkpoint wrote.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vsa_protocol::{
    AdminAction, BlockingClient, HealthState, QueryInput, Scope, SearchRequest, SearchResponse,
};

use crate::support::http::request;
use crate::support::{ADMIN_TOKEN, Server, TempDir, category_of, embedding, item, vsa, wait_until};

/// The item a search for `n`'s own embedding finds first.
fn top_hit(client: &mut BlockingClient, n: u64) -> Option<String> {
    let r = client
        .search(SearchRequest::new(QueryInput::Embedding(embedding(n)), 1))
        .expect("search");
    r.hits.first().map(|h| h.id.clone())
}

/// A search for `n`'s own embedding across every shard.
fn search_all(client: &mut BlockingClient, n: u64) -> SearchResponse {
    let mut req = SearchRequest::new(QueryInput::Embedding(embedding(n)), 10);
    req.options.scope = Some(Scope::All);
    client.search(req).expect("search")
}

/// An admin call on a connection of its own.
fn client_admin(server: &Server, action: AdminAction) {
    let reply = server.client().admin(action).expect("admin");
    assert!(!reply.message.is_empty());
}

fn items(client: &mut BlockingClient) -> u64 {
    client.stats().expect("stats").items
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = TempDir::new("kill9");
    let mut server = Server::start_in(dir.path(), "");
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let deleted: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new(BTreeSet::new()));
    // Deletes sent; one not acknowledged when the server died may or may not have happened.
    let deleting: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (acked, deleted, deleting, stop, sent) = (
                acked.clone(),
                deleted.clone(),
                deleting.clone(),
                stop.clone(),
                sent.clone(),
            );
            let mut client = server.client();
            std::thread::spawn(move || {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let category = category_of(n);
                    match client.upsert(item(n, category)) {
                        Ok(_) => {
                            acked.lock().unwrap().insert(n);
                        }
                        Err(_) => break, // the server died under us: not acknowledged
                    }
                    // Every tenth item is deleted again (an acknowledged delete must stick).
                    if n % 10 == 3 {
                        deleting.lock().unwrap().insert(n);
                        match client.delete(format!("item-{n:05}")) {
                            Ok(_) => {
                                deleted.lock().unwrap().insert(n);
                            }
                            Err(_) => break,
                        }
                    }
                    n += 4;
                }
            })
        })
        .collect();
    // Let a few hundred writes through, then kill the process mid-stream.
    assert!(wait_until(Duration::from_secs(60), || acked
        .lock()
        .unwrap()
        .len()
        >= 400));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    let deleting = deleting.lock().unwrap().clone();

    let server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    let present: BTreeSet<u64> = acked.difference(&deleting).copied().collect();
    let maybe = acked.difference(&deleted).count() as u64;
    let count = items(&mut client);
    // Everything acknowledged is there; at most the writes in flight at the kill (never
    // acknowledged) may be there too.
    let in_flight = sent.load(Ordering::Relaxed) - acked.len() as u64;
    assert!(
        count >= present.len() as u64 && count <= maybe + in_flight,
        "{count} items after restart, {} acknowledged live ones",
        present.len()
    );
    for &n in &present {
        assert_eq!(
            top_hit(&mut client, n).as_deref(),
            Some(format!("item-{n:05}").as_str()),
            "acknowledged item {n} lost"
        );
    }
    for &n in &deleted {
        assert_ne!(
            top_hit(&mut client, n).as_deref(),
            Some(format!("item-{n:05}").as_str()),
            "deleted item {n} came back"
        );
    }
    // Whole items only: every hit carries its category and metadata.
    let r = client
        .search(SearchRequest::new(QueryInput::Embedding(embedding(0)), 50))
        .unwrap();
    for h in &r.hits {
        let n: u64 = h.id.trim_start_matches("item-").parse().unwrap();
        assert_eq!(h.category, category_of(n));
    }
}

#[test]
fn a_shard_panicking_under_load_loses_nothing() {
    let dir = TempDir::new("panic");
    let server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    for n in 0..120 {
        client.upsert(item(n, category_of(n))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let searches = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (stop, failures, searches) = (stop.clone(), failures.clone(), searches.clone());
            let mut c = server.client();
            std::thread::spawn(move || {
                let mut n = r;
                while !stop.load(Ordering::Relaxed) {
                    match c.search(SearchRequest::new(
                        QueryInput::Embedding(embedding(n % 120)),
                        5,
                    )) {
                        Ok(_) => searches.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 7;
                }
            })
        })
        .collect();
    // A writer keeps going meanwhile: writes to the failing shard wait for its rebuild.
    let writer = {
        let stop = stop.clone();
        let mut c = server.client();
        std::thread::spawn(move || {
            let mut n = 1000;
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) && n < 1200 {
                c.upsert(item(n, category_of(n)))
                    .expect("a write during the shard's rebuild");
                acked.push(n);
                n += 1;
            }
            acked
        })
    };
    // Hold the shard's rebuild (fault injection) so that the outage lasts until this test has
    // looked at it, then panic the shard under the load.
    let hold = |millis| {
        client_admin(
            &server,
            AdminAction::StallActor {
                name: "rebuild/p/even/0".into(),
                millis,
            },
        )
    };
    hold(120_000);
    client
        .admin(AdminAction::PanicActor {
            name: "p/even/0".into(),
        })
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || client
            .health()
            .map(|h| h.checks.iter().any(|c| c.2.contains("recovering")))
            .unwrap_or(false)),
        "the shard never went into recovery: {}",
        server.stderr()
    );
    // While it is rebuilt, searches leave it out and say so, and still answer from the
    // other shard.
    let odd = search_all(&mut client, 7);
    assert!(odd.degraded, "a search during the rebuild is not degraded");
    assert_eq!(
        odd.hits.first().map(|h| h.id.as_str()),
        Some("item-00007"),
        "the other shard's hits are missing: {:?}",
        odd.hits
    );
    let even = search_all(&mut client, 8);
    assert!(even.degraded);
    assert!(!even.hits.is_empty());
    assert!(
        even.hits.iter().all(|h| h.category == "odd"),
        "hits from the shard being rebuilt: {:?}",
        even.hits
    );
    let health = vsa(&["health", "--addr", &server.addr.to_string()]);
    assert_ne!(health.status.code(), Some(0), "health while a shard is out");
    let text = String::from_utf8_lossy(&health.stdout).to_lowercase();
    assert!(text.contains("degraded"), "{text}");
    assert_eq!(client.stats().unwrap().restarts, 1, "restart not counted");
    // Release the hold: the shard is rebuilt from its snapshot and the log, and serves again.
    hold(0);
    assert!(wait_until(Duration::from_secs(30), || client
        .health()
        .map(|h| h.state == HealthState::Healthy)
        .unwrap_or(false)));
    let health = vsa(&["health", "--addr", &server.addr.to_string()]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let even = search_all(&mut client, 8);
    assert!(!even.degraded, "still degraded after the rebuild");
    assert_eq!(even.hits.first().map(|h| h.id.as_str()), Some("item-00008"));
    // The load goes on after the rebuild.
    let before = searches.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(30), || searches
        .load(Ordering::Relaxed)
        >= before + 20));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let written = writer.join().unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "searches failed");
    assert!(searches.load(Ordering::Relaxed) > 0);
    assert_eq!(items(&mut client), 120 + written.len() as u64);
    for n in (0..120).chain(written) {
        assert_eq!(
            top_hit(&mut client, n).as_deref(),
            Some(format!("item-{n:05}").as_str()),
            "item {n} lost"
        );
    }
}

fn wal_segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn newest_snapshots(data: &Path) -> Vec<PathBuf> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("MANIFEST.json")).unwrap()).unwrap();
    let newest = manifest["checkpoints"].as_array().unwrap().last().unwrap();
    newest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| data.join("snapshots").join(s["file"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_damaged_log_tail_and_snapshot_are_reported_and_skipped() {
    let dir = TempDir::new("damage");
    let data = dir.path().join("data");
    let mut server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    for n in 0..30 {
        client.upsert(item(n, "even")).unwrap();
    }
    let first = client.admin(AdminAction::Snapshot).unwrap();
    assert!(first.message.contains("30 items"), "{}", first.message);
    for n in 30..60 {
        client.upsert(item(n, "even")).unwrap();
    }
    // The operator's way: `vsa admin snapshot` (a wrong token changes nothing).
    let addr = server.addr.to_string();
    let refused = vsa(&[
        "admin",
        "--addr",
        &addr,
        "--admin-token",
        "wrong-token",
        "snapshot",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let out = vsa(&[
        "admin",
        "--addr",
        &addr,
        "--admin-token",
        ADMIN_TOKEN,
        "snapshot",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("60 items"), "{text}");
    for n in 60..90 {
        client.upsert(item(n, "even")).unwrap();
    }
    client.delete("item-00005").unwrap();
    let status = server.terminate();
    assert!(status.success());

    // A clean restart first: everything is back.
    let mut server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    assert_eq!(items(&mut client), 89);
    drop(client);
    server.terminate();

    // Damage: flip a byte in the middle of the newest snapshot, and leave a torn record
    // (a header promising more bytes than follow) at the end of the newest log segment.
    let snap = newest_snapshots(&data)[0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&snap, bytes).unwrap();
    let segments = wal_segments(&data);
    let with_records = segments
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap()
        .clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&with_records)
        .unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
    drop(f);

    let mut server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    // The previous snapshot plus a longer replay brought everything back.
    assert_eq!(items(&mut client), 89);
    for n in (0..90).filter(|n| *n != 5) {
        assert_eq!(
            top_hit(&mut client, n).as_deref(),
            Some(format!("item-{n:05}").as_str())
        );
    }
    let log = server.stderr();
    assert!(
        log.contains("snapshot") && log.contains("skipped") && log.contains("previous checkpoint"),
        "no report of the bad snapshot:\n{log}"
    );
    assert!(
        log.contains("torn"),
        "no report of the torn log tail:\n{log}"
    );
    let health = client.health().unwrap();
    let storage = health
        .checks
        .iter()
        .find(|c| c.0 == "storage")
        .expect("storage check");
    assert!(storage.2.contains("skipped"), "{storage:?}");
    // The torn bytes were moved aside, so the next boot is clean and writes continue.
    assert!(
        std::fs::read_dir(data.join("wal")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("corrupt"))
    );
    client.upsert(item(500, "even")).unwrap();
    drop(client);
    server.terminate();

    // A log cut in the middle of its last record loses exactly that record.
    let segments = wal_segments(&data);
    let last = segments
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap()
        .clone();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let server = Server::start_in(dir.path(), "");
    let mut client = server.client();
    assert_eq!(
        items(&mut client),
        89,
        "only the cut write (item 500) is gone"
    );
    assert!(server.stderr().contains("torn"));
}

/// One unlabelled sample of the server's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let r = request(server.http.expect("http side"), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `(id, score, used the binary index)` of an explained search for `n`'s embedding.
fn explained(client: &mut BlockingClient, n: u64) -> Vec<(String, f32, bool)> {
    let mut req = SearchRequest::new(QueryInput::Embedding(embedding(n)), 5);
    req.options.scope = Some(Scope::All);
    req.options.explain = true;
    let r = client.search(req).expect("search");
    r.hits
        .into_iter()
        .map(|h| {
            let binary = h.components.iter().any(|(k, _)| k == "hamming");
            (h.id, h.score, binary)
        })
        .collect()
}

#[test]
fn a_restart_keeps_the_binary_encoder_of_the_last_checkpoint() {
    // Fitted at 8 items; 12 stay below the refit at 16.
    const CONFIG: &str = "[server]\nhttp_listen = \"127.0.0.1:0\"\n[index]\nfit_threshold = 8\n";
    let dir = TempDir::new("model-state");
    let mut server = Server::start_in(dir.path(), CONFIG);
    let mut client = server.client();
    for n in 0..12 {
        client.upsert(item(n, category_of(n))).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(60), || metric(
            &server,
            "vsa_encoder_generation"
        ) == 1.0
            && explained(&mut client, 3).iter().all(|h| h.2)),
        "the encoder was not fitted:\n{}",
        server.stderr()
    );
    let before = explained(&mut client, 3);
    assert_eq!(before.first().map(|h| h.0.as_str()), Some("item-00003"));
    let snap = client.admin(AdminAction::Snapshot).unwrap();
    assert!(snap.message.contains("model state"), "{}", snap.message);
    // One write after the checkpoint: replayed from the log, encoded with the stored encoder.
    client.upsert(item(12, category_of(12))).unwrap();
    drop(client);
    assert!(server.terminate().success());

    let server = Server::start_in(dir.path(), CONFIG);
    // At once: the stored generation, no fit since start, binary search with the same answer.
    assert_eq!(metric(&server, "vsa_encoder_generation"), 1.0);
    assert_eq!(metric(&server, "vsa_encoder_fits_total"), 0.0);
    let mut client = server.client();
    assert_eq!(items(&mut client), 13);
    assert_eq!(explained(&mut client, 3), before);
    let own = explained(&mut client, 12);
    assert_eq!(
        own.first().map(|h| (h.0.as_str(), h.2)),
        Some(("item-00012", true))
    );
    let log = server.stderr();
    assert!(
        log.contains("restored the model state") && !log.contains("encoder trained"),
        "{log}"
    );
}
