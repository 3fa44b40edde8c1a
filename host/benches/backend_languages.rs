//! The same calls to a backend written in Rust and one written in Python,
//! through the real host, a fresh instance each call, interleaved in one
//! run: what choosing the language costs an operator.
//!
//! - Rust: the shipped GCP component (`builtin:gcp`, wasm32-wasip2) against
//!   the GCP API fake; Python: the Hetzner component (`components/hetzner`,
//!   componentize-py) against the Hetzner API fake, both on 127.0.0.1.
//! - `capabilities` reads the backend's config and answers (no request);
//!   `status` of a provisioned instance makes one GET to its API and parses
//!   the JSON (GCP's token is in the host's cache, as it is between
//!   refreshes).
//! - Start-up: the compile of each component with an empty compile cache,
//!   and the load that reads the cache, as `compute-bridge run` does; the
//!   most memory one call's instance held (its linear memory and tables,
//!   the sandbox's own count), and the component's size.
//!
//! `cargo bench -p compute-bridge --bench backend_languages` (knobs:
//! `LANG_ROUNDS`, 20; `LANG_CALLS`, 25 per side and round; `BENCH_LOG=off`);
//! numbers in BENCHMARKS.md.

mod common;
use common::{gcp_toml, knob, load, loadavg, production_logging, quantile, workload};

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use compute_bridge_contract::backend::{Backend, GrantSpec, Instance, TdxRequirement};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::gcp_fake::GcpFake;
use compute_bridge_testkit::hetzner_fake::HetznerFake;
use compute_bridge_testkit::python::hetzner_component;

const IMAGE: &str =
    "ghcr.io/acme/worker@sha256:4f2c1b0d9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

fn grant(id: &str, tdx: TdxRequirement) -> GrantSpec {
    GrantSpec {
        request_id: id.into(),
        cpu_millicores: 2000,
        ram_mib: 4096,
        region: None,
        tdx,
        image: IMAGE.into(),
        valid_to: u64::MAX,
    }
}

fn hetzner_toml(wasm: &str, fake: &HetznerFake) -> String {
    format!(
        "[[backends]]\nname = \"hetzner\"\ncomponent = {wasm:?}\nmemory_limit_mib = 128\n\
         [backends.http]\nallowed_hosts = [\"{}\"]\n[backends.config]\napi_token = \"${{TOKEN}}\"\n\
         api_url = \"{}\"\nmax_cpu_millicores = 16000\nmax_ram_mib = 32768\n\
         [[backends.config.server_types]]\nname = \"cx22\"\ncpus = 2\nram_mib = 4096\n\
         eur_per_hour = 0.0074\nlocations = [\"fsn1\"]\n",
        fake.origin(),
        fake.api_url()
    )
}

/// One backend's side of the run.
struct Side {
    name: &'static str,
    backend: std::sync::Arc<ComponentBackend>,
    instance: Instance,
    size: u64,
    compile: Duration,
    cached_load: Duration,
    capabilities: Vec<Duration>,
    status: Vec<Duration>,
}

/// Load `toml` twice: into an empty compile cache, then from it.
fn load_timed(
    toml: &str,
    env: Vec<(&'static str, String)>,
) -> (
    tempfile::TempDir,
    compute_bridge_sandbox::Runtime,
    std::sync::Arc<ComponentBackend>,
    Duration,
    Duration,
) {
    let state = tempfile::tempdir().unwrap();
    let t = Instant::now();
    drop(load(state.path(), toml, env.clone()));
    let compile = t.elapsed();
    let t = Instant::now();
    let (rt, b, _) = load(state.path(), toml, env);
    (state, rt, b, compile, t.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut log = production_logging("backend_languages");
    let rounds: usize = knob("LANG_ROUNDS", 20);
    let per_round: usize = knob("LANG_CALLS", 25);
    println!("load before: {}", loadavg());

    let gcp = GcpFake::start("bridge-bench", &["us-central1-b"]);
    let (_gs, _grt, gb, g_compile, g_cached) =
        load_timed(&gcp_toml(&gcp.url()), vec![("KEY", gcp.key_json())]);
    let hetzner = HetznerFake::start();
    let wasm = hetzner_component();
    let (_hs, _hrt, hb, h_compile, h_cached) = load_timed(
        &hetzner_toml(wasm.to_str().unwrap(), &hetzner),
        vec![("TOKEN", hetzner.token())],
    );
    let gcp_size = compute_bridge_daemon::config::component::builtin_bytes("gcp")
        .expect("gcp is shipped")
        .len() as u64;
    let mut sides = [
        Side {
            name: "Rust (gcp)",
            instance: gb
                .provision(&grant("bench-gcp", TdxRequirement::Required), &workload())
                .await
                .expect("gcp provision"),
            backend: gb,
            size: gcp_size,
            compile: g_compile,
            cached_load: g_cached,
            capabilities: Vec::new(),
            status: Vec::new(),
        },
        Side {
            name: "Python (hetzner)",
            instance: hb
                .provision(&grant("bench-hetzner", TdxRequirement::None), &workload())
                .await
                .expect("hetzner provision"),
            backend: hb,
            size: std::fs::metadata(&wasm).unwrap().len(),
            compile: h_compile,
            cached_load: h_cached,
            capabilities: Vec::new(),
            status: Vec::new(),
        },
    ];
    // Warm up both (GCP's token goes into the host cache here).
    for s in &sides {
        for _ in 0..5 {
            s.backend.capabilities().await.expect("capabilities");
            s.backend.status(&s.instance).await.expect("status");
        }
    }
    let (mut cap_ratio, mut status_ratio) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut medians = [[Duration::ZERO; 2]; 2];
        for i in order {
            let s = &mut sides[i];
            let (mut c, mut st) = (Vec::new(), Vec::new());
            for _ in 0..per_round {
                let t = Instant::now();
                s.backend.capabilities().await.expect("capabilities");
                c.push(t.elapsed());
                let t = Instant::now();
                s.backend.status(&s.instance).await.expect("status");
                st.push(t.elapsed());
            }
            medians[i] = [median(&mut c), median(&mut st)];
            s.capabilities.extend(c);
            s.status.extend(st);
        }
        cap_ratio.push(medians[1][0].as_secs_f64() / medians[0][0].as_secs_f64());
        status_ratio.push(medians[1][1].as_secs_f64() / medians[0][1].as_secs_f64());
    }
    for s in &sides {
        s.backend.terminate(&s.instance).await.expect("terminate");
    }
    println!("load after: {}", loadavg());
    println!("\n| backend | call | p50 | p99 | calls |\n|---|---|---|---|---|");
    for s in &mut sides {
        let n = s.capabilities.len();
        println!(
            "| {} | `capabilities` | {} | {} | {n} |",
            s.name,
            ms(quantile(&mut s.capabilities, 0.5)),
            ms(quantile(&mut s.capabilities, 0.99)),
        );
        println!(
            "| {} | `status` (one GET) | {} | {} | {n} |",
            s.name,
            ms(quantile(&mut s.status, 0.5)),
            ms(quantile(&mut s.status, 0.99)),
        );
    }
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "{:.1}× / {:.1}× / {:.1}×",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        )
    };
    println!("\nPython ÷ Rust, per round (min / median / max):");
    println!("  capabilities {}", spread(&mut cap_ratio));
    println!("  status       {}", spread(&mut status_ratio));
    println!(
        "\n| backend | component | compile, empty cache | load from the cache | peak memory of one call |\n|---|---|---|---|---|"
    );
    for s in &sides {
        println!(
            "| {} | {:.1} MiB | {} | {} | {:.1} MiB |",
            s.name,
            s.size as f64 / (1 << 20) as f64,
            ms(s.compile),
            ms(s.cached_load),
            s.backend.stats.peak_memory_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        );
    }
    assert!(gcp.rejections().is_empty() && hetzner.rejections().is_empty());
    println!("{}", log.summary());
}
