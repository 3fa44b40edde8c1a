//! Where a backend's component comes from (shipped in the binary or a file),
//! and the boot config as the sandbox sees it ([`BootView`]: sizing, and one
//! `[[backends]]` entry turned into a [`BackendSpec`]). Keeps nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use compute_bridge_sandbox::{
    BackendSpec, BootView, Limits, LoadContext, RuntimeOptions, Sections,
};

use super::{BackendConfig, BootConfig};

/// Where a backend's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    /// Shipped in the binary.
    Builtin(String),
    /// A file.
    File(PathBuf),
}

/// Names of the backends shipped inside this binary.
pub fn builtin_names() -> Vec<&'static str> {
    compute_bridge_components::BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

/// Bytes of a shipped backend.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    compute_bridge_components::BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// The bytes of a backend's component.
pub fn read_component(boot: &BootConfig, cfg: &BackendConfig) -> anyhow::Result<Vec<u8>> {
    match cfg.component_source() {
        ComponentSource::Builtin(name) => builtin_bytes(&name)
            .map(<[u8]>::to_vec)
            .with_context(|| format!("backend {}: no builtin component {name:?}", cfg.name)),
        ComponentSource::File(path) => {
            let path = boot.resolve_path(&path);
            std::fs::read(&path)
                .with_context(|| format!("backend {}: reading {}", cfg.name, path.display()))
        }
    }
}

impl BootView for BootConfig {
    type Backend = BackendConfig;

    /// The cache under the state dir, the `[bridge]` pool, the largest
    /// `memory_limit_mib` of any backend.
    fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            cache_dir: Some(self.state_dir().join("compiled")),
            max_concurrent_calls: self.bridge.max_concurrent_calls,
            max_memory_mib: self
                .backends
                .iter()
                .map(|b| b.memory_limit_mib)
                .max()
                .unwrap_or(64),
        }
    }

    fn load_context(&self, cfg: &BackendConfig, provider_id: &str) -> LoadContext {
        LoadContext {
            backend: cfg.name.as_str().into(),
            provider_id: provider_id.to_string(),
            base_dir: self.base_dir.clone(),
            builtin: matches!(cfg.component_source(), ComponentSource::Builtin(_)),
        }
    }

    fn backend_spec(&self, cfg: &BackendConfig, provider_id: &str) -> anyhow::Result<BackendSpec> {
        Ok(BackendSpec {
            component: cfg.component.clone(),
            bytes: read_component(self, cfg)?,
            at: self.load_context(cfg, provider_id),
            sections: self.sections(cfg),
            limits: Limits {
                memory_bytes: cfg.memory_limit_mib as usize * 1024 * 1024,
                deadline: Duration::from_secs(cfg.call_timeout_sec),
                capabilities_deadline: Duration::from_secs(cfg.capabilities_timeout_sec),
                can_satisfy_deadline: Duration::from_secs(cfg.can_satisfy_timeout_sec),
                max_concurrent_calls: self
                    .call_slots_of(&cfg.name)
                    .unwrap_or(self.bridge.max_concurrent_calls),
            },
        })
    }

    fn sections(&self, cfg: &BackendConfig) -> Sections {
        cfg.sections.clone()
    }
}
