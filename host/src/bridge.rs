//! Start-up: config → runtime → components → fleet, and the routing table.
//!
//! `compute-bridge run` builds a [`Bridge`] and serves until a signal; the
//! provider loop and the dashboard attach to the fleet it holds.

use std::sync::Arc;

use anyhow::Context;

use crate::backend::Backend;
use crate::config::BootConfig;
use crate::fleet::{Fleet, MemberView};
use crate::runtime::{ComponentBackend, Runtime, RuntimeOptions};

/// A started bridge.
pub struct Bridge {
    /// The validated config.
    pub config: BootConfig,
    /// This provider's id.
    pub provider_id: String,
    /// The component host.
    pub runtime: Runtime,
    /// The sandboxed backends, in config order.
    pub backends: Vec<Arc<ComponentBackend>>,
    /// The router over them.
    pub fleet: Fleet,
}

impl Bridge {
    /// Create the state dir, the runtime, every backend and the fleet, and
    /// ask each backend for its capabilities.
    pub async fn start(config: BootConfig) -> anyhow::Result<Self> {
        let state_dir = config.state_dir();
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
        let provider_id = crate::identity::provider_id(&state_dir)?;
        let runtime = Runtime::new(&RuntimeOptions::for_config(&config))?;
        let mut backends = Vec::new();
        for b in &config.backends {
            let (backend, _) = runtime
                .load_backend(&config, b, &provider_id)
                .with_context(|| format!("starting backend {}", b.name))?;
            backends.push(Arc::new(backend));
        }
        let fleet = Fleet::new(
            backends
                .iter()
                .zip(&config.backends)
                .map(|(b, c)| (b.clone() as Arc<dyn Backend>, c.enabled))
                .collect(),
            config.bridge.concurrency_cap,
        );
        fleet.refresh_capabilities().await;
        Ok(Self {
            config,
            provider_id,
            runtime,
            backends,
            fleet,
        })
    }

    /// Log the routing table, one line per backend in routing order.
    pub fn log_routing_table(&self) {
        tracing::info!(
            cap = self.config.bridge.concurrency_cap,
            "routing table: grants try these backends in order"
        );
        for (i, (m, cfg)) in self
            .fleet
            .members()
            .iter()
            .zip(&self.config.backends)
            .enumerate()
        {
            tracing::info!(
                "  {}. {}",
                i + 1,
                routing_line(
                    m,
                    &cfg.http.allowed_hosts,
                    &cfg.ssh_hosts()
                        .into_iter()
                        .map(|(l, _)| l)
                        .collect::<Vec<_>>()
                )
            );
        }
    }
}

/// One routing-table line: name, state, regions, TDX, capacity, grants.
pub fn routing_line(m: &MemberView, http: &[String], ssh: &[String]) -> String {
    let caps = match &m.capabilities {
        Some(c) => format!(
            "regions=[{}] tdx={} capacity={}m/{}MiB",
            c.regions.join(","),
            if c.tdx_capable { "yes" } else { "no" },
            c.max_cpu_millicores,
            c.max_ram_mib
        ),
        None => "capabilities=unavailable".to_string(),
    };
    format!(
        "{:<12} {:<8} {caps} http=[{}] ssh=[{}]",
        m.name,
        if m.enabled { "enabled" } else { "disabled" },
        http.join(","),
        ssh.join(",")
    )
}
