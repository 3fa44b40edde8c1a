//! One module per `compute-bridge` command, each with a `run` that the
//! binary's `main` calls with the parsed arguments and that returns the
//! process's exit code. A command opens what it needs itself (the config,
//! an async runtime); none keeps anything between runs.

use std::path::Path;

use compute_bridge_daemon::config::BootConfig;

pub(crate) mod attest;
pub(crate) mod check_config;
pub(crate) mod components;
pub(crate) mod run;

/// The boot config at `path`, or the embedded default without one.
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<BootConfig> {
    match path {
        Some(p) => BootConfig::load(p).map_err(Into::into),
        None => BootConfig::local().map_err(Into::into),
    }
}
