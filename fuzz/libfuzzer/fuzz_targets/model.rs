//! libFuzzer entry point of the `model` target (see `vsa_fuzz::targets::model`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vsa_fuzz::model(data);
});
