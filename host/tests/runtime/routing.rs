//! The fleet over real sandboxed fakes: order, TDX filter, failover,
//! concurrency cap and capacity, and watching to the end.

use std::sync::Arc;

use compute_bridge_contract::backend::{Backend, TdxRequirement};
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_daemon::fleet::{Fleet, PlaceError, WatchPolicy};
use compute_bridge_testkit::components;

use crate::support::*;

fn fake(name: &str, config: &str) -> String {
    backend_toml(
        name,
        components::FAKE,
        &format!("[backends.config]\n{config}"),
    )
}

async fn fleet(
    backends: &str,
    cap: u32,
) -> (
    tempfile::TempDir,
    Fleet,
    Vec<Arc<compute_bridge_sandbox::ComponentBackend>>,
) {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path(), backends);
    let (_rt, loaded) = load(&cfg);
    let fleet = Fleet::new(fleet_members(&cfg, &loaded), cap);
    fleet.refresh_capabilities().await;
    (state, fleet, loaded)
}

#[tokio::test]
async fn first_backend_in_config_order_that_can_satisfy_wins() {
    let (_s, fleet, _) = fleet(
        &[
            fake(
                "small",
                "regions = [\"eu\"]\nmax_grant_cpu_millicores = 100",
            ),
            fake("second", "regions = [\"eu\"]"),
            fake("third", "regions = [\"eu\"]"),
        ]
        .concat(),
        8,
    )
    .await;
    // `small` cannot take 500m, so the walk goes on to `second`, never `third`.
    let p = fleet.provision(&grant("g1"), &workload()).await.unwrap();
    assert_eq!(p.backend, "second");
    assert!(p.failovers.is_empty());
    let mut tiny = grant("g2");
    tiny.cpu_millicores = 50;
    assert_eq!(
        fleet.provision(&tiny, &workload()).await.unwrap().backend,
        "small"
    );
}

#[tokio::test]
async fn region_mismatch_skips_a_backend() {
    let (_s, fleet, _) = fleet(
        &[
            fake("eu", "regions = [\"eu-1\"]"),
            fake("us", "regions = [\"us-1\"]"),
        ]
        .concat(),
        8,
    )
    .await;
    let mut g = grant("r");
    g.region = Some("us-1".into());
    let p = fleet.provision(&g, &workload()).await.unwrap();
    assert_eq!(
        (p.backend.as_str(), p.instance.region.as_str()),
        ("us", "us-1")
    );
}

#[tokio::test]
async fn tdx_required_grants_skip_backends_without_tdx() {
    let (_s, fleet, _) = fleet(
        &[
            fake("plain", "tdx_capable = false"),
            fake("tdx", "tdx_capable = true"),
        ]
        .concat(),
        8,
    )
    .await;
    let mut g = grant("t");
    g.tdx = TdxRequirement::Required;
    assert_eq!(
        fleet.provision(&g, &workload()).await.unwrap().backend,
        "tdx"
    );
    // Without the requirement the first backend wins as usual.
    assert_eq!(
        fleet
            .provision(&grant("u"), &workload())
            .await
            .unwrap()
            .backend,
        "plain"
    );
    // Preferred is not required.
    let mut p = grant("v");
    p.tdx = TdxRequirement::Preferred;
    assert_eq!(
        fleet.provision(&p, &workload()).await.unwrap().backend,
        "plain"
    );
}

#[tokio::test]
async fn tdx_required_with_no_tdx_backend_is_declined_with_the_reason() {
    let (_s, fleet, _) = fleet(&fake("plain", ""), 8).await;
    let mut g = grant("t");
    g.tdx = TdxRequirement::Required;
    let d = fleet
        .provision(&g, &workload())
        .await
        .err()
        .expect("declined");
    assert!(
        matches!(&d, PlaceError::NoBackend(why) if why.contains("not TDX-capable")),
        "{d}"
    );
    assert_eq!(fleet.active(), 0);
}

#[tokio::test]
async fn no_capacity_and_transient_fail_over_to_the_next_backend() {
    let (_s, fleet, _) = fleet(
        &[
            fake("full", "provision_error = \"no-capacity\""),
            fake("flaky", "provision_error = \"transient\""),
            fake("good", ""),
        ]
        .concat(),
        8,
    )
    .await;
    let p = fleet.provision(&grant("f"), &workload()).await.unwrap();
    assert_eq!(p.backend, "good");
    let from: Vec<_> = p
        .failovers
        .iter()
        .map(|f| (f.from.as_str(), f.kind.to_string()))
        .collect();
    assert_eq!(
        from,
        [
            ("full", "no-capacity".to_string()),
            ("flaky", "transient".to_string())
        ]
    );
    // Capacity reserved on the failed backends was given back.
    let m = fleet.members();
    assert_eq!(
        (
            m[0].used_cpu_millicores,
            m[1].used_cpu_millicores,
            m[2].used_cpu_millicores
        ),
        (0, 0, 500)
    );
    assert_eq!(fleet.active(), 1);
}

#[tokio::test]
async fn no_capacity_in_one_region_moves_on_to_the_next_region_then_the_next_backend() {
    let (_s, cloud, _) = fleet(
        &[
            fake(
                "cloud",
                "regions = [\"r1\", \"r2\", \"r3\"]\nfull_regions = [\"r1\", \"r2\"]",
            ),
            fake("spare", "regions = [\"s1\"]"),
        ]
        .concat(),
        8,
    )
    .await;
    // r1 and r2 are full: the grant lands in r3 of the same backend, and
    // each region that said no-capacity is a failover of its own.
    let p = cloud.provision(&grant("r"), &workload()).await.unwrap();
    assert_eq!(
        (p.backend.as_str(), p.instance.region.as_str()),
        ("cloud", "r3")
    );
    let steps = failover_steps(&p.failovers);
    assert_eq!(
        steps,
        [
            ("cloud", Some("r1"), "no-capacity".to_string()),
            ("cloud", Some("r2"), "no-capacity".to_string()),
        ]
    );

    // A grant that asks for r1 is not moved to another region of the same
    // backend: it goes to the next backend that serves r1, and there is none.
    let mut pinned = grant("pinned");
    pinned.region = Some("r1".into());
    let d = cloud
        .provision(&pinned, &workload())
        .await
        .err()
        .expect("declined");
    assert_eq!(d.reason_kind(), "backends-failed", "{d}");
    assert_eq!(d.failovers().len(), 1);
    assert_eq!(
        d.failovers()[0].region,
        None,
        "the fleet did not choose its region"
    );

    // Every region full: the next backend takes it.
    let (_s2, all_full, _) = fleet(
        &[
            fake(
                "cloud",
                "regions = [\"r1\", \"r2\"]\nfull_regions = [\"r1\", \"r2\"]",
            ),
            fake("spare", "regions = [\"s1\"]"),
        ]
        .concat(),
        8,
    )
    .await;
    let p = all_full
        .provision(&grant("all-full"), &workload())
        .await
        .unwrap();
    assert_eq!(p.backend, "spare");
    assert_eq!(p.failovers.len(), 2);
    let m = all_full.members();
    assert_eq!(
        (m[0].used_cpu_millicores, m[1].used_cpu_millicores),
        (0, 500),
        "the full backend's reservation was given back"
    );
}

#[tokio::test]
async fn a_rejection_is_not_retried_elsewhere() {
    let (_s, fleet, _) = fleet(
        &[
            fake("picky", "provision_error = \"rejected\""),
            fake("good", ""),
        ]
        .concat(),
        8,
    )
    .await;
    let d = fleet
        .provision(&grant("x"), &workload())
        .await
        .err()
        .expect("declined");
    assert!(
        matches!(&d, PlaceError::Failed { backend, .. } if backend == "picky"),
        "{d}"
    );
    assert_eq!(d.reason_kind(), "rejected");
    assert_eq!(fleet.active(), 0);
}

#[tokio::test]
async fn when_every_candidate_fails_the_decline_lists_them() {
    let (_s, fleet, _) = fleet(
        &[
            fake("a", "provision_error = \"transient\""),
            fake("b", "provision_error = \"no-capacity\""),
        ]
        .concat(),
        8,
    )
    .await;
    let d = fleet
        .provision(&grant("x"), &workload())
        .await
        .err()
        .expect("declined");
    assert_eq!(d.reason_kind(), "backends-failed");
    assert_eq!(d.failovers().len(), 2);
    assert!(d.to_string().contains("a (transient"), "{d}");
}

#[tokio::test]
async fn the_concurrency_cap_declines_with_a_reason_and_frees_on_completion() {
    let (_s, fleet, _) = fleet(&fake("f", ""), 2).await;
    let a = fleet.provision(&grant("a"), &workload()).await.unwrap();
    let _b = fleet.provision(&grant("b"), &workload()).await.unwrap();
    let d = fleet
        .provision(&grant("c"), &workload())
        .await
        .err()
        .expect("over the cap");
    assert_eq!(d, PlaceError::ConcurrencyCap { active: 2, cap: 2 });
    drop(a.reservation); // grant a ends
    fleet.provision(&grant("c"), &workload()).await.unwrap();
}

#[tokio::test]
async fn declared_capacity_is_enforced_before_provisioning() {
    // 1000m total: two 500m grants fit, the third is declined, not dropped.
    let (_s, fleet, _) = fleet(
        &fake(
            "f",
            "max_cpu_millicores = 1000\nmax_grant_cpu_millicores = 1000",
        ),
        8,
    )
    .await;
    let a = fleet.provision(&grant("a"), &workload()).await.unwrap();
    let _b = fleet.provision(&grant("b"), &workload()).await.unwrap();
    let d = fleet
        .provision(&grant("c"), &workload())
        .await
        .err()
        .expect("over capacity");
    assert!(
        matches!(&d, PlaceError::OverCapacity(why) if why.contains('f')),
        "{d}"
    );
    assert_eq!(fleet.members()[0].used_cpu_millicores, 1000);
    drop(a.reservation);
    assert_eq!(fleet.members()[0].used_cpu_millicores, 500);
    fleet.provision(&grant("c"), &workload()).await.unwrap();
}

#[tokio::test]
async fn a_disabled_backend_is_never_routed_to() {
    let (_s, fleet, _) = fleet(
        &[
            fake("off", "").replace("component = ", "enabled = false\ncomponent = "),
            fake("on", ""),
        ]
        .concat(),
        8,
    )
    .await;
    assert!(!fleet.members()[0].enabled);
    assert_eq!(
        fleet
            .provision(&grant("a"), &workload())
            .await
            .unwrap()
            .backend,
        "on"
    );
}

#[tokio::test]
async fn watch_until_exit_follows_the_workload_to_its_exit_and_reports_usage() {
    let (_s, fleet, _) = fleet(&fake("f", "run_seconds = 1\nexit_code = 7"), 8).await;
    let p = fleet.provision(&grant("w"), &workload()).await.unwrap();
    let policy = WatchPolicy {
        initial: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let out = fleet
        .watch_until_exit(
            &p.reservation,
            &p.instance,
            compute_bridge_contract::clock::now_unix() + 60,
            policy,
        )
        .await;
    assert_eq!(out.ending, WorkloadEnding::Exited(7));
    // 500m for one second, 256 MiB for one second.
    assert_eq!(
        (out.usage.cpu_core_seconds, out.usage.ram_mib_seconds),
        (0, 256)
    );
    assert!(out.usage_error.is_none() && out.terminate_error.is_none());
}

#[tokio::test]
async fn watch_until_exit_terminates_at_valid_to() {
    let (_s, fleet, _) = fleet(&fake("f", "run_seconds = 3600"), 8).await;
    let p = fleet.provision(&grant("w"), &workload()).await.unwrap();
    let policy = WatchPolicy {
        initial: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let valid_to = compute_bridge_contract::clock::now_unix() + 2;
    let out = fleet
        .watch_until_exit(&p.reservation, &p.instance, valid_to, policy)
        .await;
    assert_eq!(out.ending, WorkloadEnding::Expired);
    assert!(compute_bridge_contract::clock::now_unix() >= valid_to);
}

#[tokio::test]
async fn post_provisioning_calls_go_back_to_the_originating_backend() {
    let (_s, fleet, loaded) = fleet(
        &[
            fake("a", "run_seconds = 3600"),
            fake("b", "exit_code = 3\nrun_seconds = 0"),
        ]
        .concat(),
        8,
    )
    .await;
    let p = fleet.provision(&grant("x"), &workload()).await.unwrap();
    assert_eq!(p.backend, "a");
    let before_b = loaded[1]
        .stats
        .calls
        .load(std::sync::atomic::Ordering::Relaxed);
    let out = fleet
        .watch_until_exit(
            &p.reservation,
            &p.instance,
            compute_bridge_contract::clock::now_unix() + 1,
            WatchPolicy::default(),
        )
        .await;
    // `a` runs for an hour, so only the deadline ends it; `b` (which would
    // say exited) was never asked.
    assert_eq!(out.ending, WorkloadEnding::Expired);
    assert_eq!(
        loaded[1]
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed),
        before_b
    );
    // Watching goes by the reservation, so only a backend in this fleet
    // can hold one: a name it does not have gets none to watch with.
    assert!(fleet.adopt("nope", &grant("x")).is_none());
    let _ = loaded[0].name();
}
