//! Helpers the bench binaries share (each bench is its own crate and
//! includes this with `mod common;`).

// Each bench uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;

use compute_bridge_contract::backend::Workload;

/// Where a bench's log goes: `BENCH_LOG=off` runs it with no subscriber
/// (to state what logging costs); otherwise the subscriber a production
/// bridge installs ([`compute_bridge_daemon::logging::init`], its default filter
/// or `COMPUTE_BRIDGE_LOG`, its writer thread) writes every line to a file.
pub struct BenchLog {
    path: Option<PathBuf>,
    flush: Option<compute_bridge_daemon::logging::Flush>,
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
    let (warning, flush) = compute_bridge_daemon::logging::init(spec.as_deref(), false, file);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    println!(
        "logging: the bridge's subscriber (filter {:?}) into {}",
        compute_bridge_daemon::logging::directives(spec.as_deref()),
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

/// One side's samples and the per-round ratios of an [`interleave`]d run.
pub struct Interleaved {
    pub sandboxed: Vec<std::time::Duration>,
    pub native: Vec<std::time::Duration>,
    /// Per round: the sandboxed batch's median ÷ the native batch's.
    pub ratios: Vec<f64>,
}

/// The same work done sandboxed and natively.
#[allow(async_fn_in_trait)]
pub trait Pair {
    /// One call through the sandbox.
    async fn sandboxed(&self);
    /// The same call natively.
    async fn native(&self);
}

fn median(v: &mut [std::time::Duration]) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}

/// `warmup` calls of each side, then `rounds` rounds of `per_round` calls
/// of each side in turn (sandboxed first in even rounds, native first in
/// odd ones), so load that drifts while the bench runs hits both sides.
pub async fn interleave(
    pair: &impl Pair,
    warmup: usize,
    rounds: usize,
    per_round: usize,
) -> Interleaved {
    for _ in 0..warmup {
        pair.sandboxed().await;
        pair.native().await;
    }
    let mut out = Interleaved {
        sandboxed: Vec::new(),
        native: Vec::new(),
        ratios: Vec::new(),
    };
    for round in 0..rounds {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            for _ in 0..per_round {
                let t = std::time::Instant::now();
                if side == 0 {
                    pair.sandboxed().await;
                    a.push(t.elapsed());
                } else {
                    pair.native().await;
                    b.push(t.elapsed());
                }
            }
        }
        out.ratios
            .push(median(&mut a).as_secs_f64() / median(&mut b).as_secs_f64().max(1e-9));
        out.sandboxed.extend(a);
        out.native.extend(b);
    }
    out
}

/// `q`-quantile of `v` (sorts it).
pub fn quantile(v: &mut [std::time::Duration], q: f64) -> std::time::Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

impl Interleaved {
    /// `| work | p50 sandboxed | p99 | p50 native | p99 | ratio min / median / max | rounds |`
    pub fn row(&mut self, work: &str, unit: &str) -> String {
        let f = |d: std::time::Duration| match unit {
            "µs" => format!("{:.1} µs", d.as_secs_f64() * 1e6),
            _ => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        };
        let mut r = self.ratios.clone();
        r.sort_by(f64::total_cmp);
        format!(
            "| {work} | {} | {} | {} | {} | {:.2}× / {:.2}× / {:.2}× | {} × {} |",
            f(quantile(&mut self.sandboxed, 0.5)),
            f(quantile(&mut self.sandboxed, 0.99)),
            f(quantile(&mut self.native, 0.5)),
            f(quantile(&mut self.native, 0.99)),
            r[0],
            r[r.len() / 2],
            r[r.len() - 1],
            self.ratios.len(),
            self.sandboxed.len() / self.ratios.len().max(1),
        )
    }
}

/// The header of [`Interleaved::row`]'s table.
pub const INTERLEAVED_HEADER: &str = "| work | sandboxed p50 | p99 | native p50 | p99 | sandboxed ÷ native, per round: min / median / max | rounds × calls per side |\n|---|---|---|---|---|---|---|";

/// A runtime and `backend` (a `[[backends]]` table) loaded from it, with
/// state in `state` and `${VAR}`s from `env`, as provider
/// [`BENCH_PROVIDER`]; and the backend's config table as the JSON its
/// component reads (`bridge.config-json`), for the same core run natively.
pub fn load(
    state: &std::path::Path,
    backend: &str,
    env: Vec<(&'static str, String)>,
) -> (
    compute_bridge_sandbox::Runtime,
    std::sync::Arc<compute_bridge_sandbox::ComponentBackend>,
    String,
) {
    use compute_bridge_daemon::config::{BootConfig, Source};
    use compute_bridge_sandbox::{Runtime, RuntimeOptions};
    let text = format!(
        "[bridge]\nstate_dir = {:?}\n\n{backend}",
        state.display().to_string()
    );
    let cfg = BootConfig::from_source(&Source::embedded("bench.toml", &text), &|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .expect("bench config");
    let rt = Runtime::new(&RuntimeOptions::for_config(&cfg)).expect("runtime");
    let b = std::sync::Arc::new(
        rt.load_backend(&cfg, &cfg.backends[0], BENCH_PROVIDER)
            .expect("backend")
            .0,
    );
    let json = serde_json::to_string(&cfg.backends[0].sections.config).expect("config as JSON");
    (rt, b, json)
}

/// The provider id the benches' backends are loaded for.
pub const BENCH_PROVIDER: &str = "bench-provider";

/// The fake backend's config the per-call benches use, as JSON.
pub const FAKE_CONFIG: &str = r#"{"regions": ["bench-1"], "run_seconds": 3600}"#;

/// Grant `i` for the fake backend: half a core, 256 MiB, any region.
pub fn fake_grant(i: usize) -> compute_bridge_contract::backend::GrantSpec {
    compute_bridge_contract::backend::GrantSpec {
        request_id: format!("bench-{i}"),
        cpu_millicores: 500,
        ram_mib: 256,
        region: None,
        tdx: compute_bridge_contract::backend::TdxRequirement::None,
        image: "registry.example/app@sha256:0000".into(),
        valid_to: u64::MAX,
    }
}

/// A `[[backends]]` table for `builtin:gcp` against the GCP API fake at
/// `url` (project `bridge-bench`, one TDX machine type in us-central1-b),
/// its key from `${KEY}`.
pub fn gcp_toml(url: &str) -> String {
    format!(
        "[[backends]]\nname = \"gcp\"\ncomponent = \"builtin:gcp\"\n[backends.http]\nallowed_hosts = [\"{url}\"]\n\
         [backends.config]\nproject = \"bridge-bench\"\nservice_account_key = \"${{KEY}}\"\ncompute_url = \"{url}\"\n\
         [[backends.config.machine_types]]\nname = \"c3-standard-4\"\ncpus = 4\nram_mib = 16384\ntdx = true\nzones = [\"us-central1-b\"]\n"
    )
}
