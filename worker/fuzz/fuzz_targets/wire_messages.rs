#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| harrow_worker::fuzz_targets::wire_messages(data));
