//! Measured backends (issue 20) over an emulated RTMR3: a started bridge
//! measures every backend before it serves a call, its quote carries the
//! log's replay as RTMR3, a restart with the same backends adds nothing
//! and a changed allowed host is a new event; a requester replays a card's
//! log against its mock quote, refuses each kind of broken log for its own
//! reason, and checks the components it requires.

use std::sync::Arc;

use compute_bridge_coalition::attest::{
    CardIdentity, CardRejected, CardVerdict, ChainPolicy, VerifyPolicy, verify_card,
};
use compute_bridge_contract::measurement::{
    BackendMeasurement, BackendPolicy, ComponentDigest, MeasurementLog, replay,
};
use compute_bridge_contract::measurement::{LogRejected, Measurement};
use compute_bridge_contract::protocol::{
    Attestation, BackendOffer, PROTOCOL_VERSION, ProviderCard,
};
use compute_bridge_daemon::attest::{Attester, EmulatedTdx};
use compute_bridge_daemon::bridge::Bridge;
use compute_bridge_daemon::identity::Identity;
use compute_bridge_daemon::measure::{EmulatedRtmr, LOG_FILE, MeasurementRegister, Measurer};
use compute_bridge_testkit::components;

use crate::support::*;

/// An event for tests that measure by hand.
pub fn event(backend: &str, component: u8, origin: &str) -> BackendMeasurement {
    BackendMeasurement {
        backend: backend.into(),
        component_sha256: ComponentDigest([component; 32]),
        policy: BackendPolicy {
            allowed_origins: vec![origin.into()],
            ssh_hosts: Vec::new(),
            memory_limit_mib: 64,
            call_timeout_sec: 30,
            capabilities_sha256: "00".repeat(32),
        },
    }
}

/// Two fakes, the second allowed `origin`, in `tdx` mode (mock quotes'
/// MR_TD is zero).
fn tdx_config(state: &std::path::Path, origin: &str) -> compute_bridge_daemon::config::BootConfig {
    let fake = |name: &str, extra: &str| {
        backend_toml(
            name,
            components::FAKE,
            &format!("{extra}[backends.config]\nregions = [\"r1\"]\n"),
        )
    };
    config(
        state,
        &format!(
            "{}{}\n[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"{}\"\n",
            fake("fake-a", ""),
            fake(
                "fake-b",
                &format!("memory_limit_mib = 96\n[backends.http]\nallowed_hosts = [{origin:?}]\n")
            ),
            "00".repeat(48)
        ),
    )
}

async fn started(state: &std::path::Path, origin: &str, rtmr3: &Arc<EmulatedRtmr>) -> Bridge {
    Bridge::start_with(tdx_config(state, origin), Some(rtmr3.clone()))
        .await
        .expect("the bridge starts over an emulated RTMR3")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_started_bridge_measures_each_backend_and_its_quote_carries_the_replay() {
    let state = tempfile::tempdir().unwrap();
    let rtmr3 = Arc::new(EmulatedRtmr::open(&state.path().join("rtmr3")).unwrap());
    let bridge = started(state.path(), "https://api.example", &rtmr3).await;
    let log = bridge.measurer.lock().unwrap().log().clone();
    assert!(log.extended, "tdx mode extends");
    let names: Vec<&str> = log
        .events
        .iter()
        .map(|e| e.event.backend.as_str())
        .collect();
    assert_eq!(names, ["fake-a", "fake-b"]);
    let fake = std::fs::read(components::FAKE).unwrap();
    for e in &log.events {
        assert_eq!(e.event.component_sha256, ComponentDigest::of(&fake));
    }
    let b = &log.events[1].event.policy;
    // Normalised as the sandbox enforces them.
    assert_eq!(b.allowed_origins, ["https://api.example:443"]);
    assert_eq!(b.memory_limit_mib, 96);
    assert_eq!(
        log.events[0].event.policy.allowed_origins,
        Vec::<String>::new()
    );
    assert_ne!(
        log.events[0].event.policy.capabilities_sha256, b.capabilities_sha256,
        "the capabilities' own measure differs with the allowed host"
    );

    // The quote the card starts with was taken over the measured register.
    let (_, attested) = bridge.attestation.clone().expect("tdx mode quotes");
    let quoted = attested.measurements.rtmr[3];
    assert_eq!(quoted, rtmr3.read().unwrap());
    assert_eq!(quoted, replay(log.events.iter().map(|e| &e.event)));
    assert_eq!(log.verify(&quoted), Ok(()));
    drop(bridge);

    // A restart with the same backends measures nothing new.
    let again = started(state.path(), "https://api.example", &rtmr3).await;
    assert_eq!(again.measurer.lock().unwrap().log(), &log);
    assert_eq!(rtmr3.read().unwrap(), quoted);
    drop(again);

    // Another allowed host is a new event for that backend, extended.
    let changed = started(state.path(), "https://other.example", &rtmr3).await;
    let log2 = changed.measurer.lock().unwrap().log().clone();
    assert_eq!(log2.events.len(), 3);
    assert_eq!(
        log2.current("fake-b").unwrap().policy.allowed_origins,
        ["https://other.example:443"]
    );
    let (_, attested) = changed.attestation.clone().unwrap();
    assert_eq!(log2.verify(&attested.measurements.rtmr[3]), Ok(()));
    assert!(
        log.verify(&attested.measurements.rtmr[3]).is_err(),
        "the old log no longer replays to the new RTMR3"
    );
    let on_disk = std::fs::read_to_string(state.path().join(LOG_FILE)).unwrap();
    assert_eq!(on_disk.lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_register_someone_else_extended_stops_start_up_with_the_reason() {
    let state = tempfile::tempdir().unwrap();
    let rtmr3 = Arc::new(EmulatedRtmr::open(&state.path().join("rtmr3")).unwrap());
    rtmr3.extend(&[0x42; 48]).unwrap();
    let err = Bridge::start_with(tdx_config(state.path(), "https://api.example"), Some(rtmr3))
        .await
        .err()
        .expect("start-up stops");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("RTMR3 does not match the measurement log"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn none_mode_keeps_the_log_without_extending() {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(
        state.path(),
        &backend_toml(
            "fake-a",
            components::FAKE,
            "[backends.config]\nregions = [\"r1\"]\n",
        ),
    );
    let bridge = Bridge::start(cfg).await.unwrap();
    assert!(bridge.attestation.is_none());
    let log = bridge.measurer.lock().unwrap().log().clone();
    assert!(!log.extended);
    assert_eq!(log.events.len(), 1);
}

/// A card of provider `n` carrying `log` and a mock quote over `rtmr3`.
fn card_over(rtmr3: &Arc<EmulatedRtmr>, log: &MeasurementLog, backends: &[&str]) -> ProviderCard {
    let ident = Identity::from_master(&[3; 32]);
    let id = CardIdentity {
        provider_id: ident.provider_id,
        envelope_key: ident.envelope.public(),
        coalition: "measured.test".into(),
    };
    let quote = Attester::new(
        Arc::new(EmulatedTdx {
            rtmr3: rtmr3.clone(),
        }),
        None,
    )
    .attest(&id)
    .unwrap()
    .quote;
    ProviderCard {
        version: PROTOCOL_VERSION,
        provider_id: ident.provider_id,
        coalition: "measured.test".into(),
        module_version: "test".into(),
        node: compute_bridge_coalition::node_id(&ident.node_key.public()),
        backends: backends
            .iter()
            .map(|b| BackendOffer::bounded(b.to_string(), true, Default::default(), 0, 0))
            .collect(),
        concurrency_cap: 1,
        active_grants: 0,
        envelope_key: ident.envelope.public(),
        attestation: Attestation::Tdx { quote },
        measurements: log.clone(),
        refreshed_at: 0,
    }
}

/// Two backends measured into a fresh emulated register, and a card over
/// it.
fn measured_card(dir: &std::path::Path) -> (Arc<EmulatedRtmr>, ProviderCard) {
    let rtmr3 = Arc::new(EmulatedRtmr::open(&dir.join("rtmr3")).unwrap());
    let mut m = Measurer::open(dir, Some(rtmr3.clone())).unwrap();
    m.measure(event("aws", 1, "https://ec2.example")).unwrap();
    m.measure(event("rack", 2, "https://rack.example")).unwrap();
    let card = card_over(&rtmr3, m.log(), &["aws", "rack"]);
    (rtmr3, card)
}

fn lenient(require: &[(&str, ComponentDigest)]) -> VerifyPolicy {
    VerifyPolicy {
        chain: ChainPolicy::AllowUntrusted,
        require_components: require.iter().map(|(n, d)| (n.to_string(), *d)).collect(),
        ..Default::default()
    }
}

#[test]
fn the_cards_log_replays_to_the_quotes_rtmr3() {
    let dir = tempfile::tempdir().unwrap();
    let (rtmr3, card) = measured_card(dir.path());
    match verify_card(&card, &lenient(&[])) {
        Ok(CardVerdict::Attested { measurements, .. }) => {
            assert_eq!(measurements.rtmr[3], rtmr3.read().unwrap());
            assert_ne!(measurements.rtmr[3], Measurement::ZERO);
        }
        other => panic!("{other:?}"),
    }
    // Another measurement (a new component for rack) moves RTMR3; the card
    // built after it verifies, the old log against the new quote does not.
    let mut m = Measurer::open(dir.path(), Some(rtmr3.clone())).unwrap();
    m.measure(event("rack", 3, "https://rack.example")).unwrap();
    let newer = card_over(&rtmr3, m.log(), &["aws", "rack"]);
    assert!(verify_card(&newer, &lenient(&[])).is_ok());
    let stale = ProviderCard {
        measurements: card.measurements.clone(),
        ..newer
    };
    assert!(matches!(
        verify_card(&stale, &lenient(&[])),
        Err(CardRejected::Log(LogRejected::ReplayMismatch { .. }))
    ));
}

#[test]
fn each_broken_log_is_refused_for_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = measured_card(dir.path());
    let broken = |f: &dyn Fn(&mut MeasurementLog)| {
        let mut c = good.clone();
        f(&mut c.measurements);
        verify_card(&c, &lenient(&[])).unwrap_err()
    };
    // A measurement hidden from the log.
    let tampered = broken(&|l| {
        l.events.pop();
    });
    let reordered = broken(&|l| l.events.swap(0, 1));
    let component = broken(&|l| l.events[0].event.component_sha256 = ComponentDigest([9; 32]));
    let host = broken(&|l| {
        l.events[1].event.policy.allowed_origins = vec!["https://exfiltrate.example".into()]
    });
    assert!(
        matches!(
            tampered,
            CardRejected::Log(LogRejected::ReplayMismatch { .. })
        ),
        "{tampered:?}"
    );
    assert!(
        matches!(reordered, CardRejected::Log(LogRejected::OutOfOrder { .. })),
        "{reordered:?}"
    );
    assert!(
        matches!(
            component,
            CardRejected::Log(LogRejected::ComponentNotMeasured { .. })
        ),
        "{component:?}"
    );
    assert!(
        matches!(
            host,
            CardRejected::Log(LogRejected::PolicyNotMeasured { .. })
        ),
        "{host:?}"
    );
    let reasons: Vec<String> = [&tampered, &reordered, &component, &host]
        .iter()
        .map(|e| e.to_string())
        .collect();
    for (i, a) in reasons.iter().enumerate() {
        for b in &reasons[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert!(reasons[0].contains("replays to RTMR3"), "{}", reasons[0]);
    assert!(reasons[1].contains("out of order"), "{}", reasons[1]);
    assert!(
        reasons[2].contains("not the component measured"),
        "{}",
        reasons[2]
    );
    assert!(reasons[3].contains("allowed hosts"), "{}", reasons[3]);
}

#[test]
fn required_components_are_checked_against_the_measured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_, card) = measured_card(dir.path());
    let aws = ComponentDigest([1; 32]);
    let rack = ComponentDigest([2; 32]);
    assert!(verify_card(&card, &lenient(&[("aws", aws), ("rack", rack)])).is_ok());

    let e = verify_card(&card, &lenient(&[("aws", aws), ("rack", aws)])).unwrap_err();
    assert!(
        matches!(&e, CardRejected::ComponentMismatch { backend, measured: Some(m), .. }
            if backend == "rack" && *m == rack),
        "{e:?}"
    );
    assert!(e.to_string().contains(&rack.to_string()), "{e}");

    let e = verify_card(&card, &lenient(&[("aws", aws)])).unwrap_err();
    assert!(
        matches!(&e, CardRejected::ComponentNotRequired { backend, .. } if backend == "rack"),
        "{e:?}"
    );

    let e = verify_card(
        &card,
        &lenient(&[("aws", aws), ("rack", rack), ("gcp", aws)]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CardRejected::ComponentMismatch { measured: None, .. }),
        "{e:?}"
    );

    // An unattested card's log proves nothing.
    let unattested = ProviderCard {
        attestation: Attestation::None,
        ..card
    };
    let e = verify_card(&unattested, &lenient(&[("aws", aws), ("rack", rack)])).unwrap_err();
    assert!(
        matches!(e, CardRejected::ComponentsUnproven { .. }),
        "{e:?}"
    );
}
