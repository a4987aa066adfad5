//! `ErrorReply`: how every failure travels.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// A failed request: a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The stable code (see [`ErrorCode`]).
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorReply {
    /// An error reply with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
