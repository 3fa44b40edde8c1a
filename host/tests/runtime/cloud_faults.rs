//! The cloud API failing mid-provision: the AWS backend against a real moto
//! server behind a fault-injecting proxy, through the fleet. Every fault
//! ends in a failover (or a clean decline) with no instance left running.

use std::collections::BTreeMap;
use std::sync::Arc;

use compute_bridge::backend::{Backend, GrantSpec};
use compute_bridge::config::{BootConfig, Source};
use compute_bridge::fleet::{Decline, Fleet};
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
) -> (Fleet, Vec<Arc<compute_bridge::runtime::ComponentBackend>>) {
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
    let (rt, backends) = load(&cfg);
    std::mem::forget(rt); // keep the engine's ticker for the test's life
    let fleet = Fleet::new(support::fleet_members(&cfg, &backends), 8);
    fleet.refresh_capabilities().await;
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
    assert!(matches!(d, Decline::AllFailed { .. }), "{d}");
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
    let swept = compute_bridge::sweep::sweep_orphans(backends[0].as_ref(), &journal).await;
    assert_eq!(swept.len(), 1);
    assert!(states_for(&moto, "req-unchecked").iter().all(|s| gone(s)));
    let _ = backends[0].name();
}
