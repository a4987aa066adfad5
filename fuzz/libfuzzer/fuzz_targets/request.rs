//! libFuzzer entry point of the `request` target (see `vsa_fuzz::targets::request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::request(data);
});
