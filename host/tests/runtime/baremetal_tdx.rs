//! A TDX-required grant never becomes a Unix account or a container on a
//! bare-metal host: through the real fleet and the real bare-metal
//! component (its commands run on this machine through the `local`
//! transport), such a grant is declined with its reason, or routed to a
//! TDX cloud backend (the real `gcp` component against its API fake).
//! A host that claims TDX without a TD runtime is refused outright, even
//! by a bridge whose operator never ran `check-config`.

use std::path::Path;

use compute_bridge_contract::backend::{Backend, BackendError, TdxRequirement};
use compute_bridge_daemon::fleet::PlaceError;

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
    let PlaceError::NoBackend(why) = &declined else {
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

/// The MR_TD of a bare-TDX host, from the bare-metal component's offer
/// through the host's checks into the card and the dashboard: a host with
/// a TD runtime (`vm.firmware`; no TD is started here, none could be)
/// publishes its region's MR_TD, a plain host publishes none, and entries
/// a component gets wrong (the hostile component's) never reach either.
#[tokio::test]
async fn a_td_hosts_mrtd_reaches_the_card_and_the_dashboard_and_a_bad_entry_does_not() {
    use compute_bridge_contract::protocol::BackendOffer;
    use compute_bridge_testkit::components;

    let (log, _capture) = capture_log();
    let state = tempfile::tempdir().unwrap();
    let host_state = host_state_dir();
    let mrtd = "5c".repeat(48);
    let hostile = |name: &str, entries: &str| {
        backend_toml(
            name,
            components::HOSTILE,
            &format!("[backends.config]\noffer_td = {entries}\n"),
        )
    };
    let text = format!(
        "{}\
         [backends.ssh.hosts.plain]\ntransport = \"local\"\n\
         [[backends.config.hosts]]\nlabel = \"plain\"\nregion = \"home\"\n\
         cpu_millicores = 1000\nram_mib = 1024\npublic_host = \"127.0.0.1\"\n\n{}{}",
        baremetal_toml(
            host_state.path(),
            &format!(
                "tdx_capable = true\nmrtd = \"{}\"\nruntime = \"vm\"\n\
                 [backends.config.hosts.vm]\nkernel = \"/td/vmlinuz\"\ninitrd = \"/td/initrd.img\"\n\
                 accel = \"kvm\"\nfirmware = \"/usr/share/ovmf/OVMF.fd\"\n",
                mrtd.to_uppercase()
            )
        )
        .replace("region = \"home\"", "region = \"td-room\""),
        // Uppercase hex, and a region the offer does not have.
        hostile(
            "hostile-bad",
            &format!(
                "[[\"hostile-1\", \"{}\"], [\"elsewhere\", \"{mrtd}\"]]",
                "AB".repeat(48)
            ),
        ),
        // Its own region, well formed: kept, so the checks are not all
        // that stands between a component and the card.
        hostile("hostile-good", &format!("[[\"hostile-1\", \"{}\"]]", "ab".repeat(48))),
    );
    let cfg = config(state.path(), &text);
    let rig = crate::dashboard::Rig::from_config(&cfg, true).await;

    // The card, as the provider builds it from the fleet.
    let card: Vec<BackendOffer> = (rig.fleet.members().into_iter())
        .map(|m| {
            BackendOffer::bounded(
                m.name,
                m.enabled,
                m.offer.expect("every backend answered"),
                0,
                0,
            )
        })
        .collect();
    let measured = |b: &BackendOffer| -> Vec<(String, String)> {
        (b.td_measurements.iter())
            .map(|m| (m.region.clone(), m.mrtd.clone()))
            .collect()
    };
    assert_eq!(card[0].regions, ["td-room", "home"]);
    assert_eq!(
        measured(&card[0]),
        [("td-room".to_string(), mrtd.clone())],
        "the TD host's region and its MR_TD in lowercase; none for the plain host"
    );
    assert_eq!(measured(&card[1]), Vec::<(String, String)>::new());
    assert_eq!(
        card[1].regions,
        ["hostile-1"],
        "the rest of the offer stands"
    );
    assert_eq!(
        measured(&card[2]),
        [("hostile-1".to_string(), "ab".repeat(48))]
    );
    let warned = log.text();
    for why in [
        "the MR_TD of region \"hostile-1\", \"ABAB",
        "region \"elsewhere\" is not one of the offer's regions",
    ] {
        assert!(warned.contains(why), "no warning with {why:?} in\n{warned}");
    }

    // The dashboard: in the snapshot and on the page, per backend and
    // region; the plain region and the hostile backend's bad entries are
    // on neither.
    let snapshot = rig.dashboard.snapshot();
    let td = |i: usize| -> Vec<(String, String)> {
        (snapshot.backends[i]
            .capacity
            .as_ref()
            .unwrap()
            .td_measurements
            .iter())
        .map(|m| (m.region.clone(), m.mrtd.clone()))
        .collect()
    };
    assert_eq!(td(0), [("td-room".to_string(), mrtd.clone())]);
    assert!(td(1).is_empty());
    let page = compute_bridge_daemon::dashboard::html::render(&snapshot);
    assert!(
        page.contains(&format!("TD guests in td-room: mrtd={mrtd}")),
        "{page}"
    );
    assert_eq!(page.matches("TD guests in").count(), 2, "{page}");
    assert!(
        !page.contains("TD guests in home") && !page.contains("ABAB"),
        "{page}"
    );
}
