//! Shared helpers for the vsa benchmarks (see `benches/README.md`).
