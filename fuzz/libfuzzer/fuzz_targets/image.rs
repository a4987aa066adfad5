//! libFuzzer entry point of the `image` target (see `vsa_fuzz::targets::image`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::image(data);
});
