//! Build runtimes and backends from small TOML snippets.

use std::sync::Arc;

use compute_bridge::backend::{Backend, GrantSpec, TdxRequirement, Workload};
use compute_bridge::config::{BootConfig, Source};
use compute_bridge::runtime::{ComponentBackend, Runtime, RuntimeOptions};

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

/// A small grant.
pub fn grant(id: &str) -> GrantSpec {
    GrantSpec {
        request_id: id.to_string(),
        cpu_millicores: 500,
        ram_mib: 256,
        region: None,
        tdx: TdxRequirement::None,
        image: "registry.example/app@sha256:0000".into(),
        valid_to: compute_bridge::fleet::now_unix() + 600,
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
