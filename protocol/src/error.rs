//! The crate's error type.
//!
//! [`ProtocolError`] covers both sides of a connection. At the server boundary,
//! [`ProtocolError::code`] / [`ProtocolError::to_reply`] sort a failure into a wire
//! [`ErrorCode`] (bad input vs. service fault); on the client side a server's
//! `Response::Error` becomes [`ProtocolError::Server`] in the typed methods.

use crate::error_code::ErrorCode;
use crate::types::ErrorReply;

/// Everything that can go wrong while framing, encoding, decoding or talking to a peer.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's declared (or encoded) body length exceeds the limit. Nothing was allocated;
    /// when reading, the body is still unread (see `Connection::is_usable`).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared or encoded body length.
        len: u64,
        /// The limit it was checked against.
        max: u64,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// A complete frame's body is not a valid message. The frame boundary is known, so the
    /// connection stays usable.
    #[error("cannot decode frame body: {0}")]
    Decode(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The server answered with an error (typed client methods only; `call` returns it as
    /// `Response::Error`).
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorReply),
    /// The server answered with a response of the wrong kind.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our [`crate::PROTOCOL_VERSION`].
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer did not answer in time. The connection is no longer usable.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection cleanly while an answer was expected.
    #[error("connection closed by peer")]
    Closed,
    /// The stream position is unknown (an interrupted read or write, an oversized frame that
    /// was not skipped) or request/response pairing would be lost; reconnect.
    #[error("connection unusable: {0}")]
    Desynchronized(String),
}

/// The crate's result type.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

impl ProtocolError {
    /// The wire code that describes this failure, for answering a peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::Truncated | ProtocolError::Decode(_) => ErrorCode::BadFrame,
            ProtocolError::VersionMismatch { .. } => ErrorCode::UnsupportedVersion,
            ProtocolError::Timeout => ErrorCode::Timeout,
            ProtocolError::Server(reply) => reply.code,
            ProtocolError::Io(_) | ProtocolError::Closed => ErrorCode::Unavailable,
            ProtocolError::Encode(_)
            | ProtocolError::UnexpectedResponse(_)
            | ProtocolError::Desynchronized(_) => ErrorCode::Internal,
        }
    }

    /// The error reply a server sends for this failure.
    pub fn to_reply(&self) -> ErrorReply {
        match self {
            ProtocolError::Server(reply) => reply.clone(),
            other => ErrorReply::new(other.code(), other.to_string()),
        }
    }

    /// Whether sending the same request again (on a new connection if this one is gone) may
    /// succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ProtocolError::Io(_) | ProtocolError::Closed | ProtocolError::Timeout => true,
            other => other.code().retryable(),
        }
    }

    pub(crate) fn decode(e: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Decode(e.to_string())
    }

    pub(crate) fn encode(e: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Encode(e.to_string())
    }
}

impl From<ErrorReply> for ProtocolError {
    fn from(reply: ErrorReply) -> Self {
        ProtocolError::Server(reply)
    }
}
