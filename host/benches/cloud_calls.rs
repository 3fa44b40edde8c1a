//! What a cloud backend call costs through the host, against the API fakes
//! on 127.0.0.1 (so the numbers are the bridge's own cost, not a cloud's):
//!
//! - `status` with the token in the host's cache (the common case);
//! - `status` with an empty cache: the token is fetched first (for GCP that
//!   includes the RS256 signature made inside the sandbox);
//! - a whole `provision` + `terminate`.
//!
//! `cargo bench -p compute-bridge --bench cloud_calls` (`BENCH_LOG=off`: no
//! log subscriber; by default the bridge's, into a file); numbers in
//! BENCHMARKS.md.

mod common;
use common::{gcp_toml, load, production_logging, workload};

use std::time::{Duration, Instant};

use compute_bridge_contract::backend::{Backend, GrantSpec, Instance, TdxRequirement};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::azure_fake::{AzureAccount, AzureFake};
use compute_bridge_testkit::gcp_fake::GcpFake;

const IMAGE: &str =
    "ghcr.io/acme/worker@sha256:4f2c1b0d9e8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

fn grant(id: &str) -> GrantSpec {
    GrantSpec {
        request_id: id.into(),
        cpu_millicores: 2000,
        ram_mib: 4096,
        region: None,
        tdx: TdxRequirement::Required,
        image: IMAGE.into(),
        valid_to: u64::MAX,
    }
}

struct Stats(Vec<Duration>);

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = self.0.clone();
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        write!(
            f,
            "n={:<4} mean {:>7.2} ms  p50 {:>7.2} ms  p95 {:>7.2} ms",
            v.len(),
            ms(mean),
            ms(v[v.len() / 2]),
            ms(v[v.len() * 95 / 100])
        )
    }
}

async fn measure(backend: &ComponentBackend, inst: &Instance, label: &str) {
    let mut warm = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        backend.status(inst).await.expect("status");
        warm.push(t.elapsed());
    }
    let mut cold = Vec::new();
    for _ in 0..50 {
        backend.granted().cache.clear();
        let t = Instant::now();
        backend.status(inst).await.expect("status");
        cold.push(t.elapsed());
    }
    let mut life = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let x = backend
            .provision(&grant(&format!("life-{i}")), &workload())
            .await
            .expect("provision");
        backend.terminate(&x).await.expect("terminate");
        life.push(t.elapsed());
    }
    println!("{label} status, cached token   {}", Stats(warm));
    println!("{label} status, token fetched  {}", Stats(cold));
    println!("{label} provision + terminate  {}", Stats(life));
}

#[tokio::main]
async fn main() {
    let mut log = production_logging("cloud_calls");
    let state = tempfile::tempdir().unwrap();

    let gcp = GcpFake::start("bridge-bench", &["us-central1-b"]);
    let url = gcp.url();
    let toml = gcp_toml(&url);
    let (_rt, b, _) = load(state.path(), &toml, vec![("KEY", gcp.key_json())]);
    let inst = b
        .provision(&grant("bench"), &workload())
        .await
        .expect("provision");
    measure(&b, &inst, "gcp  ").await;

    let azure = AzureFake::start(AzureAccount::default());
    let a = azure.account();
    let url = azure.url();
    let toml = format!(
        "[[backends]]\nname = \"azure\"\ncomponent = \"builtin:azure\"\n[backends.http]\nallowed_hosts = [\"{url}\"]\n\
         [backends.config]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"${{SECRET}}\"\nsubscription_id = \"{}\"\n\
         resource_group = \"{}\"\nmanagement_url = \"{url}\"\nlogin_url = \"{url}\"\n\
         [backends.config.networks.eastus]\nsubnet_id = \"{}\"\n\
         [[backends.config.vm_sizes]]\nname = \"Standard_DC4es_v5\"\ncpus = 4\nram_mib = 16384\ntdx = true\nregions = [\"eastus\"]\n",
        a.tenant_id,
        a.client_id,
        a.subscription_id,
        a.resource_group,
        a.subnet_id("eastus")
    );
    let (_rt2, b, _) = load(
        state.path(),
        &toml,
        vec![("SECRET", a.client_secret.clone())],
    );
    let inst = b
        .provision(&grant("bench"), &workload())
        .await
        .expect("provision");
    measure(&b, &inst, "azure").await;
    assert!(gcp.rejections().is_empty() && azure.rejections().is_empty());
    println!("{}", log.summary());
}
