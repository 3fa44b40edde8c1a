//! A TDX-required grant goes to GCP or Azure and never to the backend that
//! cannot give it a TDX guest, through the real fleet and the real
//! components.
//!
//! The non-TDX backend listed first is the real `aws` component against
//! moto (EC2 offers no TDX guests, so it reports `tdx_capable = false`).

use compute_bridge_contract::backend::TdxRequirement;
use compute_bridge_daemon::fleet::{Fleet, PlaceError};
use compute_bridge_testkit::azure_fake::{AzureAccount, AzureFake, VmFailure};
use compute_bridge_testkit::gcp_fake::InsertFailure;

use crate::azure::azure_toml;
use crate::gcp::{gcp_toml, start_fake as start_gcp};
use crate::support::*;

#[tokio::test]
async fn tdx_grants_route_to_gcp_or_azure_and_never_to_aws() {
    let moto = compute_bridge_testkit::moto::Moto::start();
    let (aws, aws_env) = crate::aws::aws_toml("aws", &moto);
    let gcp = start_gcp();
    let azure = AzureFake::start(AzureAccount::default());
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        "{aws}\n{}\n{}",
        gcp_toml("gcp", &gcp),
        azure_toml("azure", &azure)
    );
    let cfg = config_with_env(
        state.path(),
        &toml,
        &[
            ("GCP_KEY", gcp.key_json()),
            ("AZURE_SECRET", azure.account().client_secret),
            aws_env[0].clone(),
            aws_env[1].clone(),
        ],
    );
    let (_rt, backends) = load(&cfg);
    let fleet = Fleet::new(fleet_members(&cfg, &backends), cfg.bridge.concurrency_cap);
    fleet.refresh_capabilities().await;
    let caps: Vec<(String, bool)> = fleet
        .members()
        .iter()
        .map(|m| (m.name.clone(), m.offer.as_ref().unwrap().tdx_capable))
        .collect();
    assert_eq!(
        caps,
        vec![
            ("aws".into(), false),
            ("gcp".into(), true),
            ("azure".into(), true)
        ]
    );
    let w = workload();

    // Without TDX the first backend in order takes it: AWS is routable.
    let plain = fleet
        .provision(&cloud_grant("plain", TdxRequirement::None), &w)
        .await
        .unwrap();
    assert_eq!(plain.backend, "aws");
    assert_eq!(moto.instances(crate::aws::REGION).len(), 1);

    // TDX required: AWS is skipped, GCP (next in order) takes it.
    let first = fleet
        .provision(&cloud_grant("tdx-1", TdxRequirement::Required), &w)
        .await
        .unwrap();
    assert_eq!(first.backend, "gcp");
    assert!(first.failovers.is_empty());

    // GCP out of TDX capacity in both its TDX regions (the fleet offers the
    // grant region by region): the grant fails over to Azure, not to AWS.
    gcp.fail_next_insert(InsertFailure::ZoneResourcePoolExhausted);
    gcp.fail_next_insert(InsertFailure::ZoneResourcePoolExhausted);
    let second = fleet
        .provision(&cloud_grant("tdx-2", TdxRequirement::Required), &w)
        .await
        .unwrap();
    assert_eq!(second.backend, "azure");
    let tried: Vec<(&str, Option<&str>)> = second
        .failovers
        .iter()
        .map(|f| (f.from.as_str(), f.region.as_deref()))
        .collect();
    assert_eq!(
        tried,
        vec![("gcp", Some("us-central1")), ("gcp", Some("europe-west4"))]
    );
    assert_eq!(
        azure.vm_bodies()[0]["properties"]["securityProfile"]["securityType"],
        "ConfidentialVM"
    );

    // Both TDX clouds full in every region: the grant is declined, and AWS
    // was never tried.
    for _ in 0..2 {
        gcp.fail_next_insert(InsertFailure::ZoneResourcePoolExhausted);
        azure.fail_next_vm(VmFailure::AllocationFailed);
    }
    let declined = fleet
        .provision(&cloud_grant("tdx-3", TdxRequirement::Required), &w)
        .await
        .err()
        .expect("no TDX capacity anywhere");
    let PlaceError::AllFailed { failovers } = &declined else {
        panic!("expected every candidate to fail, got {declined:?}")
    };
    let tried: Vec<&str> = failovers.iter().map(|f| f.from.as_str()).collect();
    assert_eq!(tried, vec!["gcp", "gcp", "azure", "azure"]);
    assert_eq!(
        fleet.members()[0].active_grants,
        1,
        "only the plain grant is on aws"
    );

    assert_eq!(gcp.rejections(), Vec::<String>::new());
    assert_eq!(azure.rejections(), Vec::<String>::new());
}
