#![no_main]
//! libFuzzer entry for [`compute_bridge_fuzz::cloud_response`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_bridge_fuzz::cloud_response(data));
