//! Build runtimes and backends from small TOML snippets.

use std::sync::Arc;

use compute_bridge_contract::backend::{Backend, GrantSpec, TdxRequirement, Workload};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_sandbox::{ComponentBackend, Runtime, RuntimeOptions};

/// A boot config from `backends` (TOML `[[backends]]` tables), with the
/// state dir in `state`.
pub fn config(state: &std::path::Path, backends: &str) -> BootConfig {
    let text = format!(
        "[bridge]\nstate_dir = {:?}\nconcurrency_cap = 8\n\n{backends}",
        state.display().to_string()
    );
    BootConfig::from_source(&Source::embedded("test.toml", &text), &|k| {
        std::env::var(k).ok()
    })
    .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// A `[[backends]]` table for a test component file.
pub fn backend_toml(name: &str, wasm: &str, extra: &str) -> String {
    format!("[[backends]]\nname = {name:?}\ncomponent = {wasm:?}\n{extra}\n")
}

/// A runtime sized for `cfg` and every backend in it, in order.
pub fn load(cfg: &BootConfig) -> (Runtime, Vec<Arc<ComponentBackend>>) {
    let rt = Runtime::new(&RuntimeOptions::for_config(cfg)).expect("runtime");
    let backends = cfg
        .backends
        .iter()
        .map(|b| {
            Arc::new(
                rt.load_backend(cfg, b, "test-provider")
                    .expect("load backend")
                    .0,
            )
        })
        .collect();
    (rt, backends)
}

/// Backends as the fleet wants them (all enabled unless the config says).
pub fn fleet_members(
    cfg: &BootConfig,
    backends: &[Arc<ComponentBackend>],
) -> Vec<(Arc<dyn Backend>, bool)> {
    backends
        .iter()
        .zip(&cfg.backends)
        .map(|(b, c)| (b.clone() as Arc<dyn Backend>, c.enabled))
        .collect()
}

/// A fleet of 8 grant slots over `cfg`'s backends, capabilities refreshed.
/// The runtime is leaked so its engine ticker runs for the test's life.
pub async fn fleet_over(
    cfg: &BootConfig,
) -> (
    compute_bridge_daemon::fleet::Fleet,
    Vec<Arc<ComponentBackend>>,
) {
    let (rt, backends) = load(cfg);
    std::mem::forget(rt);
    let fleet = compute_bridge_daemon::fleet::Fleet::new(fleet_members(cfg, &backends), 8);
    fleet.refresh_capabilities().await;
    (fleet, backends)
}

/// Each failover as (backend, region, kind): what a test compares.
pub fn failover_steps(
    failovers: &[compute_bridge_daemon::fleet::Failover],
) -> Vec<(&str, Option<&str>, String)> {
    failovers
        .iter()
        .map(|f| (f.from.as_str(), f.region.as_deref(), f.kind.to_string()))
        .collect()
}

/// A small grant.
pub fn grant(id: &str) -> GrantSpec {
    GrantSpec {
        request_id: id.to_string(),
        cpu_millicores: 500,
        ram_mib: 256,
        region: None,
        tdx: TdxRequirement::None,
        image: "registry.example/app@sha256:0000".into(),
        valid_to: compute_bridge_contract::clock::now_unix() + 600,
    }
}

/// A workload key (never used to log in here).
pub fn workload() -> Workload {
    Workload {
        ssh_user: "cb-test".into(),
        ssh_public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ test"
                .into(),
    }
}

/// Like [`config`], with `${NAME}` in the TOML expanded from `env` only
/// (never the process environment, which tests share).
pub fn config_with_env(
    state: &std::path::Path,
    backends: &str,
    env: &[(&str, String)],
) -> BootConfig {
    let text = format!(
        "[bridge]\nstate_dir = {:?}\nconcurrency_cap = 8\n\n{backends}",
        state.display().to_string()
    );
    BootConfig::from_source(&Source::embedded("test.toml", &text), &|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// An image pinned by digest, as grants carry them.
pub const PINNED_IMAGE: &str =
    "ghcr.io/acme/worker@sha256:4f2c1b0d9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

/// A two-core grant for a cloud backend, with a pinned image.
pub fn cloud_grant(id: &str, tdx: TdxRequirement) -> GrantSpec {
    GrantSpec {
        request_id: id.to_string(),
        cpu_millicores: 2000,
        ram_mib: 4096,
        region: None,
        tdx,
        image: PINNED_IMAGE.into(),
        valid_to: compute_bridge_contract::clock::now_unix() + 3600,
    }
}

/// Send a request; its status and JSON body (`null` if none).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = req.send().await.expect("request to a fake");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("response body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// `POST url` with a bearer token and a JSON body.
pub fn json_post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    http.post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// `compute-bridge components inspect file`: whether it passed, and what
/// it printed (both streams).
pub fn inspect(file: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_compute-bridge"))
        .args(["components", "inspect", file])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Run the conformance suite (`compute-bridge components test`) on a
/// loaded backend and fail with its report unless every check passes.
pub async fn assert_conforms(backend: &dyn compute_bridge_contract::backend::Backend) {
    let report = compute_bridge_daemon::conformance::run(
        backend,
        &compute_bridge_daemon::conformance::Options {
            deadline: std::time::Duration::from_secs(60),
            start_timeout: std::time::Duration::from_secs(30),
            workload: compute_bridge_daemon::conformance::sample_workload(),
        },
    )
    .await;
    assert!(report.passed(), "{}", report.render());
    assert!(
        report.checks.iter().any(|c| c.name.contains("provision")),
        "{}",
        report.render()
    );
}

/// The host's log, as a user running the bridge would read it.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture what this thread logs (at info and above, formatted as the
/// bridge formats its log) until the guard is dropped. For
/// `#[tokio::test]`s on the current-thread runtime, where every call of
/// the test runs on its thread.
pub fn capture_log() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (log, tracing::subscriber::set_default(subscriber))
}

/// Wait (without blocking the runtime) until `f` holds; panic naming
/// `what` after `limit`. A hang detector, not a speed assertion.
pub async fn until(what: &str, limit: std::time::Duration, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "still waiting after {limit:?} for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A commented `[[backends]]` example of `config/example.toml`, the one
/// whose `name` is `name`, uncommented (its own `# # ...` remarks dropped).
pub fn example_section(name: &str) -> String {
    let example = include_str!("../../../config/example.toml");
    let start = example
        .find(&format!("# [[backends]]\n# name = {name:?}"))
        .unwrap_or_else(|| panic!("no {name} example in config/example.toml"));
    example[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')))
        .filter(|l| !l.starts_with('#') && !l.starts_with(' '))
        .map(|l| format!("{l}\n"))
        .collect()
}
