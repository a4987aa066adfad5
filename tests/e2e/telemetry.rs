//! The console's data source through the real server: `AdminAction::Telemetry` counts requests
//! and their latency, errors and `busy`, meters every shard, draws the supervision tree with
//! restarts and last errors, and tails the server's warnings; without the token it is refused.

use std::time::Duration;

use vsa_protocol::{
    AdminAction, BlockingClient, ClientOptions, ErrorCode, ProtocolError, QueryInput,
    SearchRequest, Telemetry,
};

use crate::support::{Server, category_of, embedding, item, wait_until};

fn telemetry(client: &mut BlockingClient, log_after: u64) -> Telemetry {
    client.telemetry(log_after).expect("telemetry")
}

#[test]
fn telemetry_counts_requests_meters_shards_and_tracks_failures() {
    let server = Server::start("");
    let mut client = server.client();
    for n in 0..40 {
        client.upsert(item(n, category_of(n))).unwrap();
    }
    for q in 0..7 {
        let r = client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(q)), 5))
            .unwrap();
        assert_eq!(r.hits[0].id, format!("item-{q:05}"));
    }
    // A bad request: counted as a search error, not as a success.
    assert!(
        client
            .search(SearchRequest::new(QueryInput::ItemId("no-such".into()), 5))
            .is_err()
    );

    let t = telemetry(&mut client, 0);
    assert_eq!(t.items, 40);
    let kind = |t: &Telemetry, k: &str| t.requests.iter().find(|r| r.kind == k).cloned().unwrap();
    let search = kind(&t, "search");
    assert_eq!(search.count, 8, "{search:?}");
    assert_eq!(search.errors, 1);
    assert_eq!(search.latency.count(), 8);
    assert!(search.latency.quantile(0.5).unwrap() > 0);
    assert_eq!(kind(&t, "upsert").count, 40);
    assert!(
        t.stages
            .iter()
            .any(|s| s.stage == "search" && s.latency.count() == 7)
    );
    assert!(t.memory_rss_bytes > 10 << 20, "{}", t.memory_rss_bytes);
    assert_eq!(t.connections_open, 1);

    // Every shard is metered: each search fanned out to both categories.
    assert_eq!(t.shards.len(), 2);
    for s in &t.shards {
        assert_eq!(s.latency.count(), 7, "{s:?}");
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.items, 20);
    }
    // The supervision tree, parents first.
    let names: Vec<&str> = t.actors.iter().map(|a| a.name.as_str()).collect();
    for expected in [
        "root",
        "inference-pool",
        "model-workers",
        "coordinator",
        "clicks/0",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let shard = t.shards[0].name.clone();
    assert!(pos("coordinator") < pos(&shard));
    let actor = |t: &Telemetry, n: &str| t.actors.iter().find(|a| a.name == n).cloned().unwrap();
    assert_eq!(actor(&t, &shard).parent.as_deref(), Some("coordinator"));
    assert_eq!(actor(&t, &shard).state, "running");
    assert_eq!(actor(&t, &shard).restarts, 0);
    assert_eq!(t.weights.version, 1);

    // A panicking shard: the tree shows the restart and the error, the log tail the failure.
    let seen = t.log.last().map_or(0, |l| l.seq);
    client
        .admin(AdminAction::PanicActor {
            name: shard.clone(),
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        let t = telemetry(&mut client, seen);
        actor(&t, &shard).restarts == 1 && actor(&t, &shard).state == "running"
    }));
    let t = telemetry(&mut client, seen);
    let a = actor(&t, &shard);
    assert!(
        a.last_error.as_deref().unwrap_or("").contains("panic"),
        "{a:?}"
    );
    assert!(
        t.log
            .iter()
            .any(|l| l.level == "ERROR" && l.message.contains("partition failed")),
        "{:?}",
        t.log
    );
    assert!(t.log.iter().all(|l| l.seq > seen));
    let last = t.log.last().map_or(seen, |l| l.seq);
    assert!(
        telemetry(&mut client, last)
            .log
            .iter()
            .all(|l| l.seq > last)
    );

    // Without the admin token: refused.
    let mut anon =
        BlockingClient::connect_with(server.addr, ClientOptions::default()).expect("connect");
    match anon.telemetry(0) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("expected unauthorized, got {other:?}"),
    }
}
