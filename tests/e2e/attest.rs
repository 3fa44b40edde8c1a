//! Attestation with the real binaries: `tdx` mode on a machine without the
//! TSM interface stops at start, `compute-bridge attest` gives the same
//! clear error, and `coalition-agent` refuses a provider whose card does
//! not carry the MR_TD it requires — before sending any grant. Over
//! emulated TDX (`COMPUTE_BRIDGE_EMULATED_RTMR3`), a requester that pins the
//! bridge's measured component gets access and one that pins another is
//! refused before any grant.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use compute_bridge_coalition as coalition;
use compute_bridge_coalition::attest::CardIdentity;
use compute_bridge_coalition::link::ProviderLink;
use compute_bridge_contract::measurement::ComponentDigest;
use compute_bridge_contract::protocol::{Attestation, PROTOCOL_VERSION, ProviderCard};
use compute_bridge_daemon::attest::{Attester, QuoteError, QuoteSource, TSM_REPORT_DIR};
use compute_bridge_daemon::identity::Identity;
use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::process::run;

use crate::bridge_bin;
use crate::support::*;

const MRTD_AB: &str = "abababababababababababababababababababababababababababababababababababababababababababababababab";

/// These tests are about a machine without TDX; on a TDX guest they would
/// test nothing.
fn assert_no_tsm() {
    assert!(
        !Path::new(TSM_REPORT_DIR).exists(),
        "{TSM_REPORT_DIR} exists: these tests need a machine without TDX"
    );
}

fn tdx_config(dir: &Path) -> std::path::PathBuf {
    let path = write_config(dir, "[coalition]\nnetwork = \"e2e.attest\"\n", "", "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"{MRTD_AB}\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn says_what_is_missing_and_how_to_run_without(err: &str) {
    assert!(
        err.contains(&format!("{TSM_REPORT_DIR} does not exist")),
        "{err}"
    );
    assert!(err.contains("mode = \"none\""), "{err}");
}

#[test]
fn tdx_mode_without_the_tsm_interface_stops_at_start_saying_what_is_missing() {
    assert_no_tsm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tdx_config(dir.path());
    let (code, out, err) = run(&bridge_bin(), &["run", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "a tdx bridge started without TDX:\n{out}\n{err}");
    says_what_is_missing_and_how_to_run_without(&err);
    assert!(err.contains("attestation.mode = \"tdx\""), "{err}");
    assert!(!err.contains("taking grants"), "{err}");
}

#[test]
fn tdx_mode_needs_an_expected_mrtd_and_says_how_to_learn_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[coalition]\nnetwork = \"e2e.attest\"\n",
        "",
        "",
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[attestation]\nmode = \"tdx\"\n");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(
        &bridge_bin(),
        &["check-config", "--config", path.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("expected_mrtd") && err.contains("compute-bridge attest"),
        "{err}"
    );
}

#[test]
fn attest_without_tdx_prints_the_clear_error() {
    assert_no_tsm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tdx_config(dir.path());
    let (code, out, err) = run(
        &bridge_bin(),
        &["attest", "--config", cfg.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.is_empty(), "printed a result without a quote: {out}");
    says_what_is_missing_and_how_to_run_without(&err);
}

#[test]
fn the_agent_refuses_a_provider_without_the_required_mrtd_before_sending_a_grant() {
    let coalition = TestCoalition::start(&network_name("attest-none"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &coalition.config_section(), "", "");
    let bridge = start_bridge(&cfg);
    let id = provider_id(&dir.path().join("state"));

    // The card says it is not attested.
    // A loaded machine can take longer than the default 15 s to find the
    // bridge's card stream; the wait ends as soon as the card is there.
    let mut providers = agent_owned(&with_net(&coalition, &["providers", "--wait", "60s"]));
    assert_eq!(
        providers.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        providers.log()
    );
    assert!(
        providers.log().contains("attestation=none"),
        "{}",
        providers.log()
    );

    let mut refused = request_small(&coalition, "30s", &["--require-mrtd", MRTD_AB]);
    assert_eq!(
        refused.wait(Duration::from_secs(120)),
        Some(4),
        "{}",
        refused.log()
    );
    let log = refused.log();
    assert!(
        log.contains(&format!("refusing provider {id}: it is not attested"))
            && log.contains(MRTD_AB)
            && log.contains("no grant sent"),
        "{log}"
    );
    assert!(!log.contains("sent to provider"), "{log}");
    // Give a stray grant time to arrive, then check none did.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!bridge.log().contains("grant received"), "{}", bridge.log());
}

/// Mock quotes (MR_TD all zero, no Intel chain).
struct MockTdx;

impl QuoteSource for MockTdx {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        let ak = tdx_quote::SigningKey::from_bytes(&[0x11; 32].into()).unwrap();
        let pck = tdx_quote::SigningKey::from_bytes(&[0x22; 32].into()).unwrap();
        Ok(tdx_quote::Quote::mock(ak, pck, report_data, Vec::new()).as_bytes())
    }
}

#[test]
fn the_agent_checks_a_quoted_card_chain_and_mrtd_and_says_why_it_refuses() {
    let coalition = TestCoalition::start(&network_name("attest-quote"));
    // A provider node in this test publishes a card carrying a mock quote
    // bound to it (no provider loop: the agent refuses before connecting).
    let ident = Identity::from_master(&[5; 32]);
    let identity = CardIdentity {
        provider_id: ident.provider_id,
        envelope_key: ident.envelope.public(),
        coalition: coalition.network.clone(),
    };
    let quote = Attester::new(Arc::new(MockTdx), None)
        .attest(&identity)
        .unwrap()
        .quote;
    let _link = coalition.block_on(async {
        let settings = join_settings(&coalition);
        let network = coalition::join(&settings, Some(ident.node_key.clone()))
            .await
            .unwrap();
        let link = ProviderLink::open(Arc::new(network), settings.bootstrap, ident.provider_id);
        link.publish_card(ProviderCard {
            version: PROTOCOL_VERSION,
            provider_id: ident.provider_id,
            coalition: coalition.network.clone(),
            module_version: "test".into(),
            node: link.node(),
            backends: Vec::new(),
            concurrency_cap: 1,
            active_grants: 0,
            envelope_key: ident.envelope.public(),
            attestation: Attestation::Tdx { quote },
            measurements: Default::default(),
            refreshed_at: compute_bridge_contract::clock::now_unix(),
        });
        link
    });

    let request = |extra: &[&str]| {
        let mut a = request_small(&coalition, "30s", extra);
        let code = a.wait(Duration::from_secs(120));
        (code, a.log())
    };

    // By default a quote without a chain to Intel's root is refused.
    let (code, log) = request(&["--require-mrtd", &"00".repeat(48)]);
    assert_eq!(code, Some(4), "{log}");
    assert!(
        log.contains("no certificate chain to Intel's root CA"),
        "{log}"
    );

    // Accepting test chains explicitly, the MR_TD is still checked.
    let (code, log) = request(&["--allow-untrusted-quote-chain", "--require-mrtd", MRTD_AB]);
    assert_eq!(code, Some(4), "{log}");
    assert!(
        log.contains("MR_TD mismatch") && log.contains(&"00".repeat(48)),
        "{log}"
    );
    assert!(!log.contains("sent to provider"), "{log}");
}

#[test]
fn a_pinned_component_gets_access_and_another_is_refused_before_any_grant() {
    let coalition = TestCoalition::start(&network_name("attest-measured"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &coalition.config_section(),
        "",
        "run_seconds = 2",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"{}\"\n",
        "00".repeat(48)
    ));
    std::fs::write(&cfg, text).unwrap();
    let rtmr3 = dir.path().join("rtmr3");
    let bridge = restart_bridge_with(
        &cfg,
        &[(
            compute_bridge_daemon::measure::EMULATED_RTMR3_ENV,
            rtmr3.to_str().unwrap(),
        )],
    );
    bridge.wait_for_log("provider card published", Duration::from_secs(120));
    let fake = std::fs::read(compute_bridge_testkit::components::FAKE).unwrap();
    let right = ComponentDigest::of(&fake);
    assert!(
        bridge.log().contains(&format!("component={right}"))
            && bridge.log().contains("backend measured"),
        "{}",
        bridge.log()
    );

    // `providers` shows the measured component and that the log replays.
    let mut providers = agent_owned(&with_net(&coalition, &["providers", "--wait", "60s"]));
    assert_eq!(
        providers.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        providers.log()
    );
    let out = providers.log();
    assert!(
        out.contains("the log replays to the quote's RTMR3")
            && out.contains(&format!("measured: component {right}")),
        "{out}"
    );

    let pin = |digest: &ComponentDigest| {
        let mut a = request_small(
            &coalition,
            "20s",
            &[
                "--allow-untrusted-quote-chain",
                "--require-component",
                &format!("fake={digest}"),
            ],
        );
        let code = a.wait(Duration::from_secs(180));
        (code, a.log())
    };
    let (code, log) = pin(&right);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("access opened"), "{log}");

    let wrong = ComponentDigest([0xee; 32]);
    let (code, log) = pin(&wrong);
    assert_eq!(code, Some(4), "{log}");
    assert!(
        log.contains(&format!(
            "backend fake runs component {right}, but {wrong} was required"
        )) && log.contains("no grant sent"),
        "{log}"
    );
    assert!(!log.contains("sent to provider"), "{log}");
}
