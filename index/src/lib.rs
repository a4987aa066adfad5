//! `vsa-index`: the binary index. It owns the encoder (L2 normalise → PCA → ITQ → sign bits,
//! plus int8 reduced vectors for rerank), the codes and the Hamming scan, the shard (columns,
//! tombstones, upserts, compaction, attribute postings and filters, search with rerank) and
//! the shard's serialised form. A leaf crate: it depends on no other vsa crate, does no I/O
//! and runs no actors.
//!
//! Modules:
//! - [`encoder`]: [`Encoder`] training and encoding, [`Encoded`], [`QueryVector`].
//! - [`code`]: [`Code`] and [`hamming`].
//! - [`scan`]: the scan kernels (AVX-512 VPOPCNTDQ or portable) and exact top-R selection.
//! - [`filter`]: [`Filter`] and the `key=value` postings.
//! - [`shard`]: [`Shard`] — updates, `search`, snapshot.
//! - `linalg` (private): GEMM, eigen, polar factor, seeded RNG.
//! - `idmap` (private): the compact id → row table.

pub mod code;
pub mod encoder;
pub mod filter;
mod idmap;
mod linalg;
pub mod scan;
pub mod shard;
pub mod whiten;

pub use code::{Code, hamming};
pub use encoder::{ENCODER_VERSION, Encoded, Encoder, EncoderConfig, QueryVector, quantise};
pub use filter::Filter;
pub use scan::{Kernel, best_kernel};
pub use shard::search::MAX_QUERY_VECTORS;
pub use shard::{Hit, Query, SHARD_VERSION, SearchParams, Shard, StoredVector};
pub use whiten::{ScatterAccumulator, WHITENING_VERSION, Whitening, WhiteningState};

/// Errors of the index. Expected outcomes (an unknown id) are values (`Option`, `bool`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is wrong (dimensions, non-finite values, too many vectors).
    #[error("bad input: {0}")]
    BadInput(String),
    /// A serialised encoder or shard could not be read or written.
    #[error("codec: {0}")]
    Codec(String),
    /// The shard holds the most rows a u32 row index can address.
    #[error("shard is full")]
    Full,
}

/// Result of the index.
pub type Result<T> = std::result::Result<T, Error>;
