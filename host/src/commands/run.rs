//! `compute-bridge run`: the bridge until SIGINT or SIGTERM, with its
//! dashboard on the configured (or given) port.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use compute_bridge_contract::events::EventSink;
use compute_bridge_daemon::bridge::Bridge;
use compute_bridge_daemon::config::LOCAL_NAME;
use compute_bridge_daemon::dashboard::{Dashboard, DashboardServer};

use super::load_config;

pub(crate) fn run(config: Option<&Path>, dashboard_port: Option<u16>) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(config)?;
    if let Some(port) = dashboard_port {
        cfg.dashboard.port = port;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Before start-up, so a signal while starting is not lost.
        let signal = shutdown_signal()?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %if config.is_some() { cfg.source_name.clone() } else { LOCAL_NAME.to_string() },
            state_dir = %cfg.state_dir().display(),
            "compute-bridge starting"
        );
        let bridge = Bridge::start(cfg).await?;
        tracing::info!(provider_id = %bridge.provider_id, "provider identity");
        bridge.log_routing_table();
        let dashboard = Dashboard::for_bridge(&bridge);
        let server = DashboardServer::start(
            dashboard.clone(),
            &bridge.config.dashboard.bind,
            bridge.config.dashboard.port,
        )
        .await
        .context("starting the dashboard")?;
        tracing::info!(
            url = %server.url(),
            "dashboard listening on 127.0.0.1:{p}; from your workstation: ssh -L {p}:localhost:{p} <this host>",
            p = server.local_addr().port()
        );
        let events: Arc<dyn EventSink> = Arc::new(dashboard);
        let shutdown = async {
            signal.await;
            tracing::info!("shutting down");
        };
        tracing::info!("ready; stop with Ctrl-C or SIGTERM");
        bridge.serve(events, shutdown).await?;
        server.stop().await;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal during start-up is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
