//! Host capabilities a backend component can be granted, one module each:
//! `http`, `ssh`, `log`, `config` and `cache` (credentials only).
//!
//! Each capability is built once per backend from its section of the
//! backend's config (the allow-list, the pinned hosts, the config table) and shared
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

use crate::spec::{LoadContext, Sections};

/// Everything one backend was granted: each capability built from its
/// section.
pub struct Provided {
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

impl Provided {
    /// Build every capability of the backend `at` describes from its
    /// sections.
    pub fn new(sections: &Sections, at: &LoadContext) -> anyhow::Result<Self> {
        Ok(Self {
            name: at.backend.clone(),
            http: Arc::new(http::HttpCapability::new(&at.backend, &sections.http)?),
            ssh: Arc::new(ssh::SshCapability::provide(&sections.ssh, at)?),
            config: Arc::new(config::variables(
                &at.backend,
                &at.provider_id,
                &sections.config,
            )),
            cache: Arc::new(cache::CacheCapability::new(
                &at.backend,
                cache::CacheLimits::default(),
            )),
            log: Arc::new(log::LogCapability::new(&at.backend, &sections.log)),
        })
    }
}
