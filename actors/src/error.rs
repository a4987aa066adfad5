//! The crate's error type and its mapping onto the wire's stable error codes.

use vsa_protocol::ErrorCode;

/// What can go wrong serving a request. Bad input and expected outcomes (`Busy`, unknown ids)
/// are distinct variants so the server can answer with the right stable code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image or embedding was refused (format, size, limits).
    #[error(transparent)]
    Image(vsa_models::ModelError),
    /// A request field is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The item id is not in the catalogue.
    #[error("unknown item {0:?}")]
    UnknownItem(String),
    /// The category is not in the catalogue.
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    /// A click names a query the server does not remember.
    #[error("unknown query {0} (never issued, or aged out of the query log)")]
    UnknownQuery(u64),
    /// A request's frame body does not decode (decoded by the engine, not the server).
    #[error("undecodable request: {0}")]
    Undecodable(vsa_protocol::ProtocolError),
    /// A bounded queue is full; retry later.
    #[error("busy: {0}")]
    Busy(&'static str),
    /// A part of the engine did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A part of the engine is not running (restarting, stopped).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An internal fault (a bug or a failed dependency).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The stable wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Image(e) => match e {
                vsa_models::ModelError::TooManyBytes { .. }
                | vsa_models::ModelError::TooManyPixels { .. } => ErrorCode::ImageTooLarge,
                e if e.is_bad_input() => ErrorCode::InvalidImage,
                _ => ErrorCode::Internal,
            },
            EngineError::BadRequest(_) => ErrorCode::BadRequest,
            EngineError::Undecodable(_) => ErrorCode::BadFrame,
            EngineError::UnknownItem(_) => ErrorCode::UnknownItem,
            EngineError::UnknownCategory(_) => ErrorCode::UnknownCategory,
            EngineError::UnknownQuery(_) => ErrorCode::UnknownQuery,
            EngineError::Busy(_) => ErrorCode::Busy,
            EngineError::Timeout(_) => ErrorCode::Timeout,
            EngineError::Unavailable(_) => ErrorCode::Unavailable,
            EngineError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<vsa_models::ModelError> for EngineError {
    fn from(e: vsa_models::ModelError) -> Self {
        if e.is_bad_input() {
            EngineError::Image(e)
        } else {
            EngineError::Internal(e.to_string())
        }
    }
}

impl From<vsa_index::Error> for EngineError {
    fn from(e: vsa_index::Error) -> Self {
        match e {
            vsa_index::Error::BadInput(m) => EngineError::BadRequest(m),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

impl<T> From<ractor::RactorErr<T>> for EngineError {
    fn from(e: ractor::RactorErr<T>) -> Self {
        match e {
            ractor::RactorErr::Timeout => EngineError::Timeout("an actor".into()),
            other => EngineError::Unavailable(other.to_string()),
        }
    }
}

/// `Result` with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
