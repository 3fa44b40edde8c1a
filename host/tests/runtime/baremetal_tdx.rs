//! A TDX-required grant never becomes a Unix account or a container on a
//! bare-metal host: through the real fleet and the real bare-metal
//! component (its commands run on this machine through the `local`
//! transport), such a grant is declined with its reason, or routed to a
//! TDX cloud backend (the real `gcp` component against its API fake).
//! A host that claims TDX without a TD runtime is refused outright, even
//! by a bridge whose operator never ran `check-config`.

use std::path::Path;

use compute_bridge::backend::{Backend, BackendError, TdxRequirement};
use compute_bridge::fleet::Decline;

use crate::baremetal::host_state_dir;
use crate::gcp::{gcp_toml, start_fake as start_gcp};
use crate::support::*;

/// A bare-metal backend with one host, this machine, whose extra keys are
/// `host_extra`; grant state goes to `host_state`.
fn baremetal_toml(host_state: &Path, host_extra: &str) -> String {
    format!(
        "[[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\
         [backends.ssh.hosts.here]\ntransport = \"local\"\n\
         [backends.config]\nstate_dir = {:?}\n\
         [[backends.config.hosts]]\nlabel = \"here\"\nregion = \"home\"\n\
         cpu_millicores = 4000\nram_mib = 8192\npublic_host = \"127.0.0.1\"\n{host_extra}\n",
        host_state.display().to_string()
    )
}

const MRTD: &str = "mrtd = \"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000abc\"\n";

/// True if the bare-metal host library ever ran a provision there (its
/// first step makes the grants directory).
fn provisioned_anything(host_state: &Path) -> bool {
    host_state.join("grants").exists()
}

#[tokio::test]
async fn a_tdx_grant_is_declined_or_sent_to_a_tdx_cloud_never_to_a_host_account() {
    let gcp = start_gcp();
    let state = tempfile::tempdir().unwrap();
    let host_state = host_state_dir();

    // 1. A plain host (the only kind without a TD runtime that validates):
    //    alone, the TDX grant is declined, with why.
    let cfg = config(
        state.path(),
        &baremetal_toml(host_state.path(), "runtime = \"process\""),
    );
    let (fleet, backends) = fleet_over(&cfg).await;
    let tdx = cloud_grant("tdx-alone", TdxRequirement::Required);
    let declined = fleet
        .provision(&tdx, &workload())
        .await
        .err()
        .expect("no backend runs TD guests");
    let Decline::NoBackend(why) = &declined else {
        panic!("expected no-backend, got {declined:?}")
    };
    assert!(why.contains("baremetal: not TDX-capable"), "{why}");
    // Asked directly, the component refuses it too, with its reason.
    assert!(!backends[0].can_satisfy(&tdx).await);
    match backends[0].provision(&tdx, &workload()).await {
        Err(BackendError::Rejected(m)) => assert!(
            m.contains("no host there runs TD guests")
                && m.contains("never runs as a Unix account or a container"),
            "{m}"
        ),
        other => panic!("expected rejected, got {other:?}"),
    }
    assert!(!provisioned_anything(host_state.path()));

    // 2. A host that claims TDX but would give the grant an account (or a
    //    container): the component refuses its whole config, so the fleet
    //    never routes to it; the TDX grant goes to GCP.
    for runtime in ["process", "podman"] {
        let toml = format!(
            "{}\n{}",
            baremetal_toml(
                host_state.path(),
                &format!("runtime = \"{runtime}\"\ntdx_capable = true\n{MRTD}")
            ),
            gcp_toml("gcp", &gcp)
        );
        let cfg = config_with_env(state.path(), &toml, &[("GCP_KEY", gcp.key_json())]);
        let (fleet, backends) = fleet_over(&cfg).await;
        match backends[0].capabilities().await {
            Err(BackendError::Config(m)) => assert!(
                m.starts_with("`hosts[0].tdx_capable`: a TDX-capable host needs a TD runtime"),
                "{m}"
            ),
            other => panic!("{runtime}: expected a config error, got {other:?}"),
        }
        match backends[0].provision(&tdx, &workload()).await {
            Err(BackendError::Config(m)) => assert!(m.contains("tdx_capable"), "{m}"),
            other => panic!("{runtime}: expected a config error, got {other:?}"),
        }
        let placed = fleet
            .provision(
                &cloud_grant(&format!("tdx-{runtime}"), TdxRequirement::Required),
                &workload(),
            )
            .await
            .unwrap();
        assert_eq!(placed.backend, "gcp", "{runtime}");
        assert!(!provisioned_anything(host_state.path()), "{runtime}");
    }
    assert_eq!(gcp.rejections(), Vec::<String>::new());
}
