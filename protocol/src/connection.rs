//! [`Connection`]: framed, buffered messages over any tokio byte stream.
//!
//! Used by both sides: the server reads requests and writes responses, the client does the
//! opposite. Reads are buffered; each message is written with one `write_all` and flushed.
//!
//! The connection tracks whether it stands at a frame boundary. After
//! [`ProtocolError::Decode`] it does (the body was read whole), after
//! [`ProtocolError::FrameTooLarge`] it does once the oversized body is skipped (done by the
//! next read, up to [`FrameLimits::max_skip`]); after an i/o error, a truncated frame, or a
//! read or write future dropped mid-frame it does not, and every later call answers
//! [`ProtocolError::Desynchronized`]. [`Connection::is_usable`] tells a server whether to
//! keep reading or to answer and close.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::{ProtocolError, Result};
use crate::frame::{self, FrameLimits, READ_INTERRUPTED, ReadState, WRITE_INTERRUPTED};
use crate::types::{Request, Response};

/// A framed, buffered message stream (see the module docs).
#[derive(Debug)]
pub struct Connection<S> {
    stream: BufReader<S>,
    limits: FrameLimits,
    read_state: ReadState,
    /// Why writing is impossible, if it is.
    write_broken: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a stream with the default limits.
    pub fn new(stream: S) -> Connection<S> {
        Connection::with_limits(stream, FrameLimits::default())
    }

    /// Wraps a stream with these limits.
    pub fn with_limits(stream: S, limits: FrameLimits) -> Connection<S> {
        Connection {
            stream: BufReader::new(stream),
            limits,
            read_state: ReadState::Ready,
            write_broken: None,
        }
    }

    /// This connection's limits.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }

    /// Whether another read can find a frame boundary (possibly after skipping an oversized
    /// body). A server answers an error and closes when this is false.
    pub fn is_usable(&self) -> bool {
        !matches!(self.read_state, ReadState::Broken(_)) && self.write_broken.is_none()
    }

    /// The length of an oversized body the next read will discard first, if any.
    pub fn pending_skip(&self) -> Option<u64> {
        match self.read_state {
            ReadState::Skip(len) => Some(len),
            _ => None,
        }
    }

    /// Reads one frame body; `Ok(None)` on a clean EOF at a frame boundary.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        // Left in place if this future is dropped mid-frame.
        let state = std::mem::replace(
            &mut self.read_state,
            ReadState::Broken(READ_INTERRUPTED.into()),
        );
        match state {
            ReadState::Ready => {}
            ReadState::Skip(len) => {
                if let Err(e) = frame::skip_body(&mut self.stream, len).await {
                    self.read_state = ReadState::Broken(format!("skipping a frame failed: {e}"));
                    return Err(e);
                }
            }
            ReadState::Broken(why) => {
                self.read_state = ReadState::Broken(why.clone());
                return Err(ProtocolError::Desynchronized(why));
            }
        }
        match frame::read_frame(&mut self.stream, self.limits.max_frame).await {
            Ok(body) => {
                self.read_state = ReadState::Ready;
                Ok(body)
            }
            Err(ProtocolError::FrameTooLarge { len, max }) => {
                self.read_state = ReadState::after_oversize(len, &self.limits);
                Err(ProtocolError::FrameTooLarge { len, max })
            }
            Err(e) => {
                self.read_state = ReadState::Broken(format!("an earlier read failed: {e}"));
                Err(e)
            }
        }
    }

    /// Reads and decodes one message; `Ok(None)` on a clean EOF.
    pub async fn read_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.read_frame().await? {
            Some(body) => frame::decode_body(&body).map(Some),
            None => Ok(None),
        }
    }

    /// Server side: reads the next request; `Ok(None)` when the client hung up cleanly.
    pub async fn read_request(&mut self) -> Result<Option<Request>> {
        self.read_message().await
    }

    /// Client side: reads the next response; `Ok(None)` when the server hung up cleanly.
    pub async fn read_response(&mut self) -> Result<Option<Response>> {
        self.read_message().await
    }

    /// Writes bytes that are already framed (as [`frame::encode_frame`] makes them) and
    /// flushes. Tests also use it to send deliberately malformed bytes.
    pub async fn write_raw(&mut self, frame: &[u8]) -> Result<()> {
        if let Some(why) = &self.write_broken {
            return Err(ProtocolError::Desynchronized(why.clone()));
        }
        self.write_broken = Some(WRITE_INTERRUPTED.into());
        let written = async {
            self.stream.write_all(frame).await?;
            self.stream.flush().await
        }
        .await;
        match written {
            Ok(()) => {
                self.write_broken = None;
                Ok(())
            }
            Err(e) => {
                self.write_broken = Some(format!("an earlier write failed: {e}"));
                Err(e.into())
            }
        }
    }

    /// Encodes and writes one message. A message over `max_frame` is refused with
    /// [`ProtocolError::FrameTooLarge`] before anything is written.
    pub async fn write_message<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<()> {
        let frame = frame::encode_frame(message, self.limits.max_frame)?;
        self.write_raw(&frame).await
    }

    /// Client side: writes a request.
    pub async fn write_request(&mut self, request: &Request) -> Result<()> {
        self.write_message(request).await
    }

    /// Server side: writes a response.
    pub async fn write_response(&mut self, response: &Response) -> Result<()> {
        self.write_message(response).await
    }
}
