//! The Azure backend through the real host, against the Resource Manager
//! and identity-platform fake (components/azure/fake).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use compute_bridge_contract::backend::{Backend, BackendError, InstanceState, TdxRequirement};
use compute_bridge_sandbox::{ComponentBackend, Runtime};
use compute_bridge_testkit::azure_fake::{AzureAccount, AzureFake, VmFailure};

use crate::support::*;

/// The head of an Azure backend's `[[backends]]` table: Resource Manager
/// at `arm` (the fake, or a proxy in front of it), the identity platform at
/// the fake, the client secret from `${AZURE_SECRET}`, and `http` extra
/// `[backends.http]` lines. The caller adds `networks` and `vm_sizes`.
pub fn azure_head(name: &str, fake: &AzureFake, arm: &str, http: &str) -> String {
    let (url, a) = (fake.url(), fake.account());
    let hosts = if arm == url {
        format!("{url:?}")
    } else {
        format!("{arm:?}, {url:?}")
    };
    format!(
        "[[backends]]\nname = {name:?}\ncomponent = \"builtin:azure\"\n\
         [backends.http]\nallowed_hosts = [{hosts}]\n{http}\n\
         [backends.config]\ntenant_id = {:?}\nclient_id = {:?}\nclient_secret = \"${{AZURE_SECRET}}\"\n\
         subscription_id = {:?}\nresource_group = {:?}\nmanagement_url = {arm:?}\nlogin_url = {url:?}\n",
        a.tenant_id, a.client_id, a.subscription_id, a.resource_group
    )
}

/// `[backends.config.networks.<region>]` for each of `regions`: the
/// fake's subnet and security group there (`with_nsg`).
pub fn azure_networks(fake: &AzureFake, regions: &[&str], with_nsg: bool) -> String {
    let a = fake.account();
    regions
        .iter()
        .map(|r| {
            let nsg = if with_nsg {
                format!("network_security_group_id = {:?}\n", a.nsg_id(r))
            } else {
                String::new()
            };
            format!(
                "[backends.config.networks.{r}]\nsubnet_id = {:?}\n{nsg}",
                a.subnet_id(r)
            )
        })
        .collect()
}

/// The `[[backends]]` table of an Azure backend pointed at `fake`, with the
/// client secret taken from `${AZURE_SECRET}`: a plain D2s_v5 in eastus and
/// TDX DC2es_v5 (westeurope) and DC4es_v5 (eastus, westeurope), each region
/// with its own subnet and security group.
pub fn azure_toml(name: &str, fake: &AzureFake) -> String {
    format!(
        r#"{head}{networks}[[backends.config.vm_sizes]]
name = "Standard_D2s_v5"
cpus = 2
ram_mib = 8192
usd_per_hour = 0.096
regions = ["eastus"]
[[backends.config.vm_sizes]]
name = "Standard_DC2es_v5"
cpus = 2
ram_mib = 8192
usd_per_hour = 0.12
tdx = true
regions = ["westeurope"]
[[backends.config.vm_sizes]]
name = "Standard_DC4es_v5"
cpus = 4
ram_mib = 16384
usd_per_hour = 0.23
tdx = true
regions = ["eastus", "westeurope"]
"#,
        head = azure_head(name, fake, &fake.url(), ""),
        networks = azure_networks(fake, &["eastus", "westeurope"], true),
    )
}

/// One plain size, D2s_v5, in `region`.
pub fn one_size_in(region: &str) -> String {
    format!(
        "[[backends.config.vm_sizes]]\nname = \"Standard_D2s_v5\"\ncpus = 2\nram_mib = 8192\n\
         usd_per_hour = 0.096\nregions = [{region:?}]\n"
    )
}

struct Setup {
    fake: AzureFake,
    _state: tempfile::TempDir,
    _rt: Runtime,
    azure: Arc<ComponentBackend>,
}

fn setup_with_secret(fake: AzureFake, secret: String) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(
        state.path(),
        &azure_toml("azure", &fake),
        &[("AZURE_SECRET", secret)],
    );
    let (rt, mut backends) = load(&cfg);
    Setup {
        fake,
        _state: state,
        _rt: rt,
        azure: backends.remove(0),
    }
}

fn setup() -> Setup {
    let fake = AzureFake::start(AzureAccount::default());
    // Every operation answers "InProgress" twice before it ends.
    fake.set_polls_per_operation(2);
    let secret = fake.account().client_secret;
    setup_with_secret(fake, secret)
}

#[tokio::test]
async fn a_tdx_grant_lives_its_whole_life_on_a_confidential_vm() {
    let s = setup();
    let caps = s.azure.capabilities().await.unwrap();
    assert_eq!(caps.regions, vec!["eastus", "westeurope"]);
    assert!(caps.tdx_capable);

    let grant = cloud_grant("grant-0001", TdxRequirement::Required);
    assert!(s.azure.can_satisfy(&grant).await);
    let w = workload();
    let inst = s.azure.provision(&grant, &w).await.unwrap();
    assert_eq!(inst.region, "westeurope");
    assert!(inst.public_host.starts_with("20.0."), "{inst:?}");
    assert_eq!(inst.user, "cb-test");
    let vm = inst.instance_id.clone();
    let mut resources = s.fake.resources();
    resources.sort();
    assert_eq!(
        resources,
        vec![
            format!("networkInterfaces/{vm}-nic"),
            format!("publicIPAddresses/{vm}-ip"),
            format!("virtualMachines/{vm}"),
        ]
    );

    // What reached Resource Manager: a ConfidentialVM on a TDX size, the
    // script as custom data, the tags.
    let body = &s.fake.vm_bodies()[0];
    let p = &body["properties"];
    assert_eq!(p["hardwareProfile"]["vmSize"], "Standard_DC2es_v5");
    assert_eq!(p["securityProfile"]["securityType"], "ConfidentialVM");
    assert_eq!(p["securityProfile"]["uefiSettings"]["vTpmEnabled"], true);
    assert_eq!(
        p["storageProfile"]["osDisk"]["managedDisk"]["securityProfile"]["securityEncryptionType"],
        "VMGuestStateOnly"
    );
    assert_eq!(body["tags"]["cb-provider"], "test-provider");
    assert_eq!(body["tags"]["cb-request"], "grant-0001");
    assert_eq!(body["tags"]["cb-backend"], "azure");
    let script = base64::engine::general_purpose::STANDARD
        .decode(p["osProfile"]["customData"].as_str().unwrap())
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    assert!(
        script.contains(&format!("image='{PINNED_IMAGE}'")),
        "{script}"
    );
    assert!(script.contains(&w.ssh_public_key), "{script}");

    assert_eq!(s.azure.status(&inst).await.unwrap(), InstanceState::Running);
    s.fake.set_power_state(&vm, "stopped");
    assert_eq!(
        s.azure.status(&inst).await.unwrap(),
        InstanceState::Exited(-1)
    );
    let u = s.azure.usage(&inst).await.unwrap();
    assert_eq!(u.ram_mib_seconds, u.cpu_core_seconds / 2 * 8192, "{u:?}");

    s.azure.terminate(&inst).await.unwrap();
    assert_eq!(s.fake.resources(), Vec::<String>::new());
    s.azure.terminate(&inst).await.unwrap();
    assert_eq!(s.azure.status(&inst).await.unwrap(), InstanceState::Gone);

    // Long-running operations were followed by both headers.
    let reqs = s.fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET") && r.contains("/operations/"))
    );
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
    assert_eq!(s.fake.token_requests(), 1, "one token for the whole life");
}

#[tokio::test]
async fn only_tdx_grants_get_the_confidential_shape() {
    let s = setup();
    let w = workload();
    let plain = s
        .azure
        .provision(&cloud_grant("plain", TdxRequirement::None), &w)
        .await
        .unwrap();
    let mut east = cloud_grant("east", TdxRequirement::Required);
    east.region = Some("eastus".into());
    let tdx = s.azure.provision(&east, &w).await.unwrap();
    let bodies = s.fake.vm_bodies();
    assert_eq!(
        bodies[0]["properties"]["hardwareProfile"]["vmSize"],
        "Standard_D2s_v5"
    );
    assert!(bodies[0]["properties"].get("securityProfile").is_none());
    assert_eq!(
        bodies[1]["properties"]["hardwareProfile"]["vmSize"],
        "Standard_DC4es_v5"
    );
    assert_eq!(
        bodies[1]["properties"]["securityProfile"]["securityType"],
        "ConfidentialVM"
    );
    assert_eq!(
        (plain.region.as_str(), tdx.region.as_str()),
        ("eastus", "eastus")
    );
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn resource_manager_errors_map_and_leave_nothing_behind() {
    let s = setup();
    let w = workload();
    let cases = [
        (VmFailure::SkuNotAvailable, "no-capacity", "SkuNotAvailable"),
        (
            VmFailure::AllocationFailed,
            "no-capacity",
            "AllocationFailed",
        ),
        (VmFailure::QuotaExceeded, "no-capacity", "quota"),
        (VmFailure::Throttled, "transient", "TooManyRequests"),
        (VmFailure::InternalError, "transient", "InternalServerError"),
    ];
    for (i, (failure, kind, text)) in cases.into_iter().enumerate() {
        s.fake.fail_next_vm(failure);
        let e = s
            .azure
            .provision(
                &cloud_grant(&format!("fail-{i}"), TdxRequirement::Required),
                &w,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind().to_string(), kind, "{failure:?}: {e}");
        assert!(e.to_string().contains(text), "{failure:?}: {e}");
        // The address and NIC made before the VM failed are gone again.
        assert_eq!(s.fake.resources(), Vec::<String>::new(), "{failure:?}");
    }
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn a_wrong_secret_is_a_config_error_that_names_the_key_not_the_value() {
    let fake = AzureFake::start(AzureAccount::default());
    let s = setup_with_secret(fake, "wrong~secret.value".into());
    let e = s
        .azure
        .provision(&cloud_grant("g", TdxRequirement::None), &workload())
        .await
        .unwrap_err();
    let BackendError::Config(msg) = &e else {
        panic!("expected a config error, got {e:?}")
    };
    assert!(
        msg.contains("`client_secret`") && msg.contains("AADSTS7000215"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong~secret") && !msg.contains("Trace ID"),
        "{msg}"
    );
    assert_eq!(s.fake.resources(), Vec::<String>::new());
}

#[tokio::test]
async fn one_token_serves_many_calls_until_it_expires() {
    let s = setup();
    let w = workload();
    let a = s
        .azure
        .provision(&cloud_grant("t-a", TdxRequirement::None), &w)
        .await
        .unwrap();
    for _ in 0..5 {
        s.azure.status(&a).await.unwrap();
    }
    assert_eq!(s.azure.list_instances().await.unwrap().len(), 1);
    s.azure.terminate(&a).await.unwrap();
    assert_eq!(s.fake.token_requests(), 1);
    assert_eq!(s.fake.rejections(), Vec::<String>::new());

    // Revoked early: replaced once, the call still succeeds.
    let b = s
        .azure
        .provision(&cloud_grant("t-b", TdxRequirement::None), &w)
        .await
        .unwrap();
    s.fake.revoke_tokens();
    assert_eq!(s.azure.status(&b).await.unwrap(), InstanceState::Running);
    assert_eq!(s.fake.token_requests(), 2);

    // Expiry: a short-lived token is used until it runs out, then replaced.
    s.fake.set_token_lifetime(2);
    s.fake.revoke_tokens();
    s.azure.status(&b).await.unwrap();
    assert_eq!(s.fake.token_requests(), 3);
    s.azure.status(&b).await.unwrap();
    assert_eq!(s.fake.token_requests(), 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.azure.status(&b).await.unwrap();
    assert_eq!(s.fake.token_requests(), 4);
}

#[tokio::test]
async fn list_instances_finds_this_providers_vms_across_pages() {
    let s = setup();
    let w = workload();
    let mut mine = Vec::new();
    for id in ["l-1", "l-2", "l-3"] {
        mine.push(
            s.azure
                .provision(&cloud_grant(id, TdxRequirement::None), &w)
                .await
                .unwrap(),
        );
    }
    s.fake.add_foreign_vm(
        "other",
        serde_json::json!({"cb-provider": "another", "cb-backend": "azure"}),
    );
    s.fake.add_foreign_vm("untagged", serde_json::json!({}));
    s.fake.set_page_size(2);
    let found = s.azure.list_instances().await.unwrap();
    let mut ids: Vec<_> = found.iter().map(|i| i.instance_id.clone()).collect();
    ids.sort();
    let mut expected: Vec<_> = mine.iter().map(|i| i.instance_id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for i in &found {
        let original = mine
            .iter()
            .find(|m| m.instance_id == i.instance_id)
            .unwrap();
        assert_eq!(i.public_host, original.public_host);
        assert_eq!(i.user, "cb-test");
        s.azure.terminate(i).await.unwrap();
    }
    let mut left = s.fake.resources();
    left.sort();
    assert_eq!(
        left,
        vec!["virtualMachines/other", "virtualMachines/untagged"]
    );
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// The fake itself refuses what Resource Manager refuses.
#[tokio::test]
async fn the_fake_refuses_requests_that_break_the_reference() {
    let fake = AzureFake::start(AzureAccount::default());
    let a = fake.account();
    let http = reqwest::Client::new();
    let token = fake.mint_token();
    let rg = format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers",
        fake.url(),
        a.subscription_id,
        a.resource_group
    );
    let put = |url: String, body: serde_json::Value| {
        http.put(url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
    };

    let (status, body) = send(http.get(format!(
        "{rg}/Microsoft.Compute/virtualMachines/x?api-version=2024-07-01"
    )))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let (status, body) = send(
        http.get(format!("{rg}/Microsoft.Compute/virtualMachines/x"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let (status, body) = send(
        http.get(format!(
            "{rg}/Microsoft.Compute/virtualMachines/x?api-version=2024-05-01"
        ))
        .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound"))
    );

    // A Standard address must be static.
    let (status, body) = send(put(
        format!("{rg}/Microsoft.Network/publicIPAddresses/ip?api-version=2024-05-01"),
        serde_json::json!({"location": "eastus", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Dynamic"}}),
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("StandardSkuPublicIPAddressesMustBeStatic"))
    );

    // A NIC on a subnet that does not exist.
    let (status, body) = send(put(
        format!("{rg}/Microsoft.Network/networkInterfaces/nic?api-version=2024-05-01"),
        serde_json::json!({"location": "eastus", "properties": {"ipConfigurations": [{"name": "c",
            "properties": {"subnet": {"id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/virtualNetworks/v/subnets/s"}}}]}}),
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("InvalidResourceReference"))
    );

    // A NIC in eastus on westeurope's subnet, or with westeurope's
    // security group: a subnet and a group serve their own region only.
    for (why, props) in [
        (
            "subnet of another region",
            serde_json::json!({"ipConfigurations": [{"name": "c",
                "properties": {"subnet": {"id": a.subnet_id("westeurope")}}}]}),
        ),
        (
            "security group of another region",
            serde_json::json!({"ipConfigurations": [{"name": "c",
                "properties": {"subnet": {"id": a.subnet_id("eastus")}}}],
                "networkSecurityGroup": {"id": a.nsg_id("westeurope")}}),
        ),
    ] {
        let (status, body) = send(put(
            format!("{rg}/Microsoft.Network/networkInterfaces/nic?api-version=2024-05-01"),
            serde_json::json!({"location": "eastus", "properties": props}),
        ))
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("InvalidResourceReference")),
            "{why}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("both resources are in the same region"),
            "{why}: {body}"
        );
    }

    // The operator's virtual networks answer with their region.
    let (status, body) = send(
        http.get(format!(
            "{rg}/Microsoft.Network/virtualNetworks/bridge-westeurope?api-version=2024-05-01"
        ))
        .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, body["location"].as_str()),
        (200, Some("westeurope"))
    );

    // A NIC that exists, then VMs Azure would refuse on it.
    let (status, _) = send(put(
        format!("{rg}/Microsoft.Network/networkInterfaces/nic?api-version=2024-05-01"),
        serde_json::json!({"location": "eastus", "properties": {"ipConfigurations": [{"name": "c",
            "properties": {"subnet": {"id": a.subnet_id("eastus")}}}]}}),
    ))
    .await;
    assert_eq!(status, 201);
    let nic_id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkInterfaces/nic",
        a.subscription_id, a.resource_group
    );
    let vm = |size: &str, security: Option<serde_json::Value>| {
        let mut v = serde_json::json!({"location": "eastus", "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "cvm", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}},
            "osProfile": {"computerName": "vm", "adminUsername": "cb-user", "linuxConfiguration": {"disablePasswordAuthentication": true,
                "ssh": {"publicKeys": [{"path": "/home/cb-user/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA"}]}}},
            "networkProfile": {"networkInterfaces": [{"id": nic_id}]}}});
        if let Some(sec) = security {
            v["properties"]["securityProfile"] = sec;
        }
        v
    };
    let cvm = serde_json::json!({"securityType": "ConfidentialVM", "uefiSettings": {"secureBootEnabled": true, "vTpmEnabled": true}});
    for (why, body, code) in [
        (
            "TDX size as a plain VM",
            vm("Standard_DC4es_v5", None),
            "BadRequest",
        ),
        (
            "ConfidentialVM on a plain size",
            vm("Standard_D2s_v5", Some(cvm.clone())),
            "BadRequest",
        ),
        (
            "ConfidentialVM without disk encryption type",
            vm("Standard_DC4es_v5", Some(cvm)),
            "InvalidParameter",
        ),
        ("unknown size", vm("Standard_Z9", None), "InvalidParameter"),
        (
            "VM in another region than its NIC",
            {
                let mut v = vm("Standard_D2s_v5", None);
                v["location"] = "westeurope".into();
                v
            },
            "InvalidParameter",
        ),
    ] {
        let (status, resp) = send(put(
            format!("{rg}/Microsoft.Compute/virtualMachines/vm?api-version=2024-07-01"),
            body,
        ))
        .await;
        assert_eq!(
            (status, resp["error"]["code"].as_str()),
            (400, Some(code)),
            "{why}: {resp}"
        );
    }
    assert_eq!(fake.rejections().len(), 12, "{:#?}", fake.rejections());
}

#[tokio::test]
async fn the_azure_component_passes_the_conformance_run_against_the_fake() {
    let s = setup();
    assert_conforms(s.azure.as_ref()).await;
    // Its lifecycle ended in terminate: nothing is left in the group.
    assert!(s.fake.resources().is_empty(), "{:?}", s.fake.resources());
}

/// The catalog offers the TDX size in eastus and westeurope (as the crate's
/// own example does): each region's VM gets a NIC in that region's subnet
/// and security group.
#[tokio::test]
async fn a_size_in_two_regions_is_served_in_each_on_that_regions_network() {
    let s = setup();
    let a = s.fake.account();
    let w = workload();
    for region in ["eastus", "westeurope"] {
        let mut g = cloud_grant(&format!("net-{region}"), TdxRequirement::Required);
        g.cpu_millicores = 4000;
        g.region = Some(region.into());
        let inst = s
            .azure
            .provision(&g, &w)
            .await
            .unwrap_or_else(|e| panic!("{region}: {e}"));
        assert_eq!(inst.region, region);
        let nic = s.fake.nic_bodies().pop().unwrap();
        let cfg = &nic["properties"]["ipConfigurations"][0]["properties"];
        assert_eq!(cfg["subnet"]["id"], a.subnet_id(region).as_str());
        assert_eq!(
            nic["properties"]["networkSecurityGroup"]["id"],
            a.nsg_id(region).as_str()
        );
        let vm = &inst.instance_id;
        let mut held = s.fake.resources_with_location();
        held.retain(|r| r.contains(vm.as_str()));
        held.sort();
        assert_eq!(
            held,
            [
                format!("networkInterfaces/{vm}-nic@{region}"),
                format!("publicIPAddresses/{vm}-ip@{region}"),
                format!("virtualMachines/{vm}@{region}"),
            ]
        );
        s.azure.terminate(&inst).await.unwrap();
    }
    assert_eq!(s.fake.resources(), Vec::<String>::new());
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// ARM refuses a public address over the region's limit with a 400: that
/// is capacity (another region has its own limit), not a setting to fix.
#[tokio::test]
async fn a_public_address_quota_refusal_is_no_capacity() {
    let s = setup();
    s.fake.set_public_ip_limit("eastus", 0);
    let mut g = cloud_grant("ip-quota", TdxRequirement::None);
    g.region = Some("eastus".into());
    let e = s.azure.provision(&g, &workload()).await.unwrap_err();
    assert_eq!(e.kind().to_string(), "no-capacity", "{e}");
    assert!(e.to_string().contains("PublicIPCountLimitReached"), "{e}");
    assert_eq!(s.fake.resources(), Vec::<String>::new());
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// Region A answers with a capacity code, region B serves the grant, and
/// the operator's dashboard shows the failover from one to the other.
#[tokio::test]
async fn no_capacity_in_one_region_fails_over_to_the_next_and_the_dashboard_shows_it() {
    let fake = AzureFake::start(AzureAccount::default());
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(
        state.path(),
        &azure_toml("azure", &fake),
        &[("AZURE_SECRET", fake.account().client_secret)],
    );
    let rig = crate::dashboard::Rig::from_config(&cfg, true).await;
    let w = workload();

    // eastus is out of capacity for every size; a TDX grant that names no
    // region is offered to eastus, then to westeurope.
    fake.set_region_full("eastus", Some(VmFailure::AllocationFailed));
    let p = rig
        .place(&cloud_grant("full-east", TdxRequirement::Required), &w)
        .await
        .unwrap_or_else(|d| panic!("declined instead of moving to westeurope: {d}"));
    assert_eq!(
        (p.backend.as_str(), p.instance.region.as_str()),
        ("azure", "westeurope")
    );
    assert_eq!(p.failovers.len(), 1);
    let f = &p.failovers[0];
    assert_eq!(
        (f.from.as_str(), f.region.as_deref(), f.kind.to_string()),
        ("azure", Some("eastus"), "no-capacity".into()),
        "{}",
        f.message
    );
    assert!(f.message.contains("AllocationFailed"), "{}", f.message);

    // Then eastus has room for VMs but no public address left: the same.
    fake.set_region_full("eastus", None);
    fake.set_public_ip_limit("eastus", 0);
    let q = rig
        .place(&cloud_grant("no-ip-east", TdxRequirement::Required), &w)
        .await
        .unwrap_or_else(|d| panic!("declined instead of moving to westeurope: {d}"));
    assert_eq!(q.instance.region, "westeurope");
    assert_eq!(q.failovers.len(), 1);
    assert!(
        q.failovers[0].message.contains("PublicIPCountLimitReached"),
        "{}",
        q.failovers[0].message
    );

    // What the operator sees: two failovers, each from eastus to
    // westeurope, and nothing billed in eastus.
    let snapshot = rig.dashboard.snapshot();
    let html = compute_bridge_daemon::dashboard::html::render(&snapshot);
    assert_eq!(
        html.matches("Failover azure/eastus → azure/westeurope")
            .count(),
        2,
        "{html}"
    );
    let json = serde_json::to_value(&snapshot).unwrap();
    let failovers: Vec<_> = json["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "failover")
        .map(|e| {
            (
                e["from"].as_str(),
                e["from_region"].as_str(),
                e["to"].as_str(),
                e["to_region"].as_str(),
            )
        })
        .collect();
    let step = (
        Some("azure"),
        Some("eastus"),
        Some("azure"),
        Some("westeurope"),
    );
    assert_eq!(failovers, [step, step], "{json:#}");
    let held = fake.resources_with_location();
    assert_eq!(held.len(), 6, "{held:?}");
    assert!(held.iter().all(|r| r.ends_with("@westeurope")), "{held:?}");
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

/// A subnet's region cannot be read from its id; the backend asks Resource
/// Manager for its virtual network's region before creating anything, and
/// a subnet of another region is a `config` error naming the key.
#[tokio::test]
async fn a_subnet_in_another_region_is_refused_before_anything_is_made() {
    let fake = AzureFake::start(AzureAccount::default());
    let a = fake.account();
    // westeurope's network points at eastus's subnet.
    let toml = format!(
        "{}[backends.config.networks.westeurope]\nsubnet_id = {:?}\n{}",
        azure_head("azure", &fake, &fake.url(), ""),
        a.subnet_id("eastus"),
        one_size_in("westeurope")
    );
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(
        state.path(),
        &toml,
        &[("AZURE_SECRET", a.client_secret.clone())],
    );
    let (_rt, backends) = load(&cfg);
    let e = backends[0]
        .provision(&cloud_grant("wrong-net", TdxRequirement::None), &workload())
        .await
        .unwrap_err();
    let BackendError::Config(msg) = &e else {
        panic!("expected a config error, got {e:?}")
    };
    assert!(
        msg.starts_with(
            "`networks.westeurope.subnet_id`: its virtual network is in eastus, not in westeurope"
        ),
        "{msg}"
    );
    assert_eq!(fake.resources(), Vec::<String>::new());
    assert!(
        !fake.requests().iter().any(|r| r.starts_with("PUT")),
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

/// The commented Azure section of `config/example.toml`, uncommented, is a
/// config the host accepts and the component reads: a network for each
/// region its sizes list.
#[tokio::test]
async fn the_documented_example_is_a_config_the_component_accepts() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(
        state.path(),
        &example_section("azure"),
        &[("AZURE_CLIENT_SECRET", "example-secret".into())],
    );
    assert_eq!(cfg.backends[0].component, "builtin:azure");
    let (_rt, backends) = load(&cfg);
    // capabilities() parses and validates the whole table without a call.
    let caps = backends[0].capabilities().await.unwrap();
    assert_eq!(caps.regions, ["eastus", "westeurope"]);
    assert!(caps.tdx_capable);
}
