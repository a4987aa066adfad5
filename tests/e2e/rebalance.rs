//! Live shard rebalancing through the real server.
//!
//! - Split, then merge, each applied under a concurrent ingest + search load, with writes,
//!   updates and deletes sent while the copy is held (the old shards are stalled, so the new
//!   shards get those writes directly and the copy must not undo them). After each switch the
//!   set of ids and their versions equal what was acknowledged, every item is in exactly one
//!   shard, no search failed, and a fixed query set answers as a fresh index of the same items
//!   does. Once with exact search, once with the binary index fitted (Hamming + rerank).
//! - A cancel before the switch keeps the old layout with every item, also across a restart;
//!   `vsa rebalance --status` / `--cancel` through the CLI.
//! - A crash mid-apply recovers one whole layout; a second apply is refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use vsa_protocol::{
    AdminAction, BlockingClient, DeleteRequest, ItemContent, QueryInput, Request, Response,
    SearchRequest, UpsertRequest,
};

use crate::support::{ADMIN_TOKEN, Server, TempDir, embedding, item, vsa, wait_until};

/// Exact search (the encoder is never fitted); small thresholds. A search waits for a stalled
/// shard rather than leaving it out, so holding a copy never fails a search.
const EXACT: &str = "[index]\nfit_threshold = 1000000\nrebalance_split_items = 60\nrebalance_merge_items = 40\nrebalance_grace_ms = 1000\npartition_timeout_ms = 30000\n";

/// The same with the binary index: fitted at 100 items (and refitted as the catalogue grows,
/// possibly during an apply), so new shards are built with an encoder and searched through the
/// Hamming scan and the rerank. Fits differ from index to index (they sample what each held),
/// so only hits clearly above the rest (an item's own embedding, a cluster's items) are
/// compared with a fresh index.
const BINARY: &str = "[index]\nfit_threshold = 100\nrebalance_split_items = 60\nrebalance_merge_items = 40\nrebalance_grace_ms = 1000\npartition_timeout_ms = 30000\n";

/// How long the old shards are stalled to hold a copy (the writes sent meanwhile land in the
/// new shards before the copy does).
const HOLD_MS: u64 = 3000;

const CATEGORY: &str = "things";

fn id(n: u64) -> String {
    format!("item-{n:05}")
}

/// Items come in clusters of 8 consecutive numbers: a shared centre plus a per-item,
/// per-version offset. A query near a centre has the cluster's live items as its clear top
/// hits (cosine ≈ 0.9 against ≈ 0 for the rest), whatever index answers it.
fn vector(n: u64, version: u32) -> Vec<f32> {
    let centre = embedding(1_000_000 + n / 8);
    let offset = embedding(n + 100_000 * u64::from(version));
    centre
        .iter()
        .zip(offset)
        .map(|(c, o)| c + 0.3 * o)
        .collect()
}

fn query(cluster: u64) -> Vec<f32> {
    let centre = embedding(1_000_000 + cluster);
    let noise = embedding(2_000_000 + cluster);
    centre.iter().zip(noise).map(|(c, o)| c + 0.2 * o).collect()
}

fn thing(n: u64, version: u32) -> UpsertRequest {
    UpsertRequest {
        id: id(n),
        content: ItemContent::Embedding(vector(n, version)),
        category: CATEGORY.into(),
        attributes: vec![("n".into(), n.to_string())],
        metadata: Vec::new(),
    }
}

/// An acknowledged write.
#[derive(Debug, Clone, Copy)]
enum Op {
    Put(u64, u32),
    Del(u64),
}

/// What the test knows the catalogue holds (item → version of its embedding) and what it
/// deleted (item → the version it had).
#[derive(Debug, Default, Clone)]
struct Model {
    live: BTreeMap<u64, u32>,
    gone: BTreeMap<u64, u32>,
}

impl Model {
    fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match *op {
                Op::Put(n, v) => {
                    self.live.insert(n, v);
                    self.gone.remove(&n);
                }
                Op::Del(n) => {
                    if let Some(v) = self.live.remove(&n) {
                        self.gone.insert(n, v);
                    }
                }
            }
        }
    }

    fn clusters(&self) -> BTreeSet<u64> {
        self.live.keys().map(|n| n / 8).collect()
    }
}

fn request(op: Op) -> Request {
    match op {
        Op::Put(n, v) => Request::Upsert(thing(n, v)),
        Op::Del(n) => Request::Delete(DeleteRequest { id: id(n) }),
    }
}

/// Sends `ops` pipelined (at most 32 in flight) and checks every one is acknowledged.
fn pipelined(client: &mut BlockingClient, ops: &[Op]) {
    for chunk in ops.chunks(32) {
        for &op in chunk {
            client.send(request(op)).unwrap();
        }
        for &op in chunk {
            match (op, client.recv().unwrap()) {
                (Op::Put(n, _), Response::Upserted(r)) => assert_eq!(r.id, id(n)),
                (Op::Del(n), Response::Deleted(r)) => assert_eq!(r.id, id(n)),
                (op, other) => panic!("{op:?} not acknowledged: {other:?}"),
            }
        }
    }
}

/// A concurrent load: a writer inserting, updating and deleting its own items (numbers from
/// `base` up) one at a time, and a reader searching near `clusters`, until stopped. Bounded:
/// at most 3000 writes and 100 000 searches.
struct Load {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    searches: Arc<AtomicU64>,
    writer: JoinHandle<Vec<Op>>,
    reader: JoinHandle<Vec<String>>,
}

impl Load {
    fn start(server: &Server, base: u64, clusters: Vec<u64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let searches = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, writes) = (stop.clone(), writes.clone());
            let mut c = server.client();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut mine: VecDeque<(u64, u32)> = VecDeque::new();
                let mut next = base;
                for i in 0..3000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let op = match i % 5 {
                        2 if !mine.is_empty() => {
                            let at = mine.len() / 2;
                            mine[at].1 += 1;
                            Op::Put(mine[at].0, mine[at].1)
                        }
                        4 if mine.len() > 3 => Op::Del(mine.pop_front().unwrap().0),
                        _ => {
                            mine.push_back((next, 0));
                            next += 1;
                            Op::Put(next - 1, 0)
                        }
                    };
                    match op {
                        Op::Put(n, v) => {
                            c.upsert(thing(n, v)).expect("write during a rebalance");
                        }
                        Op::Del(n) => {
                            assert!(c.delete(id(n)).expect("delete during a rebalance").existed);
                        }
                    }
                    acked.push(op);
                    writes.fetch_add(1, Ordering::Relaxed);
                    // Pacing, not synchronisation: leave the two cores to the server.
                    std::thread::sleep(Duration::from_millis(1));
                }
                acked
            })
        };
        let reader = {
            let (stop, searches) = (stop.clone(), searches.clone());
            let mut c = server.client();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for q in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let cluster = clusters[q % clusters.len()];
                    let req = SearchRequest::new(QueryInput::Embedding(query(cluster)), 5);
                    match c.search(req) {
                        Ok(r) if !r.degraded && !r.hits.is_empty() => {
                            searches.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                failures
            })
        };
        Load {
            stop,
            writes,
            searches,
            writer,
            reader,
        }
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }

    /// Waits until both sides made progress from `(writes, searches)`.
    fn progressed(&self, from: (u64, u64), by: u64) -> bool {
        wait_until(Duration::from_secs(60), || {
            self.writes() >= from.0 + by && self.searches() >= from.1 + by
        })
    }

    /// Stops it; the writes it had acknowledged, in order. Panics if a search failed.
    fn finish(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let ops = self.writer.join().unwrap();
        let failures = self.reader.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} searches failed during the rebalance, e.g. {}",
            failures.len(),
            failures[0]
        );
        assert!(self.searches.load(Ordering::Relaxed) > 0);
        ops
    }
}

fn admin_json(client: &mut BlockingClient, action: AdminAction) -> serde_json::Value {
    let r = client.admin(action).expect("admin");
    serde_json::from_str(&r.payload.expect("payload")).expect("json")
}

fn plan(client: &mut BlockingClient) -> serde_json::Value {
    admin_json(client, AdminAction::RebalancePlan)
}

fn status(client: &mut BlockingClient) -> serde_json::Value {
    admin_json(client, AdminAction::RebalanceStatus)
}

fn apply_and_wait(client: &mut BlockingClient, plan_id: u64) {
    client
        .admin(AdminAction::RebalanceApply { plan_id })
        .expect("apply");
    wait_done(client);
}

fn wait_done(client: &mut BlockingClient) {
    assert!(
        wait_until(Duration::from_secs(60), || status(client)["state"]
            == "done"),
        "{}",
        status(client)
    );
}

/// `vsa rebalance --addr … --admin-token … <args>`: exit code, the message line, the payload.
fn cli(server: &Server, args: &[&str]) -> (Option<i32>, String, Option<serde_json::Value>) {
    let addr = server.addr.to_string();
    let mut all = vec!["rebalance", "--addr", &addr, "--admin-token", ADMIN_TOKEN];
    all.extend_from_slice(args);
    let out = vsa(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = stdout.lines();
    let message = lines.next().unwrap_or_default().to_string();
    let payload = lines.next().map(|l| {
        serde_json::from_str(l).unwrap_or_else(|e| panic!("payload is not JSON ({e}): {l}"))
    });
    let message = if out.status.success() {
        message
    } else {
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    (out.status.code(), message, payload)
}

fn shards_of(client: &mut BlockingClient) -> Vec<(String, u64)> {
    client
        .stats()
        .unwrap()
        .shards
        .into_iter()
        .filter(|s| s.category == CATEGORY)
        .map(|s| (s.name, s.items))
        .collect()
}

fn component(hit: &vsa_protocol::SearchHit, name: &str) -> Option<f32> {
    hit.components
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

fn explained(v: Vec<f32>, k: u32) -> SearchRequest {
    let mut req = SearchRequest::new(QueryInput::Embedding(v), k);
    req.options.explain = true;
    req
}

/// Waits until searches go through the binary index (a hit carries a Hamming distance).
fn wait_fitted(client: &mut BlockingClient, model: &Model) {
    let (&n, &v) = model.live.iter().next().expect("an item");
    assert!(
        wait_until(Duration::from_secs(120), || {
            let r = client.search(explained(vector(n, v), 1)).unwrap();
            r.hits
                .first()
                .is_some_and(|h| component(h, "hamming").is_some())
        }),
        "the encoder was never fitted"
    );
}

/// The catalogue is exactly the model: `shards` shards whose item counts add up to the number
/// of live ids (so, every one found, none twice), each live id found by id and as the top hit
/// of its own current embedding, each deleted id gone.
fn check_catalogue(client: &mut BlockingClient, model: &Model, shards: usize, binary: bool) {
    let layout = shards_of(client);
    assert_eq!(layout.len(), shards, "{layout:?}");
    let total: u64 = layout.iter().map(|s| s.1).sum();
    assert_eq!(total, model.live.len() as u64, "{layout:?}");
    assert_eq!(client.stats().unwrap().items, total);
    for (&n, &v) in &model.live {
        let by_id = client.search(SearchRequest::new(QueryInput::ItemId(id(n)), 1));
        assert!(by_id.is_ok(), "{}: {by_id:?}", id(n));
        let r = client.search(explained(vector(n, v), 3)).unwrap();
        assert!(!r.degraded);
        let top = &r.hits[0];
        assert_eq!(top.id, id(n), "{:?}", r.hits);
        // Its own embedding at this version (another version scores ≈ 0.92).
        let visual = component(top, "visual").unwrap_or_default();
        assert!(visual > 0.99, "{} holds a stale version: {visual}", id(n));
        if binary {
            assert!(
                component(top, "hamming").is_some(),
                "{}'s shard searched without the binary index",
                id(n)
            );
        }
    }
    for (&n, &v) in &model.gone {
        let by_id = client.search(SearchRequest::new(QueryInput::ItemId(id(n)), 1));
        assert!(by_id.is_err(), "deleted {} still known: {by_id:?}", id(n));
        let r = client.search(explained(vector(n, v), 3)).unwrap();
        assert!(
            r.hits.iter().all(|h| h.id != id(n)),
            "deleted {} still found",
            id(n)
        );
    }
}

/// The fixed query set: one query near each cluster with live items.
fn answers(client: &mut BlockingClient, clusters: &BTreeSet<u64>) -> Vec<Vec<String>> {
    clusters
        .iter()
        .map(|&c| {
            let r = client
                .search(SearchRequest::new(QueryInput::Embedding(query(c)), 10))
                .unwrap();
            assert!(!r.degraded);
            r.hits.into_iter().map(|h| h.id).collect()
        })
        .collect()
}

/// The fixed query set answers as a fresh index (same settings) of the model's items does.
/// Exact: the whole top 10. Binary: the cluster's own items, which lead both lists (further
/// down, near-zero cosines of unrelated items are ordered by the rerank's approximation, which
/// depends on the fitted encoder).
fn same_answers_as_a_fresh_index(
    client: &mut BlockingClient,
    config: &str,
    model: &Model,
    binary: bool,
) {
    let fresh = Server::start(config);
    let mut f = fresh.client();
    let ops: Vec<Op> = model.live.iter().map(|(&n, &v)| Op::Put(n, v)).collect();
    pipelined(&mut f, &ops);
    if binary {
        wait_fitted(&mut f, model);
    }
    let clusters = model.clusters();
    let ours = answers(client, &clusters);
    let theirs = answers(&mut f, &clusters);
    for ((c, a), b) in clusters.iter().zip(ours).zip(theirs) {
        let members: BTreeSet<String> = model
            .live
            .keys()
            .filter(|n| *n / 8 == *c)
            .map(|&n| id(n))
            .collect();
        let lead = members.len().min(10);
        let head: BTreeSet<String> = a.iter().take(lead).cloned().collect();
        assert_eq!(head, members, "cluster {c}: {a:?}");
        if binary {
            assert_eq!(a[..lead], b[..lead], "cluster {c}");
        } else {
            assert_eq!(a, b, "cluster {c}");
        }
    }
}

/// Applies a plan while `load` runs: the old shards are stalled first (holding the copy), the
/// apply starts, and `batch` is sent pipelined during the copy; returns once the switch is
/// done. With `via_cli` the apply and a `--status` check go through `vsa rebalance`.
fn apply_holding_the_copy(
    server: &Server,
    client: &mut BlockingClient,
    plan: &serde_json::Value,
    batch: &[Op],
    via_cli: bool,
) {
    let plan_id = plan["plan_id"].as_u64().unwrap();
    for name in plan["steps"][0]["from"].as_array().unwrap() {
        client
            .admin(AdminAction::StallActor {
                name: name.as_str().unwrap().into(),
                millis: HOLD_MS,
            })
            .unwrap();
    }
    if via_cli {
        let (code, message, _) = cli(server, &["--apply", &plan_id.to_string()]);
        assert_eq!(code, Some(0), "{message}");
        let (code, message, payload) = cli(server, &["--status"]);
        assert_eq!(code, Some(0), "{message}");
        let payload = payload.expect("status payload");
        assert_eq!(payload["state"], "running", "{payload}");
        assert_eq!(payload["plan_id"], plan_id, "{payload}");
    } else {
        client
            .admin(AdminAction::RebalanceApply { plan_id })
            .unwrap();
    }
    assert_eq!(status(client)["state"], "running");
    // Sent while the copy is held; acknowledged once the old shards move again.
    pipelined(&mut server.client(), batch);
    wait_done(client);
}

fn split_and_merge_under_load_match_a_fresh_index(config: &str, binary: bool) {
    let server = Server::start(config);
    let mut client = server.client();
    let mut model = Model::default();
    let seed: Vec<Op> = (0..200).map(|n| Op::Put(n, 0)).collect();
    pipelined(&mut client, &seed);
    model.apply(&seed);
    if binary {
        wait_fitted(&mut client, &model);
    }
    assert_eq!(shards_of(&mut client).len(), 1);

    // Split, planned and applied through the CLI as an operator would.
    let load = Load::start(&server, 1000, model.clusters().into_iter().collect());
    assert!(load.progressed((0, 0), 20), "the load does not run");
    let (code, message, p) = cli(&server, &["--plan"]);
    assert_eq!(code, Some(0), "{message}");
    let p = p.expect("plan payload");
    let step = &p["steps"][0];
    assert_eq!(step["kind"], "split", "{p}");
    assert_eq!(step["from"], serde_json::json!(["p/things/0"]), "{p}");
    let m = step["to"].as_array().unwrap().len();
    assert!(m >= 2, "{p}");
    let planned: u64 = step["items_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(planned, step["items_before"].as_u64().unwrap());
    // During the copy: deletes and new versions of copied items, and new items.
    let batch: Vec<Op> = (0..200)
        .filter_map(|n| match n % 10 {
            1 => Some(Op::Del(n)),
            3 => Some(Op::Put(n, 1)),
            _ => None,
        })
        .chain((5000..5016).map(|n| Op::Put(n, 0)))
        .collect();
    apply_holding_the_copy(&server, &mut client, &p, &batch, true);
    model.apply(&batch);
    // The load goes on against the new layout for a while.
    assert!(load.progressed((load.writes(), load.searches()), 20));
    model.apply(&load.finish());
    check_catalogue(&mut client, &model, m, binary);
    same_answers_as_a_fresh_index(&mut client, config, &model, binary);

    // Merge: all but about 100 items go (whole clusters), the plan merges the shards back;
    // applied under a new load, with more writes during the copy.
    let mut kept = 0;
    let keep: BTreeSet<u64> = model
        .clusters()
        .into_iter()
        .filter(|&c| {
            let size = model.live.keys().filter(|n| *n / 8 == c).count();
            let fits = kept + size <= 100;
            kept += if fits { size } else { 0 };
            fits
        })
        .collect();
    let cut: Vec<Op> = model
        .live
        .keys()
        .filter(|n| !keep.contains(&(*n / 8)))
        .map(|&n| Op::Del(n))
        .collect();
    pipelined(&mut client, &cut);
    model.apply(&cut);
    let p = plan(&mut client);
    let step = &p["steps"][0];
    assert_eq!(step["kind"], "merge", "{p}");
    let merged = step["to"].as_array().unwrap().len();
    assert!(merged < m, "{p}");
    let load = Load::start(&server, 3000, model.clusters().into_iter().collect());
    assert!(load.progressed((0, 0), 20), "the load does not run");
    let live: Vec<(u64, u32)> = model.live.iter().map(|(&n, &v)| (n, v)).collect();
    let batch: Vec<Op> = live
        .iter()
        .enumerate()
        .filter_map(|(i, &(n, v))| match i % 6 {
            1 => Some(Op::Del(n)),
            4 => Some(Op::Put(n, v + 1)),
            _ => None,
        })
        .chain((6000..6016).map(|n| Op::Put(n, 0)))
        .collect();
    apply_holding_the_copy(&server, &mut client, &p, &batch, false);
    model.apply(&batch);
    assert!(load.progressed((load.writes(), load.searches()), 20));
    model.apply(&load.finish());
    check_catalogue(&mut client, &model, merged, binary);
    same_answers_as_a_fresh_index(&mut client, config, &model, binary);
}

#[test]
fn split_and_merge_under_load_match_a_fresh_exact_index() {
    split_and_merge_under_load_match_a_fresh_index(EXACT, false);
}

#[test]
fn split_and_merge_under_load_match_a_fresh_binary_index() {
    split_and_merge_under_load_match_a_fresh_index(BINARY, true);
}

#[test]
fn a_cancel_before_the_switch_keeps_the_old_layout() {
    let dir = TempDir::new("rebalance-cancel");
    let mut server = Server::start_in(dir.path(), EXACT);
    let mut client = server.client();
    let mut model = Model::default();
    let seed: Vec<Op> = (0..150).map(|n| Op::Put(n, 0)).collect();
    pipelined(&mut client, &seed);
    model.apply(&seed);

    // Nothing to cancel yet: refused, exit 1.
    let (code, message, _) = cli(&server, &["--cancel"]);
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("no rebalance is running"), "{message}");
    let (code, _, status_payload) = cli(&server, &["--status"]);
    assert_eq!(code, Some(0));
    assert_eq!(status_payload.expect("status")["state"], "idle");

    let p = plan(&mut client);
    assert_eq!(p["steps"][0]["kind"], "split", "{p}");
    let plan_id = p["plan_id"].as_u64().unwrap();
    // Hold the copy, start the apply, write during it (pipelined: acknowledged after the
    // stall), then cancel before the switch.
    client
        .admin(AdminAction::StallActor {
            name: "p/things/0".into(),
            millis: HOLD_MS,
        })
        .unwrap();
    let (code, message, _) = cli(&server, &["--apply", &plan_id.to_string()]);
    assert_eq!(code, Some(0), "{message}");
    let (code, message, payload) = cli(&server, &["--status"]);
    assert_eq!(code, Some(0), "{message}");
    assert_eq!(payload.expect("status")["state"], "running");
    let batch: Vec<Op> = (0..150)
        .filter_map(|n| match n % 10 {
            0 => Some(Op::Del(n)),
            5 => Some(Op::Put(n, 1)),
            _ => None,
        })
        .chain((150..160).map(|n| Op::Put(n, 0)))
        .collect();
    let mut writer = server.client();
    for &op in &batch {
        writer.send(request(op)).unwrap();
    }
    let (code, message, _) = cli(&server, &["--cancel"]);
    assert_eq!(code, Some(0), "{message}");
    assert!(message.contains("cancelled"), "{message}");
    for &op in &batch {
        match writer.recv().unwrap() {
            Response::Upserted(_) | Response::Deleted(_) => {}
            other => panic!("{op:?} not acknowledged: {other:?}"),
        }
    }
    model.apply(&batch);
    // The stalled shard has answered everything (its export too): still the old layout.
    let s = status(&mut client);
    assert_eq!(s["state"], "cancelled", "{s}");
    assert_eq!(s["plan_id"], plan_id, "{s}");
    assert_eq!(
        shards_of(&mut client),
        vec![("p/things/0".to_string(), 145)]
    );
    check_catalogue(&mut client, &model, 1, false);
    // A cancelled plan is spent; a second cancel has nothing to cancel.
    assert!(
        client
            .admin(AdminAction::RebalanceApply { plan_id })
            .is_err()
    );
    let (code, _, _) = cli(&server, &["--cancel"]);
    assert_eq!(code, Some(1));

    // Nothing of the cancelled apply reached the disk: a crash comes back in the old layout.
    server.kill9();
    let server = Server::start_in(dir.path(), EXACT);
    let mut client = server.client();
    check_catalogue(&mut client, &model, 1, false);
    // And a new plan applies normally.
    let p = plan(&mut client);
    let m = p["steps"][0]["to"].as_array().unwrap().len();
    apply_and_wait(&mut client, p["plan_id"].as_u64().unwrap());
    check_catalogue(&mut client, &model, m, false);
}

#[test]
fn a_crash_mid_apply_recovers_one_whole_layout() {
    let dir = TempDir::new("rebalance-crash");
    let mut server = Server::start_in(dir.path(), EXACT);
    let mut client = server.client();
    for n in 0..150 {
        client.upsert(item(n, CATEGORY)).unwrap();
    }
    // Hold the copy: the old shard is stalled, so the apply cannot reach its switch.
    client
        .admin(AdminAction::StallActor {
            name: "p/things/0".into(),
            millis: 5000,
        })
        .unwrap();
    let p = plan(&mut client);
    let plan_id = p["plan_id"].as_u64().unwrap();
    client
        .admin(AdminAction::RebalanceApply { plan_id })
        .unwrap();
    assert_eq!(status(&mut client)["state"], "running");
    // A second apply is refused while one runs.
    let again = client.admin(AdminAction::RebalanceApply { plan_id });
    assert!(again.is_err(), "{again:?}");
    // Writes during the copy wait behind the stalled shard: sent, not acknowledged.
    let mut pipelined = server.client();
    for n in 150..160 {
        pipelined.send(Request::Upsert(item(n, CATEGORY))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();

    // Old layout, nothing acknowledged lost, nothing doubled.
    let mut server = Server::start_in(dir.path(), EXACT);
    let mut client = server.client();
    let shards = shards_of(&mut client);
    assert_eq!(shards.len(), 1, "{shards:?}");
    let count = shards[0].1;
    assert!((150..=160).contains(&count), "{count}");
    for n in 0..150 {
        let r = client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(n)), 1))
            .unwrap();
        assert_eq!(r.hits[0].id, id(n));
    }
    for n in 150..160 {
        client.upsert(item(n, CATEGORY)).unwrap();
    }
    assert_eq!(shards_of(&mut client)[0].1, 160);

    // This time let it finish, then crash: the new layout comes back.
    let p = plan(&mut client);
    let m = p["steps"][0]["to"].as_array().unwrap().len();
    apply_and_wait(&mut client, p["plan_id"].as_u64().unwrap());
    for n in 160..170 {
        client.upsert(item(n, CATEGORY)).unwrap();
    }
    client.delete("item-00003").unwrap();
    server.kill9();
    let server = Server::start_in(dir.path(), EXACT);
    let mut client = server.client();
    let shards = shards_of(&mut client);
    assert_eq!(shards.len(), m, "{shards:?}");
    assert_eq!(shards.iter().map(|s| s.1).sum::<u64>(), 169);
    for n in (0..170).filter(|n| *n != 3) {
        let r = client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(n)), 1))
            .unwrap();
        assert_eq!(r.hits[0].id, id(n));
    }
}
