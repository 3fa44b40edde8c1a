//! The cloud API failing mid-provision: the AWS backend against a real moto
//! server behind a fault-injecting proxy, through the fleet. Every fault
//! ends in a failover (or a clean decline) with no instance left running.
//! And a region out of capacity: the fleet moves the grant to the backend's
//! next region, and the operator's dashboard shows the step.

use std::collections::BTreeMap;
use std::sync::Arc;

use compute_bridge_contract::backend::{Backend, ErrorKind, GrantSpec};
use compute_bridge_contract::clock::ManualClock;
use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_daemon::config::{BootConfig, Source};
use compute_bridge_daemon::dashboard::snapshot::RecentKind;
use compute_bridge_daemon::dashboard::{Dashboard, Settings};
use compute_bridge_daemon::fleet::{Fleet, PlaceError};
use compute_bridge_daemon::grant::failover_events;
use compute_bridge_testkit::components;
use compute_bridge_testkit::fault_proxy::{Fault, FaultProxy};
use compute_bridge_testkit::moto::Moto;

use crate::support::{self, load, workload};

const REGION: &str = "us-east-1";
const AMI: &str = "ami-12c6146b";
const IMAGE: &str =
    "ghcr.io/acme/job@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The bridge's view: `aws` (through `proxy`) first, then a healthy fake
/// `spare` when `with_spare`. HTTP calls time out after three seconds.
async fn fleet(
    state: &std::path::Path,
    moto: &Moto,
    proxy: &FaultProxy,
    with_spare: bool,
) -> (Fleet, Vec<Arc<compute_bridge_sandbox::ComponentBackend>>) {
    let spare = if with_spare {
        support::backend_toml("spare", components::FAKE, "")
    } else {
        String::new()
    };
    let text = format!(
        r#"[bridge]
state_dir = {state:?}

[[backends]]
name = "aws"
component = "builtin:aws"

[backends.http]
allowed_hosts = [{origin:?}]
timeout_sec = 3

[backends.config]
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
public_address_wait_sec = 20
endpoint = {origin:?}

[[backends.config.regions]]
name = "{REGION}"
ami = "{AMI}"

[[backends.config.instance_types]]
type = "t3.medium"
vcpu = 2
ram_mib = 4096
usd_per_hour = 0.0416

{spare}"#,
        state = state.display().to_string(),
        origin = proxy.origin(),
    );
    let env: BTreeMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.clone()),
    ]
    .into();
    let cfg = BootConfig::from_source(&Source::embedded("faults.toml", &text), &|k| {
        env.get(k).cloned()
    })
    .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    // moto loads its EC2 emulation on the first EC2 call, which can take
    // longer than the component's timeout: do that now, around the proxy.
    moto.instances(REGION);
    let (fleet, backends) = support::fleet_over(&cfg).await;
    (fleet, backends)
}

fn grant(id: &str) -> GrantSpec {
    GrantSpec {
        cpu_millicores: 1500,
        ram_mib: 3072,
        image: IMAGE.into(),
        ..support::grant(id)
    }
}

/// States of the instances moto holds for `request`.
fn states_for(moto: &Moto, request: &str) -> Vec<String> {
    moto.instances(REGION)
        .into_iter()
        .filter(|i| i.tags.get("compute-bridge:request").map(String::as_str) == Some(request))
        .map(|i| i.state)
        .collect()
}

fn gone(state: &str) -> bool {
    matches!(state, "terminated" | "shutting-down")
}

#[tokio::test]
async fn faults_mid_provision_fail_over_and_leave_no_instance_running() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let state = tempfile::tempdir().unwrap();
    let (fleet, _) = fleet(state.path(), &moto, &proxy, true).await;

    // (fault, whether RunInstances reached moto, what the failover says)
    let cases = [
        (Fault::Refuse500, false, "no instance was launched"),
        (Fault::Hang, false, "no instance was launched"),
        (Fault::Lose500, true, "it had launched"),
        (Fault::LoseHang, true, "it had launched"),
        (Fault::LoseReset, true, "it had launched"),
    ];
    for (n, (fault, landed, says)) in cases.into_iter().enumerate() {
        let id = format!("req-fault-{n}");
        proxy.fail("RunInstances", 1, fault);
        let p = fleet
            .provision(&grant(&id), &workload())
            .await
            .unwrap_or_else(|d| panic!("{fault:?}: declined instead of failing over: {d}"));
        assert_eq!(p.backend, "spare", "{fault:?}");
        assert_eq!(p.failovers.len(), 1, "{fault:?}");
        let f = &p.failovers[0];
        assert_eq!(
            (f.from.as_str(), f.kind.to_string()),
            ("aws", "transient".into())
        );
        assert!(f.message.contains(says), "{fault:?}: {}", f.message);

        let states = states_for(&moto, &id);
        if landed {
            assert_eq!(states.len(), 1, "{fault:?}: {states:?}");
        } else {
            assert!(states.is_empty(), "{fault:?}: {states:?}");
        }
        assert!(
            states.iter().all(|s| gone(s)),
            "{fault:?}: an instance was left running: {states:?}"
        );
        drop(p.reservation);
    }
    // The proxy saw each fault once, and the cleanup looks went through.
    let faulted: Vec<Fault> = proxy.seen().iter().filter_map(|s| s.fault).collect();
    assert_eq!(faulted.len(), 5, "{:?}", proxy.seen());
    assert_eq!(fleet.active(), 0);

    // Healed, the same backend serves the next grant itself.
    let p = fleet
        .provision(&grant("req-after"), &workload())
        .await
        .unwrap();
    assert_eq!(p.backend, "aws");
    assert!(p.failovers.is_empty());
    assert_eq!(states_for(&moto, "req-after"), ["running"]);
}

#[tokio::test]
async fn with_no_other_backend_the_grant_is_declined_cleanly() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let state = tempfile::tempdir().unwrap();
    let (fleet, _) = fleet(state.path(), &moto, &proxy, false).await;
    proxy.fail("RunInstances", 1, Fault::Lose500);
    let d = fleet
        .provision(&grant("req-alone"), &workload())
        .await
        .err()
        .expect("declined");
    assert!(matches!(d, PlaceError::AllFailed { .. }), "{d}");
    assert_eq!(d.reason_kind(), "backends-failed");
    assert!(d.to_string().contains("aws (transient"), "{d}");
    assert_eq!(fleet.active(), 0);
    let states = states_for(&moto, "req-alone");
    assert_eq!(states.len(), 1);
    assert!(gone(&states[0]), "{states:?}");
}

#[tokio::test]
async fn when_the_cleanup_cannot_look_the_orphan_sweep_removes_the_instance() {
    // The answer to RunInstances is lost and the API then fails the
    // lookups too: the component cannot find what it launched and says so;
    // the instance is still tagged, and the orphan sweep at the next start
    // terminates it.
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let state = tempfile::tempdir().unwrap();
    let (fleet, backends) = fleet(state.path(), &moto, &proxy, true).await;
    proxy.fail("RunInstances", 1, Fault::Lose500);
    proxy.fail("DescribeInstances", 1, Fault::Refuse500);
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
    assert_eq!(
        states_for(&moto, "req-unchecked"),
        ["running"],
        "{:?}\n{}\n{:?}",
        proxy.seen(),
        msg,
        moto.instances(REGION)
    );

    proxy.heal();
    let journal = std::collections::HashSet::new();
    let swept = compute_bridge_daemon::grant::sweep_orphans(backends[0].as_ref(), &journal).await;
    assert_eq!(swept.len(), 1);
    assert!(states_for(&moto, "req-unchecked").iter().all(|s| gone(s)));
    let _ = backends[0].name();
}

/// The second region of the region-failover test: moto directly.
const REGION_B: &str = "eu-west-1";

/// EC2's error document for a launch it has no capacity for, as the EC2 API
/// reference's error-code page shows an error response (`Response` /
/// `Errors` / `Error` with `Code` and `Message`, then `RequestID`) and with
/// the message EC2 gives for `InsufficientInstanceCapacity`, a server error
/// (HTTP 500) on that page.
const INSUFFICIENT_CAPACITY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient t3.medium capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get t3.medium capacity by not specifying an Availability Zone in your request or choosing us-east-1b, us-east-1c.</Message></Error></Errors><RequestID>c2b1f3a8-insufficient-capacity</RequestID></Response>"#;

/// EC2's `Unsupported` (a client error, HTTP 400) for an instance type the
/// zone it picked does not offer.
const UNSUPPORTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>Unsupported</Code><Message>Your requested instance type (t3.medium) is not supported in your requested Availability Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or choosing us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f.</Message></Error></Errors><RequestID>5a1c9f3e-unsupported</RequestID></Response>"#;

/// One `builtin:aws` backend over two regions: `REGION` through `proxy`
/// (its own `endpoint`), then `REGION_B` on moto directly.
fn two_region_config(state: &std::path::Path, moto: &Moto, proxy: &FaultProxy) -> BootConfig {
    let backends = format!(
        r#"[[backends]]
name = "aws"
component = "builtin:aws"

[backends.http]
allowed_hosts = [{a:?}, {b:?}]
timeout_sec = 5

[backends.config]
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
public_address_wait_sec = 20

[[backends.config.regions]]
name = "{REGION}"
ami = "{AMI}"
endpoint = {a:?}

[[backends.config.regions]]
name = "{REGION_B}"
ami = "{AMI}"
endpoint = {b:?}

[[backends.config.instance_types]]
type = "t3.medium"
vcpu = 2
ram_mib = 4096
usd_per_hour = 0.0416
"#,
        a = proxy.origin(),
        b = moto.endpoint,
    );
    support::config_with_env(
        state,
        &backends,
        &[
            ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.clone()),
        ],
    )
}

/// Instances moto holds in `region` for `request`, with their states.
fn states_in(moto: &Moto, region: &str, request: &str) -> Vec<String> {
    moto.instances(region)
        .into_iter()
        .filter(|i| i.tags.get("compute-bridge:request").map(String::as_str) == Some(request))
        .map(|i| i.state)
        .collect()
}

#[tokio::test]
async fn a_region_out_of_capacity_fails_over_to_the_next_region_on_the_dashboard() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let state = tempfile::tempdir().unwrap();
    let cfg = two_region_config(state.path(), &moto, &proxy);
    // Load moto's EC2 emulation in both regions before the component's
    // first call (see `fleet`).
    moto.instances(REGION);
    moto.instances(REGION_B);
    let (rt, backends) = load(&cfg);
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 8);
    fleet.refresh_capabilities().await;
    let clock = ManualClock::new(compute_bridge_contract::clock::now_unix());
    let dashboard = Dashboard::new(
        Settings::from_config(&cfg),
        fleet.clone(),
        Arc::new(clock.clone()),
    );

    // Region A answers the launch with a capacity code (moto cannot be told
    // to run out, so the proxy answers for it with EC2's own error), and
    // with `Unsupported`, the refusal of a type the zone does not offer:
    // both move the grant to region B, which serves it.
    for (n, (status, body, code)) in [
        (500, INSUFFICIENT_CAPACITY, "InsufficientInstanceCapacity"),
        (400, UNSUPPORTED, "Unsupported"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("req-region-{n}");
        proxy.fail("RunInstances", 1, Fault::Answer { status, body });
        let p = fleet
            .provision(&grant(&id), &workload())
            .await
            .unwrap_or_else(|d| panic!("{code}: declined instead of trying {REGION_B}: {d}"));
        // What the provider loop records for a placement, as it records it.
        for e in failover_events(&p.failovers, Some((&p.backend, &p.instance.region))) {
            dashboard.record(e);
        }
        dashboard.record(Event::GrantAccepted {
            backend: p.backend.clone(),
            region: p.instance.region.clone(),
        });

        assert_eq!(
            (p.backend.as_str(), p.instance.region.as_str()),
            ("aws", REGION_B),
            "{code}"
        );
        assert_eq!(p.failovers.len(), 1, "{code}: {:?}", p.failovers);
        let f = &p.failovers[0];
        assert_eq!(
            (f.from.as_str(), f.region.as_deref(), f.kind),
            ("aws", Some(REGION), ErrorKind::NoCapacity),
            "{code}"
        );
        assert!(f.message.contains(code), "{code}: {}", f.message);
        // Nothing was launched in region A; the grant runs in region B.
        assert!(states_in(&moto, REGION, &id).is_empty(), "{code}");
        assert_eq!(states_in(&moto, REGION_B, &id), ["running"], "{code}");

        let backend = fleet.backend("aws").expect("aws is a fleet backend");
        backend.terminate(&p.instance).await.expect("terminate");
        drop(p.reservation);
        assert!(states_in(&moto, REGION_B, &id).iter().all(|s| gone(s)));
    }
    // The proxy refused exactly the two launches and saw nothing else: no
    // lookup in region A, since a refusal launches nothing.
    assert_eq!(
        proxy.actions(),
        ["RunInstances", "RunInstances"],
        "{:?}",
        proxy.seen()
    );

    // The operator sees each step: in the snapshot's recent events and on
    // the page, `aws/us-east-1 → aws/eu-west-1`.
    let snap = dashboard.snapshot();
    let steps = snap
        .recent_events
        .iter()
        .filter(|e| {
            e.what
                == RecentKind::Failover {
                    from: "aws".into(),
                    from_region: Some(REGION.into()),
                    to: Some("aws".into()),
                    to_region: Some(REGION_B.into()),
                }
        })
        .count();
    assert_eq!(steps, 2, "{:#?}", snap.recent_events);
    let page = compute_bridge_daemon::dashboard::html::render(&snap);
    let shown = format!("Failover aws/{REGION} → aws/{REGION_B}");
    assert_eq!(page.matches(&shown).count(), 2, "{page}");

    // Region A healed: the next grant is placed there, with no failover.
    let p = fleet
        .provision(&grant("req-region-healed"), &workload())
        .await
        .unwrap();
    assert_eq!(p.instance.region, REGION);
    assert!(p.failovers.is_empty(), "{:?}", p.failovers);
    assert_eq!(states_in(&moto, REGION, "req-region-healed"), ["running"]);
    drop(rt);
}
