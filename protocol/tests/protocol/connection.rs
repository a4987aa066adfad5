//! The async connection's boundary tracking: EOF, truncation, decode errors, oversize, cancel.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use vsa_protocol::*;

use crate::support::server::Toy;

#[tokio::test]
async fn clean_eof_between_frames_is_none() {
    let (a, b) = tokio::io::duplex(1024);
    let mut writer = Connection::new(a);
    let mut reader = Connection::new(b);
    writer.write_request(&Request::Health).await.expect("write");
    drop(writer);
    assert_eq!(
        reader.read_request().await.expect("read"),
        Some(Request::Health)
    );
    assert_eq!(reader.read_request().await.expect("eof"), None);
    assert!(reader.is_usable());
}

#[tokio::test]
async fn eof_inside_a_frame_is_truncated() {
    let (mut a, b) = tokio::io::duplex(1024);
    let mut reader = Connection::new(b);
    a.write_all(&[0, 0, 0, 9, 1, 2]).await.expect("write");
    drop(a);
    assert!(matches!(
        reader.read_request().await,
        Err(ProtocolError::Truncated)
    ));
    assert!(!reader.is_usable());
    assert!(matches!(
        reader.read_request().await,
        Err(ProtocolError::Desynchronized(_))
    ));
}

#[tokio::test]
async fn a_decode_error_leaves_the_connection_usable() {
    let (a, b) = tokio::io::duplex(1024);
    let mut writer = Connection::new(a);
    let mut reader = Connection::new(b);
    writer
        .write_raw(&[0, 0, 0, 3, 0xee, 0xee, 0xee])
        .await
        .expect("garbage");
    writer.write_request(&Request::Stats).await.expect("write");
    let err = reader.read_request().await.expect_err("garbage");
    assert!(matches!(err, ProtocolError::Decode(_)));
    assert_eq!(err.code(), ErrorCode::BadFrame);
    assert!(reader.is_usable());
    assert_eq!(
        reader.read_request().await.expect("next"),
        Some(Request::Stats)
    );
}

#[tokio::test]
async fn an_oversized_frame_is_skipped_and_the_next_one_read() {
    let (a, b) = tokio::io::duplex(4096);
    let mut writer = Connection::with_limits(a, FrameLimits::with_max_frame(1 << 20));
    let mut reader = Connection::with_limits(
        b,
        FrameLimits {
            max_frame: 1024,
            max_skip: 1 << 20,
        },
    );
    let big = Request::Delete(DeleteRequest {
        id: "x".repeat(100_000),
    });
    tokio::spawn(async move {
        writer.write_request(&big).await.expect("write big");
        writer.write_request(&Request::Health).await.expect("write");
    });
    let err = reader.read_request().await.expect_err("too large");
    assert!(matches!(
        err,
        ProtocolError::FrameTooLarge { max: 1024, .. }
    ));
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
    assert!(reader.is_usable());
    assert_eq!(
        reader.read_request().await.expect("next"),
        Some(Request::Health)
    );
}

#[tokio::test]
async fn a_cancelled_read_desynchronizes() {
    let (mut a, b) = tokio::io::duplex(1024);
    let mut reader = Connection::new(b);
    a.write_all(&[0, 0, 0, 9, 1]).await.expect("write");
    let read = tokio::time::timeout(Duration::from_millis(20), reader.read_request()).await;
    assert!(read.is_err(), "nothing complete to read");
    assert!(!reader.is_usable());
    assert!(matches!(
        reader.read_request().await,
        Err(ProtocolError::Desynchronized(_))
    ));
}

#[tokio::test]
async fn a_server_answers_frame_too_large_and_keeps_the_connection() {
    let server = Toy::default().duplex();
    let options = ClientOptions {
        limits: FrameLimits::with_max_frame(64 << 20),
        ..ClientOptions::default()
    };
    let mut client = Client::handshake(server, options).await.expect("hello");
    let huge = Request::Upsert(UpsertRequest {
        id: "big".into(),
        content: ItemContent::Image(vec![0xab; (DEFAULT_MAX_FRAME as usize) + 1]),
        category: "shoes".into(),
        attributes: Vec::new(),
        metadata: Vec::new(),
    });
    match client.call(huge).await.expect("answered") {
        Response::Error(reply) => assert_eq!(reply.code, ErrorCode::FrameTooLarge),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(
        client.health().await.expect("still usable").state,
        HealthState::Healthy
    );
}

#[tokio::test]
async fn a_garbage_header_gets_an_answer_and_a_close() {
    let (a, b) = tokio::io::duplex(1024);
    tokio::spawn(Toy::default().serve(b));
    let mut conn = Connection::new(a);
    // An HTTP request's first bytes read as a 1.2 GB declaration: beyond the skip limit.
    conn.write_raw(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    match conn.read_response().await.expect("answer") {
        Some(Response::Error(reply)) => assert_eq!(reply.code, ErrorCode::FrameTooLarge),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(conn.read_response().await.expect("closed"), None);
}
