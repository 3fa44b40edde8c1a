//! `compute-bridge check-config`: validate a config, print the routing
//! table it describes, and ask each enabled backend for its offer.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use compute_bridge_contract::keypath::{Seg, parse_path};
use compute_bridge_daemon::config::{BootConfig, ConfigError, Source};
use compute_bridge_sandbox::{Runtime, RuntimeOptions};

use super::load_config;

pub(crate) fn run(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config)?;
    println!("{}: ok", cfg.source_name);
    println!(
        "state dir {}; concurrency cap {}; dashboard http://{}:{}/dashboard",
        cfg.state_dir().display(),
        cfg.bridge.concurrency_cap,
        cfg.dashboard.bind,
        cfg.dashboard.port
    );
    let c = &cfg.coalition;
    println!(
        "coalition {:?}: {}",
        c.network,
        if c.is_local() {
            "local (its relay runs in the bridge)".to_string()
        } else {
            format!("relays {}", c.relays.join(", "))
        }
    );
    println!(
        "coalition node listens on {}",
        compute_bridge_coalition::describe_bind(c.node_bind())
    );
    if c.is_local() {
        println!(
            "local relay listens on {} (TCP, an ephemeral port)",
            c.node_bind().expect("a local coalition binds an address")
        );
    }
    println!("backends in routing order:");
    for (i, b) in cfg.backends.iter().enumerate() {
        println!(
            "  {}. {} ({}){}",
            i + 1,
            b.name,
            b.component,
            if b.enabled { "" } else { " [disabled]" }
        );
        println!(
            "       memory cap {} MiB, call deadline {} s",
            b.memory_limit_mib, b.call_timeout_sec
        );
        for (section, granted) in b.sections.summaries() {
            println!("       {section}: {granted}");
        }
    }
    let source = BootConfig::source_of(config)?;
    let refused = probe_backends(&cfg, &source)?;
    if refused.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &refused {
        eprintln!("error: {e}");
    }
    Ok(ExitCode::FAILURE)
}

/// Load each enabled backend in the sandbox and ask it for its offer. A
/// backend reads its own `[backends.config]` section only when it runs, so
/// this is where a section it refuses is found: its `config` errors come
/// back located at the key they name (a message that starts with a
/// backticked key path, `` `subnetworks.europe-west4`: … ``, points there;
/// any other at the section). Other failures (a host or an API that does
/// not answer) are printed and do not fail the check: they are asked again
/// at start.
fn probe_backends(cfg: &BootConfig, source: &Source) -> anyhow::Result<Vec<ConfigError>> {
    use compute_bridge_contract::backend::{Backend, BackendError};
    let state_dir = cfg.state_dir();
    let opts = RuntimeOptions {
        // Reuse the bridge's compile cache when there is one; never create
        // a state dir just to check a config.
        cache_dir: state_dir.is_dir().then(|| state_dir.join("compiled")),
        ..RuntimeOptions::for_config(cfg)
    };
    let runtime = Runtime::new(&opts)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut refused = Vec::new();
    println!("offers (each enabled backend asked in its sandbox):");
    for (i, b) in cfg.backends.iter().enumerate().filter(|(_, b)| b.enabled) {
        let (backend, _) = runtime
            .load_backend(cfg, b, "check-config")
            .with_context(|| format!("loading backend {}", b.name))?;
        match rt.block_on(backend.capabilities()) {
            Ok(offer) => {
                println!(
                    "  {}: regions {}; TDX {}; up to {} millicores, {} MiB",
                    b.name,
                    if offer.regions.is_empty() {
                        "none".to_string()
                    } else {
                        offer.regions.join(", ")
                    },
                    if offer.tdx_capable { "yes" } else { "no" },
                    offer.max_cpu_millicores,
                    offer.max_ram_mib
                );
                for m in &offer.td_measurements {
                    println!("    TD guests in {}: mrtd {}", m.region, m.mrtd);
                }
            }
            Err(BackendError::Config(message)) => {
                println!("  {}: refuses its config (below)", b.name);
                refused.push(locate_backend_error(source, i, &message));
            }
            Err(e) => println!(
                "  {}: did not answer ({e}); it is asked again at start",
                b.name
            ),
        }
    }
    Ok(refused)
}

/// A backend's `config` error at the key it names under `backends[i].config`.
fn locate_backend_error(source: &Source, i: usize, message: &str) -> ConfigError {
    let mut path: Vec<Seg> = vec!["backends".into(), i.into(), "config".into()];
    let named = message
        .strip_prefix('`')
        .and_then(|rest| rest.split_once('`'))
        .and_then(|(key, rest)| Some((parse_path(key)?, rest)));
    let message = match named {
        Some((key, rest)) => {
            path.extend(key);
            rest.trim_start_matches(':').trim_start().to_string()
        }
        None => message.to_string(),
    };
    source.error_at_path(&path, message)
}
