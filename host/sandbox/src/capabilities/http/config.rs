//! `[backends.http]`: the origins a backend may call and the bounds of one
//! exchange. Keeps nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// `[backends.http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Exact origins (`scheme://host[:port]`) the backend may call.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Per-request timeout, seconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_sec: u64,
    /// Largest response body, bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u64,
    /// Fixed name → address overrides (like curl's `--resolve`); the address
    /// checks still apply to them.
    #[serde(default)]
    pub resolve: BTreeMap<String, IpAddr>,
}

fn default_http_timeout() -> u64 {
    30
}
fn default_max_response() -> u64 {
    8 * 1024 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            timeout_sec: default_http_timeout(),
            max_response_bytes: default_max_response(),
            resolve: BTreeMap::new(),
        }
    }
}
