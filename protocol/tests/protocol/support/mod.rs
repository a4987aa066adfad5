//! Shared helpers: value strategies, the allocation tracker and a toy server.

pub(crate) mod alloc;
pub(crate) mod server;
pub(crate) mod strategies;
