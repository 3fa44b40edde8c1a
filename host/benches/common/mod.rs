//! Helpers the bench binaries share (each bench is its own crate and
//! includes this with `mod common;`).

// Each bench uses only some of these.
#![allow(dead_code)]

use compute_bridge::backend::Workload;

/// An environment knob (each bench's header lists its own), or `default`
/// when unset or unreadable.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's 1, 5 and 15 minute load averages, printed beside each
/// figure: the build machine is shared, so a figure is only as good as
/// the load it was taken under.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The workload every bench provisions (a throwaway user and key).
pub fn workload() -> Workload {
    Workload {
        ssh_user: "cb-bench".into(),
        ssh_public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ bench"
                .into(),
    }
}
