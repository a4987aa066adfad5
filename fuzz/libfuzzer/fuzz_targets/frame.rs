//! libFuzzer entry point of the `frame` target (see `vsa_fuzz::targets::frame`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::frame(data);
});
