#![no_main]
//! libFuzzer entry for [`compute_bridge_fuzz::http_allow_list`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_bridge_fuzz::http_allow_list(data));
