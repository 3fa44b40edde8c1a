#![no_main]
//! libFuzzer entry for [`compute_bridge_fuzz::envelope`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_bridge_fuzz::envelope(data));
