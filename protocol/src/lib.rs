//! `vsa-protocol`: the wire types, the frame codec and the clients of vsa's TCP protocol.
//!
//! A leaf crate (serde, bincode, tokio, thiserror; no other vsa crate), so the server, the
//! operator console and scripts share one definition of the protocol and the server's insides
//! can change without breaking its clients.
//!
//! Modules:
//! - [`frame`]: the frame format (u32 big-endian length + bincode body), limits, encoding and
//!   the never-panicking decoder;
//! - [`types`]: [`Request`], [`Response`] and one small type per request kind, plus
//!   [`PROTOCOL_VERSION`] and the rules for evolving them;
//! - [`error_code`]: the exhaustive table of wire [`ErrorCode`]s (code, class, retryable);
//! - [`error`]: the crate's [`ProtocolError`] and [`Result`];
//! - [`connection`]: the async framed [`Connection`] both sides use;
//! - [`client`]: the async [`Client`] (handshake, typed calls, raw `call`, pipelining);
//! - [`blocking`]: [`BlockingConnection`] and [`BlockingClient`] over `std::io`.
//!
//! ```no_run
//! # async fn demo() -> vsa_protocol::Result<()> {
//! use vsa_protocol::{Client, QueryInput, SearchRequest};
//!
//! let mut client = Client::connect("127.0.0.1:7070").await?;
//! let photo = std::fs::read("shoe.jpg")?;
//! let found = client.search(SearchRequest::new(QueryInput::Image(photo), 10)).await?;
//! for hit in &found.hits {
//!     println!("{} {:.3}", hit.id, hit.score);
//! }
//! # Ok(())
//! # }
//! ```

pub mod blocking;
pub mod client;
pub mod connection;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod types;

pub use blocking::{BlockingClient, BlockingConnection};
pub use client::{Client, ClientOptions};
pub use connection::Connection;
pub use error::{ProtocolError, Result};
pub use error_code::{ErrorClass, ErrorCode, UnknownErrorCode};
pub use frame::{DEFAULT_MAX_FRAME, DEFAULT_MAX_SKIP, FrameLimits};
pub use types::*;
