//! `/metrics` over TCP: exactly the dashboard's numbers, named and labelled
//! by the rules in docs/dashboard.md, and agreeing with `/snapshot.json`.

use std::collections::{BTreeMap, BTreeSet};

use compute_bridge_contract::backend::Usage;
use compute_bridge_contract::events::{Event, EventSink, SwapOutcome};
use compute_bridge_daemon::dashboard::DashboardServer;
use compute_bridge_testkit::http;

use super::{Rig, grant};

/// Every family, as declared in `# TYPE` lines.
const FAMILIES: &[(&str, &str)] = &[
    ("compute_bridge_provider_registered", "gauge"),
    ("compute_bridge_provider_alive", "gauge"),
    ("compute_bridge_uptime_seconds", "gauge"),
    ("compute_bridge_subscribers", "gauge"),
    ("compute_bridge_grants_active", "gauge"),
    ("compute_bridge_grants_cap", "gauge"),
    ("compute_bridge_grants_served", "counter"),
    ("compute_bridge_grants_completed", "counter"),
    ("compute_bridge_grants_declined", "counter"),
    ("compute_bridge_failovers", "counter"),
    ("compute_bridge_cpu_core_seconds", "counter"),
    ("compute_bridge_ram_mib_seconds", "counter"),
    ("compute_bridge_network_bytes", "counter"),
    ("compute_bridge_settled_revenue_usd", "counter"),
    ("compute_bridge_backend_enabled", "gauge"),
    ("compute_bridge_backend_capacity_cpu_millicores", "gauge"),
    ("compute_bridge_backend_capacity_ram_mib", "gauge"),
    ("compute_bridge_backend_used_cpu_millicores", "gauge"),
    ("compute_bridge_backend_used_ram_mib", "gauge"),
    ("compute_bridge_backend_grants_active", "gauge"),
    ("compute_bridge_backend_window_grants_served", "gauge"),
    ("compute_bridge_backend_window_grants_completed", "gauge"),
    ("compute_bridge_backend_window_failovers", "gauge"),
    ("compute_bridge_backend_window_cpu_core_seconds", "gauge"),
    ("compute_bridge_backend_window_ram_mib_seconds", "gauge"),
    ("compute_bridge_backend_window_network_bytes", "gauge"),
    ("compute_bridge_backend_window_estimated_cost_usd", "gauge"),
    ("compute_bridge_backend_window_idle_ratio", "gauge"),
    ("compute_bridge_component_loaded_timestamp_seconds", "gauge"),
    ("compute_bridge_component_swaps", "counter"),
    ("compute_bridge_component_swaps_refused", "counter"),
    ("compute_bridge_component_rollbacks", "counter"),
    ("compute_bridge_window_observed_seconds", "gauge"),
    ("compute_bridge_window_grants_served", "gauge"),
    ("compute_bridge_window_grants_completed", "gauge"),
    ("compute_bridge_window_grants_declined", "gauge"),
    ("compute_bridge_window_failovers", "gauge"),
    ("compute_bridge_window_cpu_core_seconds", "gauge"),
    ("compute_bridge_window_ram_mib_seconds", "gauge"),
    ("compute_bridge_window_network_bytes", "gauge"),
    ("compute_bridge_window_idle_ratio", "gauge"),
    ("compute_bridge_window_estimated_cost_usd", "gauge"),
    ("compute_bridge_window_settled_revenue_usd", "gauge"),
    ("compute_bridge_window_net_usd", "gauge"),
    ("compute_bridge_window_margin_ratio", "gauge"),
];

struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
    /// (series with labels, value)
    samples: BTreeMap<String, f64>,
}

fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics: {text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "{line}");
            helps.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), ty.to_string());
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').unwrap();
            assert!(
                name.ends_with(&format!("_{unit}")),
                "unit not in the name: {line}"
            );
        } else if line == "# EOF" {
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            if let Some((_, labels)) = series.split_once('{') {
                let labels = labels.strip_suffix('}').unwrap();
                for pair in labels.split(',') {
                    let (k, _) = pair.split_once('=').unwrap();
                    assert_eq!(k, "backend", "a label other than backend: {line}");
                }
            }
            samples.insert(series.to_string(), value.parse().unwrap());
        }
    }
    Exposition {
        types,
        helps,
        samples,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exactly_the_dashboard_numbers() {
    let state = tempfile::tempdir().unwrap();
    let rig = Rig::new(state.path(), &["us-east-1"], true).await;
    let mut placed = Vec::new();
    for i in 0..3 {
        placed.push(
            rig.place(
                &grant(&format!("r{i}"), "img", None),
                &crate::support::workload(),
            )
            .await
            .unwrap(),
        );
    }
    rig.complete(
        placed.pop().unwrap(),
        Usage {
            cpu_core_seconds: 3600,
            ram_mib_seconds: 1024 * 3600,
            net_bytes: 5_000,
        },
    )
    .await;
    rig.dashboard.record(Event::RevenueSettled { usd: 1.0 });
    for outcome in [SwapOutcome::Live, SwapOutcome::Refused, SwapOutcome::Live] {
        rig.dashboard.record(Event::ComponentSwap {
            backend: "aws".into(),
            from: format!("sha256:{}", "ab".repeat(6)),
            to: format!("sha256:{}", "cd".repeat(6)),
            outcome,
        });
    }
    rig.clock.advance(5);
    rig.dashboard.sample_capacity();
    rig.clock.advance(5);
    rig.dashboard.sample_capacity();
    let server = DashboardServer::start(rig.dashboard.clone(), "127.0.0.1", 0)
        .await
        .unwrap();
    let r = http::get_local(server.local_addr(), "/metrics");
    let snap: serde_json::Value =
        serde_json::from_str(&http::get_local(server.local_addr(), "/snapshot.json").body).unwrap();
    server.stop().await;

    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers
    );
    let m = parse(&r.body);
    let want: BTreeMap<String, String> = FAMILIES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        m.types, want,
        "the families differ from the dashboard's fields"
    );
    for name in m.types.keys() {
        assert!(m.helps.contains(name), "{name} has no HELP");
    }
    for series in m.samples.keys() {
        assert!(series.starts_with("compute_bridge_"), "{series}");
    }

    let value = |series: &str| -> f64 {
        *m.samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{}", r.body))
    };
    let num = |ptr: &str| snap.pointer(ptr).unwrap().as_f64().unwrap();
    assert_eq!(value("compute_bridge_grants_active"), 2.0);
    assert_eq!(value("compute_bridge_grants_active"), num("/grants/active"));
    assert_eq!(value("compute_bridge_grants_cap"), 8.0);
    assert_eq!(value("compute_bridge_grants_served_total"), 3.0);
    assert_eq!(value("compute_bridge_failovers_total"), 3.0);
    assert_eq!(value("compute_bridge_cpu_core_seconds_total"), 3600.0);
    assert_eq!(value("compute_bridge_settled_revenue_usd_total"), 1.0);
    assert_eq!(
        value("compute_bridge_component_swaps_total{backend=\"aws\"}"),
        2.0
    );
    assert_eq!(
        value("compute_bridge_component_swaps_refused_total{backend=\"aws\"}"),
        num("/backends/1/component_swaps/refused")
    );
    assert_eq!(
        value("compute_bridge_component_rollbacks_total{backend=\"gcp\"}"),
        0.0
    );
    assert_eq!(
        value("compute_bridge_component_loaded_timestamp_seconds{backend=\"aws\"}"),
        num("/backends/1/component_loaded_at_unix")
    );
    assert_eq!(
        value("compute_bridge_backend_enabled{backend=\"azure\"}"),
        0.0
    );
    assert_eq!(
        value("compute_bridge_backend_capacity_cpu_millicores{backend=\"aws\"}"),
        80_000.0
    );
    assert_eq!(
        value("compute_bridge_backend_used_cpu_millicores{backend=\"aws\"}"),
        num("/backends/1/used/cpu_millicores")
    );
    assert_eq!(
        value("compute_bridge_backend_window_failovers{backend=\"gcp\"}"),
        3.0
    );
    // 1 core-h at $0.05 plus 1 GiB-h at $0.01.
    let cost = value("compute_bridge_backend_window_estimated_cost_usd{backend=\"aws\"}");
    assert!((cost - 0.06).abs() < 1e-9, "{cost}");
    assert_eq!(cost, num("/backends/1/window/estimated_cost_usd"));
    assert_eq!(
        value("compute_bridge_window_net_usd"),
        num("/window/net_usd")
    );
    assert_eq!(
        value("compute_bridge_window_margin_ratio"),
        num("/window/margin_ratio")
    );
    assert_eq!(
        value("compute_bridge_window_idle_ratio"),
        num("/window/idle_ratio")
    );
    assert_eq!(value("compute_bridge_window_observed_seconds"), 5.0);
    // Attestation is off: no MR_TD verdict is claimed.
    assert!(!r.body.contains("mrtd"), "{}", r.body);
}
