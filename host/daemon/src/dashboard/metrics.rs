//! `GET /metrics`: the dashboard's numbers in the OpenMetrics text format
//! (prometheus-client), built from the same snapshot as the page.
//!
//! Names start with `compute_bridge_` and end in their unit; `backend` is
//! the only label, so nothing about a grant can become a series. Lifetime
//! counters are counters (`_total`); everything in the 24 h window is a
//! gauge (it goes down as the window rolls). Fields that are text (coalition,
//! module version, provider id prefix) or lists (recent events) are not
//! exported. `docs/dashboard.md` maps every field to its metric.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::snapshot::{MrtdState, ProviderStatus, Snapshot};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition for `s`.
pub fn render(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("compute_bridge");
    registry.register_collector(Box::new(SnapshotCollector(s.clone())));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

fn unit(u: &str) -> Unit {
    match u {
        "seconds" => Unit::Seconds,
        "bytes" => Unit::Bytes,
        other => Unit::Other(other.to_string()),
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    u: Option<&str>,
    v: impl EncodeGaugeValue,
) -> std::fmt::Result {
    let u = u.map(unit);
    let mut m = enc.encode_descriptor(name, help, u.as_ref(), MetricType::Gauge)?;
    m.encode_gauge(&v)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    u: Option<&str>,
    v: impl EncodeCounterValue,
) -> std::fmt::Result {
    let u = u.map(unit);
    let mut m = enc.encode_descriptor(name, help, u.as_ref(), MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, f64>(&v, None)
}

/// One gauge per backend, labelled `backend`; backends without a value
/// (`None`) are left out.
fn per_backend<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    s: &Snapshot,
    name: &'static str,
    help: &str,
    u: Option<&str>,
    v: impl Fn(&super::snapshot::BackendSnapshot) -> Option<V>,
) -> std::fmt::Result {
    let u = u.map(unit);
    let mut m = enc.encode_descriptor(name, help, u.as_ref(), MetricType::Gauge)?;
    for b in &s.backends {
        if let Some(value) = v(b) {
            let labels = [("backend", b.name.as_str())];
            m.encode_family(&labels)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// One counter per backend, labelled `backend`.
fn per_backend_counter(
    enc: &mut DescriptorEncoder,
    s: &Snapshot,
    name: &'static str,
    help: &str,
    v: impl Fn(&super::snapshot::BackendSnapshot) -> u64,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for b in &s.backends {
        let labels = [("backend", b.name.as_str())];
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, f64>(&v(b), None)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let e = &mut enc;
        let p = &s.provider;

        // Header.
        gauge(
            e,
            "provider_registered",
            "1 while the provider card is published (status registered or alive).",
            None,
            i64::from(p.status != ProviderStatus::NotRegistered),
        )?;
        gauge(
            e,
            "provider_alive",
            "1 while the provider card is refreshed on schedule (status alive).",
            None,
            i64::from(p.status == ProviderStatus::Alive),
        )?;
        if matches!(p.mrtd, MrtdState::Ok | MrtdState::Mismatch) {
            gauge(
                e,
                "mrtd_ok",
                "1 if the TDX quote's MR_TD matches the expected value, 0 if not (absent while attestation is off or pending).",
                None,
                i64::from(p.mrtd == MrtdState::Ok),
            )?;
        }
        gauge(
            e,
            "uptime",
            "Seconds since the bridge started.",
            Some("seconds"),
            p.uptime_seconds,
        )?;
        gauge(
            e,
            "subscribers",
            "Coalition agents subscribed to this provider.",
            None,
            s.subscribers,
        )?;
        gauge(
            e,
            "grants_active",
            "Grants running now.",
            None,
            s.grants.active,
        )?;
        gauge(
            e,
            "grants_cap",
            "The concurrency cap on running grants.",
            None,
            s.grants.cap,
        )?;

        // Lifetime.
        let l = &s.lifetime;
        counter(
            e,
            "grants_served",
            "Grants placed on a backend, over the bridge's life.",
            None,
            l.grants_served,
        )?;
        counter(
            e,
            "grants_completed",
            "Grants whose workload ended, over the bridge's life.",
            None,
            l.grants_completed,
        )?;
        counter(
            e,
            "grants_declined",
            "Grants declined, over the bridge's life.",
            None,
            l.grants_declined,
        )?;
        counter(
            e,
            "failovers",
            "Provisioning failovers, over the bridge's life.",
            None,
            l.failovers,
        )?;
        counter(
            e,
            "cpu",
            "Core-seconds used by finished workloads, over the bridge's life.",
            Some("core_seconds"),
            l.cpu_core_seconds,
        )?;
        counter(
            e,
            "ram",
            "MiB-seconds used by finished workloads, over the bridge's life.",
            Some("mib_seconds"),
            l.ram_mib_seconds,
        )?;
        counter(
            e,
            "network",
            "Bytes moved by finished workloads, over the bridge's life.",
            Some("bytes"),
            l.net_bytes,
        )?;
        counter(
            e,
            "settled_revenue",
            "Revenue settled to this provider, over the bridge's life, USD.",
            Some("usd"),
            l.settled_revenue_usd,
        )?;

        // Backends.
        per_backend(
            e,
            s,
            "component_loaded_timestamp",
            "Unix time the backend's current component became current: the bridge's start, a live swap, or a rollback.",
            Some("seconds"),
            |b| b.component_loaded_at_unix.map(|t| t as i64),
        )?;
        per_backend_counter(
            e,
            s,
            "component_swaps",
            "Live swaps of the backend's component that went live, since the bridge started.",
            |b| b.component_swaps.live,
        )?;
        per_backend_counter(
            e,
            s,
            "component_swaps_refused",
            "Live swaps refused at their read-only check (the old component stayed), since the bridge started.",
            |b| b.component_swaps.refused,
        )?;
        per_backend_counter(
            e,
            s,
            "component_rollbacks",
            "Live swaps the bridge rolled back by itself after failed probation polls, since the bridge started.",
            |b| b.component_swaps.rolled_back,
        )?;
        per_backend(
            e,
            s,
            "backend_enabled",
            "1 if grants are routed to the backend.",
            None,
            |b| Some(i64::from(b.enabled)),
        )?;
        per_backend(
            e,
            s,
            "backend_capacity_cpu",
            "CPU the backend declared.",
            Some("millicores"),
            |b| b.capacity.as_ref().map(|c| c.cpu_millicores),
        )?;
        per_backend(
            e,
            s,
            "backend_capacity_ram",
            "Memory the backend declared.",
            Some("mib"),
            |b| b.capacity.as_ref().map(|c| c.ram_mib),
        )?;
        per_backend(
            e,
            s,
            "backend_used_cpu",
            "CPU reserved by running grants.",
            Some("millicores"),
            |b| Some(b.used.cpu_millicores),
        )?;
        per_backend(
            e,
            s,
            "backend_used_ram",
            "Memory reserved by running grants.",
            Some("mib"),
            |b| Some(b.used.ram_mib),
        )?;
        per_backend(
            e,
            s,
            "backend_grants_active",
            "Grants running on the backend.",
            None,
            |b| Some(b.active_grants),
        )?;
        per_backend(
            e,
            s,
            "backend_window_grants_served",
            "Grants placed on the backend in the last 24 h.",
            None,
            |b| Some(b.window.grants_served),
        )?;
        per_backend(
            e,
            s,
            "backend_window_grants_completed",
            "Grants that ended on the backend in the last 24 h.",
            None,
            |b| Some(b.window.grants_completed),
        )?;
        per_backend(
            e,
            s,
            "backend_window_failovers",
            "Failovers away from the backend in the last 24 h.",
            None,
            |b| Some(b.window.failovers_from),
        )?;
        per_backend(
            e,
            s,
            "backend_window_cpu",
            "Core-seconds used on the backend by workloads that ended in the last 24 h.",
            Some("core_seconds"),
            |b| Some(b.window.cpu_core_seconds),
        )?;
        per_backend(
            e,
            s,
            "backend_window_ram",
            "MiB-seconds used on the backend by workloads that ended in the last 24 h.",
            Some("mib_seconds"),
            |b| Some(b.window.ram_mib_seconds),
        )?;
        per_backend(
            e,
            s,
            "backend_window_network",
            "Bytes moved on the backend by workloads that ended in the last 24 h.",
            Some("bytes"),
            |b| Some(b.window.net_bytes),
        )?;
        per_backend(
            e,
            s,
            "backend_window_estimated_cost",
            "Estimated cost of the backend's last-24 h usage at the operator's rate, USD.",
            Some("usd"),
            |b| Some(b.window.estimated_cost_usd),
        )?;
        per_backend(
            e,
            s,
            "backend_window_idle",
            "Share of the backend's declared CPU not reserved by grants over the last 24 h.",
            Some("ratio"),
            |b| b.window.idle_ratio,
        )?;

        // The window, all backends together.
        let w = &s.window;
        gauge(
            e,
            "window_observed",
            "Seconds of the last 24 h the bridge observed.",
            Some("seconds"),
            w.observed_seconds,
        )?;
        gauge(
            e,
            "window_grants_served",
            "Grants placed in the last 24 h.",
            None,
            w.grants_served,
        )?;
        gauge(
            e,
            "window_grants_completed",
            "Grants that ended in the last 24 h.",
            None,
            w.grants_completed,
        )?;
        gauge(
            e,
            "window_grants_declined",
            "Grants declined in the last 24 h (reasons on the dashboard and in snapshot.json).",
            None,
            w.grants_declined,
        )?;
        gauge(
            e,
            "window_failovers",
            "Provisioning failovers in the last 24 h.",
            None,
            w.failovers,
        )?;
        gauge(
            e,
            "window_cpu",
            "Core-seconds used by workloads that ended in the last 24 h.",
            Some("core_seconds"),
            w.cpu_core_seconds,
        )?;
        gauge(
            e,
            "window_ram",
            "MiB-seconds used by workloads that ended in the last 24 h.",
            Some("mib_seconds"),
            w.ram_mib_seconds,
        )?;
        gauge(
            e,
            "window_network",
            "Bytes moved by workloads that ended in the last 24 h.",
            Some("bytes"),
            w.net_bytes,
        )?;
        if let Some(idle) = w.idle_ratio {
            gauge(
                e,
                "window_idle",
                "1 - reserved core-seconds / declared core-seconds over the observed part of the last 24 h.",
                Some("ratio"),
                idle,
            )?;
        }
        gauge(
            e,
            "window_estimated_cost",
            "Estimated cost of the last 24 h's usage at the operator's rates, USD.",
            Some("usd"),
            w.estimated_cost_usd,
        )?;
        gauge(
            e,
            "window_settled_revenue",
            "Revenue settled to this provider in the last 24 h, USD.",
            Some("usd"),
            w.settled_revenue_usd,
        )?;
        gauge(
            e,
            "window_net",
            "Settled revenue minus estimated cost over the last 24 h, USD.",
            Some("usd"),
            w.net_usd,
        )?;
        if let Some(m) = w.margin_ratio {
            gauge(
                e,
                "window_margin",
                "Net / settled revenue over the last 24 h (absent without revenue).",
                Some("ratio"),
                m,
            )?;
        }
        Ok(())
    }
}
