//! The Azure core natively, with no sandbox: [`Azure`] over a `MemoryHost`
//! whose HTTP goes to the Resource Manager and identity-platform fake
//! beside this crate (`cb-azure-fake`, a model of the published API). The
//! same fake serves the sandboxed component in `host/tests/runtime/azure.rs`;
//! these tests cover the core's own decisions (cleanup after a failed
//! provision, long-running operations, the token cache) in a plain
//! `cargo test -p cb-azure`.
//!
//! The host's clock is manual: waits between polls advance it instead of
//! passing.

use cb_azure::{Azure, AzureConfig};
use cb_azure_fake::{AzureFake, VmFailure};
use cb_fake_server::fixtures::workload;
use compute_bridge_sdk::{
    BackendError, GrantSpec, InstanceState, MemoryHost, TdxRequirement, config,
};

const PROVIDER: &str = "prov-test";

fn fake() -> AzureFake {
    AzureFake::start(Default::default())
}

/// A host whose requests reach the fake for real.
fn host() -> MemoryHost {
    MemoryHost::new().on_http(cb_fake_server::forward)
}

/// A plain D2s_v5 in eastus, a TDX DC4es_v5 in eastus and westeurope; each
/// region with the fake's subnet and security group.
fn azure_config(fake: &AzureFake) -> AzureConfig {
    let a = fake.account();
    let network = |r: &str| serde_json::json!({"subnet_id": a.subnet_id(r), "network_security_group_id": a.nsg_id(r)});
    let cfg = serde_json::json!({
        "tenant_id": a.tenant_id,
        "client_id": a.client_id,
        "client_secret": a.client_secret,
        "subscription_id": a.subscription_id,
        "resource_group": a.resource_group,
        "management_url": fake.url(),
        "login_url": fake.url(),
        "vm_sizes": [
            {"name": "Standard_D2s_v5", "cpus": 2, "ram_mib": 8192, "usd_per_hour": 0.096,
             "regions": ["eastus"]},
            {"name": "Standard_DC4es_v5", "cpus": 4, "ram_mib": 16384, "usd_per_hour": 0.23,
             "tdx": true, "regions": ["westeurope", "eastus"]},
        ],
        "networks": {"eastus": network("eastus"), "westeurope": network("westeurope")},
    });
    config::parse(&cfg.to_string()).unwrap()
}

fn grant(id: &str, tdx: TdxRequirement) -> GrantSpec {
    cb_fake_server::fixtures::grant(id, tdx, MemoryHost::START + 3600)
}

#[test]
fn a_tdx_grant_lives_its_whole_life_and_shares_one_token() {
    let fake = fake();
    let host = host();
    let azure = Azure::new(azure_config(&fake), PROVIDER, "azure", &host).unwrap();
    let offer = azure.offer();
    assert_eq!(offer.regions, ["eastus", "westeurope"]);
    assert!(offer.tdx_capable);

    let g = grant("grant-1", TdxRequirement::Required);
    assert!(azure.can_satisfy(&g));
    let inst = azure.provision(&g, &workload()).unwrap();
    assert_eq!(inst.region, "westeurope");
    assert_eq!(inst.user, "cb-test");
    assert!(!inst.public_host.is_empty(), "{inst:?}");
    assert_eq!(fake.resources().len(), 3, "{:?}", fake.resources());
    assert_eq!(azure.status(&inst).unwrap(), InstanceState::Running);
    assert_eq!(azure.list_instances().unwrap().len(), 1);

    azure.terminate(&inst).unwrap();
    assert_eq!(fake.resources(), Vec::<String>::new());
    assert_eq!(azure.status(&inst).unwrap(), InstanceState::Gone);
    azure
        .terminate(&inst)
        .expect("terminating twice is success");

    assert_eq!(fake.token_requests(), 1, "one token for every call");
    assert_eq!(fake.rejections(), Vec::<String>::new());
    let secret = fake.account().client_secret;
    for log in host.logs() {
        assert!(!format!("{log:?}").contains(&secret), "{log:?}");
    }
    let token_body = host
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(r.parts().3).into_owned())
        .find(|b| b.contains("client_credentials"))
        .expect("a token request");
    assert!(token_body.contains("client_secret="), "{token_body}");
}

#[test]
fn a_failed_provision_removes_what_it_created_before_the_error() {
    let fake = fake();
    let host = host();
    let azure = Azure::new(azure_config(&fake), PROVIDER, "azure", &host).unwrap();
    fake.fail_next_vm(VmFailure::SkuNotAvailable);
    let e = azure
        .provision(&grant("grant-2", TdxRequirement::Required), &workload())
        .unwrap_err();
    let BackendError::NoCapacity(msg) = &e else {
        panic!("{e:?}")
    };
    assert!(msg.contains("removed"), "{msg}");
    assert_eq!(fake.resources(), Vec::<String>::new());
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

#[test]
fn long_running_operations_are_followed_at_the_pace_retry_after_asks() {
    let fake = fake();
    let host = host();
    let azure = Azure::new(azure_config(&fake), PROVIDER, "azure", &host).unwrap();
    fake.set_polls_per_operation(2);
    fake.set_retry_after(3);
    azure
        .provision(&grant("grant-3", TdxRequirement::None), &workload())
        .unwrap();
    // Three operations (address, NIC, VM), each polled until done, 3 s
    // apart: on the manual clock, so no test time passes.
    assert!(host.slept() >= 3 * 3 * 2, "slept {}", host.slept());
    assert_eq!(fake.rejections(), Vec::<String>::new());
}
