//! End-to-end tests: the real `compute-bridge` and `coalition-agent`
//! binaries against real peers.

mod access;
mod attest;
mod authoring;
mod baremetal;
mod bind;
mod cli;
mod coalition;
mod crash;
mod dashboard;
mod disk_full;
mod privacy;
mod readme;
mod relay;
mod returns;
mod support;
mod swap;

/// The binary under test.
pub fn bridge_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_compute-bridge"))
}
