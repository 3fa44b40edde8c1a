//! The Hetzner backend, a Python component built with componentize-py
//! (components/hetzner), through the real host against the Hetzner Cloud
//! API fake (components/hetzner/fake).
//!
//! One build of the component serves every test (testkit's `python`), and
//! one compile of it: the tests share a compile cache and load it one at a
//! time, so the first compiles and the others read the cache.

use std::sync::{Arc, Mutex};

use compute_bridge_contract::backend::{Backend, BackendError, InstanceState, TdxRequirement};
use compute_bridge_sandbox::{ComponentBackend, Runtime};
use compute_bridge_testkit::hetzner_fake::{CreateFailure, HetznerFake};
use compute_bridge_testkit::python::hetzner_component;

use crate::support::*;

/// Loads of the component, one at a time (see the module docs).
static LOADING: Mutex<()> = Mutex::new(());

/// A `[[backends]]` table of a Hetzner backend pointed at `fake`, its
/// token from `${token_var}`: cx22 in fsn1 and nbg1, cx32 in nbg1.
fn hetzner_toml(name: &str, wasm: &str, fake: &HetznerFake, token_var: &str) -> String {
    format!(
        r#"[[backends]]
name = "{name}"
component = {wasm:?}
memory_limit_mib = 128
call_timeout_sec = 120
[backends.http]
allowed_hosts = ["{origin}"]
[backends.config]
api_token = "${{{token_var}}}"
api_url = "{api}"
max_cpu_millicores = 16000
max_ram_mib = 32768
[[backends.config.server_types]]
name = "cx32"
cpus = 4
ram_mib = 8192
eur_per_hour = 0.0127
locations = ["nbg1"]
[[backends.config.server_types]]
name = "cx22"
cpus = 2
ram_mib = 4096
eur_per_hour = 0.0074
locations = ["fsn1", "nbg1"]
"#,
        origin = fake.origin(),
        api = fake.api_url(),
    )
}

struct Setup {
    fake: HetznerFake,
    _state: tempfile::TempDir,
    _rt: Runtime,
    backends: Vec<Arc<ComponentBackend>>,
}

/// The fake and a runtime with backend `hetzner` (the project's token) and
/// `hetzner-badtoken` (a token the project does not have).
fn setup() -> Setup {
    let fake = HetznerFake::start();
    let wasm = hetzner_component();
    let state = tempfile::tempdir().unwrap();
    // One compile cache for every test (module docs).
    let shared = wasm.with_extension("compiled");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, state.path().join("compiled")).unwrap();
    let wasm = wasm.to_str().unwrap();
    let toml = hetzner_toml("hetzner", wasm, &fake, "HCLOUD_TOKEN")
        + &hetzner_toml("hetzner-badtoken", wasm, &fake, "WRONG_TOKEN");
    let cfg = config_with_env(
        state.path(),
        &toml,
        &[
            ("HCLOUD_TOKEN", fake.token()),
            ("WRONG_TOKEN", "not-a-token-of-this-project".into()),
        ],
    );
    let (rt, backends) = {
        let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        load(&cfg)
    };
    Setup {
        fake,
        _state: state,
        _rt: rt,
        backends,
    }
}

impl Setup {
    fn hetzner(&self) -> &ComponentBackend {
        &self.backends[0]
    }
}

#[tokio::test]
async fn a_grant_lives_its_whole_life_on_a_hetzner_server() {
    let s = setup();
    let h = s.hetzner();
    let caps = h.capabilities().await.unwrap();
    assert_eq!(caps.regions, vec!["nbg1", "fsn1"]);
    assert!(!caps.tdx_capable, "Hetzner Cloud has no TDX guests");
    assert_eq!(caps.max_cpu_millicores, 16000);

    let grant = cloud_grant("grant-0001", TdxRequirement::None);
    assert!(h.can_satisfy(&grant).await);
    assert!(
        !h.can_satisfy(&cloud_grant("tdx", TdxRequirement::Required))
            .await
    );
    let w = workload();
    let inst = h.provision(&grant, &w).await.unwrap();
    assert!(inst.public_host.starts_with("203.0.113."), "{inst:?}");
    assert_eq!(inst.region, "fsn1", "the cheapest type, its first location");
    assert_eq!(inst.ssh_port, 22);
    assert_eq!(inst.user, "cb-test");
    assert!(
        inst.instance_id.starts_with("cb-") && !inst.instance_id.contains("grant"),
        "named by a hash, never by the request: {inst:?}"
    );

    // What reached Hetzner: the type and location, the provider's labels,
    // and cloud-init user data that makes the login and runs the image.
    let body = &s.fake.created()[0];
    assert_eq!(body["server_type"], "cx22");
    assert_eq!(body["location"], "fsn1");
    assert_eq!(body["image"], "ubuntu-24.04");
    assert_eq!(body["labels"]["cb-provider"], "test-provider");
    assert_eq!(body["labels"]["cb-backend"], "hetzner");
    assert_eq!(body["labels"]["cb-request"], "grant-0001");
    let user_data = body["user_data"].as_str().unwrap();
    assert!(user_data.starts_with("#!/bin/sh\n"), "{user_data}");
    assert!(user_data.contains(&w.ssh_public_key), "{user_data}");
    assert!(
        user_data.contains(&format!("image='{PINNED_IMAGE}'")),
        "{user_data}"
    );

    assert_eq!(h.status(&inst).await.unwrap(), InstanceState::Running);
    // The VM powers off when the workload exits.
    s.fake.set_status(&inst.instance_id, "off");
    assert_eq!(h.status(&inst).await.unwrap(), InstanceState::Exited(-1));
    s.fake.set_traffic(&inst.instance_id, 1000, 2345);
    let u = h.usage(&inst).await.unwrap();
    assert_eq!(u.net_bytes, 3345, "{u:?}");
    assert_eq!(u.cpu_core_seconds % 2, 0, "two vCPUs: {u:?}");
    assert_eq!(u.ram_mib_seconds, 4096 * (u.cpu_core_seconds / 2), "{u:?}");

    h.terminate(&inst).await.unwrap();
    assert!(s.fake.servers().is_empty(), "{:?}", s.fake.servers());
    // Idempotent: the second terminate finds nothing and succeeds.
    h.terminate(&inst).await.unwrap();
    assert_eq!(h.status(&inst).await.unwrap(), InstanceState::Gone);
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn the_orphan_sweep_reads_every_page_and_deletes_a_leaked_server() {
    let s = setup();
    let h = s.hetzner();
    let kept = h
        .provision(&cloud_grant("journaled", TdxRequirement::None), &workload())
        .await
        .unwrap();
    // 60 more of this provider's servers (two pages of 50), one of another
    // provider and one of another backend: only this provider's and this
    // backend's are listed.
    for i in 0..60 {
        s.fake.add_server(
            &format!("cb-leak-{i}"),
            &[
                ("cb-provider", "test-provider"),
                ("cb-backend", "hetzner"),
                ("cb-user", "cb-test"),
            ],
        );
    }
    s.fake.add_server(
        "someone-else",
        &[("cb-provider", "other"), ("cb-backend", "hetzner")],
    );
    s.fake.add_server(
        "other-backend",
        &[("cb-provider", "test-provider"), ("cb-backend", "gcp")],
    );
    let listed = h.list_instances().await.unwrap();
    assert_eq!(listed.len(), 61, "{listed:#?}");
    assert!(listed.iter().any(|i| i.instance_id == kept.instance_id));
    assert!(
        listed
            .iter()
            .all(|i| i.instance_id.starts_with("cb-") && i.region == "fsn1")
    );
    // The journal knows all but one: the sweep deletes that one only.
    let journal: std::collections::HashSet<String> = listed
        .iter()
        .map(|i| i.instance_id.clone())
        .filter(|id| id != "cb-leak-7")
        .collect();
    let swept = compute_bridge_daemon::grant::sweep_orphans(h, &journal).await;
    assert_eq!(swept, vec!["cb-leak-7".to_string()]);
    let names: Vec<String> = s.fake.servers().into_iter().map(|v| v.1).collect();
    assert_eq!(names.len(), 62);
    assert!(!names.contains(&"cb-leak-7".to_string()));
    let pages: Vec<String> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /v1/servers?label_selector"))
        .collect();
    assert_eq!(pages.len(), 4, "two pages per listing: {pages:#?}");
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn hetzner_errors_map_to_what_the_fleet_acts_on() {
    let s = setup();
    let h = s.hetzner();
    let w = workload();
    let cases = [
        (
            CreateFailure::ResourceUnavailable,
            "no-capacity",
            "resource_unavailable",
        ),
        (
            CreateFailure::PlacementError,
            "no-capacity",
            "placement_error",
        ),
        (
            CreateFailure::ResourceLimitExceeded,
            "no-capacity",
            "resource_limit_exceeded",
        ),
        (
            CreateFailure::RateLimited,
            "transient",
            "rate_limit_exceeded",
        ),
        (CreateFailure::ServerError, "transient", "server_error"),
        (CreateFailure::ActionFails, "no-capacity", "placement_error"),
    ];
    for (i, (failure, kind, code)) in cases.into_iter().enumerate() {
        s.fake.fail_next_create(failure);
        let e = h
            .provision(&cloud_grant(&format!("fail-{i}"), TdxRequirement::None), &w)
            .await
            .unwrap_err();
        assert_eq!(e.kind().to_string(), kind, "{failure:?}: {e}");
        assert!(e.to_string().contains(code), "{failure:?}: {e}");
    }
    // A location out of capacity is no-capacity, so the fleet moves on.
    s.fake.set_full("fsn1", true);
    let e = h
        .provision(&cloud_grant("full", TdxRequirement::None), &w)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BackendError::NoCapacity(m) if m.contains("fsn1")),
        "{e:?}"
    );
    // Nothing was left behind by any failure (the failed action's server
    // was deleted).
    assert!(s.fake.servers().is_empty(), "{:?}", s.fake.servers());

    // An image not pinned by digest can never be served: rejected, no call.
    let mut unpinned = cloud_grant("unpinned", TdxRequirement::None);
    unpinned.image = "ghcr.io/acme/worker:latest".into();
    let e = h.provision(&unpinned, &w).await.unwrap_err();
    assert!(
        matches!(&e, BackendError::Rejected(m) if m.contains("pinned")),
        "{e:?}"
    );

    // A token the project does not have: config, naming the key and never
    // the token.
    let e = s.backends[1]
        .provision(&cloud_grant("bad-token", TdxRequirement::None), &w)
        .await
        .unwrap_err();
    let BackendError::Config(msg) = &e else {
        panic!("expected a config error, got {e:?}")
    };
    assert!(
        msg.contains("`api_token`") && msg.contains("unauthorized"),
        "{msg}"
    );
    assert!(!msg.contains("not-a-token-of-this-project"), "{msg}");
    assert_eq!(s.fake.rejections(), Vec::<String>::new());
}

#[tokio::test]
async fn the_hetzner_component_passes_inspect_and_the_conformance_run() {
    let (ok, text) = inspect(hetzner_component().to_str().unwrap());
    assert!(ok, "{text}");
    assert!(
        text.contains("verdict: the bridge will load this component"),
        "{text}"
    );
    assert!(
        text.contains("ok      wasi:http/outgoing-handler"),
        "{text}"
    );

    let s = setup();
    assert_conforms(s.hetzner()).await;
    assert!(!s.fake.created().is_empty(), "the lifecycle made a server");
    assert!(s.fake.servers().is_empty(), "and deleted it");
}

#[tokio::test]
async fn the_fake_refuses_what_the_hetzner_api_refuses() {
    let fake = HetznerFake::start();
    let http = reqwest::Client::new();
    let api = fake.api_url();
    let token = fake.token();
    let servers = format!("{api}/servers");

    // "Authentication": no token, or an unknown one.
    let (code, body) = send(http.get(&servers)).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (code, _) = send(http.get(&servers).bearer_auth("nope")).await;
    assert_eq!(code, 401);

    // "Pagination": per_page at most 50.
    let (code, body) = send(
        http.get(format!("{servers}?per_page=51"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (422, Some("invalid_input"))
    );
    // "Label Selector": a malformed selector.
    let (code, _) = send(
        http.get(format!("{servers}?label_selector=env%20in%20(a"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(code, 400);

    // `CreateServerRequest`: name, server_type and image are required;
    // the name is an RFC 1123 host name; labels follow "Labels".
    let ok = serde_json::json!({"name": "web-1", "server_type": "cx22", "image": "ubuntu-24.04",
                                "location": "nbg1", "labels": {"env": "prod"}});
    for (field, bad) in [
        (
            "name",
            serde_json::json!({"server_type": "cx22", "image": "ubuntu-24.04"}),
        ),
        (
            "name",
            serde_json::json!({"name": "web_1", "server_type": "cx22", "image": "ubuntu-24.04"}),
        ),
        (
            "labels",
            serde_json::json!({"name": "w", "server_type": "cx22", "image": "ubuntu-24.04",
                                      "labels": {"hetzner.cloud/x": "y"}}),
        ),
        (
            "location",
            serde_json::json!({"name": "w", "server_type": "cx22", "image": "ubuntu-24.04",
                                        "location": "mars1"}),
        ),
    ] {
        let (code, body) = send(json_post(&http, &servers, &token, &bad)).await;
        assert_eq!(code, 422, "{bad}: {body}");
        assert_eq!(
            body["error"]["details"]["fields"][0]["name"], field,
            "{body}"
        );
    }
    let (code, body) = send(json_post(&http, &servers, &token, &ok)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["server"]["status"], "initializing");
    assert!(
        body["root_password"].is_string(),
        "no ssh_keys: a root password"
    );
    // Names are unique per project.
    let (code, body) = send(json_post(&http, &servers, &token, &ok)).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("uniqueness_error"))
    );
    // Capacity, when the test says so.
    fake.set_full("fsn1", true);
    let full = serde_json::json!({"name": "web-2", "server_type": "cx22", "image": "ubuntu-24.04",
                                  "location": "fsn1"});
    let (code, body) = send(json_post(&http, &servers, &token, &full)).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (412, Some("resource_unavailable"))
    );

    // Pages: `meta.pagination`, 50 at most.
    for i in 0..55 {
        fake.add_server(&format!("x-{i}"), &[("env", "prod")]);
    }
    let (code, body) = send(
        http.get(format!(
            "{servers}?label_selector=env%3D%3Dprod&per_page=50&page=2"
        ))
        .bearer_auth(&token),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["servers"].as_array().unwrap().len(), 6);
    let p = &body["meta"]["pagination"];
    assert_eq!(
        (p["page"].as_u64(), p["last_page"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (p["previous_page"].as_u64(), p["total_entries"].as_u64()),
        (Some(1), Some(56))
    );
    assert!(p["next_page"].is_null());
}
