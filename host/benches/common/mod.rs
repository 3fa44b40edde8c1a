//! Helpers the bench binaries share (each bench is its own crate and
//! includes this with `mod common;`).

// Each bench uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;

use compute_bridge::backend::Workload;

/// Where a bench's log goes: `BENCH_LOG=off` runs it with no subscriber
/// (to state what logging costs); otherwise the subscriber a production
/// bridge installs ([`compute_bridge::logging::init`], its default filter
/// or `COMPUTE_BRIDGE_LOG`, its writer thread) writes every line to a file.
pub struct BenchLog {
    path: Option<PathBuf>,
    flush: Option<compute_bridge::logging::Flush>,
}

/// Install the production subscriber for bench `name` (see [`BenchLog`])
/// and say where its lines go.
pub fn production_logging(name: &str) -> BenchLog {
    if std::env::var("BENCH_LOG").is_ok_and(|v| v == "off") {
        println!("logging: off (BENCH_LOG=off)");
        return BenchLog {
            path: None,
            flush: None,
        };
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    let file = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("creating the bench log {}: {e}", path.display()));
    let spec = std::env::var("COMPUTE_BRIDGE_LOG").ok();
    let (warning, flush) = compute_bridge::logging::init(spec.as_deref(), false, file);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    println!(
        "logging: the bridge's subscriber (filter {:?}) into {}",
        compute_bridge::logging::directives(spec.as_deref()),
        path.display()
    );
    BenchLog {
        path: Some(path),
        flush: Some(flush),
    }
}

impl BenchLog {
    /// Lines and bytes written so far (0 when logging is off); lines still
    /// queued for the writer thread are not counted.
    pub fn written(&self) -> (usize, u64) {
        let Some(p) = &self.path else {
            return (0, 0);
        };
        let text = std::fs::read(p).unwrap_or_default();
        (
            text.iter().filter(|b| **b == b'\n').count(),
            text.len() as u64,
        )
    }

    /// "N lines (B bytes) logged" or "logging off", for a bench's summary.
    pub fn summary(&mut self) -> String {
        match &self.path {
            None => "logging off".into(),
            Some(p) => {
                // Whatever is still queued first.
                drop(self.flush.take());
                let (lines, bytes) = self.written();
                format!("{lines} lines ({bytes} bytes) logged to {}", p.display())
            }
        }
    }
}

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
