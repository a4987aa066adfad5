//! Serde helper for `Vec<u8>` fields (image bytes): `serialize_bytes` / `deserialize_bytes`.
//!
//! Plain `Vec<u8>` goes through serde's sequence path, one byte at a time; this module keeps
//! the same bincode wire format (varint length + raw bytes) but copies the bytes in one
//! `memcpy`. Decoding uses `deserialize_bytes`, which bincode's borrowing decoder answers
//! with a slice of the frame after checking the length against what is left, so a hostile
//! length prefix cannot allocate. Self-describing formats (JSON) may hand us a sequence
//! instead, which `visit_seq` accepts.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Cap the preallocation like serde does: the hint comes from the peer.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}
