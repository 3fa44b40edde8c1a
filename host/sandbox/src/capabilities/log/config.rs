//! `[backends.log]`: the component's share of the host's log. Keeps
//! nothing.

use serde::Deserialize;

/// `[backends.log]`: the component's share of the host's log. Records past
/// either budget are dropped, and one line per call says how many.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Bytes of log records one call may write.
    #[serde(default = "default_log_per_call")]
    pub max_bytes_per_call: u64,
    /// Bytes of log records all of this backend's calls may write in a
    /// minute.
    #[serde(default = "default_log_per_minute")]
    pub max_bytes_per_minute: u64,
}

fn default_log_per_call() -> u64 {
    64 * 1024
}
fn default_log_per_minute() -> u64 {
    1024 * 1024
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_bytes_per_call: default_log_per_call(),
            max_bytes_per_minute: default_log_per_minute(),
        }
    }
}
