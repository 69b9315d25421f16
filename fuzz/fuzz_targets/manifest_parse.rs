#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cattle_fuzz_targets::manifest_parse(data);
});
