//! The GCP core natively, with no sandbox: [`Gcp`] over a `MemoryHost`
//! whose HTTP goes to the Compute Engine and OAuth fake beside this crate
//! (`cb-gcp-fake`, a model of the published API). The same fake serves the
//! sandboxed component in `host/tests/runtime/gcp.rs`; these tests cover
//! the core's own decisions (zones within a region, lost answers, the
//! token cache) in a plain `cargo test -p cb-gcp`.
//!
//! The host's clock is the system's: the fake checks the JWT assertion's
//! times against its own.

use cb_fake_server::fixtures::workload;
use cb_gcp::{Gcp, GcpConfig};
use cb_gcp_fake::{GcpFake, InsertFailure};
use compute_bridge_sdk::http::HttpError;
use compute_bridge_sdk::{
    BackendError, GrantSpec, InstanceState, MemoryHost, TdxRequirement, config,
};

const PROJECT: &str = "bridge-test";
const PROVIDER: &str = "prov-test";

fn fake() -> GcpFake {
    GcpFake::start(
        PROJECT,
        &[
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "europe-west4-a",
        ],
    )
}

/// A host whose requests reach `fake` for real.
fn host() -> MemoryHost {
    MemoryHost::with_system_clock().on_http(cb_fake_server::forward)
}

/// An n2 type in us-central1-a, a TDX c3 type in two zones of us-central1
/// and one of europe-west4.
fn gcp_config(fake: &GcpFake) -> GcpConfig {
    let cfg = serde_json::json!({
        "project": PROJECT,
        "service_account_key": fake.key_json(),
        "compute_url": fake.url(),
        "network_tags": ["allow-ssh"],
        "machine_types": [
            {"name": "n2-standard-2", "cpus": 2, "ram_mib": 8192, "usd_per_hour": 0.10,
             "zones": ["us-central1-a"]},
            {"name": "c3-standard-4", "cpus": 4, "ram_mib": 16384, "usd_per_hour": 0.21,
             "tdx": true, "zones": ["us-central1-b", "us-central1-c", "europe-west4-a"]},
        ],
    });
    config::parse(&cfg.to_string()).unwrap()
}

fn grant(id: &str, tdx: TdxRequirement) -> GrantSpec {
    cb_fake_server::fixtures::grant(id, tdx, compute_bridge_sdk::now_unix() + 3600)
}

#[test]
fn a_tdx_grant_lives_its_whole_life_and_shares_one_token() {
    let fake = fake();
    let host = host();
    let gcp = Gcp::new(gcp_config(&fake), PROVIDER, "gcp", &host).unwrap();
    let offer = gcp.offer().unwrap();
    assert_eq!(offer.regions, ["us-central1", "europe-west4"]);
    assert!(offer.tdx_capable);

    let g = grant("grant-1", TdxRequirement::Required);
    assert!(gcp.can_satisfy(&g));
    let inst = gcp.provision(&g, &workload()).unwrap();
    assert_eq!(inst.region, "us-central1");
    assert_eq!(inst.user, "cb-test");
    assert!(!inst.public_host.is_empty(), "{inst:?}");
    assert_eq!(fake.insert_zones(), ["us-central1-b"]);
    assert_eq!(gcp.status(&inst).unwrap(), InstanceState::Running);
    assert_eq!(gcp.list_instances().unwrap().len(), 1);

    gcp.terminate(&inst).unwrap();
    assert_eq!(gcp.status(&inst).unwrap(), InstanceState::Gone);
    gcp.terminate(&inst).expect("terminating twice is success");
    assert!(gcp.list_instances().unwrap().is_empty());

    assert_eq!(fake.token_requests(), 1, "one token for every call");
    assert_eq!(fake.rejections(), Vec::<String>::new());
    let key = gcp_config(&fake).service_account_key;
    for log in host.logs() {
        let text = format!("{log:?}");
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key),
            "{text}"
        );
    }
}

#[test]
fn a_stocked_out_zone_moves_to_the_next_zone_of_the_same_region_only() {
    let fake = fake();
    let host = host();
    let gcp = Gcp::new(gcp_config(&fake), PROVIDER, "gcp", &host).unwrap();
    fake.stock_out("us-central1-b");
    let inst = gcp
        .provision(&grant("grant-2", TdxRequirement::Required), &workload())
        .unwrap();
    assert_eq!(fake.insert_zones(), ["us-central1-b", "us-central1-c"]);
    assert_eq!(inst.region, "us-central1");

    fake.stock_out("us-central1-c");
    let e = gcp
        .provision(&grant("grant-3", TdxRequirement::Required), &workload())
        .unwrap_err();
    assert!(matches!(e, BackendError::NoCapacity(_)), "{e:?}");
    assert!(
        !fake.insert_zones().iter().any(|z| z == "europe-west4-a"),
        "the region is the fleet's to leave: {:?}",
        fake.insert_zones()
    );
    assert_eq!(fake.rejections(), Vec::<String>::new());
}

#[test]
fn an_insert_whose_answer_was_lost_is_found_and_deleted_before_the_error() {
    let fake = fake();
    // The insert reaches the fake, which creates the VM; its answer is
    // then lost on the way back.
    let host = MemoryHost::with_system_clock().on_http(|req| {
        let answer = cb_fake_server::forward(req);
        let (_, url, _, _) = req.parts();
        if req.parts().0 == &compute_bridge_sdk::http::Method::Post && url.ends_with("/instances") {
            answer?;
            return Err(HttpError::Timeout);
        }
        answer
    });
    let gcp = Gcp::new(gcp_config(&fake), PROVIDER, "gcp", &host).unwrap();
    let e = gcp
        .provision(&grant("grant-4", TdxRequirement::None), &workload())
        .unwrap_err();
    let BackendError::Transient(msg) = &e else {
        panic!("{e:?}")
    };
    assert!(msg.contains("deleted instance"), "{msg}");
    assert_eq!(fake.instances(), Vec::<(String, String)>::new());
}

#[test]
fn a_quota_answers_for_the_region_at_once() {
    let fake = fake();
    let host = host();
    let gcp = Gcp::new(gcp_config(&fake), PROVIDER, "gcp", &host).unwrap();
    fake.fail_next_insert(InsertFailure::QuotaExceeded);
    let e = gcp
        .provision(&grant("grant-5", TdxRequirement::Required), &workload())
        .unwrap_err();
    assert!(matches!(e, BackendError::NoCapacity(_)), "{e:?}");
    assert_eq!(
        fake.insert_zones(),
        ["us-central1-b"],
        "no other zone tried"
    );
}
