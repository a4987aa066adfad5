//! Integration suite of `vsa-protocol`: codec round trips, allocation bounds, connections and
//! clients against an in-process server.

mod alloc_bounds;
mod clients;
mod connection;
mod roundtrip;
mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Tracking = support::alloc::Tracking;
