//! libFuzzer entry point of the `snapshot` target (see `vsa_fuzz::targets::snapshot`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::snapshot(data);
});
