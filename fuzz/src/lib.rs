//! `vsa-fuzz`: fuzz targets for every decoder that reads bytes vsa did not write itself, and
//! a driver for them that runs on the stable toolchain.
//!
//! One function per target, `fn <target>(data: &[u8]) -> Outcome`, each feeding the bytes to
//! the real decoder (no copies of its code) and asserting the invariants a caller relies on; a
//! panic, failed assertion or allocation over the target's cap is a *finding*:
//!
//! | target     | decoder                                                                   |
//! |------------|---------------------------------------------------------------------------|
//! | `frame`    | `BlockingConnection::read_request` over a byte stream; blocking vs. async `read_frame` |
//! | `request`  | `frame::decode_body::<Request>` (and `::<Response>`), re-encode round trip |
//! | `image`    | `vsa_models::decode_rgb` with small [`targets::IMAGE_LIMITS`]              |
//! | `wal`      | `record::decode_records` vs. `wal::scan_segment` (the replay reader)      |
//! | `snapshot` | `snapshot::decode`                                                        |
//! | `model`    | `model::decode` (model-state files), re-encode round trip                 |
//!
//! The `wal`, `snapshot` and `model` targets decode each input twice: as given, and with the CRC of
//! every whole record recomputed, so that mutations get past the checksum into the bincode
//! record decoder behind it.
//!
//! Modules:
//! - [`targets`]: the target functions, their table ([`targets::TARGETS`]) and allocation caps;
//! - [`seeds`]: the seed corpus, made in code with the crates' own encoders;
//! - [`mutate`]: the mutator (bit flips, interesting values, length-field edits, truncation,
//!   splicing, insertion/deletion, repeats);
//! - [`alloc`]: a counting global allocator that measures each input's peak;
//! - [`driver`]: the in-process loop (`catch_unwind`, allocation check, findings, report).
//!
//! `cargo run --release -p vsa-fuzz -- all --inputs 10M` runs it; `docs/FUZZING.md` explains
//! the command, what counts as a finding and the counts measured. `fuzz/libfuzzer/` wraps the
//! same functions for `cargo fuzz` (coverage-guided, needs `RUSTC_BOOTSTRAP=1` on stable).

pub mod alloc;
pub mod driver;
pub mod mutate;
pub mod seeds;
pub mod targets;

pub use targets::{Outcome, TARGETS, Target, frame, image, model, request, snapshot, wal};

#[cfg(test)]
mod tests;
