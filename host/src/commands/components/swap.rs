//! `compute-bridge components swap`: swap a backend's component in the
//! running bridge over its control socket, printing its progress.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::load_config;

/// `components swap`: ask the running bridge, print its progress lines.
pub(crate) fn run(backend: &str, file: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use compute_bridge_daemon::control::{Reply, Request, ask};
    let cfg = load_config(config)?;
    let file =
        std::fs::canonicalize(file).with_context(|| format!("the component {}", file.display()))?;
    let request = Request::Swap {
        backend: backend.to_string(),
        file,
    };
    let last = ask(&cfg.state_dir(), &request, |r| {
        if let Reply::Progress(p) = r {
            println!("{p}");
        }
    })?;
    Ok(match last {
        Reply::Passed(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Reply::RolledBack(s) => {
            eprintln!("error: {s}");
            ExitCode::from(3)
        }
        Reply::Error(s) | Reply::Progress(s) => {
            eprintln!("error: {s}");
            ExitCode::FAILURE
        }
    })
}
