//! The appliance over TCP, as a client sees it: ingest, search (catalogue image, distorted
//! photo, item id, filters), delete, bad input, supervision.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use vsa_protocol::frame::encode_frame;
use vsa_protocol::{
    AdminAction, ErrorCode, FilterClause, HealthState, Hello, ItemContent, PROTOCOL_VERSION,
    ProtocolError, QueryInput, Request, Response, SearchRequest, UpsertRequest,
};

use crate::support::fixtures::{self, Item};
use crate::support::{Server, TempDir, wait_until};

fn upsert_all(client: &mut vsa_protocol::BlockingClient, items: &[Item]) {
    for it in items {
        let bytes = std::fs::read(&it.path).unwrap();
        let reply = client
            .upsert(UpsertRequest {
                id: it.id.clone(),
                content: ItemContent::Image(bytes),
                category: it.category.clone(),
                attributes: vec![("color".into(), it.colour.into())],
                metadata: vec![("file".into(), it.path.display().to_string())],
            })
            .unwrap();
        assert_eq!(reply.id, it.id);
    }
}

fn search_image(
    client: &mut vsa_protocol::BlockingClient,
    bytes: Vec<u8>,
    k: u32,
) -> vsa_protocol::SearchResponse {
    client
        .search(SearchRequest::new(QueryInput::Image(bytes), k))
        .unwrap()
}

fn ids(r: &vsa_protocol::SearchResponse) -> Vec<&str> {
    r.hits.iter().map(|h| h.id.as_str()).collect()
}

/// Exercised twice: with exact search (no encoder fitted) and through the binary index.
fn search_scenario(extra_config: &str) {
    let dir = TempDir::new("catalogue");
    let items = fixtures::catalogue(dir.path());
    let server = Server::start(extra_config);
    let mut client = server.client();
    upsert_all(&mut client, &items);
    let stats = client.stats().unwrap();
    assert_eq!(stats.items, items.len() as u64, "{stats:?}");

    // Every catalogue image finds itself first, with its category predicted.
    for it in &items {
        let r = search_image(&mut client, std::fs::read(&it.path).unwrap(), 5);
        assert_eq!(r.hits[0].id, it.id, "query {}: {:?}", it.id, ids(&r));
        // Not ~1: the index vector folds in rotated copies and the query is a localised crop.
        assert!(r.hits[0].score > 0.5, "{}: {}", it.id, r.hits[0].score);
        assert_eq!(
            r.category.as_ref().map(|c| c.category.as_str()),
            Some(it.category.as_str())
        );
        assert!(r.timings.iter().any(|(s, _)| s == "embed"));
    }

    // A shopper's photo (crop + rotation + JPEG) of the cat finds the cat.
    let cat = items.iter().find(|i| i.id == "chelsea").unwrap();
    let photo = fixtures::distorted(&cat.path, 12.0);
    let r = search_image(&mut client, photo.clone(), 5);
    assert_eq!(r.hits[0].id, "chelsea", "{:?}", ids(&r));
    let coffee = items.iter().find(|i| i.id == "coffee").unwrap();
    let r = search_image(&mut client, fixtures::distorted(&coffee.path, -15.0), 5);
    assert_eq!(r.hits[0].id, "coffee", "{:?}", ids(&r));

    // Search by item id returns neighbours, never the item itself.
    let r = client
        .search(SearchRequest::new(QueryInput::ItemId("shape-0".into()), 3))
        .unwrap();
    assert_eq!(r.hits.len(), 3);
    assert!(!ids(&r).contains(&"shape-0"));

    // Filters are exact: only blue items come back.
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 20);
    req.filter = vec![FilterClause {
        key: "color".into(),
        values: vec!["blue".into()],
    }];
    let r = client.search(req).unwrap();
    let blue: Vec<&str> = items
        .iter()
        .filter(|i| i.colour == "blue")
        .map(|i| i.id.as_str())
        .collect();
    assert!(!r.hits.is_empty());
    assert!(ids(&r).iter().all(|id| blue.contains(id)), "{:?}", ids(&r));

    // A category hint restricts the search to that category.
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 20);
    req.category = Some("shapes/round".into());
    let r = client.search(req).unwrap();
    assert!(r.hits.iter().all(|h| h.category == "shapes/round"));
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 5);
    req.category = Some("no/such".into());
    match client.search(req) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::UnknownCategory),
        other => panic!("expected unknown_category, got {other:?}"),
    }

    // Delete: gone from results, a second delete reports it did not exist.
    let d = client.delete("chelsea").unwrap();
    assert!(d.existed);
    let r = search_image(&mut client, photo, 10);
    assert!(!ids(&r).contains(&"chelsea"), "{:?}", ids(&r));
    assert!(!client.delete("chelsea").unwrap().existed);
    assert_eq!(client.stats().unwrap().items, items.len() as u64 - 1);

    // Upsert replaces: the same id with another image is now found by that image.
    let r = client
        .upsert(UpsertRequest {
            id: "shape-1".into(),
            content: ItemContent::Image(std::fs::read(&cat.path).unwrap()),
            category: "shapes/round".into(),
            attributes: vec![],
            metadata: vec![],
        })
        .unwrap();
    assert!(r.replaced);
    let r = search_image(&mut client, std::fs::read(&cat.path).unwrap(), 3);
    assert_eq!(r.hits[0].id, "shape-1");
}

#[test]
fn search_exact_before_the_encoder_is_fitted() {
    search_scenario("[index]\nfit_threshold = 100000\n");
}

#[test]
fn search_through_the_binary_index() {
    search_scenario("[index]\nfit_threshold = 8\ncandidates = 50\n");
}

fn raw_hello(stream: &mut TcpStream) -> Response {
    let hello = Request::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client: "raw".into(),
        token: None,
    });
    stream
        .write_all(&encode_frame(&hello, 1 << 20).unwrap())
        .unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> Response {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    vsa_protocol::frame::decode_body(&body).unwrap()
}

fn error_code(r: &Response) -> ErrorCode {
    match r {
        Response::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bad_frames_and_bad_input_get_errors_and_the_server_survives() {
    let server = Server::start("[server]\nmax_frame = 1048576\n");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    // Before Hello: refused, connection kept.
    let stats = encode_frame(&Request::Stats, 1 << 20).unwrap();
    s.write_all(&stats).unwrap();
    assert_eq!(error_code(&read_response(&mut s)), ErrorCode::BadRequest);
    assert!(matches!(raw_hello(&mut s), Response::Hello(_)));

    // A frame whose body is garbage: bad_frame, then the connection still works.
    let garbage = [0u8, 0, 0, 6, 0xFF, 0xFE, 0xFD, 1, 2, 3];
    s.write_all(&garbage).unwrap();
    assert_eq!(error_code(&read_response(&mut s)), ErrorCode::BadFrame);
    s.write_all(&stats).unwrap();
    assert!(matches!(read_response(&mut s), Response::Stats(_)));

    // `Clicks` frames that do not decode (a truncated batch, a batch with a trailing byte),
    // which the server leaves for the click thread to decode: bad_frame too.
    for body in [&[9u8, 5, 3][..], &[9, 1, 3, 1, b'i', 2, 0]] {
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
        match read_response(&mut s) {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::BadFrame, "{body:?}: {e:?}");
                assert!(e.message.contains("undecodable request"), "{e:?}");
            }
            other => panic!("{body:?}: expected bad_frame, got {other:?}"),
        }
    }
    s.write_all(&stats).unwrap();
    assert!(matches!(read_response(&mut s), Response::Stats(_)));

    // An oversized frame (2 MiB against a 1 MiB limit), really sent: frame_too_large, skipped.
    let big = vec![7u8; 2 << 20];
    s.write_all(&(big.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&big).unwrap();
    assert_eq!(error_code(&read_response(&mut s)), ErrorCode::FrameTooLarge);
    s.write_all(&stats).unwrap();
    assert!(matches!(read_response(&mut s), Response::Stats(_)));

    // Garbage image bytes and a truncated JPEG: invalid_image; k = 0: bad_request.
    let mut client = server.client();
    for bytes in [b"definitely not an image".to_vec(), {
        let jpeg = fixtures::distorted(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata/coffee.png"),
            0.0,
        );
        jpeg[..jpeg.len() / 3].to_vec()
    }] {
        match client.search(SearchRequest::new(QueryInput::Image(bytes), 5)) {
            Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidImage, "{e:?}"),
            other => panic!("expected invalid_image, got {other:?}"),
        }
    }
    match client.search(SearchRequest::new(
        QueryInput::Embedding(vec![0.5; 1280]),
        0,
    )) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected bad_request, got {other:?}"),
    }
    match client.search(SearchRequest::new(QueryInput::ItemId("nope".into()), 5)) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::UnknownItem),
        other => panic!("expected unknown_item, got {other:?}"),
    }
    // An upsert with an invalid id changes nothing.
    let bad = UpsertRequest {
        id: String::new(),
        content: ItemContent::Embedding(vec![0.5; 1280]),
        category: "c".into(),
        attributes: vec![],
        metadata: vec![],
    };
    assert!(matches!(client.upsert(bad), Err(ProtocolError::Server(_))));
    assert_eq!(client.stats().unwrap().items, 0);

    // Pure garbage on a fresh connection (an HTTP request): an error, then close; server fine.
    let mut g = TcpStream::connect(server.addr).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = g.read_to_end(&mut rest);
    assert!(client.health().is_ok());

    // A client speaking another protocol version is refused politely.
    let mut v = TcpStream::connect(server.addr).unwrap();
    v.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let hello = Request::Hello(Hello {
        protocol_version: 999,
        client: "future".into(),
        token: None,
    });
    v.write_all(&encode_frame(&hello, 1 << 20).unwrap())
        .unwrap();
    assert_eq!(
        error_code(&read_response(&mut v)),
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn a_panicking_partition_is_restarted_and_the_server_keeps_answering() {
    let dir = TempDir::new("catalogue");
    let items = fixtures::catalogue(dir.path());
    let mut server = Server::start("");
    let mut client = server.client();
    upsert_all(&mut client, &items);
    assert_eq!(client.stats().unwrap().restarts, 0);
    let round_before = client
        .stats()
        .unwrap()
        .shards
        .iter()
        .find(|s| s.name == "p/shapes/round/0")
        .unwrap()
        .items;
    assert!(round_before > 0);

    // Without the token: refused, nothing happens.
    let mut anon = vsa_protocol::BlockingClient::connect(server.addr).unwrap();
    let refused = anon.admin(AdminAction::PanicActor {
        name: "p/shapes/round/0".into(),
    });
    assert!(
        matches!(refused, Err(ProtocolError::Server(ref e)) if e.code == ErrorCode::Unauthorized),
        "{refused:?}"
    );
    assert_eq!(client.stats().unwrap().restarts, 0);

    client
        .admin(AdminAction::PanicActor {
            name: "p/shapes/round/0".into(),
        })
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || client
            .stats()
            .map(|s| s.restarts == 1)
            .unwrap_or(false)),
        "restart not counted: {}",
        server.stderr()
    );
    // The restarted partition is rebuilt from the write-ahead log with every item; the
    // others kept theirs and searches work.
    assert!(wait_until(Duration::from_secs(10), || client
        .health()
        .map(|h| h.state == HealthState::Healthy)
        .unwrap_or(false)));
    let coffee = items.iter().find(|i| i.id == "coffee").unwrap();
    let r = search_image(&mut client, std::fs::read(&coffee.path).unwrap(), 3);
    assert_eq!(r.hits[0].id, "coffee");
    assert!(!r.degraded);
    let shards = client.stats().unwrap().shards;
    let round = shards
        .iter()
        .find(|s| s.name == "p/shapes/round/0")
        .unwrap();
    assert_eq!(round.items, round_before);

    // A model worker killed by fault injection is replaced too.
    client
        .admin(AdminAction::PanicActor {
            name: "inference-worker".into(),
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || client
        .stats()
        .map(|s| s.restarts >= 2)
        .unwrap_or(false)));
    let r = search_image(&mut client, std::fs::read(&coffee.path).unwrap(), 3);
    assert_eq!(r.hits[0].id, "coffee");

    // SIGTERM: clean exit.
    assert!(server.is_running());
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}
