//! Shared helpers for the vsa benchmarks (see `benches/README.md`).
pub mod appliance;
