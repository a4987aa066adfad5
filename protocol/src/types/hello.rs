//! `Hello`: the handshake that opens every connection.

use serde::{Deserialize, Serialize};

/// The first request on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Free-form client name and version, for the server's logs (e.g. `"vsa-tui 0.1.0"`).
    pub client: String,
    /// A session token, if the server requires one.
    pub token: Option<String>,
}

impl Hello {
    /// A `Hello` for this crate's protocol version.
    pub fn new(client: impl Into<String>, token: Option<String>) -> Hello {
        Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            client: client.into(),
            token,
        }
    }
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The server's protocol version.
    pub protocol_version: u32,
    /// Server name and version, e.g. `"vsa 0.1.0"`.
    pub server: String,
}
