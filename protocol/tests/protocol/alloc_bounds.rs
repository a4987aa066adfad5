//! The decoder never allocates beyond its limits, whatever the bytes say.

use std::io::Cursor;

use proptest::prelude::*;
use vsa_protocol::frame::{decode_body, decode_limit, encode_body, read_frame_blocking};
use vsa_protocol::*;

use crate::support::alloc::largest_allocation;
use crate::support::strategies;

/// What reading a header may allocate: nothing but the first 64 KiB body chunk.
const READ_CHUNK: usize = 64 << 10;

#[test]
fn the_tracker_sees_allocations() {
    let (v, largest) = largest_allocation(|| std::hint::black_box(vec![0u8; 1 << 20]));
    assert_eq!(v.len(), 1 << 20);
    assert!(largest >= 1 << 20);
    let ((), largest) = largest_allocation(|| ());
    assert_eq!(largest, 0);
}

#[test]
fn a_4_gib_declaration_is_refused_without_allocating() {
    let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let (result, largest) =
        largest_allocation(|| read_frame_blocking(&mut Cursor::new(&bytes[..]), DEFAULT_MAX_FRAME));
    assert!(matches!(
        result,
        Err(ProtocolError::FrameTooLarge {
            len: 0xffff_ffff,
            ..
        })
    ));
    assert!(largest < 1024, "allocated {largest} bytes");

    // Same through the async connection (the runtime polls on this thread).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut conn = Connection::new(Cursor::new(bytes.to_vec()));
    let (result, largest) = largest_allocation(|| runtime.block_on(conn.read_request()));
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { .. })));
    assert!(largest < 1024, "allocated {largest} bytes");
    assert!(!conn.is_usable(), "4 GiB is beyond the skip limit");
}

#[test]
fn a_large_declaration_allocates_only_what_arrives() {
    // Declares 16 MiB, sends 10 bytes.
    let mut bytes = DEFAULT_MAX_FRAME.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 10]);
    let (result, largest) =
        largest_allocation(|| read_frame_blocking(&mut Cursor::new(&bytes[..]), DEFAULT_MAX_FRAME));
    assert!(matches!(result, Err(ProtocolError::Truncated)));
    assert!(largest <= READ_CHUNK, "allocated {largest} bytes");
}

#[test]
fn a_hostile_string_length_does_not_allocate() {
    // Request::Delete { id } whose length prefix claims 1 TiB, then Request::Hello whose
    // client name claims 2^33 bytes.
    let mut delete = vec![3, 253];
    delete.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let mut hello = vec![0, 1, 253];
    hello.extend_from_slice(&(1u64 << 33).to_le_bytes());
    hello.extend_from_slice(b"abc");
    for body in [delete, hello] {
        let (result, largest) = largest_allocation(|| decode_body::<Request>(&body));
        assert!(matches!(result, Err(ProtocolError::Decode(_))));
        assert!(largest <= 4096, "allocated {largest} bytes");
    }
}

#[test]
fn a_hostile_image_length_does_not_allocate() {
    // Request::Upsert { id: "", content: Image(len = 2^32) }.
    let mut body = vec![2, 0, 0, 252];
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    let (result, largest) = largest_allocation(|| decode_body::<Request>(&body));
    assert!(matches!(result, Err(ProtocolError::Decode(_))));
    assert!(largest <= 4096, "allocated {largest} bytes");
}

/// serde preallocates at most 1 MiB for a sequence whatever its declared length.
const SERDE_PREALLOC: usize = 1 << 20;

proptest! {
    #[test]
    fn mutated_bodies_allocate_within_the_decode_limit(
        request in strategies::request(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut body = encode_body(&request).expect("encode");
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let bound = decode_limit(body.len()).max(SERDE_PREALLOC);
        let (_, largest) = largest_allocation(|| decode_body::<Request>(&body));
        prop_assert!(largest <= bound, "allocated {} > {}", largest, bound);
    }

    #[test]
    fn random_frames_allocate_within_the_frame_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (_, largest) =
            largest_allocation(|| read_frame_blocking(&mut Cursor::new(&bytes[..]), DEFAULT_MAX_FRAME));
        prop_assert!(largest <= READ_CHUNK, "allocated {}", largest);
    }
}

#[test]
fn an_oversized_message_is_refused_before_its_buffer_is_allocated() {
    let request = Request::Upsert(UpsertRequest {
        id: "big".into(),
        content: ItemContent::Image(vec![7; (DEFAULT_MAX_FRAME as usize) + 1]),
        category: "shoes".into(),
        attributes: Vec::new(),
        metadata: Vec::new(),
    });
    let (result, largest) = largest_allocation(|| frame::encode_frame(&request, DEFAULT_MAX_FRAME));
    assert!(matches!(result, Err(ProtocolError::FrameTooLarge { .. })));
    assert!(largest < 1024, "allocated {largest} bytes");

    // Under the limit, the frame buffer is allocated once, exactly.
    let (frame, largest) = largest_allocation(|| frame::encode_frame(&request, u32::MAX));
    let frame = frame.expect("encode");
    assert_eq!(frame.capacity(), frame.len());
    assert_eq!(largest, frame.len());
}
