//! Framing: a u32 big-endian body length, then a bincode body (standard config).
//!
//! ```text
//! +----------------+------------------------------+
//! | len: u32 (BE)  | body: len bytes of bincode   |
//! +----------------+------------------------------+
//! ```
//!
//! The reader checks `len` against `max_frame` **before** allocating anything, and then grows
//! the body buffer only as bytes actually arrive, so a peer that declares 16 MiB and sends
//! nothing costs 64 KiB, not 16 MiB. `read_frame` returns `Ok(None)` only for a clean EOF at
//! a frame boundary; EOF anywhere else is [`ProtocolError::Truncated`].
//!
//! An oversized declaration is [`ProtocolError::FrameTooLarge`] with the body left unread.
//! The stateful readers (`Connection`, `BlockingConnection`) then remember the pending body
//! and, on the next read, discard it in fixed-size chunks if it is at most
//! [`FrameLimits::max_skip`] bytes (default 256 MiB), so a peer that really sent a too-large
//! request gets an error reply and keeps its connection. A declaration beyond `max_skip` (a
//! garbage header, e.g. an HTTP request's `"GET "` reads as 1.2 GB) leaves the connection
//! unusable: the caller should answer the error and close.
//!
//! Decoding ([`decode_body`]) never panics. bincode allocates a string's declared length
//! before reading it, so the body is decoded with a bincode allocation limit sized from the
//! body ([`decode_limit`]); byte fields borrow from the body and are length-checked first.

use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{ProtocolError, Result};

/// Length of the frame header (the big-endian u32 body length).
pub const HEADER_LEN: usize = 4;

/// Default largest accepted frame body: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;

/// Default largest oversized body that is read and discarded to keep a connection usable.
pub const DEFAULT_MAX_SKIP: u64 = 256 << 20;

/// The first chunk of a body buffer; it grows (doubling, capped at the declared length) only
/// as bytes arrive.
const INITIAL_CHUNK: usize = 64 << 10;

/// Size limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame body accepted (and sent): larger ones are [`ProtocolError::FrameTooLarge`].
    pub max_frame: u32,
    /// Largest oversized body that is skipped so the connection stays usable; beyond it the
    /// connection is given up.
    pub max_skip: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame: DEFAULT_MAX_FRAME,
            max_skip: DEFAULT_MAX_SKIP,
        }
    }
}

impl FrameLimits {
    /// Default limits with this `max_frame`.
    pub fn with_max_frame(max_frame: u32) -> FrameLimits {
        FrameLimits {
            max_frame,
            ..FrameLimits::default()
        }
    }
}

/// Encodes `value` as a whole frame (header + body), refusing bodies over `max_frame`.
///
/// A first, counting pass sizes the body: an oversized message is refused before any buffer
/// is allocated, and the buffer is allocated once, exactly. The result is ready for one
/// `write_all`; nothing is written anywhere on failure.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T, max_frame: u32) -> Result<Vec<u8>> {
    let config = bincode::config::standard();
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config).map_err(ProtocolError::encode)?;
    let len = size.bytes_written;
    let declared = u32::try_from(len).ok().filter(|&l| l <= max_frame).ok_or(
        ProtocolError::FrameTooLarge {
            len: len as u64,
            max: u64::from(max_frame),
        },
    )?;
    let mut buf = Vec::with_capacity(HEADER_LEN + len);
    buf.extend_from_slice(&declared.to_be_bytes());
    bincode::serde::encode_into_std_write(value, &mut buf, config)
        .map_err(ProtocolError::encode)?;
    debug_assert_eq!(buf.len(), HEADER_LEN + len);
    Ok(buf)
}

/// Encodes `value` as a bare body (no header), as [`decode_body`] expects it.
pub fn encode_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(ProtocolError::encode)
}

/// Reads the body length from a header and checks it against `max_frame`.
pub fn check_header(header: [u8; HEADER_LEN], max_frame: u32) -> Result<usize> {
    let len = u32::from_be_bytes(header);
    if len > max_frame {
        return Err(ProtocolError::FrameTooLarge {
            len: u64::from(len),
            max: u64::from(max_frame),
        });
    }
    usize::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
        len: u64::from(len),
        max: usize::MAX as u64,
    })
}

/// Bytes of bincode "claims" a legitimate body can make per encoded byte: a varint u64 (a
/// length prefix, a counter) claims 8 bytes for as little as 1 encoded byte.
const CLAIM_FACTOR: usize = 8;
/// Claim allowance independent of the body size.
const CLAIM_SLACK: usize = 64;

const fn class_limit(bits: u32) -> usize {
    if bits >= usize::BITS {
        usize::MAX
    } else {
        1usize << bits
    }
}

/// Generates [`decode_limit`] and the dispatch in [`decode_body`] from one list of size
/// classes (bincode's limit is a const generic, so each class is one instantiation).
macro_rules! limit_classes {
    ($($bits:literal),+) => {
        /// The bincode allocation limit used to decode a body of `body_len` bytes: the smallest
        /// size class of at least `8 * body_len + 64`.
        ///
        /// A legitimate body never claims more than this; a hostile length prefix inside the
        /// body can make the decoder allocate at most this much (uncommitted, zeroed memory),
        /// once, before the decode fails.
        pub fn decode_limit(body_len: usize) -> usize {
            let needed = body_len.saturating_mul(CLAIM_FACTOR).saturating_add(CLAIM_SLACK);
            $( if needed <= class_limit($bits) { return class_limit($bits); } )+
            usize::MAX
        }

        fn decode_in_class<T: DeserializeOwned>(body: &[u8], limit: usize) -> Result<T> {
            $( if limit <= class_limit($bits) {
                return decode_limited::<T, { class_limit($bits) }>(body);
            } )+
            decode_limited::<T, { usize::MAX }>(body)
        }
    };
}

// Classes grow by 4x from 4 KiB to 64 GiB: few instantiations, and the limit is at most 4x
// what a body could legitimately claim.
limit_classes!(12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36);

/// Decodes one message from a complete frame body. Never panics; trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    decode_in_class(body, decode_limit(body.len()))
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(body: &[u8]) -> Result<T> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    // The borrowing decoder length-checks byte strings against the body before copying them.
    let (value, read) = bincode::serde::borrow_decode_from_slice::<T, _>(body, config)
        .map_err(ProtocolError::decode)?;
    if read != body.len() {
        return Err(ProtocolError::Decode(format!(
            "{} trailing bytes after the message",
            body.len() - read
        )));
    }
    Ok(value)
}

/// Reads one frame body from an async reader.
///
/// `Ok(None)` is a clean EOF before the first header byte. On
/// [`ProtocolError::FrameTooLarge`] the body is left unread (see [`skip_body`]). Not
/// cancel-safe: dropping the future mid-frame loses the stream position.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame: u32,
) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(ProtocolError::Truncated)
            };
        }
        filled += n;
    }
    let len = check_header(header, max_frame)?;
    let mut body = Vec::with_capacity(len.min(INITIAL_CHUNK));
    let mut filled = 0;
    while filled < len {
        grow(&mut body, filled, len);
        let n = reader.read(&mut body[filled..]).await?;
        if n == 0 {
            return Err(ProtocolError::Truncated);
        }
        filled += n;
    }
    Ok(Some(body))
}

/// Reads and discards `len` body bytes from an async reader (after
/// [`ProtocolError::FrameTooLarge`]), in fixed-size chunks.
pub async fn skip_body<R: AsyncRead + Unpin>(reader: &mut R, len: u64) -> Result<()> {
    let copied = tokio::io::copy(&mut reader.take(len), &mut tokio::io::sink()).await?;
    if copied < len {
        return Err(ProtocolError::Truncated);
    }
    Ok(())
}

/// Blocking [`read_frame`] over any [`std::io::Read`].
pub fn read_frame_blocking<R: Read>(reader: &mut R, max_frame: u32) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = check_header(header, max_frame)?;
    let mut body = Vec::with_capacity(len.min(INITIAL_CHUNK));
    let mut filled = 0;
    while filled < len {
        grow(&mut body, filled, len);
        match reader.read(&mut body[filled..]) {
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(body))
}

/// Blocking [`skip_body`].
pub fn skip_body_blocking<R: Read>(reader: &mut R, len: u64) -> Result<()> {
    let copied = std::io::copy(&mut reader.take(len), &mut std::io::sink())?;
    if copied < len {
        return Err(ProtocolError::Truncated);
    }
    Ok(())
}

/// Makes room to read more body bytes when `filled` reached the initialised length: double
/// it (at least one chunk), never past `len`, and reserve exactly that much.
fn grow(body: &mut Vec<u8>, filled: usize, len: usize) {
    if filled == body.len() {
        let extra = (len - body.len()).min(body.len().max(INITIAL_CHUNK));
        body.reserve_exact(extra);
        body.resize(body.len() + extra, 0);
    }
}

/// Where a stateful reader stands between frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// At a frame boundary.
    Ready,
    /// An oversized body of this many bytes must be discarded before the next frame.
    Skip(u64),
    /// The position is unknown; the connection cannot be read any more.
    Broken(String),
}

impl ReadState {
    /// The state to leave after `FrameTooLarge { len }`.
    pub(crate) fn after_oversize(len: u64, limits: &FrameLimits) -> ReadState {
        if len <= limits.max_skip {
            ReadState::Skip(len)
        } else {
            ReadState::Broken(format!(
                "the peer declared a {len}-byte frame, beyond the {}-byte skip limit",
                limits.max_skip
            ))
        }
    }
}

/// What a read leaves behind while it is in progress: if its future is dropped (a timeout, a
/// `select!`), the reader stays here.
pub(crate) const READ_INTERRUPTED: &str = "a read was interrupted mid-frame";
/// Same for writes.
pub(crate) const WRITE_INTERRUPTED: &str = "a write was interrupted mid-frame";

#[cfg(test)]
mod tests;
