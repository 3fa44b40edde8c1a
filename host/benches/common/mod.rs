//! Helpers the bench binaries share (each bench is its own crate and
//! includes this with `mod common;`).

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
