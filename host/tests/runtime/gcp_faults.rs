//! The GCP backend through the fleet when Compute Engine fails: an
//! `instances.insert` that took effect but whose answer was lost (the
//! Compute Engine fake behind the fault-injecting proxy), and a region out
//! of stock, which the fleet moves past to the next region and the
//! dashboard shows. Every test ends with the fake holding no instance of
//! the grants that failed.

use std::sync::Arc;

use compute_bridge_contract::backend::{GrantSpec, TdxRequirement};
use compute_bridge_contract::clock::ManualClock;
use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_daemon::config::BootConfig;
use compute_bridge_daemon::dashboard::snapshot::RecentKind;
use compute_bridge_daemon::dashboard::{Dashboard, Settings};
use compute_bridge_daemon::fleet::{Fleet, PlaceError};
use compute_bridge_daemon::grant::failover_events;
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::components;
use compute_bridge_testkit::fault_proxy::{Fault, FaultProxy};
use compute_bridge_testkit::gcp_fake::GcpFake;

use crate::gcp::PROJECT;
use crate::support::{self, cloud_grant, workload};

/// The zone every grant here lands in first.
const ZONE: &str = "us-central1-a";

/// `instances.insert` in [`ZONE`], as the proxy names it.
fn insert_action() -> String {
    format!("POST /compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
}

/// `instances.list` in [`ZONE`] (the lost-answer lookup).
fn list_action() -> String {
    format!("GET /compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
}

/// The fake, with `us-central1-a`, `us-central1-f` and `europe-west4-a`.
fn start_fake() -> GcpFake {
    GcpFake::start(PROJECT, &[ZONE, "us-central1-f", "europe-west4-a"])
}

/// A fleet of `gcp` (its API at `origin`, the fake or a proxy in front of
/// it; HTTP calls time out after three seconds), then a healthy fake
/// `spare` when `with_spare`. `gcp` offers n2-standard-2 in
/// us-central1-a, us-central1-f and europe-west4-a, in that order.
async fn fleet(
    state: &std::path::Path,
    fake: &GcpFake,
    origin: &str,
    with_spare: bool,
) -> (Fleet, Vec<Arc<ComponentBackend>>, BootConfig) {
    let spare = if with_spare {
        support::backend_toml("spare", components::FAKE, "")
    } else {
        String::new()
    };
    let text = format!(
        r#"[[backends]]
name = "gcp"
component = "builtin:gcp"

[backends.http]
allowed_hosts = [{origin:?}]
timeout_sec = 3

[backends.config]
project = "{PROJECT}"
service_account_key = "${{GCP_KEY}}"
compute_url = {origin:?}

[[backends.config.machine_types]]
name = "n2-standard-2"
cpus = 2
ram_mib = 8192
usd_per_hour = 0.10
zones = ["{ZONE}", "us-central1-f", "europe-west4-a"]

{spare}"#
    );
    // The token endpoint is reached through `origin` too.
    let cfg = support::config_with_env(state, &text, &[("GCP_KEY", fake.key_json_via(origin))]);
    let (fleet, backends) = support::fleet_over(&cfg).await;
    (fleet, backends, cfg)
}

fn grant(id: &str) -> GrantSpec {
    cloud_grant(id, TdxRequirement::None)
}

/// Names of the instances the fake holds.
fn held(fake: &GcpFake) -> Vec<String> {
    fake.instances().into_iter().map(|(_, n)| n).collect()
}

#[tokio::test]
async fn a_lost_insert_answer_is_cleaned_up_and_the_grant_fails_over() {
    let fake = start_fake();
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, _, _) = fleet(state.path(), &fake, &proxy.origin(), true).await;

    // (fault, whether the insert reached the fake, what the failover says)
    let none = "no instance was created for this grant (looked 3 times)";
    let deleted = "which it had created";
    let cases = [
        (Fault::Refuse500, false, ["HTTP 500", none]),
        (Fault::Hang, false, ["timed out", none]),
        (Fault::Lose500, true, ["HTTP 500", deleted]),
        (Fault::LoseHang, true, ["timed out", deleted]),
        (Fault::LoseReset, true, ["transport", deleted]),
    ];
    for (n, (fault, landed, says)) in cases.into_iter().enumerate() {
        let id = format!("req-fault-{n}");
        let made_before = fake.inserted().len();
        proxy.fail(&insert_action(), 1, fault);
        let p = fleet
            .provision(&grant(&id), &workload())
            .await
            .unwrap_or_else(|d| panic!("{fault:?}: declined instead of failing over: {d}"));
        assert_eq!(p.backend, "spare", "{fault:?}");
        assert_eq!(p.failovers.len(), 1, "{fault:?}: {:?}", p.failovers);
        let f = &p.failovers[0];
        assert_eq!(
            (f.from.as_str(), f.kind.to_string()),
            ("gcp", "transient".into()),
            "{fault:?}"
        );
        for says in says {
            assert!(f.message.contains(says), "{fault:?}: {}", f.message);
        }
        // Whether the insert took effect, and that nothing of it is left.
        assert_eq!(
            fake.inserted().len() - made_before,
            usize::from(landed),
            "{fault:?}"
        );
        assert_eq!(
            held(&fake),
            Vec::<String>::new(),
            "{fault:?}: {}",
            f.message
        );
        drop(p.reservation);
    }
    let faulted: Vec<Fault> = proxy.seen().iter().filter_map(|s| s.fault).collect();
    assert_eq!(faulted.len(), 5, "{:?}", proxy.seen());
    assert_eq!(fleet.active(), 0);
    assert_eq!(fake.rejections(), Vec::<String>::new());

    // Healed, the same backend serves the next grant itself.
    let p = fleet
        .provision(&grant("req-after"), &workload())
        .await
        .unwrap();
    assert_eq!(p.backend, "gcp");
    assert!(p.failovers.is_empty());
    assert_eq!(held(&fake), vec![p.instance.instance_id.clone()]);
}

#[tokio::test]
async fn with_no_other_backend_a_lost_answer_is_declined_cleanly() {
    let fake = start_fake();
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, _, _) = fleet(state.path(), &fake, &proxy.origin(), false).await;
    proxy.fail(&insert_action(), 1, Fault::Lose500);
    let d = fleet
        .provision(&grant("req-alone"), &workload())
        .await
        .err()
        .expect("declined");
    assert!(matches!(d, PlaceError::AllFailed { .. }), "{d}");
    assert_eq!(d.reason_kind(), "backends-failed");
    assert!(d.to_string().contains("gcp/us-central1 (transient"), "{d}");
    assert_eq!(fleet.active(), 0);
    assert_eq!(fake.inserted().len(), 1, "the insert took effect");
    assert_eq!(held(&fake), Vec::<String>::new());
}

#[tokio::test]
async fn when_the_cleanup_cannot_look_the_orphan_sweep_removes_the_instance() {
    // The insert's answer is lost and the lookup fails too: the component
    // cannot find what it made and says so; the instance carries the
    // provider's labels, and the orphan sweep at the next start deletes it.
    let fake = start_fake();
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, backends, _) = fleet(state.path(), &fake, &proxy.origin(), true).await;
    proxy.fail(&insert_action(), 1, Fault::Lose500);
    proxy.fail(&list_action(), 1, Fault::Refuse500);
    let p = fleet
        .provision(&grant("req-unchecked"), &workload())
        .await
        .unwrap();
    assert_eq!(p.backend, "spare");
    let msg = &p.failovers[0].message;
    assert!(
        msg.contains("could not check") && msg.contains("sweep_orphans"),
        "{msg}"
    );
    let left = held(&fake);
    assert_eq!(left.len(), 1, "{:?}\n{msg}", proxy.seen());

    proxy.heal();
    let journal = std::collections::HashSet::new();
    let swept = compute_bridge_daemon::grant::sweep_orphans(backends[0].as_ref(), &journal).await;
    assert_eq!(swept, left);
    assert_eq!(held(&fake), Vec::<String>::new());
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

/// Region A's zones are out of stock: the component tries each zone of A,
/// answers `no-capacity`, the fleet offers the grant to region B, which
/// serves it, and the dashboard shows `gcp/us-central1 → gcp/europe-west4`.
#[tokio::test]
async fn a_region_out_of_stock_fails_over_to_the_next_region_on_the_dashboard() {
    let fake = start_fake();
    let state = tempfile::tempdir().unwrap();
    let (fleet, _, cfg) = fleet(state.path(), &fake, &fake.url(), true).await;
    fake.stock_out(ZONE);
    fake.stock_out("us-central1-f");

    let p = fleet
        .provision(&grant("req-regions"), &workload())
        .await
        .unwrap();
    assert_eq!(
        (p.backend.as_str(), p.instance.region.as_str()),
        ("gcp", "europe-west4")
    );
    let steps = support::failover_steps(&p.failovers);
    assert_eq!(
        steps,
        [("gcp", Some("us-central1"), "no-capacity".to_string())]
    );
    assert!(
        p.failovers[0]
            .message
            .contains("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"),
        "{}",
        p.failovers[0].message
    );
    // Both zones of us-central1, in the operator's order, then europe-west4.
    assert_eq!(
        fake.insert_zones(),
        [ZONE, "us-central1-f", "europe-west4-a"]
    );
    assert_eq!(
        fake.instances(),
        [("europe-west4-a".to_string(), p.instance.instance_id.clone())]
    );

    // What the provider loop records for the placement, on the dashboard.
    let dashboard = Dashboard::new(
        Settings::from_config(&cfg),
        fleet.clone(),
        Arc::new(ManualClock::new(compute_bridge_contract::clock::now_unix())),
    );
    for e in failover_events(&p.failovers, Some((&p.backend, &p.instance.region))) {
        dashboard.record(e);
    }
    dashboard.record(Event::GrantAccepted {
        backend: p.backend.clone(),
        region: p.instance.region.clone(),
    });
    let snap = dashboard.snapshot();
    let failovers: Vec<&RecentKind> = snap
        .recent_events
        .iter()
        .map(|e| &e.what)
        .filter(|w| matches!(w, RecentKind::Failover { .. }))
        .collect();
    assert_eq!(
        failovers,
        [&RecentKind::Failover {
            from: "gcp".into(),
            from_region: Some("us-central1".into()),
            to: Some("gcp".into()),
            to_region: Some("europe-west4".into()),
        }]
    );
    let page = compute_bridge_daemon::dashboard::html::render(&snap);
    assert!(
        page.contains("Failover gcp/us-central1 → gcp/europe-west4"),
        "{page}"
    );

    let backend = fleet.backend("gcp").unwrap();
    backend.terminate(&p.instance).await.unwrap();
    drop(p.reservation);
    assert_eq!(held(&fake), Vec::<String>::new());
    assert_eq!(fake.rejections(), Vec::<String>::new());
}
