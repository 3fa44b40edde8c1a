//! Host capabilities a backend component can be granted, one module each:
//! `http`, `ssh`, `log`, `config` and `cache` (credentials only).
//!
//! Each capability is built once per backend from its section of the boot
//! config (the allow-list, the pinned hosts, the config table) and shared
//! by every call of that backend; a call gets a cheap per-call view that
//! implements the generated `Host` trait. Nothing here knows about grants,
//! the fleet or the dashboard.

pub mod cache;
pub mod config;
pub mod http;
pub mod log;
pub mod ssh;

use std::sync::Arc;

use wasmtime_wasi_config::WasiConfigVariables;

use crate::config::{BackendConfig, BootConfig};

/// Everything one backend was granted.
pub struct Granted {
    /// The backend's name (tags its logs).
    pub name: Arc<str>,
    /// Outbound HTTP.
    pub http: Arc<http::HttpCapability>,
    /// SSH hosts.
    pub ssh: Arc<ssh::SshCapability>,
    /// Its config table.
    pub config: Arc<WasiConfigVariables>,
    /// Its credential cache (memory only, private to this backend).
    pub cache: Arc<cache::CacheCapability>,
    /// Its share of the host's log.
    pub log: Arc<log::LogCapability>,
}

impl Granted {
    /// Build every capability for `backend` from the boot config.
    pub fn new(
        boot: &BootConfig,
        backend: &BackendConfig,
        provider_id: &str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: backend.name.as_str().into(),
            http: Arc::new(http::HttpCapability::new(&backend.name, &backend.http)?),
            ssh: Arc::new(ssh::SshCapability::new(boot, backend)?),
            config: Arc::new(config::variables(
                &backend.name,
                provider_id,
                &backend.config,
            )),
            cache: Arc::new(cache::CacheCapability::new(
                &backend.name,
                cache::CacheLimits::default(),
            )),
            log: Arc::new(log::LogCapability::new(&backend.name, &backend.log)),
        })
    }
}
