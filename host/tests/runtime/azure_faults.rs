//! Azure Resource Manager losing answers mid-provision: the Azure backend
//! against its fake (components/azure/fake) behind the
//! fault-injecting proxy, through the fleet. Each of the three creates
//! (public address, NIC, VM) is applied and its answer lost (a 500, a
//! timeout, a reset connection); the component finds what it made by its
//! tags and removes it, the fleet fails over (or declines cleanly), and the
//! fake holds nothing afterwards.

use std::collections::HashSet;
use std::sync::Arc;

use compute_bridge_contract::backend::{ErrorKind, GrantSpec, TdxRequirement};
use compute_bridge_daemon::fleet::{Fleet, PlaceError};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::azure_fake::{AzureAccount, AzureFake};
use compute_bridge_testkit::components;
use compute_bridge_testkit::fault_proxy::{Fault, FaultProxy};

use crate::azure::{azure_head, azure_networks, one_size_in};
use crate::support::{self, cloud_grant, workload};

/// The bridge's view: `azure` (Resource Manager through `proxy`, one size
/// in eastus) first, then a healthy fake `spare` when `with_spare`. HTTP
/// calls time out after three seconds.
async fn fleet(
    state: &std::path::Path,
    fake: &AzureFake,
    proxy: &FaultProxy,
    with_spare: bool,
) -> (Fleet, Vec<Arc<ComponentBackend>>) {
    let spare = if with_spare {
        support::backend_toml("spare", components::FAKE, "")
    } else {
        String::new()
    };
    let text = format!(
        "{}{}{}\n{spare}",
        azure_head("azure", fake, &proxy.origin(), "timeout_sec = 3"),
        azure_networks(fake, &["eastus"], true),
        one_size_in("eastus"),
    );
    let cfg = support::config_with_env(
        state,
        &text,
        &[("AZURE_SECRET", fake.account().client_secret)],
    );
    let (fleet, backends) = support::fleet_over(&cfg).await;
    (fleet, backends)
}

fn grant(id: &str) -> GrantSpec {
    cloud_grant(id, TdxRequirement::None)
}

/// The action prefix of a create of `ty` (`publicIPAddresses`, ...) under
/// `provider` in the fake's resource group.
fn create_of(a: &AzureAccount, provider: &str, ty: &str) -> String {
    format!(
        "PUT /subscriptions/{}/resourceGroups/{}/providers/{provider}/{ty}/",
        a.subscription_id, a.resource_group
    )
}

#[tokio::test]
async fn an_answer_lost_at_each_step_leaves_nothing_and_fails_over() {
    let fake = AzureFake::start(AzureAccount::default());
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, _) = fleet(state.path(), &fake, &proxy, true).await;
    let a = fake.account();
    let ip = create_of(&a, "Microsoft.Network", "publicIPAddresses");
    let nic = create_of(&a, "Microsoft.Network", "networkInterfaces");
    let vm = create_of(&a, "Microsoft.Compute", "virtualMachines");

    // (step, fault, what the component removed, what it must not have met)
    let lost = [Fault::Lose500, Fault::LoseHang, Fault::LoseReset];
    let mut cases: Vec<(&str, Fault, &[&str], &[&str])> = Vec::new();
    for f in lost {
        cases.push((&ip, f, &["publicIPAddresses/"], &["networkInterfaces/"]));
        cases.push((
            &nic,
            f,
            &["publicIPAddresses/", "networkInterfaces/"],
            &["virtualMachines/"],
        ));
        // The NIC is created with deleteOption Delete: it goes with the VM.
        cases.push((&vm, f, &["virtualMachines/", "publicIPAddresses/"], &[]));
    }
    // Never reached ARM: the address and NIC made before it are removed.
    for f in [Fault::Refuse500, Fault::Hang] {
        cases.push((
            &vm,
            f,
            &["publicIPAddresses/", "networkInterfaces/"],
            &["virtualMachines/"],
        ));
    }

    for (n, (step, fault, removed, not)) in cases.iter().enumerate() {
        let what = format!("{fault:?} on {}", step.rsplit('/').nth(1).unwrap());
        let id = format!("req-fault-{n}");
        proxy.fail_prefix(step, 1, *fault);
        let p = fleet.provision(&grant(&id), &workload()).await;
        let p = p.unwrap_or_else(|d| panic!("{what}: declined instead of failing over: {d}"));
        let f = match (p.backend.as_str(), p.failovers.as_slice()) {
            ("spare", [f]) if f.from == "azure" && f.kind == ErrorKind::Transient => f,
            _ => panic!(
                "{what}: not one transient failover to spare: {:?}",
                p.failovers
            ),
        };
        for r in *removed {
            assert!(
                f.message.contains(r) && f.message.contains("it had created"),
                "{what}: {}",
                f.message
            );
        }
        for r in *not {
            assert!(!f.message.contains(r), "{what}: {}", f.message);
        }
        assert_eq!(
            fake.resources(),
            Vec::<String>::new(),
            "{what}: left behind in the resource group"
        );
        drop(p.reservation);
    }
    // The proxy applied each fault once.
    let faulted: Vec<Fault> = proxy.seen().iter().filter_map(|s| s.fault).collect();
    assert_eq!(faulted.len(), cases.len(), "{:?}", proxy.seen());
    assert_eq!(fleet.active(), 0);
    assert_eq!(fake.rejections(), Vec::<String>::new());

    // Healed, the same backend serves the next grant itself.
    let p = fleet
        .provision(&grant("req-after"), &workload())
        .await
        .unwrap();
    assert_eq!(p.backend, "azure");
    assert!(p.failovers.is_empty());
    assert_eq!(fake.resources().len(), 3, "{:?}", fake.resources());
}

#[tokio::test]
async fn with_no_other_backend_a_lost_answer_is_declined_cleanly() {
    let fake = AzureFake::start(AzureAccount::default());
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, _) = fleet(state.path(), &fake, &proxy, false).await;
    let a = fake.account();
    proxy.fail_prefix(
        &create_of(&a, "Microsoft.Compute", "virtualMachines"),
        1,
        Fault::Lose500,
    );
    let d = fleet
        .provision(&grant("req-alone"), &workload())
        .await
        .err()
        .expect("declined");
    assert!(matches!(d, PlaceError::AllFailed { .. }), "{d}");
    assert_eq!(d.reason_kind(), "backends-failed");
    assert!(d.to_string().contains("azure (transient"), "{d}");
    assert!(d.to_string().contains("virtualMachines/"), "{d}");
    assert_eq!(fleet.active(), 0);
    assert_eq!(fake.resources(), Vec::<String>::new());
}

#[tokio::test]
async fn when_the_cleanup_cannot_reach_resource_manager_the_orphan_sweep_removes_it_all() {
    // The VM's answer is lost (or the VM never made), and Resource Manager
    // then refuses every list and delete: the component cannot remove
    // what it made and says so; everything is tagged, and the orphan sweep
    // at the next start removes it, the stray NIC and address included.
    let fake = AzureFake::start(AzureAccount::default());
    let proxy = FaultProxy::start(fake.port());
    let state = tempfile::tempdir().unwrap();
    let (fleet, backends) = fleet(state.path(), &fake, &proxy, true).await;
    let a = fake.account();
    let vm = create_of(&a, "Microsoft.Compute", "virtualMachines");
    let group = format!(
        "/subscriptions/{}/resourceGroups/{}/providers",
        a.subscription_id, a.resource_group
    );
    for (n, (fault, left)) in [(Fault::Lose500, 3), (Fault::Refuse500, 2)]
        .into_iter()
        .enumerate()
    {
        let id = format!("req-unreachable-{n}");
        proxy.fail_prefix(&vm, 1, fault);
        // From then on the lists (the lookup by tags) and every delete fail.
        for list in [
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/publicIPAddresses",
        ] {
            proxy.fail(&format!("GET {group}/{list}"), 50, Fault::Refuse500);
        }
        proxy.fail_prefix(&format!("DELETE {group}/"), 50, Fault::Refuse500);
        let p = fleet.provision(&grant(&id), &workload()).await.unwrap();
        assert_eq!(p.backend, "spare");
        let msg = &p.failovers[0].message;
        assert!(
            msg.contains("could not remove") && msg.contains("sweep_orphans"),
            "{fault:?}: {msg}"
        );
        assert_eq!(
            fake.resources().len(),
            left,
            "{fault:?}: {:?}\n{msg}\n{:#?}",
            fake.resources(),
            proxy.seen()
        );
        proxy.heal();

        let journal = HashSet::new();
        let swept =
            compute_bridge_daemon::grant::sweep_orphans(backends[0].as_ref(), &journal).await;
        assert_eq!(swept.len(), 1, "{fault:?}: {swept:?}");
        assert_eq!(
            fake.resources(),
            Vec::<String>::new(),
            "{fault:?}: the sweep left something"
        );
        drop(p.reservation);
    }
}
