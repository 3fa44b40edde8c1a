//! The GCP backend through the real host, against the Compute Engine and
//! OAuth fake (components/gcp/fake).

use std::sync::Arc;
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, BackendError, InstanceState, TdxRequirement};
use compute_bridge_sandbox::{ComponentBackend, Runtime};
use compute_bridge_testkit::gcp_fake::{GcpFake, InsertFailure};

use crate::support::*;

pub const PROJECT: &str = "bridge-test";

/// The `[[backends]]` table of a GCP backend pointed at `fake`: an n2 type
/// in us-central1-a, a TDX c3 type in us-central1-b and europe-west4-a.
pub fn gcp_toml(name: &str, fake: &GcpFake) -> String {
    let url = fake.url();
    format!(
        r#"[[backends]]
name = "{name}"
component = "builtin:gcp"
[backends.http]
allowed_hosts = ["{url}"]
[backends.config]
project = "{PROJECT}"
service_account_key = "${{GCP_KEY}}"
compute_url = "{url}"
network_tags = ["allow-ssh"]
max_cpu_millicores = 64000
max_ram_mib = 262144
[[backends.config.machine_types]]
name = "n2-standard-2"
cpus = 2
ram_mib = 8192
usd_per_hour = 0.10
zones = ["us-central1-a"]
[[backends.config.machine_types]]
name = "c3-standard-4"
cpus = 4
ram_mib = 16384
usd_per_hour = 0.21
tdx = true
zones = ["us-central1-b", "europe-west4-a"]
"#
    )
}

/// The fake with the catalog's zones and one zone the catalog does not
/// list (`us-central1-f`).
pub fn start_fake() -> GcpFake {
    GcpFake::start(
        PROJECT,
        &[
            "us-central1-a",
            "us-central1-b",
            "us-central1-f",
            "europe-west4-a",
        ],
    )
}

struct Setup {
    fake: GcpFake,
    _state: tempfile::TempDir,
    _rt: Runtime,
    gcp: Arc<ComponentBackend>,
}

fn setup_with_key(fake: GcpFake, key: String) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(state.path(), &gcp_toml("gcp", &fake), &[("GCP_KEY", key)]);
    let (rt, mut backends) = load(&cfg);
    Setup {
        fake,
        _state: state,
        _rt: rt,
        gcp: backends.remove(0),
    }
}

fn setup() -> Setup {
    let fake = start_fake();
    let key = fake.key_json();
    setup_with_key(fake, key)
}

fn started(handle: &str) -> u64 {
    let h: serde_json::Value = serde_json::from_str(handle).unwrap();
    h["started"].as_u64().unwrap()
}

#[tokio::test]
async fn a_tdx_grant_lives_its_whole_life_on_a_confidential_c3_vm() {
    let s = setup();
    let caps = s.gcp.capabilities().await.unwrap();
    assert_eq!(caps.regions, vec!["us-central1", "europe-west4"]);
    assert!(caps.tdx_capable);
    assert_eq!(caps.max_cpu_millicores, 64000);

    let grant = cloud_grant("grant-0001", TdxRequirement::Required);
    assert!(s.gcp.can_satisfy(&grant).await);
    let w = workload();
    let inst = s.gcp.provision(&grant, &w).await.unwrap();
    assert!(inst.public_host.starts_with("203.0.113."), "{inst:?}");
    assert_eq!(inst.region, "us-central1");
    assert_eq!(inst.ssh_port, 22);
    assert_eq!(inst.user, "cb-test");
    // Named by a hash: the name reaches the operator's log, which never
    // names a request.
    assert!(
        inst.instance_id.starts_with("cb-") && !inst.instance_id.contains("grant"),
        "{inst:?}"
    );

    // What reached Compute Engine: a TDX Confidential VM on C3 with the
    // workload's script and the provider's labels.
    let body = &s.fake.inserted()[0];
    assert_eq!(
        body["confidentialInstanceConfig"]["confidentialInstanceType"],
        "TDX"
    );
    assert_eq!(body["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert_eq!(
        body["machineType"],
        "zones/us-central1-b/machineTypes/c3-standard-4"
    );
    assert_eq!(body["labels"]["cb_provider"], "test-provider");
    assert_eq!(body["labels"]["cb_request"], "grant-0001");
    assert_eq!(body["labels"]["cb_backend"], "gcp");
    assert_eq!(body["tags"]["items"][0], "allow-ssh");
    let items = body["metadata"]["items"].as_array().unwrap();
    let script = items.iter().find(|i| i["key"] == "startup-script").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(
        script.contains(&format!("image='{PINNED_IMAGE}'")),
        "{script}"
    );
    assert!(script.contains(&w.ssh_public_key), "{script}");
    assert!(
        script.contains("useradd -m -s /bin/bash -p '*' \"$user\""),
        "{script}"
    );
    assert!(
        items
            .iter()
            .any(|i| i["key"] == "cb-request-id" && i["value"] == "grant-0001")
    );

    assert_eq!(s.gcp.status(&inst).await.unwrap(), InstanceState::Running);

    // The VM powers off when the workload exits: allocated × time up to
    // the stop.
    s.fake.set_instance_status(&inst.instance_id, "TERMINATED");
    assert_eq!(
        s.gcp.status(&inst).await.unwrap(),
        InstanceState::Exited(-1)
    );
    let u = s.gcp.usage(&inst).await.unwrap();
    let secs = u.cpu_core_seconds / 4;
    assert_eq!(u.cpu_core_seconds, 4 * secs, "{u:?}");
    assert_eq!(u.ram_mib_seconds, 16384 * secs, "{u:?}");
    assert!(secs <= compute_bridge_contract::clock::now_unix() - started(&inst.handle) + 1);

    s.gcp.terminate(&inst).await.unwrap();
    assert!(s.fake.instances().is_empty());
    // Idempotent: the second terminate finds nothing and succeeds.
    s.gcp.terminate(&inst).await.unwrap();
    assert_eq!(s.gcp.status(&inst).await.unwrap(), InstanceState::Gone);

    assert_eq!(s.fake.rejections(), Vec::<String>::new());
    assert_eq!(s.fake.token_requests(), 1, "one token for the whole life");
}

#[tokio::test]
async fn only_tdx_grants_get_the_confidential_shape() {
    let s = setup();
    let w = workload();
    let plain = s
        .gcp
        .provision(&cloud_grant("plain", TdxRequirement::None), &w)
        .await
        .unwrap();
    let preferred = s
        .gcp
        .provision(&cloud_grant("preferred", TdxRequirement::Preferred), &w)
        .await
        .unwrap();
    let mut europe = cloud_grant("europe", TdxRequirement::Required);
    europe.region = Some("europe-west4".into());
    let eu = s.gcp.provision(&europe, &w).await.unwrap();
    let bodies = s.fake.inserted();
    assert_eq!(
        bodies[0]["machineType"],
        "zones/us-central1-a/machineTypes/n2-standard-2"
    );
    assert!(bodies[0].get("confidentialInstanceConfig").is_none());
    assert!(bodies[0].get("scheduling").is_none());
    assert_eq!(
        bodies[1]["machineType"],
        "zones/us-central1-b/machineTypes/c3-standard-4"
    );
    assert_eq!(
        bodies[1]["confidentialInstanceConfig"]["confidentialInstanceType"],
        "TDX"
    );
    assert_eq!(
        bodies[2]["machineType"],
        "zones/europe-west4-a/machineTypes/c3-standard-4"
    );
    assert_eq!(eu.region, "europe-west4");
    assert_eq!(plain.region, "us-central1");
    assert_eq!(preferred.region, "us-central1");

    // What the catalog cannot hold is refused before any API call.
    let mut huge = cloud_grant("huge", TdxRequirement::Required);
    huge.cpu_millicores = 8000;
    assert!(!s.gcp.can_satisfy(&huge).await);
    let mut unpinned = cloud_grant("unpinned", TdxRequirement::None);
    unpinned.image = "ghcr.io/acme/worker:latest".into();
    assert!(!s.gcp.can_satisfy(&unpinned).await);
    assert!(matches!(
        s.gcp.provision(&unpinned, &w).await,
        Err(BackendError::Rejected(_))
    ));
    assert_eq!(s.fake.inserted().len(), 3);
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn compute_engine_errors_map_to_what_the_fleet_acts_on() {
    let s = setup();
    let w = workload();
    let cases = [
        (
            InsertFailure::ZoneResourcePoolExhausted,
            "no-capacity",
            "ZONE_RESOURCE_POOL_EXHAUSTED",
        ),
        (
            InsertFailure::QuotaExceeded,
            "no-capacity",
            "QUOTA_EXCEEDED",
        ),
        (
            InsertFailure::HttpQuotaExceeded,
            "no-capacity",
            "Quota 'C3_CPUS' exceeded",
        ),
        (
            InsertFailure::RateLimited,
            "transient",
            "Rate Limit Exceeded",
        ),
        (InsertFailure::Unavailable, "transient", "Backend Error"),
    ];
    for (i, (failure, kind, text)) in cases.into_iter().enumerate() {
        s.fake.fail_next_insert(failure);
        let e = s
            .gcp
            .provision(
                &cloud_grant(&format!("fail-{i}"), TdxRequirement::Required),
                &w,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind().to_string(), kind, "{failure:?}: {e}");
        assert!(e.to_string().contains(text), "{failure:?}: {e}");
    }
    // Nothing was left behind by the failures.
    assert!(s.fake.instances().is_empty());
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn a_key_google_does_not_know_is_a_config_error_that_names_the_key() {
    let fake = start_fake();
    let key = fake.foreign_key_json();
    let secret_line: String =
        serde_json::from_str::<serde_json::Value>(&key).unwrap()["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
    let s = setup_with_key(fake, key);
    let e = s
        .gcp
        .provision(&cloud_grant("g", TdxRequirement::None), &workload())
        .await
        .unwrap_err();
    let BackendError::Config(msg) = &e else {
        panic!("expected a config error, got {e:?}")
    };
    assert!(msg.contains("`service_account_key`"), "{msg}");
    assert!(msg.contains("Invalid JWT Signature"), "{msg}");
    assert!(
        !msg.contains(&secret_line),
        "the key must never be shown: {msg}"
    );
    assert!(s.fake.instances().is_empty());

    // A value that is not a key at all is caught at start, with no request.
    let fake = start_fake();
    let s = setup_with_key(fake, "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n".into());
    let e = s.gcp.capabilities().await.unwrap_err();
    assert!(
        matches!(&e, BackendError::Config(m) if m.contains("`service_account_key`") && !m.contains("MIIEsecret")),
        "{e:?}"
    );
    assert_eq!(s.fake.token_requests(), 0);
}

#[tokio::test]
async fn one_token_serves_many_calls_until_it_expires() {
    let s = setup();
    let w = workload();
    let a = s
        .gcp
        .provision(&cloud_grant("t-a", TdxRequirement::None), &w)
        .await
        .unwrap();
    let b = s
        .gcp
        .provision(&cloud_grant("t-b", TdxRequirement::Required), &w)
        .await
        .unwrap();
    for _ in 0..5 {
        s.gcp.status(&a).await.unwrap();
        s.gcp.status(&b).await.unwrap();
    }
    s.gcp.usage(&a).await.unwrap();
    assert_eq!(s.gcp.list_instances().await.unwrap().len(), 2);
    s.gcp.terminate(&a).await.unwrap();
    assert_eq!(s.fake.token_requests(), 1, "{:?}", s.fake.requests());
    assert_eq!(s.fake.rejections(), Vec::<String>::new());

    // A token Google stops accepting early is replaced once, and the call
    // still succeeds.
    s.fake.revoke_tokens();
    assert_eq!(s.gcp.status(&b).await.unwrap(), InstanceState::Running);
    assert_eq!(s.fake.token_requests(), 2);
    s.gcp.status(&b).await.unwrap();
    assert_eq!(s.fake.token_requests(), 2);
}

#[tokio::test]
async fn an_expired_token_is_never_reused() {
    let s = setup();
    s.fake.set_token_lifetime(2);
    let inst = s
        .gcp
        .provision(&cloud_grant("short", TdxRequirement::None), &workload())
        .await
        .unwrap();
    s.gcp.status(&inst).await.unwrap();
    assert_eq!(s.fake.token_requests(), 1);
    // Let the token run out; the next call fetches a new one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.gcp.status(&inst).await.unwrap(), InstanceState::Running);
    assert_eq!(s.fake.token_requests(), 2);
    s.gcp.status(&inst).await.unwrap();
    assert_eq!(s.fake.token_requests(), 2);
}

#[tokio::test]
async fn list_instances_finds_this_providers_instances_across_pages() {
    let s = setup();
    let w = workload();
    let mine: Vec<String> = {
        let mut v = Vec::new();
        for id in ["l-1", "l-2", "l-3"] {
            let tdx = if id == "l-2" {
                TdxRequirement::Required
            } else {
                TdxRequirement::None
            };
            v.push(
                s.gcp
                    .provision(&cloud_grant(id, tdx), &w)
                    .await
                    .unwrap()
                    .instance_id,
            );
        }
        v
    };
    s.fake.add_foreign_instance(
        "us-central1-a",
        "someone-else",
        serde_json::json!({"cb_provider": "another-provider", "cb_backend": "gcp"}),
    );
    s.fake
        .add_foreign_instance("us-central1-a", "unlabelled", serde_json::json!({}));
    // Ours, in a zone the catalog no longer lists (left from an older
    // config): the sweep must still see it.
    s.fake.add_foreign_instance(
        "us-central1-f",
        "cb-left-behind",
        serde_json::json!({"cb_provider": "test-provider", "cb_backend": "gcp", "cb_user": "cb-test"}),
    );
    s.fake.set_page_size(1);
    let mut found: Vec<_> = s.gcp.list_instances().await.unwrap();
    found.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let ids: Vec<String> = found.iter().map(|i| i.instance_id.clone()).collect();
    let mut expected = mine.clone();
    expected.push("cb-left-behind".into());
    expected.sort();
    assert_eq!(ids, expected);
    for i in &found {
        assert_eq!(i.user, "cb-test");
        // The handle works for the rest of the life.
        assert_eq!(s.gcp.status(i).await.unwrap(), InstanceState::Running);
    }
    let left = found
        .iter()
        .find(|i| i.instance_id == "cb-left-behind")
        .unwrap();
    assert_eq!(left.region, "us-central1");
    // One aggregated listing, paged (a page of one item per call).
    let lists: Vec<String> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET") && r.contains("/instances") && !r.contains("/instances/"))
        .collect();
    assert!(
        lists.iter().all(|r| r.ends_with("/aggregated/instances")),
        "{lists:?}"
    );
    assert_eq!(lists.len(), 4, "{lists:?}");
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// The orphan sweep lists with the filter the API accepts and deletes a VM
/// the journal does not know. Before, the filter was `a = "x" AND b = "y"`,
/// which Compute Engine refuses: the sweep only warned and the VM kept
/// billing.
#[tokio::test]
async fn the_orphan_sweep_finds_and_deletes_a_leaked_vm() {
    let s = setup();
    let kept = s
        .gcp
        .provision(&cloud_grant("journaled", TdxRequirement::None), &workload())
        .await
        .unwrap();
    let leaked = s
        .gcp
        .provision(
            &cloud_grant("leaked", TdxRequirement::Required),
            &workload(),
        )
        .await
        .unwrap();
    let journal = std::collections::HashSet::from([kept.instance_id.clone()]);
    let swept = compute_bridge_daemon::grant::sweep_orphans(s.gcp.as_ref(), &journal).await;
    assert_eq!(
        swept,
        vec![leaked.instance_id.clone()],
        "{:#?}",
        s.fake.rejections()
    );
    let left: Vec<String> = s.fake.instances().into_iter().map(|(_, n)| n).collect();
    assert_eq!(left, vec![kept.instance_id]);
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// A zone that does not answer the listing makes the listing fail, rather
/// than a partial answer the sweep would take as whole.
#[tokio::test]
async fn a_partial_listing_is_an_error_not_a_short_list() {
    let s = setup();
    s.gcp
        .provision(&cloud_grant("p", TdxRequirement::None), &workload())
        .await
        .unwrap();
    s.fake.set_unreachable("europe-west4-a");
    let e = s.gcp.list_instances().await.unwrap_err();
    assert!(matches!(e, BackendError::Transient(_)), "{e:?}");
    assert!(e.to_string().contains("zones/europe-west4-a"), "{e}");
}

/// Every VM status that means the VM is going or gone ends the grant; only
/// the ones on the way up are `starting` (compute.proto `Instance.Status`).
#[tokio::test]
async fn a_vm_being_torn_down_is_over_not_starting() {
    let s = setup();
    let inst = s
        .gcp
        .provision(&cloud_grant("st", TdxRequirement::None), &workload())
        .await
        .unwrap();
    for (status, want) in [
        ("PENDING_STOP", InstanceState::Exited(-1)),
        ("DEPROVISIONING", InstanceState::Exited(-1)),
        ("STOPPING", InstanceState::Exited(-1)),
        ("PENDING", InstanceState::Starting),
        ("REPAIRING", InstanceState::Starting),
        ("RUNNING", InstanceState::Running),
    ] {
        s.fake.set_instance_status(&inst.instance_id, status);
        assert_eq!(s.gcp.status(&inst).await.unwrap(), want, "{status}");
    }
}

/// A network whose subnetworks are regional: each instance gets the
/// subnetwork of its own zone's region.
#[tokio::test]
async fn each_instance_gets_the_subnetwork_of_its_own_region() {
    let fake = start_fake();
    fake.add_network("bridge-vpc", false);
    fake.add_subnetwork("us-central1", "bridge-us", "bridge-vpc");
    fake.add_subnetwork("europe-west4", "bridge-eu", "bridge-vpc");
    let key = fake.key_json();
    let toml = gcp_toml("gcp", &fake).replace(
        "network_tags = [\"allow-ssh\"]",
        "network_tags = [\"allow-ssh\"]\nnetwork = \"global/networks/bridge-vpc\"\n\
         subnetworks = { us-central1 = \"bridge-us\", europe-west4 = \"regions/europe-west4/subnetworks/bridge-eu\" }",
    );
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(state.path(), &toml, &[("GCP_KEY", key)]);
    let (_rt, backends) = load(&cfg);
    let gcp = &backends[0];
    let w = workload();
    let us = gcp
        .provision(&cloud_grant("net-us", TdxRequirement::Required), &w)
        .await
        .unwrap();
    let mut g = cloud_grant("net-eu", TdxRequirement::Required);
    g.region = Some("europe-west4".into());
    let eu = gcp.provision(&g, &w).await.unwrap();
    assert_eq!(
        (us.region.as_str(), eu.region.as_str()),
        ("us-central1", "europe-west4")
    );
    let nics: Vec<serde_json::Value> = fake
        .inserted()
        .iter()
        .map(|b| b["networkInterfaces"][0].clone())
        .collect();
    assert_eq!(
        nics[0]["subnetwork"],
        "regions/us-central1/subnetworks/bridge-us"
    );
    assert_eq!(
        nics[1]["subnetwork"],
        "regions/europe-west4/subnetworks/bridge-eu"
    );
    assert!(
        nics.iter()
            .all(|n| n["network"] == "global/networks/bridge-vpc")
    );
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

/// The single `subnetwork` of old went on every instance, whatever its
/// region: with zones in two regions, one of them always failed. It is now
/// refused at start, naming the key that replaces it.
#[tokio::test]
async fn the_old_single_subnetwork_is_refused_naming_subnetworks() {
    let fake = start_fake();
    fake.add_network("bridge-vpc", false);
    fake.add_subnetwork("us-central1", "bridge-us", "bridge-vpc");
    let key = fake.key_json();
    let toml = gcp_toml("gcp", &fake).replace(
        "network_tags = [\"allow-ssh\"]",
        "network_tags = [\"allow-ssh\"]\nnetwork = \"global/networks/bridge-vpc\"\n\
         subnetwork = \"regions/us-central1/subnetworks/bridge-us\"",
    );
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(state.path(), &toml, &[("GCP_KEY", key)]);
    let (_rt, backends) = load(&cfg);
    let e = backends[0].capabilities().await.unwrap_err();
    let BackendError::Config(m) = &e else {
        panic!("expected a config error, got {e:?}")
    };
    assert!(m.starts_with("`subnetwork`: "), "{m}");
    assert!(m.contains("`subnetworks`"), "{m}");
    assert!(fake.inserted().is_empty());
}

/// A zone out of stock moves on to the next zone of the same region; the
/// region is never left (the fleet moves grants between regions), and a
/// quota, which the region shares, is answered at once.
#[tokio::test]
async fn a_zone_out_of_stock_moves_on_to_the_next_zone_of_the_region() {
    let fake = start_fake();
    let key = fake.key_json();
    // n2-standard-2 in two zones of us-central1 and one of europe-west4.
    let toml = gcp_toml("gcp", &fake).replace(
        "zones = [\"us-central1-a\"]",
        "zones = [\"us-central1-a\", \"us-central1-f\", \"europe-west4-a\"]",
    );
    let state = tempfile::tempdir().unwrap();
    let cfg = config_with_env(state.path(), &toml, &[("GCP_KEY", key)]);
    let (_rt, backends) = load(&cfg);
    let gcp = &backends[0];
    let w = workload();
    let mut g = cloud_grant("zones", TdxRequirement::None);
    g.region = Some("us-central1".into());

    fake.stock_out("us-central1-a");
    let inst = gcp.provision(&g, &w).await.unwrap();
    assert_eq!(fake.insert_zones(), ["us-central1-a", "us-central1-f"]);
    assert_eq!(
        fake.instances(),
        [("us-central1-f".to_string(), inst.instance_id.clone())]
    );
    gcp.terminate(&inst).await.unwrap();

    // Both zones of the region out of stock: no-capacity, nothing made,
    // and europe-west4 is not tried by the backend itself.
    fake.stock_out("us-central1-f");
    let e = gcp.provision(&g, &w).await.unwrap_err();
    assert!(matches!(e, BackendError::NoCapacity(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
            && e.to_string().contains("us-central1-a"),
        "{e}"
    );
    assert_eq!(
        fake.insert_zones(),
        [
            "us-central1-a",
            "us-central1-f",
            "us-central1-a",
            "us-central1-f"
        ]
    );
    assert!(fake.instances().is_empty());

    // A project quota is the region's: the next zone is not tried.
    fake.restock("us-central1-a");
    fake.restock("us-central1-f");
    fake.fail_next_insert(InsertFailure::QuotaExceeded);
    let e = gcp.provision(&g, &w).await.unwrap_err();
    assert!(matches!(e, BackendError::NoCapacity(_)), "{e:?}");
    assert_eq!(fake.insert_zones().len(), 5);
    assert!(fake.instances().is_empty());
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

/// The commented GCP section of `config/example.toml`, uncommented, is a
/// config the host accepts and the component reads.
#[tokio::test]
async fn the_documented_example_is_a_config_the_component_accepts() {
    let section = example_section("gcp");
    let fake = start_fake();
    let key = fake.key_json();
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "[bridge]\nstate_dir = {:?}\n\n{section}",
        state.path().display().to_string()
    );
    let cfg = compute_bridge_daemon::config::BootConfig::from_source(
        &compute_bridge_daemon::config::Source::embedded("example-gcp.toml", &text),
        &|k| (k == "GCP_SERVICE_ACCOUNT_KEY").then(|| key.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg.backends[0].component, "builtin:gcp");
    let (_rt, backends) = load(&cfg);
    let caps = backends[0].capabilities().await.unwrap();
    assert_eq!(caps.regions, ["us-central1", "europe-west4"]);
    assert!(caps.tdx_capable);
}

/// The fake itself refuses what Compute Engine and Google's token endpoint
/// refuse, so a backend that passes against it follows the reference.
#[tokio::test]
async fn the_fake_refuses_requests_that_break_the_reference() {
    let fake = start_fake();
    let http = reqwest::Client::new();
    let base = format!(
        "{}/compute/v1/projects/{PROJECT}/zones/us-central1-b",
        fake.url()
    );

    // No token.
    let (status, body) = send(http.get(format!("{base}/instances/x"))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");

    // A forged assertion.
    let (status, body) = send(
        http.post(fake.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer\
                 &assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
            ),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(fake.token_requests(), 1);

    // Instances that Compute Engine would refuse.
    let token = fake.mint_token();
    let good = || {
        serde_json::json!({
            "name": "cb-ok",
            "machineType": "zones/us-central1-b/machineTypes/c3-standard-4",
            "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
                "sourceImage": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
                "diskType": "zones/us-central1-b/diskTypes/pd-balanced"}}],
            "networkInterfaces": [{"network": "global/networks/default",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
            "confidentialInstanceConfig": {"confidentialInstanceType": "TDX"},
            "scheduling": {"onHostMaintenance": "TERMINATE"},
        })
    };
    let mut tdx_on_n2 = good();
    tdx_on_n2["machineType"] = "zones/us-central1-b/machineTypes/n2-standard-2".into();
    let mut migrating_tdx = good();
    migrating_tdx["scheduling"]["onHostMaintenance"] = "MIGRATE".into();
    let mut standard_disk_on_c3 = good();
    standard_disk_on_c3["disks"][0]["initializeParams"]["diskType"] =
        "zones/us-central1-b/diskTypes/pd-standard".into();
    let mut no_disk = good();
    no_disk.as_object_mut().unwrap().remove("disks");
    let mut unknown_field = good();
    unknown_field["colour"] = "red".into();
    let mut bad_label = good();
    bad_label["labels"] = serde_json::json!({"Provider": "x"});
    let mut unknown_nested = good();
    unknown_nested["networkInterfaces"][0]["colour"] = "red".into();
    let mut disk_elsewhere = good();
    disk_elsewhere["disks"][0]["initializeParams"]["diskType"] =
        "zones/us-central1-a/diskTypes/pd-balanced".into();
    // Regional resources: a subnetwork serves only its own region.
    fake.add_network("bridge-vpc", false);
    fake.add_subnetwork("us-central1", "bridge-us", "bridge-vpc");
    fake.add_subnetwork("europe-west4", "bridge-eu", "bridge-vpc");
    let nic = |network: Option<&str>, subnetwork: Option<&str>| {
        let mut b = good();
        let mut n = serde_json::json!({"accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]});
        if let Some(v) = network {
            n["network"] = v.into();
        }
        if let Some(v) = subnetwork {
            n["subnetwork"] = v.into();
        }
        b["networkInterfaces"] = serde_json::json!([n]);
        b
    };
    for (why, body, reason) in [
        ("TDX on N2", tdx_on_n2, "invalid"),
        ("TDX with live migration", migrating_tdx, "invalid"),
        ("pd-standard on C3", standard_disk_on_c3, "invalid"),
        ("no boot disk", no_disk, "invalid"),
        ("unknown field", unknown_field, "invalid"),
        ("unknown nested field", unknown_nested, "invalid"),
        ("upper-case label key", bad_label, "invalid"),
        ("a disk type of another zone", disk_elsewhere, "invalid"),
        (
            "a subnetwork of another region",
            nic(None, Some("regions/europe-west4/subnetworks/bridge-eu")),
            "invalid",
        ),
        (
            "a custom-mode network without a subnetwork",
            nic(Some("global/networks/bridge-vpc"), None),
            "invalid",
        ),
        (
            "a subnetwork that does not exist",
            nic(None, Some("regions/us-central1/subnetworks/nowhere")),
            "invalid",
        ),
        (
            "a subnetwork of another network",
            nic(
                Some("global/networks/default"),
                Some("regions/us-central1/subnetworks/bridge-us"),
            ),
            "badRequest",
        ),
        (
            "a network that does not exist",
            nic(Some("global/networks/nowhere"), None),
            "invalid",
        ),
    ] {
        let (status, body) = send(json_post(
            &http,
            &format!("{base}/instances"),
            &token,
            &body,
        ))
        .await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(
            body["error"]["errors"][0]["reason"], reason,
            "{why}: {body}"
        );
    }
    assert!(fake.instances().is_empty());
    // Unknown query parameters are refused too.
    let (status, _) = send(json_post(
        &http,
        &format!("{base}/instances?colour=red"),
        &token,
        &good(),
    ))
    .await;
    assert_eq!(status, 400);

    // The list filter: one bare expression, or each in parentheses.
    let list = |filter: &str| {
        let encoded: String = filter
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        http.get(format!("{base}/instances?filter={encoded}"))
            .bearer_auth(&token)
    };
    let (status, body) = send(list(r#"labels.a = "x" AND labels.b = "y""#)).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Invalid list filter expression."),
        "{body}"
    );
    for ok in [
        r#"(labels.a = "x") AND (labels.b = "y")"#,
        r#"(labels.a = "x") (labels.b = "y")"#,
        r#"labels.a = "x""#,
        "name eq cb-.*",
    ] {
        let (status, body) = send(list(ok)).await;
        assert_eq!(status, 200, "{ok}: {body}");
    }
    let (status, _) = send(list(r#"(name eq cb-.*) (labels.a = "x")"#)).await;
    assert_eq!(status, 400, "the two kinds of expression mixed");

    // The conforming one is accepted; `wait` takes no body.
    let (status, op) = send(json_post(
        &http,
        &format!("{base}/instances"),
        &token,
        &good(),
    ))
    .await;
    assert_eq!(status, 200);
    let wait = format!("{base}/operations/{}/wait", op["name"].as_str().unwrap());
    let (status, _) = send(http.post(&wait).bearer_auth(&token).body("{}")).await;
    assert_eq!(status, 400);
    let (_, op) = send(http.post(&wait).bearer_auth(&token)).await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(fake.instance_status("cb-ok").as_deref(), Some("RUNNING"));
    // The token request, the unauthenticated call, 13 bodies, the query
    // parameter, two filters and the `wait` with a body.
    assert_eq!(fake.rejections().len(), 19, "{:#?}", fake.rejections());
}

#[tokio::test]
async fn provisioning_the_same_grant_twice_finds_the_first_instance() {
    let s = setup();
    let g = cloud_grant("again", TdxRequirement::Required);
    let first = s.gcp.provision(&g, &workload()).await.unwrap();
    let second = s.gcp.provision(&g, &workload()).await.unwrap();
    assert_eq!(first.instance_id, second.instance_id);
    assert_eq!(first.public_host, second.public_host);
    assert_eq!(s.fake.instances().len(), 1);
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

/// The token cache belongs to one backend: a second backend on the same
/// account gets no token from the first one's cache.
#[tokio::test]
async fn each_backend_has_its_own_token_cache() {
    let fake = start_fake();
    let state = tempfile::tempdir().unwrap();
    let toml = format!("{}\n{}", gcp_toml("gcp-a", &fake), gcp_toml("gcp-b", &fake));
    let cfg = config_with_env(state.path(), &toml, &[("GCP_KEY", fake.key_json())]);
    let (_rt, backends) = load(&cfg);
    backends[0].list_instances().await.unwrap();
    backends[0].list_instances().await.unwrap();
    assert_eq!(fake.token_requests(), 1);
    backends[1].list_instances().await.unwrap();
    assert_eq!(fake.token_requests(), 2);
    backends[0].list_instances().await.unwrap();
    backends[1].list_instances().await.unwrap();
    assert_eq!(fake.token_requests(), 2);
    for b in &backends {
        assert_eq!(b.granted().cache.len(), 1, "one token, nothing else");
    }
}

#[tokio::test]
async fn the_gcp_component_passes_the_conformance_run_against_the_fake() {
    let s = setup();
    assert_conforms(s.gcp.as_ref()).await;
    assert!(!s.fake.inserted().is_empty(), "the lifecycle made a VM");
}
