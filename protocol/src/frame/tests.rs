use std::io::Cursor;

use proptest::prelude::*;

use super::*;
use crate::blocking::BlockingConnection;
use crate::types::{Request, Response};

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

fn read_all(bytes: &[u8], max_frame: u32) -> Result<Option<Vec<u8>>> {
    read_frame_blocking(&mut Cursor::new(bytes), max_frame)
}

#[test]
fn encode_then_read_gives_the_body_back() {
    let frame = encode_frame(&Request::Health, DEFAULT_MAX_FRAME).expect("encode");
    assert_eq!(frame, [0, 0, 0, 1, 5]);
    let body = read_all(&frame, DEFAULT_MAX_FRAME)
        .expect("read")
        .expect("frame");
    assert_eq!(
        decode_body::<Request>(&body).expect("decode"),
        Request::Health
    );
}

#[test]
fn empty_stream_is_a_clean_eof() {
    assert!(matches!(read_all(&[], DEFAULT_MAX_FRAME), Ok(None)));
}

#[test]
fn eof_inside_the_header_or_body_is_truncated() {
    for bytes in [&[0u8][..], &[0, 0, 0], &[0, 0, 0, 5, 1, 2], &[0, 0, 0, 1]] {
        assert!(
            matches!(
                read_all(bytes, DEFAULT_MAX_FRAME),
                Err(ProtocolError::Truncated)
            ),
            "{bytes:?}"
        );
    }
}

#[test]
fn oversized_declarations_are_refused() {
    let err = read_all(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_FRAME).expect_err("too large");
    assert!(matches!(
        err,
        ProtocolError::FrameTooLarge { len: 0xffff_ffff, max } if max == u64::from(DEFAULT_MAX_FRAME)
    ));
    // The limit itself is accepted.
    let frame = frame_of(&[7; 10]);
    assert!(read_all(&frame, 10).expect("at limit").is_some());
    assert!(matches!(
        read_all(&frame, 9),
        Err(ProtocolError::FrameTooLarge { len: 10, max: 9 })
    ));
}

#[test]
fn encoding_refuses_messages_over_the_limit() {
    let big = Request::Delete(crate::DeleteRequest {
        id: "x".repeat(100),
    });
    assert!(matches!(
        encode_frame(&big, 50),
        Err(ProtocolError::FrameTooLarge { max: 50, .. })
    ));
}

#[test]
fn trailing_bytes_and_empty_bodies_are_decode_errors() {
    assert!(matches!(
        decode_body::<Request>(&[5, 0]),
        Err(ProtocolError::Decode(_))
    ));
    assert!(matches!(
        decode_body::<Request>(&[]),
        Err(ProtocolError::Decode(_))
    ));
    assert!(matches!(
        decode_body::<Request>(&[200]),
        Err(ProtocolError::Decode(_))
    ));
}

#[test]
fn hostile_string_length_is_refused_by_the_limit() {
    // Delete { id } whose length prefix claims u64::MAX / 2^40 bytes.
    for len in [u64::MAX, 1 << 40, 1 << 20] {
        let mut body = vec![3, 253];
        body.extend_from_slice(&len.to_le_bytes());
        assert!(matches!(
            decode_body::<Request>(&body),
            Err(ProtocolError::Decode(_))
        ));
    }
}

#[test]
fn decode_limit_covers_legitimate_claims() {
    assert!(decode_limit(0) >= CLAIM_SLACK);
    for len in [1usize, 100, 4096, 1 << 20, 16 << 20] {
        let limit = decode_limit(len);
        assert!(limit >= len * CLAIM_FACTOR + CLAIM_SLACK);
        assert!(limit <= 4 * (len * CLAIM_FACTOR + CLAIM_SLACK).max(1 << 12));
    }
    // A body full of small varints claims far more than its size; it must still decode.
    let reply = Response::Stats(crate::StatsReply {
        items: 0,
        shards: vec![
            crate::ShardStats {
                name: String::new(),
                category: String::new(),
                items: 0,
                memory_bytes: 0,
                queue_depth: 0,
                searches: 0,
            };
            10_000
        ],
        inference: crate::InferenceStats {
            workers: 0,
            queue_depth: 0,
            queue_capacity: 0,
            batches: 0,
            images: 0,
            busy_rejections: 0,
        },
        restarts: 0,
        qps: 0.0,
        uptime_ms: 0,
        epoch: 0,
    });
    let body = encode_body(&reply).expect("encode");
    assert_eq!(decode_body::<Response>(&body).expect("decode"), reply);
}

fn two_frames(first_body: &[u8]) -> Vec<u8> {
    let mut bytes = frame_of(first_body);
    bytes.extend(encode_frame(&Request::Stats, DEFAULT_MAX_FRAME).expect("encode"));
    bytes
}

#[test]
fn a_decode_error_leaves_the_connection_usable() {
    let mut conn = BlockingConnection::new(Cursor::new(two_frames(&[0xee, 1, 2])));
    assert!(matches!(conn.read_request(), Err(ProtocolError::Decode(_))));
    assert!(conn.is_usable());
    assert_eq!(conn.read_request().expect("next"), Some(Request::Stats));
    assert_eq!(conn.read_request().expect("eof"), None);
}

#[test]
fn an_oversized_frame_within_the_skip_limit_is_skipped() {
    let limits = FrameLimits {
        max_frame: 16,
        max_skip: 1000,
    };
    let mut conn = BlockingConnection::with_limits(Cursor::new(two_frames(&[0; 500])), limits);
    assert!(matches!(
        conn.read_request(),
        Err(ProtocolError::FrameTooLarge { len: 500, max: 16 })
    ));
    assert!(conn.is_usable());
    assert_eq!(conn.pending_skip(), Some(500));
    assert_eq!(conn.read_request().expect("next"), Some(Request::Stats));
    assert_eq!(conn.pending_skip(), None);
}

#[test]
fn an_oversized_frame_beyond_the_skip_limit_breaks_the_connection() {
    let limits = FrameLimits {
        max_frame: 16,
        max_skip: 100,
    };
    let mut conn = BlockingConnection::with_limits(Cursor::new(two_frames(&[0; 500])), limits);
    assert!(matches!(
        conn.read_request(),
        Err(ProtocolError::FrameTooLarge { len: 500, .. })
    ));
    assert!(!conn.is_usable());
    assert!(matches!(
        conn.read_request(),
        Err(ProtocolError::Desynchronized(_))
    ));
}

#[test]
fn a_skip_cut_short_is_truncated() {
    let limits = FrameLimits {
        max_frame: 16,
        max_skip: 1000,
    };
    let mut bytes = 500u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 100]);
    let mut conn = BlockingConnection::with_limits(Cursor::new(bytes), limits);
    assert!(conn.read_request().is_err());
    assert!(matches!(conn.read_request(), Err(ProtocolError::Truncated)));
    assert!(!conn.is_usable());
}

#[test]
fn body_buffer_grows_only_to_the_declared_length() {
    let body = vec![1u8; INITIAL_CHUNK * 3 + 17];
    let got = read_all(&frame_of(&body), DEFAULT_MAX_FRAME)
        .expect("read")
        .expect("frame");
    assert_eq!(got, body);
    assert_eq!(got.capacity(), body.len());
}

proptest! {
    #[test]
    fn reading_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut conn = BlockingConnection::with_limits(
            Cursor::new(bytes),
            FrameLimits { max_frame: 256, max_skip: 1024 },
        );
        for _ in 0..8 {
            match conn.read_request() {
                Ok(None) => break,
                Ok(Some(_)) | Err(ProtocolError::Decode(_) | ProtocolError::FrameTooLarge { .. }) => {}
                Err(ProtocolError::Truncated | ProtocolError::Desynchronized(_)) => break,
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    #[test]
    fn decoding_random_bodies_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_body::<Request>(&body);
        let _ = decode_body::<Response>(&body);
    }

    #[test]
    fn decoding_mutated_bodies_never_panics(
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let request = Request::Upsert(crate::UpsertRequest {
            id: "item-1".into(),
            content: crate::ItemContent::Embedding(vec![0.5; 8]),
            category: "shoes".into(),
            attributes: vec![("colour".into(), "red".into())],
            metadata: vec![("url".into(), "x".into())],
        });
        let mut body = encode_body(&request).expect("encode");
        let i = position.index(body.len());
        body[i] = byte;
        let _ = decode_body::<Request>(&body);
        body.truncate(cut.index(body.len()));
        let _ = decode_body::<Request>(&body);
    }
}
