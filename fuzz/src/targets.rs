//! The fuzz targets: one function per decoder, the invariants each asserts, and the table the
//! driver (and `fuzz/libfuzzer/`) runs them from.
//!
//! Every target returns normally on any input; a panic (a failed invariant included) is a
//! finding. Errors are fine as long as they are the decoder's typed "bad input" errors.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vsa_actors::durability::model::{self, ModelHeader, ModelState};
use vsa_actors::durability::record::{
    self, MAX_RECORD, RECORD_HEADER, WalOp, decode_records, encode_record,
};
use vsa_actors::durability::wal::{ReplayReport, SegmentEnd, scan_segment};
use vsa_actors::durability::{DurabilityError, snapshot};
use vsa_actors::store::ItemRecord;
use vsa_models::DecodeLimits;
use vsa_protocol::frame::{decode_body, encode_body};
use vsa_protocol::{BlockingConnection, Connection, FrameLimits, ProtocolError, Request, Response};

/// What a target made of an input, for the driver's statistics (how deep inputs get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The decoder accepted (some of) the input.
    Accepted,
    /// The decoder refused it with a typed error.
    Rejected,
}

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name on the command line.
    pub name: &'static str,
    /// The decoder it drives.
    pub about: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]) -> Outcome,
    /// Its seed corpus (valid encodings).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Default largest generated input.
    pub max_len: usize,
    /// Largest peak allocation (bytes) allowed for an input of this many bytes.
    pub cap: fn(usize) -> usize,
}

/// Every target, in the order `all` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        about: "Connection/BlockingConnection::read_request over a byte stream (async vs blocking)",
        run: frame,
        seeds: crate::seeds::frames,
        max_len: 8 << 10,
        cap: codec_cap,
    },
    Target {
        name: "request",
        about: "frame::decode_body::<Request> and ::<Response>, with a re-encode round trip",
        run: request,
        seeds: crate::seeds::request_bodies,
        max_len: 8 << 10,
        cap: codec_cap,
    },
    Target {
        name: "image",
        about: "vsa_models::decode_rgb (PNG, JPEG, WebP, GIF, BMP) under IMAGE_LIMITS",
        run: image,
        seeds: crate::seeds::images,
        max_len: 16 << 10,
        cap: image_cap,
    },
    Target {
        name: "wal",
        about: "record::decode_records vs wal::scan_segment (replay), raw and CRC-fixed",
        run: wal,
        seeds: crate::seeds::wal_logs,
        max_len: 8 << 10,
        cap: codec_cap,
    },
    Target {
        name: "snapshot",
        about: "snapshot::decode, raw and CRC-fixed",
        run: snapshot,
        seeds: crate::seeds::snapshots,
        max_len: 8 << 10,
        cap: codec_cap,
    },
    Target {
        name: "model",
        about: "model::decode (model-state files), raw and CRC-fixed, with a re-encode round trip",
        run: model,
        seeds: crate::seeds::models,
        max_len: MODEL_MAX_LEN,
        cap: codec_cap,
    },
];

/// Default largest input of the `model` target: a model file with a real encoder is ~530 KB
/// (a 256-bit code needs a 256 × 256 rotation and at least a 256 × 256 projection), so the
/// inputs must be allowed that long for mutations of a whole encoder to be tried.
pub const MODEL_MAX_LEN: usize = 576 << 10;

/// Looks a target up by name.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Allocation cap of the bincode-based targets: 16 MiB + 64 bytes per input byte.
///
/// The frame decoder allocates at most 32 bytes of claims per body byte (its bincode limit,
/// see `vsa_protocol::frame::decode_limit`); serde pre-allocates at most 1 MiB per sequence
/// before its elements arrive; a decoded value holds at most ~24 bytes per encoded byte (an
/// empty string pair is 2 bytes on the wire, 48 in memory). The encoder inside a model file
/// is read by `Encoder::from_bytes` without a claim limit, but it holds only `f32` sequences,
/// each element 4 bytes on the wire and 4 (8 while a `Vec` doubles) in memory.
pub fn codec_cap(len: usize) -> usize {
    (16 << 20) + 64 * len
}

/// The limits the `image` target decodes under: the production checks with smaller numbers,
/// so that a header claiming the largest accepted image costs milliseconds, not seconds.
pub const IMAGE_LIMITS: DecodeLimits = DecodeLimits {
    max_bytes: 1 << 20,
    max_pixels: 1 << 20,
    max_side: 2048,
};

/// Allocation cap of the `image` target. What the decoders count is bounded by
/// `decode_rgb`'s allocation limit (`vsa_models::decode::max_alloc`: 4 bytes a pixel of the
/// size the header declares plus `working_room`, so at most `4 × max_pixels + working_room`);
/// a quarter of that again is the gif crate's buffer of a frame's palette indices, one byte
/// per pixel, outside the image crate's accounting. Outside any limit: the decoded image, up
/// to 8 bytes a pixel (16-bit RGBA), alive next to its RGBA8 conversion (`12 × max_pixels`),
/// and the JPEG and WebP decoders' own buffers, in the 16 MiB + 64 bytes per input byte of
/// slack.
pub fn image_cap(len: usize) -> usize {
    let px = IMAGE_LIMITS.max_pixels as usize;
    let counted = 4 * px + vsa_models::decode::working_room(len) as usize;
    counted + counted / 4 + 12 * px + (16 << 20) + 64 * len
}

const FRAME_LIMITS: FrameLimits = FrameLimits {
    max_frame: 4 << 10,
    max_skip: 64 << 10,
};

/// `frame`: the server's reader (`Connection::read_request`, async, fed in small chunks)
/// and the blocking client's (`BlockingConnection`, fed at once) read the same stream of
/// frames and must agree on every outcome; each decoded request must round-trip.
pub fn frame(data: &[u8]) -> Outcome {
    let chunk = 1 + data.len() % 61;
    let mut blocking = BlockingConnection::with_limits(Wire::new(data, usize::MAX), FRAME_LIMITS);
    let mut asynchronous = Connection::with_limits(Wire::new(data, chunk), FRAME_LIMITS);
    let mut outcome = Outcome::Rejected;
    // Every read either consumes a header or ends the stream.
    for _ in 0..data.len() / 4 + 2 {
        let b = blocking.read_request();
        let a = poll_ready(asynchronous.read_request());
        assert_eq!(
            summary(&a),
            summary(&b),
            "async and blocking readers disagree"
        );
        assert_eq!(asynchronous.is_usable(), blocking.is_usable());
        match b {
            Ok(None) => break,
            Ok(Some(r)) => {
                round_trip(&r);
                outcome = Outcome::Accepted;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        ProtocolError::Decode(_)
                            | ProtocolError::FrameTooLarge { .. }
                            | ProtocolError::Truncated
                            | ProtocolError::Desynchronized(_)
                    ),
                    "unexpected error kind: {e}"
                );
                if !blocking.is_usable() {
                    break;
                }
            }
        }
    }
    outcome
}

/// `request`: a frame body decodes to a `Request` or a `Decode` error; an accepted request
/// re-encodes to bytes that decode again to the same bytes. Responses (what a client reads
/// from a possibly hostile server) likewise.
pub fn request(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::Rejected;
    match decode_body::<Request>(data) {
        Ok(r) => {
            round_trip(&r);
            outcome = Outcome::Accepted;
        }
        Err(e) => assert!(matches!(e, ProtocolError::Decode(_)), "{e}"),
    }
    match decode_body::<Response>(data) {
        Ok(r) => {
            round_trip(&r);
            outcome = Outcome::Accepted;
        }
        Err(e) => assert!(matches!(e, ProtocolError::Decode(_)), "{e}"),
    }
    outcome
}

/// `image`: bytes decode to an RGB image within the limits, or to a bad-input error; an
/// accepted image's header probe agrees with it (up to an EXIF rotation).
pub fn image(data: &[u8]) -> Outcome {
    let limits = IMAGE_LIMITS;
    match vsa_models::decode_rgb(data, &limits) {
        Ok(img) => {
            let (w, h) = img.dimensions();
            assert!(w > 0 && h > 0, "empty image {w}x{h}");
            assert!(w <= limits.max_side && h <= limits.max_side, "{w}x{h}");
            assert!(u64::from(w) * u64::from(h) <= limits.max_pixels, "{w}x{h}");
            let probed = vsa_models::decode::probe(data, &limits);
            let Ok((_, pw, ph)) = probed else {
                panic!("decoded {w}x{h} but the probe failed: {probed:?}");
            };
            assert!(
                (pw, ph) == (w, h) || (ph, pw) == (w, h),
                "{pw}x{ph} vs {w}x{h}"
            );
            Outcome::Accepted
        }
        Err(e) => {
            assert!(e.is_bad_input(), "not a bad-input error: {e}");
            Outcome::Rejected
        }
    }
}

/// `wal`: the in-memory scanner (`decode_records`) and the replay reader (`scan_segment`)
/// agree on every input, as given and with its CRCs fixed up.
pub fn wal(data: &[u8]) -> Outcome {
    let raw = wal_pass(data);
    let fixed = wal_pass(&fix_crcs(data, 0));
    if raw == Outcome::Accepted || fixed == Outcome::Accepted {
        Outcome::Accepted
    } else {
        Outcome::Rejected
    }
}

fn wal_pass(data: &[u8]) -> Outcome {
    let scan = decode_records(data);
    assert!(scan.valid_len <= data.len());
    let mut report = ReplayReport::default();
    let mut replayed = Vec::new();
    let end = scan_segment(&mut &data[..], data.len() as u64, &mut report, &mut |r| {
        replayed.push(r);
        true
    });
    let end = match end {
        Ok(end) => end,
        Err(e) => panic!("reading memory failed: {e}"),
    };
    assert_eq!(report.records, replayed.len() as u64);
    assert_eq!(replayed.len(), scan.records.len(), "{end:?} vs {scan:?}");
    match (&end, &scan.corruption) {
        (SegmentEnd::Complete, None) => assert_eq!(scan.valid_len, data.len()),
        (SegmentEnd::Torn { offset, .. }, Some(_)) => {
            assert_eq!(*offset, scan.valid_len as u64);
        }
        other => panic!("the scanners disagree: {other:?}"),
    }
    for (a, b) in replayed.iter().zip(&scan.records) {
        let bytes = encode(encode_record(a));
        assert_eq!(
            bytes,
            encode(encode_record(b)),
            "the scanners decoded different records"
        );
        // The record round-trips, and what replay does with an upsert cannot fail.
        let (again, used) = match record::next_record(&bytes) {
            Ok(r) => r,
            Err(e) => panic!("a re-encoded record does not decode: {e}"),
        };
        assert_eq!(used, bytes.len());
        assert_eq!(encode(encode_record(&again)), bytes);
        if let WalOp::Upsert { item, .. } = &a.op {
            let _ = ItemRecord::from(item.clone());
        }
    }
    if scan.records.is_empty() {
        Outcome::Rejected
    } else {
        Outcome::Accepted
    }
}

/// `snapshot`: a snapshot decodes to exactly the items its header promises, or to a
/// `Corrupt` error; as given and with its CRCs fixed up.
pub fn snapshot(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::Rejected;
    for bytes in [data.to_vec(), fix_crcs(data, 12)] {
        match snapshot::decode(&bytes) {
            Ok(s) => {
                assert_eq!(s.items.len() as u64, s.header.items);
                outcome = Outcome::Accepted;
            }
            Err(e) => assert!(matches!(e, DurabilityError::Corrupt(_)), "{e}"),
        }
    }
    outcome
}

/// `model`: a model file decodes to exactly the parts its header record promises, each of
/// them usable (the encoder encodes, the prototypes and centroids are finite rows), and the
/// state re-encodes to a file that decodes and re-encodes to the same bytes (what the next
/// checkpoint writes after a restore); or it is a `Corrupt` error. As given and with its
/// CRCs fixed up.
pub fn model(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::Rejected;
    for bytes in [data.to_vec(), fix_crcs(data, 12)] {
        match model::decode(&bytes) {
            Ok(state) => {
                check_model(&bytes, &state);
                outcome = Outcome::Accepted;
            }
            Err(e) => assert!(matches!(e, DurabilityError::Corrupt(_)), "{e}"),
        }
    }
    outcome
}

fn check_model(bytes: &[u8], state: &ModelState) {
    // The header record (right after the magic and version) names the parts that follow.
    let header = bytes.get(12..).and_then(|rest| {
        let (len, crc) = record::parse_header(rest).ok()??;
        let payload = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
        record::decode_payload::<ModelHeader>(payload, crc).ok()
    });
    let Some(header) = header else {
        panic!("a model file decoded without a readable header record");
    };
    let encoder = state.encoder.as_ref().map(|e| (e.generation, e.fitted_at));
    assert_eq!(encoder, header.encoder);
    assert_eq!(
        state.prototypes.as_ref().map(|(_, at)| *at),
        header.prototypes
    );
    assert_eq!(state.centroids.is_some(), header.centroids);
    if let Some(e) = &state.encoder {
        let e = &e.encoder;
        let probe = vec![1.0f32; e.input_dims()];
        let query = match e.encode_query(&probe) {
            Ok(q) => q,
            Err(err) => panic!("a decoded encoder cannot encode: {err}"),
        };
        assert_eq!(query.reduced.len(), e.dims());
        if let Err(err) = e.encode(&probe) {
            panic!("a decoded encoder cannot encode an item: {err}");
        }
    }
    if let Some((p, _)) = &state.prototypes {
        assert!(p.dim > 0 && p.data.len().is_multiple_of(p.dim));
        assert!(p.data.iter().all(|x| x.is_finite()));
    }
    if let Some(c) = &state.centroids {
        assert!(c.iter().flat_map(|(_, v)| v).all(|x| x.is_finite()));
    }
    // Checking the state against an embedding size is a verdict, never a panic.
    for dim in [
        0,
        1,
        state.encoder.as_ref().map_or(8, |e| e.encoder.input_dims()),
    ] {
        match state.check_dim(dim) {
            Ok(()) | Err(DurabilityError::Incompatible(_)) => {}
            Err(e) => panic!("check_dim({dim}): {e}"),
        }
    }
    let again = encode(model::encode(state));
    match model::decode(&again) {
        Ok(s) => assert_eq!(
            encode(model::encode(&s)),
            again,
            "the round trip changed the state"
        ),
        Err(e) => panic!("a re-encoded model file does not decode: {e}"),
    }
}

/// Recomputes the CRC of every whole `[len][crc][payload]` record from byte `start` on, so
/// that a mutated payload reaches the decoder behind the checksum.
pub fn fix_crcs(data: &[u8], start: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = start;
    while let Some(h) = out.get(at..at + RECORD_HEADER) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let body = at + RECORD_HEADER;
        if len > MAX_RECORD || body + len > out.len() {
            break;
        }
        let crc = crc32fast::hash(&out[body..body + len]);
        out[at + 4..body].copy_from_slice(&crc.to_le_bytes());
        at = body + len;
    }
    out
}

/// A value encodes, re-decodes and re-encodes to the same bytes.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let bytes = match encode_body(value) {
        Ok(b) => b,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    };
    let again: T = match decode_body(&bytes) {
        Ok(v) => v,
        Err(e) => panic!("a re-encoded message does not decode: {e}"),
    };
    assert_eq!(
        encode(encode_body(&again)),
        bytes,
        "the round trip changed the message"
    );
}

fn encode<E: std::fmt::Display>(r: std::result::Result<Vec<u8>, E>) -> Vec<u8> {
    match r {
        Ok(b) => b,
        Err(e) => panic!("encoding a decoded value failed: {e}"),
    }
}

/// A comparable summary of a read: the re-encoded message, EOF, or the error's text.
fn summary(r: &vsa_protocol::Result<Option<Request>>) -> Result<Option<Vec<u8>>, String> {
    match r {
        Ok(Some(req)) => Ok(Some(encode(encode_body(req)))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls a future over an in-memory stream to completion (it never waits).
fn poll_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("a read over memory did not complete");
}

/// An in-memory connection: reads hand out at most `chunk` bytes; writes are discarded.
struct Wire<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl<'a> Wire<'a> {
    fn new(data: &'a [u8], chunk: usize) -> Wire<'a> {
        Wire { rest: data, chunk }
    }

    fn next_chunk(&mut self, room: usize) -> &'a [u8] {
        let n = room.min(self.chunk).min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let head = self.next_chunk(buf.len());
        buf[..head.len()].copy_from_slice(head);
        Ok(head.len())
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let head = self.next_chunk(buf.remaining());
        buf.put_slice(head);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
