//! The dashboard against a real fleet: three backends that are the fake
//! component in the real runtime (one fails over, one is disabled), grants
//! placed through the fleet, and the events the provider loop records for
//! them fed through the dashboard's recording API. The HTTP tests go
//! through a real TCP connection to the real server.
//!
//! The provider loop is not on this branch yet: when it merges, the privacy
//! canary and the browser test also run through it and a real
//! `compute-bridge run` (see tests/e2e/dashboard.rs for what already does).

mod browser;
mod exposition;
mod privacy;
mod restart;
mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use compute_bridge_contract::backend::{GrantSpec, Usage, Workload};
use compute_bridge_contract::clock::ManualClock;
use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::dashboard::{Dashboard, Settings};
use compute_bridge_daemon::fleet::{Fleet, PlaceError, Placement};
use compute_bridge_daemon::grant::failover_events;
use compute_bridge_sandbox::{ComponentBackend, Runtime, RuntimeOptions};

/// The rig's config: `gcp` always answers no-capacity (so every grant fails
/// over to `aws`), `aws` serves, `azure` is configured but disabled.
pub fn config_text(state: &Path, aws_regions: &[&str]) -> String {
    format!(
        r#"
[bridge]
state_dir = {state:?}
concurrency_cap = 8
capacity_refresh_sec = 7

[coalition]
network = "infer.corp"

[rates.aws]
core_hour_usd = 0.05
ram_gib_hour_usd = 0.01

[rates.gcp]
core_hour_usd = 0.04

[[backends]]
name = "gcp"
component = {fake:?}
[backends.config]
regions = ["europe-west1"]
provision_error = "no-capacity"
max_cpu_millicores = 32000
max_ram_mib = 131072

[[backends]]
name = "aws"
component = {fake:?}
[backends.config]
regions = {aws_regions:?}
max_cpu_millicores = 80000
max_ram_mib = 327680
run_seconds = 1

[[backends]]
name = "azure"
component = {fake:?}
enabled = false
"#,
        state = state.display().to_string(),
        fake = compute_bridge_testkit::components::FAKE,
    )
}

/// A fleet over the rig's backends, and a dashboard over it on a manual
/// clock.
pub struct Rig {
    /// The fleet.
    pub fleet: Fleet,
    /// The dashboard.
    pub dashboard: Dashboard,
    /// Its clock.
    pub clock: ManualClock,
    _runtime: Runtime,
    _backends: Vec<Arc<ComponentBackend>>,
}

impl Rig {
    /// Build it with its state in `state`; `refresh` asks the backends for
    /// their capabilities first (without it every capacity is unknown).
    pub async fn new(state: &Path, aws_regions: &[&str], refresh: bool) -> Self {
        let text = config_text(state, aws_regions);
        let cfg = BootConfig::from_source(&Source::embedded("dashboard-test.toml", &text), &|k| {
            std::env::var(k).ok()
        })
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        Self::from_config(&cfg, refresh).await
    }

    /// The same over another boot config's backends (a cloud component
    /// against its fake, for a cloud's own failover tests).
    pub async fn from_config(cfg: &BootConfig, refresh: bool) -> Self {
        let runtime = Runtime::new(&RuntimeOptions::for_config(cfg)).expect("runtime");
        let backends: Vec<Arc<ComponentBackend>> = cfg
            .backends
            .iter()
            .map(|b| {
                Arc::new(
                    runtime
                        .load_backend(cfg, b, "test-provider")
                        .expect("load")
                        .0,
                )
            })
            .collect();
        let fleet = Fleet::new(
            crate::support::fleet_members(cfg, &backends),
            cfg.bridge.concurrency_cap,
        );
        if refresh {
            fleet.refresh_capabilities().await;
        }
        let clock = ManualClock::new(compute_bridge_contract::clock::now_unix());
        let dashboard = Dashboard::new(
            Settings::from_config(cfg),
            fleet.clone(),
            Arc::new(clock.clone()),
        );
        Self {
            fleet,
            dashboard,
            clock,
            _runtime: runtime,
            _backends: backends,
        }
    }

    /// Place `grant` through the fleet and record what the provider loop
    /// records: each failover (from → the next backend tried), then the
    /// acceptance or the decline.
    pub async fn place(
        &self,
        grant: &GrantSpec,
        workload: &Workload,
    ) -> Result<Placement, PlaceError> {
        let result = self.fleet.provision(grant, workload).await;
        let events = match &result {
            Ok(p) => failover_events(&p.failovers, Some((&p.backend, &p.instance.region))),
            Err(d) => failover_events(d.failovers(), None),
        };
        for e in events {
            self.dashboard.record(e);
        }
        match &result {
            Ok(p) => self.dashboard.record(Event::GrantAccepted {
                backend: p.backend.clone(),
                region: p.instance.region.clone(),
            }),
            Err(d) => self
                .dashboard
                .record(Event::GrantDeclined { reason: d.reason() }),
        }
        result
    }

    /// End a placed grant: terminate it on its backend, give back its
    /// capacity and record its completion with `usage`.
    pub async fn complete(&self, p: Placement, usage: Usage) {
        let backend = self
            .fleet
            .backend(&p.backend)
            .expect("placed on a fleet backend");
        backend.terminate(&p.instance).await.expect("terminate");
        drop(p.reservation);
        self.dashboard.record(Event::GrantCompleted {
            backend: p.backend,
            usage,
        });
    }
}

/// A small grant with these requester-side values.
pub fn grant(request_id: &str, image: &str, region: Option<&str>) -> GrantSpec {
    GrantSpec {
        image: image.to_string(),
        region: region.map(str::to_string),
        ..crate::support::grant(request_id)
    }
}

/// A workload key pair's public half with `comment`.
pub fn workload(user: &str, comment: &str) -> Workload {
    Workload {
        ssh_user: user.to_string(),
        ssh_public_key: format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ {comment}"
        ),
    }
}

/// Everything logged in this test process at debug level (as
/// `COMPUTE_BRIDGE_LOG=debug` would), from the first call on.
pub fn debug_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init()
            .expect("installing the test's log subscriber");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
