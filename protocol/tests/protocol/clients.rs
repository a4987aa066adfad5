//! The async and blocking clients against the toy server.

use std::time::Duration;

use vsa_protocol::*;

use crate::support::server::Toy;

fn upsert(id: String) -> Request {
    Request::Upsert(UpsertRequest {
        id,
        content: ItemContent::Embedding(vec![0.25; 16]),
        category: "shoes".into(),
        attributes: vec![("colour".into(), "red".into())],
        metadata: Vec::new(),
    })
}

#[tokio::test]
async fn handshake_and_typed_calls_over_a_duplex() {
    let options = ClientOptions {
        admin_token: Some("secret".into()),
        ..ClientOptions::named("test 0.1")
    };
    let mut client = Client::handshake(Toy::default().duplex(), options)
        .await
        .expect("hello");
    assert_eq!(client.server().server, "toy 0.0.0");
    assert_eq!(client.server().protocol_version, PROTOCOL_VERSION);

    let mut search = SearchRequest::new(QueryInput::Image(vec![0xff, 0xd8, 0xff]), 3);
    search.category = Some("bags".into());
    let found = client.search(search).await.expect("search");
    assert_eq!(found.hits.len(), 3);
    assert_eq!(found.hits[0].category, "bags");

    assert_eq!(client.stats().await.expect("stats").items, 3);
    assert_eq!(
        client.health().await.expect("health").state,
        HealthState::Healthy
    );
    let admin = client.admin(AdminAction::Snapshot).await.expect("admin");
    assert_eq!(admin.message, "Snapshot");
    let deleted = client.delete("a").await.expect("delete");
    assert!(deleted.existed);
}

#[tokio::test]
async fn typed_methods_map_server_errors_and_call_returns_them() {
    let mut client = Client::handshake(Toy::default().duplex(), ClientOptions::default())
        .await
        .expect("hello");
    let err = client.delete("missing").await.expect_err("unknown");
    match &err {
        ProtocolError::Server(reply) => assert_eq!(reply.code, ErrorCode::UnknownItem),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.code(), ErrorCode::UnknownItem);
    assert!(!err.retryable());

    let raw = client
        .call(Request::Delete(DeleteRequest {
            id: "missing".into(),
        }))
        .await
        .expect("answered");
    assert!(matches!(
        raw,
        Response::Error(ErrorReply {
            code: ErrorCode::UnknownItem,
            ..
        })
    ));

    // No admin token configured.
    let err = client
        .admin(AdminAction::RebalanceStatus)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::Unauthorized);

    // The connection survives all of it.
    assert!(client.is_usable());
    client.health().await.expect("health");
}

#[tokio::test]
async fn pipelined_requests_come_back_in_order() {
    let mut client = Client::handshake(Toy::default().duplex(), ClientOptions::default())
        .await
        .expect("hello");
    const N: usize = 64;
    for i in 0..N {
        client
            .send(upsert(format!("item-{i}")))
            .await
            .expect("send");
    }
    assert_eq!(client.in_flight(), N);
    assert!(matches!(
        client.call(Request::Health).await,
        Err(ProtocolError::Desynchronized(_))
    ));
    for i in 0..N {
        match client.recv().await.expect("recv") {
            Response::Upserted(reply) => {
                assert_eq!(reply.id, format!("item-{i}"));
                assert_eq!(reply.seq, i as u64 + 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(client.in_flight(), 0);
    assert!(matches!(
        client.recv().await,
        Err(ProtocolError::Desynchronized(_))
    ));
    client.stats().await.expect("call works again");
}

#[tokio::test]
async fn connect_over_loopback_tcp() {
    let addr = Toy::default().listen().await;
    let mut client = Client::connect(addr).await.expect("connect");
    let reply = client.call(Request::Health).await.expect("call");
    assert!(matches!(reply, Response::Health(_)));
    let second = Client::connect(addr).await.expect("second connection");
    assert_eq!(second.server().server, "toy 0.0.0");
}

#[tokio::test]
async fn version_mismatch_is_reported() {
    let toy = Toy {
        version: PROTOCOL_VERSION + 1,
        ..Toy::default()
    };
    let err = Client::handshake(toy.duplex(), ClientOptions::default())
        .await
        .expect_err("mismatch");
    assert!(matches!(
        err,
        ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs } if theirs == PROTOCOL_VERSION + 1
    ));
}

#[tokio::test]
async fn the_session_token_is_checked_at_hello() {
    let toy = Toy {
        token: Some("t0ken".into()),
        ..Toy::default()
    };
    let err = Client::handshake(toy.clone().duplex(), ClientOptions::default())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), ErrorCode::Unauthorized);
    let options = ClientOptions {
        token: Some("t0ken".into()),
        ..ClientOptions::default()
    };
    Client::handshake(toy.duplex(), options)
        .await
        .expect("token");
}

#[tokio::test]
async fn a_silent_server_times_out_and_the_client_gives_up_the_connection() {
    let mut client = Client::handshake(Toy::default().duplex(), ClientOptions::default())
        .await
        .expect("hello");
    // Swap in a silent server with a short timeout.
    let options = ClientOptions {
        request_timeout: Some(Duration::from_millis(50)),
        ..ClientOptions::default()
    };
    let silent = Toy {
        silent: true,
        ..Toy::default()
    };
    let err = Client::handshake(silent.duplex(), options)
        .await
        .expect_err("silent");
    assert!(matches!(err, ProtocolError::Timeout));
    assert!(err.retryable());
    client
        .health()
        .await
        .expect("the other client is unaffected");
}

#[test]
fn blocking_client_does_hello_and_calls() {
    let addr = Toy::default().listen_blocking();
    let options = ClientOptions {
        admin_token: Some("secret".into()),
        ..ClientOptions::named("blocking test")
    };
    let mut client = BlockingClient::connect_with(addr, options).expect("connect");
    assert_eq!(client.server().server, "toy 0.0.0");
    let found = client
        .search(SearchRequest::new(QueryInput::ItemId("item-1".into()), 2))
        .expect("search");
    assert_eq!(found.hits.len(), 2);
    assert_eq!(
        client.delete("missing").expect_err("unknown").code(),
        ErrorCode::UnknownItem
    );
    assert_eq!(
        client
            .admin(AdminAction::RebalancePlan)
            .expect("admin")
            .message,
        "RebalancePlan"
    );
    for i in 0..10 {
        client.send(upsert(format!("b-{i}"))).expect("send");
    }
    for i in 0..10 {
        match client.recv().expect("recv") {
            Response::Upserted(reply) => assert_eq!(reply.id, format!("b-{i}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Frames encoded ahead of time are pipelined and answered like requests sent as values.
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| frame::encode_frame(&upsert(format!("e-{i}")), DEFAULT_MAX_FRAME))
        .collect::<Result<_>>()
        .expect("encode");
    for f in &frames {
        client.send_encoded(f).expect("send encoded");
    }
    assert_eq!(client.in_flight(), 3);
    for i in 0..3 {
        match client.recv().expect("recv") {
            Response::Upserted(reply) => assert_eq!(reply.id, format!("e-{i}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(client.stats().is_ok());
    assert!(client.health().is_ok());
    assert!(
        client
            .upsert(match upsert("x".into()) {
                Request::Upsert(u) => u,
                _ => unreachable!(),
            })
            .is_ok()
    );
}

#[test]
fn blocking_client_times_out_on_a_silent_server() {
    let addr = Toy {
        silent: true,
        ..Toy::default()
    }
    .listen_blocking();
    let options = ClientOptions {
        request_timeout: Some(Duration::from_millis(100)),
        ..ClientOptions::default()
    };
    let err = BlockingClient::connect_with(addr, options).expect_err("silent");
    assert!(matches!(err, ProtocolError::Timeout), "{err:?}");
}

#[test]
fn blocking_connect_to_a_closed_port_fails() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let err = BlockingClient::connect(addr).expect_err("nobody listens");
    assert!(matches!(err, ProtocolError::Io(_)), "{err:?}");
}
