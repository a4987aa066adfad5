//! Who may do what, through the real server: API keys (read-only, read-write) on TCP and HTTP,
//! the admin token (a refused admin request changes nothing), per-client rate limits, and a
//! connection flood beyond the limit that existing clients never notice.

use std::net::TcpStream;
use std::time::Duration;

use vsa_protocol::{
    AdminAction, BlockingClient, ClientOptions, ErrorCode, ProtocolError, QueryInput, Request,
    Response, SearchRequest,
};

use crate::support::http::request;
use crate::support::{ADMIN_TOKEN, Server, TempDir, embedding, item, wait_until};

const RO: &str = "read-only-key-0123456789";
const RW: &str = "read-write-key-0123456789";

fn code<T: std::fmt::Debug>(r: Result<T, ProtocolError>) -> ErrorCode {
    match r {
        Err(ProtocolError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn connect(server: &Server, key: Option<&str>) -> vsa_protocol::Result<BlockingClient> {
    let options = ClientOptions {
        token: key.map(str::to_string),
        admin_token: Some(ADMIN_TOKEN.into()),
        request_timeout: Some(Duration::from_secs(30)),
        ..ClientOptions::default()
    };
    BlockingClient::connect_with(server.addr, options)
}

#[test]
fn api_keys_gate_reads_and_writes_on_tcp_and_http() {
    let dir = TempDir::new("keys");
    let keys = dir.path().join("keys.txt");
    std::fs::write(
        &keys,
        format!("# test keys\nread-only {RO}\nread-write {RW}\n"),
    )
    .unwrap();
    let config = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\n[security]\napi_keys_file = \"{}\"\n",
        keys.display()
    );
    let server = Server::start(&config);

    // TCP: no key or a wrong key is refused at the handshake.
    assert_eq!(code(connect(&server, None)), ErrorCode::Unauthorized);
    assert_eq!(
        code(connect(&server, Some("read-write-key-0123456780"))),
        ErrorCode::Unauthorized
    );
    let mut rw = connect(&server, Some(RW)).unwrap();
    for n in 0..5 {
        rw.upsert(item(n, "things")).unwrap();
    }
    let mut ro = connect(&server, Some(RO)).unwrap();
    let hits = ro
        .search(SearchRequest::new(QueryInput::Embedding(embedding(2)), 3))
        .unwrap();
    assert_eq!(hits.hits[0].id, "item-00002");
    assert_eq!(code(ro.upsert(item(9, "things"))), ErrorCode::Forbidden);
    assert_eq!(code(ro.delete("item-00001")), ErrorCode::Forbidden);
    assert!(ro.metrics().is_ok(), "monitoring is a read");
    assert_eq!(
        ro.stats().unwrap().items,
        5,
        "the refused writes changed nothing"
    );
    assert!(
        !server.stderr().contains(RO) && !server.stderr().contains(RW),
        "keys never logged"
    );

    // HTTP: the same keys, as bearer tokens; liveness needs none.
    let http = server.http.unwrap();
    assert_eq!(request(http, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(http, "GET", "/metrics", &[], b"").status, 401);
    let bearer = |k: &str| format!("Bearer {k}");
    let ro_h = bearer(RO);
    let rw_h = bearer(RW);
    assert_eq!(
        request(http, "GET", "/metrics", &[("Authorization", &ro_h)], b"").status,
        200
    );
    let r = request(
        http,
        "DELETE",
        "/v1/items/item-00001",
        &[("Authorization", &ro_h)],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (403, "forbidden".into())
    );
    let r = request(
        http,
        "DELETE",
        "/v1/items/item-00001",
        &[("X-Api-Key", RW)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        http,
        "DELETE",
        "/v1/items/item-00002",
        &[("Authorization", &rw_h)],
        b"",
    );
    assert_eq!(r.json()["existed"], true);
    assert_eq!(ro.stats().unwrap().items, 3);
}

#[test]
fn admin_requests_without_the_right_token_change_nothing() {
    let server = Server::start("");
    let mut client = server.client();
    client.upsert(item(1, "things")).unwrap();
    for token in [None, Some("wrong-admin-token")] {
        let options = ClientOptions {
            admin_token: token.map(str::to_string),
            ..ClientOptions::default()
        };
        let mut c = BlockingClient::connect_with(server.addr, options).unwrap();
        let set = c.admin(AdminAction::SetRerankWeights(vec![("ctr".into(), 0.9)]));
        assert_eq!(code(set), ErrorCode::Unauthorized);
        let panic = c.admin(AdminAction::PanicActor {
            name: "p/things/0".into(),
        });
        assert_eq!(code(panic), ErrorCode::Unauthorized);
        assert_eq!(code(c.telemetry(0)), ErrorCode::Unauthorized);
        assert_eq!(
            code(c.admin(AdminAction::RebalancePlan)),
            ErrorCode::Unauthorized
        );
    }
    let t = client.telemetry(0).unwrap();
    assert_eq!(t.weights.version, 1, "weights unchanged");
    assert!(t.actors.iter().all(|a| a.restarts == 0), "nothing panicked");
    assert_eq!(client.stats().unwrap().restarts, 0);
}

#[test]
fn a_client_over_its_rate_is_told_to_slow_down_and_others_are_not() {
    let server = Server::start("[security]\nrate_limit_rps = 2.0\nrate_limit_burst = 5\n");
    let mut fast = server.client();
    for _ in 0..30 {
        fast.send(Request::Stats).unwrap();
    }
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..30 {
        match fast.recv().unwrap() {
            Response::Stats(_) => ok += 1,
            Response::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=8).contains(&ok), "burst 5 plus what 2/s refills: {ok}");
    assert_eq!(ok + limited, 30);
    // Another client has its own budget; the limited one recovers after a pause.
    let mut other = server.client();
    assert!(other.stats().is_ok());
    assert!(wait_until(Duration::from_secs(5), || fast.stats().is_ok()));
    let stats = other.telemetry(0).unwrap();
    let kind = stats.requests.iter().find(|r| r.kind == "stats").unwrap();
    // Counted as busy: the refusals above, plus those of the recovery loop.
    assert!(kind.busy >= limited as u64, "{} < {limited}", kind.busy);
    assert!(kind.count > kind.busy);
}

#[test]
fn a_connection_flood_is_refused_without_hurting_existing_clients() {
    let server = Server::start("[server]\nmax_connections = 6\n");
    let mut client = server.client();
    client.upsert(item(1, "things")).unwrap();
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let s = TcpStream::connect(server.addr).unwrap();
        flood.push(s);
    }
    // Past the limit the server answers `unavailable` and closes: count what it refused.
    let mut kept = Vec::new();
    for s in flood {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut conn = vsa_protocol::BlockingConnection::new(s);
        match conn.read_response() {
            Ok(Some(Response::Error(e))) if e.code == ErrorCode::Unavailable => refused += 1,
            _ => kept.push(conn),
        }
    }
    assert!(
        refused >= 34,
        "only {refused} of 40 refused with a limit of 6"
    );
    // The existing client never noticed.
    for q in 0..20 {
        let r = client
            .search(SearchRequest::new(
                QueryInput::Embedding(embedding(q % 2)),
                1,
            ))
            .unwrap();
        assert_eq!(r.hits.len(), 1);
    }
    drop(kept);
    // Once the flood is gone a new client gets in.
    assert!(wait_until(Duration::from_secs(10), || connect(
        &server, None
    )
    .is_ok()));
    let t = client.telemetry(0).unwrap();
    assert!(t.connections_refused >= 34, "{}", t.connections_refused);
}
