#![no_main]
//! libFuzzer entry for [`compute_bridge_fuzz::workload_key`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_bridge_fuzz::workload_key(data));
