//! The wire error codes: one exhaustive table (code, class, retryable).
//!
//! Every failure the server reports is a [`crate::ErrorReply`] carrying one of these codes, so
//! clients, scripts and the console can branch on a stable string instead of parsing messages.
//! The table is written once, in `make_error_codes!`; `as_str`, `class`, `retryable`,
//! `FromStr` and [`ErrorCode::ALL`] are all generated from it, so they cannot disagree.
//!
//! On the wire a code travels as its snake_case string (not as a variant index), so the table
//! may be reordered freely. Codes are only ever added: an older peer that meets a code it does
//! not know decodes it as [`ErrorCode::Internal`] and still sees the message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of failure a code is; lets a caller decide what to do without knowing every code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The request was malformed or invalid; sending it again will fail again.
    BadRequest,
    /// The request named something (an item, a category) that does not exist.
    NotFound,
    /// The request lacked a valid token.
    Unauthorized,
    /// The server is overloaded; back off and retry.
    Busy,
    /// The server (or part of it) cannot serve right now; retry later.
    Unavailable,
    /// A bug or an unexpected failure on the server.
    Internal,
}

impl ErrorClass {
    /// The class's snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Busy => "busy",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generates [`ErrorCode`] and its lookups from one table of
/// `Variant => ("code", Class, retryable)` rows.
macro_rules! make_error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident => ($code:literal, $class:ident, $retryable:literal) ),+ $(,)?) => {
        /// A stable, machine-readable error code (see the table in the crate README).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            /// The stable snake_case string of this code (what travels on the wire).
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )+ }
            }

            /// The class of failure this code belongs to.
            pub const fn class(self) -> ErrorClass {
                match self { $( ErrorCode::$variant => ErrorClass::$class, )+ }
            }

            /// Whether the same request may succeed if sent again later.
            pub const fn retryable(self) -> bool {
                match self { $( ErrorCode::$variant => $retryable, )+ }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $code => Ok(ErrorCode::$variant), )+
                    other => Err(UnknownErrorCode(other.to_owned())),
                }
            }
        }
    };
}

make_error_codes! {
    /// The frame body could not be decoded (garbage bytes, truncated body, trailing bytes).
    BadFrame => ("bad_frame", BadRequest, false),
    /// The declared frame length exceeds the receiver's limit.
    FrameTooLarge => ("frame_too_large", BadRequest, false),
    /// The request decoded but is invalid (k = 0, empty id, wrong embedding size, ...).
    BadRequest => ("bad_request", BadRequest, false),
    /// The client's protocol version is not supported, or no Hello came first.
    UnsupportedVersion => ("unsupported_version", BadRequest, false),
    /// The image bytes could not be decoded (truncated, unknown format, bomb).
    InvalidImage => ("invalid_image", BadRequest, false),
    /// The image is larger than the server accepts (bytes or pixels).
    ImageTooLarge => ("image_too_large", BadRequest, false),
    /// No item has this id.
    UnknownItem => ("unknown_item", NotFound, false),
    /// No category has this name.
    UnknownCategory => ("unknown_category", NotFound, false),
    /// A filter clause names an unknown attribute or is malformed.
    InvalidFilter => ("invalid_filter", BadRequest, false),
    /// The request needs a valid (admin) token.
    Unauthorized => ("unauthorized", Unauthorized, false),
    /// A bounded queue is full; back off and retry.
    Busy => ("busy", Busy, true),
    /// A needed component (a shard, the model) is down; retry later.
    Unavailable => ("unavailable", Unavailable, true),
    /// The request did not finish in time.
    Timeout => ("timeout", Unavailable, true),
    /// The server is starting (loading the model, replaying the log); retry later.
    NotReady => ("not_ready", Unavailable, true),
    /// An unexpected failure on the server (a bug).
    Internal => ("internal", Internal, false),
    /// A click names a query id the server does not know (never issued, or aged out of the
    /// query log).
    UnknownQuery => ("unknown_query", NotFound, false),
    /// The session's API key is read-only and the request changes something.
    Forbidden => ("forbidden", Unauthorized, false),
    /// This client sent more requests than its rate limit allows; slow down and retry.
    RateLimited => ("rate_limited", Busy, true),
}

impl ErrorCode {
    /// Parses a code, mapping unknown strings to [`ErrorCode::Internal`] (what an older peer
    /// does with a code added after it was built).
    pub fn parse_lossy(s: &str) -> ErrorCode {
        s.parse().unwrap_or(ErrorCode::Internal)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;

        impl serde::de::Visitor<'_> for CodeVisitor {
            type Value = ErrorCode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error code string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ErrorCode, E> {
                Ok(ErrorCode::parse_lossy(v))
            }
        }

        // `deserialize_str` lets bincode's borrowing decoder hand out a slice of the frame,
        // so an unknown code costs no allocation.
        deserializer.deserialize_str(CodeVisitor)
    }
}

/// The error of [`ErrorCode::from_str`]: the string is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code `{0}`")]
pub struct UnknownErrorCode(pub String);

#[cfg(test)]
mod tests;
