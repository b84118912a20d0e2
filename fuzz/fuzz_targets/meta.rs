#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kairos_extensions_fuzz::targets::meta::run(data));
