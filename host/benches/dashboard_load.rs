//! Load benchmark for the dashboard: `wrk` against `/snapshot.json`,
//! `/dashboard` and `/metrics` on 127.0.0.1 while a thread records 1,000
//! events per second through the `EventSink`, the way the provider loop
//! will.
//!
//! ```sh
//! cargo bench -p compute-bridge --bench dashboard_load
//! # knobs: WRK_THREADS (1), WRK_CONNECTIONS (32), WRK_SECONDS (10),
//! #        EVENTS_PER_SEC (1000)
//! ```
//!
//! The fleet is three builtin fake components in the real runtime (only
//! their capabilities are asked for); the server is the one `run` starts.
//! Numbers go in BENCHMARKS.md with the machine's load at the time.

mod common;
use common::{knob, loadavg, production_logging};

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compute_bridge_contract::backend::Usage;
use compute_bridge_contract::clock::SystemClock;
use compute_bridge_contract::events::{DeclineReason, Event, EventSink};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::dashboard::{Dashboard, DashboardServer, Settings};
use compute_bridge_daemon::fleet::Fleet;
use compute_bridge_sandbox::{Runtime, RuntimeOptions};

/// The `i`th event of a realistic mix: mostly accepted/completed grants,
/// some declines, failovers, settlements.
fn event(i: u64) -> Event {
    let backend = ["aws", "gcp", "baremetal"][(i % 3) as usize].to_string();
    match i % 10 {
        0..=3 => Event::GrantAccepted {
            backend,
            region: "us-east-1".into(),
        },
        4..=7 => Event::GrantCompleted {
            backend,
            usage: Usage {
                cpu_core_seconds: 2400 + i % 100,
                ram_mib_seconds: 9_830_400,
                net_bytes: 1_000_000,
            },
        },
        8 => Event::GrantDeclined {
            reason: DeclineReason::ALL[(i / 10 % 14) as usize],
        },
        _ => match i % 3 {
            0 => Event::Failover {
                from: "aws".into(),
                from_region: None,
                to: Some("gcp".into()),
                to_region: None,
            },
            1 => Event::RevenueSettled { usd: 0.37 },
            _ => Event::CardRefreshed,
        },
    }
}

struct Wrk {
    rps: f64,
    p50: String,
    p99: String,
    errors: String,
}

fn wrk(url: &str, threads: u64, conns: u64, secs: u64) -> Wrk {
    let out = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
            "--latency".into(),
            url.into(),
        ])
        .output()
        .expect("running wrk (apt-get install wrk, or scripts/install-test-peers.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_string())
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Wrk {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        errors: if errors.is_empty() {
            "none".into()
        } else {
            errors
        },
    }
}

fn main() {
    let threads = knob::<u64>("WRK_THREADS", 1);
    let conns = knob::<u64>("WRK_CONNECTIONS", 32);
    let secs = knob::<u64>("WRK_SECONDS", 10);
    let per_sec = knob::<u64>("EVENTS_PER_SEC", 1000);
    let mut log = production_logging("dashboard_load");

    let state = tempfile::tempdir().unwrap();
    let text = format!(
        r#"[bridge]
state_dir = {state:?}
concurrency_cap = 20
[coalition]
network = "bench.local"
[rates.aws]
core_hour_usd = 0.05
ram_gib_hour_usd = 0.01
[rates.gcp]
core_hour_usd = 0.04
[[backends]]
name = "aws"
component = {fake:?}
[backends.config]
regions = ["eu-west-1", "us-east-1"]
[[backends]]
name = "gcp"
component = {fake:?}
[[backends]]
name = "baremetal"
component = {fake:?}
[[backends]]
name = "azure"
component = {fake:?}
enabled = false
"#,
        state = state.path().display().to_string(),
        fake = compute_bridge_testkit::components::FAKE,
    );
    let cfg = BootConfig::from_source(&Source::embedded("bench.toml", &text), &|_| None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dashboard, server, _runtime) = rt.block_on(async {
        let runtime = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
        let members = cfg
            .backends
            .iter()
            .map(|b| {
                let backend = runtime.load_backend(&cfg, b, "bench").unwrap().0;
                (
                    Arc::new(backend) as Arc<dyn compute_bridge_contract::backend::Backend>,
                    b.enabled,
                )
            })
            .collect();
        let fleet = Fleet::new(members, cfg.bridge.concurrency_cap);
        fleet.refresh_capabilities().await;
        let d = Dashboard::new(Settings::from_config(&cfg), fleet, Arc::new(SystemClock));
        d.set_provider_id("0123456789abcdef0123456789abcdef");
        let server = DashboardServer::start(d.clone(), "127.0.0.1", 0)
            .await
            .unwrap();
        (d, server, runtime)
    });
    let addr = server.local_addr();

    // Fill the recent-events ring and the window first, so every response
    // is full size.
    for i in 0..10_000 {
        dashboard.record(event(i));
    }

    // The cost of one record() on its own.
    let n = 1_000_000u64;
    let start = Instant::now();
    for i in 0..n {
        dashboard.record(event(i));
    }
    let record_ns = start.elapsed().as_nanos() as f64 / n as f64;
    let start = Instant::now();
    let snaps = 20_000;
    let mut bytes = 0;
    for _ in 0..snaps {
        bytes = serde_json::to_vec(&dashboard.snapshot()).unwrap().len();
    }
    let snapshot_us = start.elapsed().as_secs_f64() * 1e6 / snaps as f64;

    // 1,000 events/s in the background, in 1 ms steps.
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(AtomicU64::new(0));
    let recorder = {
        let (d, stop, recorded) = (dashboard.clone(), stop.clone(), recorded.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start.elapsed().as_secs_f64() * per_sec as f64;
                while (i as f64) < due {
                    d.record(event(i));
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            recorded.store(i, Ordering::Relaxed);
            i as f64 / start.elapsed().as_secs_f64()
        })
    };

    let load_before = loadavg();
    let mut rows = Vec::new();
    for path in ["/snapshot.json", "/dashboard", "/metrics"] {
        let url = format!("http://127.0.0.1:{}{path}", addr.port());
        rows.push((path, wrk(&url, threads, conns, secs)));
    }
    let load_after = loadavg();
    stop.store(true, Ordering::Relaxed);
    let event_rate = recorder.join().unwrap();
    rt.block_on(server.stop());

    println!("dashboard load benchmark");
    println!(
        "  machine: {} cores; load average before {load_before}, after {load_after}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  wrk -t{threads} -c{conns} -d{secs}s --latency on 127.0.0.1; events recorded meanwhile at {event_rate:.0}/s ({} total)",
        recorded.load(Ordering::Relaxed)
    );
    println!("  record(): {record_ns:.0} ns/event single-threaded (1,000,000 events)");
    println!("  snapshot build + JSON: {snapshot_us:.1} µs ({bytes} bytes, 50 recent events)");
    println!();
    println!("  | route | req/s | p50 | p99 | errors |");
    println!("  |---|---|---|---|---|");
    for (path, w) in &rows {
        println!(
            "  | {path} | {:.0} | {} | {} | {} |",
            w.rps, w.p50, w.p99, w.errors
        );
    }
    let snap = &rows[0].1;
    println!("  {}", log.summary());
    println!();
    println!(
        "  target /snapshot.json ≥ 10,000 req/s with p99 < 10 ms: {:.0} req/s, p99 {}",
        snap.rps, snap.p99
    );
}
