//! One host→component call, including a fresh instantiation, beside the same
//! backend logic called natively, in the same run.
//!
//! ```sh
//! cargo bench -p compute-bridge --bench sandbox_call
//! ```
//!
//! Prints p50/p90/p99 per call for `status` (a small record in, a variant
//! out) and `provision` (records both ways) on each side, and the ratio.

#[path = "native_fake.rs"]
mod native_fake;

mod common;
use common::{FAKE_CONFIG, fake_grant, production_logging, workload};

use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_bridge_contract::backend::Backend;
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_sandbox::{Runtime, RuntimeOptions};

const ITERATIONS: usize = 20_000;
const WARMUP: usize = 2_000;

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

async fn measure<F, Fut>(mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..WARMUP {
        f(i).await;
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let t = Instant::now();
        f(i).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Stats {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let mut log = production_logging("sandbox_call");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let state = tempfile::tempdir().unwrap();
        let text = format!(
            "[bridge]\nstate_dir = {:?}\n[[backends]]\nname = \"fake\"\ncomponent = {:?}\n[backends.config]\nregions = [\"bench-1\"]\nrun_seconds = 3600\n",
            state.path().display().to_string(),
            compute_bridge_testkit::components::FAKE
        );
        let cfg = BootConfig::from_source(&Source::embedded("bench.toml", &text), &|_| None).unwrap();
        let runtime = Runtime::new(&RuntimeOptions::for_config(&cfg)).unwrap();
        let sandboxed: Arc<dyn Backend> =
            Arc::new(runtime.load_backend(&cfg, &cfg.backends[0], "bench").unwrap().0);
        let native: Arc<dyn Backend> = Arc::new(native_fake::NativeFake::new("fake", FAKE_CONFIG));

        let instance = native.provision(&fake_grant(0), &workload()).await.unwrap();
        let w = workload();
        println!("one call, {ITERATIONS} samples after {WARMUP} warm-up, current-thread runtime");
        println!("| call | side | p50 | p90 | p99 |");
        println!("|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for call in ["status", "provision"] {
            let mut p50s = Vec::new();
            for (side, b) in [("sandboxed", &sandboxed), ("native", &native)] {
                let s = match call {
                    "status" => {
                        measure(|_| {
                            let (b, i) = (b.clone(), &instance);
                            async move {
                                b.status(i).await.unwrap();
                            }
                        })
                        .await
                    }
                    _ => {
                        measure(|n| {
                            let (b, w) = (b.clone(), &w);
                            async move {
                                b.provision(&fake_grant(n), w).await.unwrap();
                            }
                        })
                        .await
                    }
                };
                println!("| {call} | {side} | {} | {} | {} |", us(s.p50), us(s.p90), us(s.p99));
                p50s.push(s.p50);
            }
            ratios.push((call, p50s[0].as_secs_f64() / p50s[1].as_secs_f64().max(1e-9)));
        }
        for (call, r) in ratios {
            println!("{call}: sandboxed p50 is {r:.0}x native");
        }
    });
    println!("{}", log.summary());
}
