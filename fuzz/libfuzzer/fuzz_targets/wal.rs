//! libFuzzer entry point of the `wal` target (see `vsa_fuzz::targets::wal`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::wal(data);
});
