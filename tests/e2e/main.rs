//! End-to-end tests: the real `compute-bridge` binary against real peers.

mod authoring;
mod cli;
mod dashboard;

/// The binary under test.
pub fn bridge_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_compute-bridge"))
}
