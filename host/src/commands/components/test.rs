//! `compute-bridge components test`: the conformance run on a component,
//! with the capabilities and peers a boot config gives it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use compute_bridge_daemon::config::BootConfig;
use compute_bridge_sandbox::{Runtime, RuntimeOptions};

pub(crate) fn run(file: &Path, config: &Path, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut cfg = BootConfig::load(config)?;
    let index = match backend {
        Some(name) => cfg
            .backends
            .iter()
            .position(|b| b.name == name)
            .with_context(|| {
                format!("{}: no [[backends]] entry named {name:?}", config.display())
            })?,
        None if cfg.backends.len() == 1 => 0,
        None => anyhow::bail!(
            "{} has {} backends; choose one with --backend NAME",
            config.display(),
            cfg.backends.len()
        ),
    };
    let file =
        std::fs::canonicalize(file).with_context(|| format!("reading {}", file.display()))?;
    cfg.backends[index].component = file.display().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let entry = cfg.backends[index].clone();
    let report = rt.block_on(async {
        let runtime = Runtime::new(&RuntimeOptions::for_config(&cfg))?;
        let (backend, _) = runtime.load_backend(&cfg, &entry, "conformance")?;
        let opts = compute_bridge_daemon::conformance::Options {
            deadline: std::time::Duration::from_secs(entry.call_timeout_sec),
            start_timeout: std::time::Duration::from_secs(entry.call_timeout_sec.max(30)),
            workload: compute_bridge_daemon::conformance::sample_workload(),
        };
        Ok::<_, anyhow::Error>(compute_bridge_daemon::conformance::run(&backend, &opts).await)
    })?;
    println!(
        "conformance of {} as backend {:?}",
        file.display(),
        entry.name
    );
    print!("{}", report.render());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
