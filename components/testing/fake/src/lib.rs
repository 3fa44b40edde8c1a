//! A configurable fake backend for the host's tests and benchmarks.
//!
//! It touches nothing outside itself but the host's clock: provisioning
//! mints an instance whose life is computed from the time in its handle, so
//! `status` and `usage` are pure functions of the handle and the clock. The
//! logic lives in [`Fake`] ([`core`], over `compute_bridge_sdk::Host`), so
//! the host's benchmarks run the very same code natively beside the
//! sandboxed component (`component.rs` is only the wasm glue).
//! Keeps nothing between calls.

use serde::Deserialize;

pub mod core;

#[cfg(target_arch = "wasm32")]
mod component;

pub use crate::core::{Fake, Handle};
/// The SDK this fake is written against (its types are the core's).
pub use compute_bridge_sdk as sdk;

/// **Test only.** The bytes that precede the fake component's one-byte
/// flaky switch (`0` as built): a copy of the `.wasm` with that byte set to
/// `1` is a component whose `status` fails from 2 s after its first call
/// (`compute_bridge_testkit::flaky_fake` makes one; see `component.rs`).
pub const FLAKY_MARKER: &[u8] = b"compute-bridge-test-fake-flaky-switch:";

/// The `[backends.config]` table of a fake backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    /// Regions it claims.
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
    /// Whether it claims TDX.
    #[serde(default)]
    pub tdx_capable: bool,
    /// Declared CPU capacity.
    #[serde(default = "default_cpu")]
    pub max_cpu_millicores: u32,
    /// Declared memory capacity.
    #[serde(default = "default_ram")]
    pub max_ram_mib: u32,
    /// Largest grant `can-satisfy` accepts (defaults to the capacity).
    #[serde(default)]
    pub max_grant_cpu_millicores: Option<u32>,
    /// Seconds a workload reports `starting`.
    #[serde(default)]
    pub starting_seconds: u64,
    /// Seconds after provisioning at which the workload exits by itself.
    #[serde(default = "default_run")]
    pub run_seconds: u64,
    /// Exit code it reports.
    #[serde(default)]
    pub exit_code: i32,
    /// Every provision fails with this error kind (`no-capacity`,
    /// `transient`, `rejected`, `config`, `internal`).
    #[serde(default)]
    pub provision_error: Option<String>,
    /// Regions where every provision fails with `no-capacity` (the region
    /// is the grant's, or the first in `regions` for a grant without one).
    #[serde(default)]
    pub full_regions: Vec<String>,
    /// Percentage of provisions (chosen by a hash of the request id) that
    /// fail with `transient`.
    #[serde(default)]
    pub fail_percent: u32,
    /// Host the access bundle points at.
    #[serde(default = "default_host")]
    pub host: String,
    /// SSH port the access bundle points at.
    #[serde(default = "default_port")]
    pub ssh_port: u16,
    /// Login user; defaults to the workload's suggested user.
    #[serde(default)]
    pub user: Option<String>,
    /// The host key the access bundle names (`""`: none, as a cloud
    /// backend that cannot know it before boot); by default a fixed
    /// ed25519 key no real host has, so a requester's ssh refuses the
    /// fake's host rather than trusting it.
    #[serde(default = "default_host_key")]
    pub host_key: String,
}

fn default_regions() -> Vec<String> {
    vec!["fake-1".into()]
}
fn default_cpu() -> u32 {
    64_000
}
fn default_ram() -> u32 {
    262_144
}
fn default_run() -> u64 {
    3600
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    22
}
/// The fake's host key (its private half was thrown away).
pub const FAKE_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";
fn default_host_key() -> String {
    FAKE_HOST_KEY.into()
}

impl Default for FakeConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}
