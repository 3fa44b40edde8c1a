//! TDX attestation with `tdx-quote`'s mock quotes: the provider's quote is
//! bound to its card, a requester verifies it (signature, chain, binding,
//! MR_TD) and refuses each kind of bad card for its own reason, and the
//! MR_TD verdict reaches the dashboard's page, JSON and metrics.

use std::sync::Arc;

use compute_bridge_coalition::attest::{
    CardIdentity, CardRejected, CardVerdict, ChainPolicy, VerifyPolicy, verify_card,
};
use compute_bridge_contract::clock::ManualClock;
use compute_bridge_contract::measurement::Measurement;
use compute_bridge_contract::protocol::{Attestation, PROTOCOL_VERSION, ProviderCard, ProviderId};
use compute_bridge_daemon::attest::{Attested, Attester, EmulatedTdx, QuoteError, QuoteSource};
use compute_bridge_daemon::config::AttestationMode;
use compute_bridge_daemon::dashboard::{Dashboard, DashboardServer, MrtdState, Settings};
use compute_bridge_daemon::fleet::Fleet;
use compute_bridge_daemon::identity::Identity;
use compute_bridge_daemon::measure::{EmulatedRtmr, Measurer};
use compute_bridge_testkit::http;
use sha2::{Digest, Sha512};
use tdx_quote::{Quote, SigningKey};

/// The MR_TD of every mock quote (tdx-quote fills it with zeros).
const MOCK_MRTD: Measurement = Measurement([0; 48]);

/// Mock quotes: signed by a fixed attestation key, the QE report signed by
/// a fixed "PCK" with no certificate chain (so no chain to Intel's root).
struct MockTdx;

impl QuoteSource for MockTdx {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        let ak = SigningKey::from_bytes(&[0x11; 32].into()).unwrap();
        let pck = SigningKey::from_bytes(&[0x22; 32].into()).unwrap();
        Ok(Quote::mock(ak, pck, report_data, Vec::new()).as_bytes())
    }
}

/// A quote source that answers with a quote over other report data.
struct Misbinding;

impl QuoteSource for Misbinding {
    fn quote(&self, mut report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        report_data[0] ^= 1;
        MockTdx.quote(report_data)
    }
}

/// The identity of provider number `n` on `coalition`.
fn identity(n: u8, coalition: &str) -> (Identity, CardIdentity) {
    let ident = Identity::from_master(&[n; 32]);
    let card_id = CardIdentity {
        provider_id: ident.provider_id,
        envelope_key: ident.envelope.public(),
        coalition: coalition.to_string(),
    };
    (ident, card_id)
}

/// A card for `ident` carrying `attestation`.
fn card(ident: &Identity, coalition: &str, attestation: Attestation) -> ProviderCard {
    ProviderCard {
        version: PROTOCOL_VERSION,
        provider_id: ident.provider_id,
        coalition: coalition.to_string(),
        module_version: "test".into(),
        node: compute_bridge_coalition::node_id(&ident.node_key.public()),
        backends: Vec::new(),
        concurrency_cap: 1,
        active_grants: 0,
        envelope_key: ident.envelope.public(),
        attestation,
        measurements: Default::default(),
        refreshed_at: 0,
    }
}

fn attested_card(n: u8, coalition: &str) -> (ProviderCard, Attested) {
    let (ident, id) = identity(n, coalition);
    let a = Attester::new(Arc::new(MockTdx), Some(MOCK_MRTD))
        .attest(&id)
        .expect("a mock quote");
    let c = card(
        &ident,
        coalition,
        Attestation::Tdx {
            quote: a.quote.clone(),
        },
    );
    (c, a)
}

/// Accept mock quotes' missing chain; everything else checked.
fn test_policy(require_mrtd: Option<Measurement>) -> VerifyPolicy {
    VerifyPolicy {
        require_mrtd,
        chain: ChainPolicy::AllowUntrusted,
        ..Default::default()
    }
}

#[test]
fn report_data_follows_the_documented_layout() {
    let id = CardIdentity {
        provider_id: ProviderId([7; 16]),
        envelope_key: [9; 32],
        coalition: "infer.corp".into(),
    };
    let mut pre = Vec::new();
    pre.extend_from_slice(b"compute-bridge/card-report-data/v1");
    assert_eq!(pre.len(), 34);
    pre.extend_from_slice(&[7; 16]);
    pre.extend_from_slice(&[9; 32]);
    pre.extend_from_slice(&10u32.to_be_bytes());
    pre.extend_from_slice(b"infer.corp");
    let want: [u8; 64] = Sha512::digest(&pre).into();
    assert_eq!(id.report_data(), want);

    // Every bound field moves it.
    let mut other = id.clone();
    other.provider_id.0[0] ^= 1;
    assert_ne!(other.report_data(), want);
    let mut other = id.clone();
    other.envelope_key[31] ^= 1;
    assert_ne!(other.report_data(), want);
    let mut other = id.clone();
    other.coalition = "infer.corq".into();
    assert_ne!(other.report_data(), want);
}

#[test]
fn measurements_parse_from_96_hex_digits_only() {
    let m: Measurement = "ab".repeat(48).parse().unwrap();
    assert_eq!(m.0, [0xab; 48]);
    assert_eq!(m.to_string(), "ab".repeat(48));
    assert!("ab".repeat(47).parse::<Measurement>().is_err());
    assert!("zz".repeat(48).parse::<Measurement>().is_err());
}

#[test]
fn a_good_quote_verifies_and_binds_to_its_card() {
    let (c, a) = attested_card(1, "infer.corp");
    assert_eq!(a.mrtd_ok, Some(true));
    assert_eq!(a.measurements.mrtd, MOCK_MRTD);
    let (_, id) = identity(1, "infer.corp");
    let quote = Quote::from_bytes(&a.quote).unwrap();
    assert_eq!(quote.report_input_data(), id.report_data());

    match verify_card(&c, &test_policy(Some(MOCK_MRTD))) {
        Ok(CardVerdict::Attested {
            measurements,
            chain_verified,
        }) => {
            assert_eq!(measurements.mrtd, MOCK_MRTD);
            assert!(!chain_verified, "a mock quote has no Intel chain");
        }
        other => panic!("the good card was not accepted: {other:?}"),
    }
}

#[test]
fn a_quote_without_an_intel_chain_is_refused_unless_explicitly_allowed() {
    let (c, _) = attested_card(1, "infer.corp");
    let strict = VerifyPolicy {
        require_mrtd: Some(MOCK_MRTD),
        chain: ChainPolicy::default(),
        ..Default::default()
    };
    let e = verify_card(&c, &strict).unwrap_err();
    assert!(matches!(e, CardRejected::UntrustedChain(_)), "{e:?}");
    assert!(e.to_string().contains("Intel's root CA"), "{e}");
    // The default policy is the strict one.
    assert_eq!(VerifyPolicy::default().chain, ChainPolicy::IntelRoot);
}

#[test]
fn a_quote_for_another_envelope_key_is_refused_as_not_bound() {
    // Provider 2's genuine quote, replayed in provider 1's card.
    let (_, theirs) = attested_card(2, "infer.corp");
    let (ident, _) = identity(1, "infer.corp");
    let c = card(
        &ident,
        "infer.corp",
        Attestation::Tdx {
            quote: theirs.quote,
        },
    );
    let e = verify_card(&c, &test_policy(None)).unwrap_err();
    assert_eq!(e, CardRejected::NotBound);

    // The same quote moved to another coalition is not bound either.
    let (ours, _) = attested_card(1, "infer.corp");
    let mut moved = ours.clone();
    moved.coalition = "other.corp".into();
    assert_eq!(
        verify_card(&moved, &test_policy(None)).unwrap_err(),
        CardRejected::NotBound
    );
}

#[test]
fn a_tampered_quote_is_refused_as_invalid() {
    let (c, _) = attested_card(1, "infer.corp");
    let Attestation::Tdx { quote } = &c.attestation else {
        unreachable!()
    };
    // MR_TD starts at byte 48 (header) + 184 (body) of a v4 quote; claim
    // another measurement without re-signing.
    const MRTD_AT: usize = 48 + 16 + 48 + 48 + 8 + 8 + 8;
    for at in [MRTD_AT, quote.len() - 1, 10] {
        let mut bad = quote.clone();
        bad[at] ^= 0xff;
        let t = ProviderCard {
            attestation: Attestation::Tdx { quote: bad },
            ..c.clone()
        };
        let e = verify_card(&t, &test_policy(None)).unwrap_err();
        assert!(
            matches!(e, CardRejected::BadQuote(_)),
            "flipping byte {at}: {e:?}"
        );
    }
    // Truncated and garbage quotes are refused, never a crash (tdx-quote
    // 0.0.5 panics on a short quote; the agent checks the length first).
    for short in [
        quote[..quote.len() / 2].to_vec(),
        quote[..700].to_vec(),
        vec![4, 0],
        vec![],
        vec![0xff; 2000],
    ] {
        let t = ProviderCard {
            attestation: Attestation::Tdx { quote: short },
            ..c.clone()
        };
        assert!(matches!(
            verify_card(&t, &test_policy(None)).unwrap_err(),
            CardRejected::BadQuote(_)
        ));
    }
}

#[test]
fn a_wrong_mrtd_is_refused_with_both_values() {
    let (c, _) = attested_card(1, "infer.corp");
    let required = Measurement([0xab; 48]);
    let e = verify_card(&c, &test_policy(Some(required))).unwrap_err();
    assert_eq!(
        e,
        CardRejected::MrtdMismatch {
            expected: required,
            actual: MOCK_MRTD
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&"ab".repeat(48)) && msg.contains(&"00".repeat(48)),
        "{msg}"
    );
}

#[test]
fn each_bad_card_has_its_own_reason() {
    let (good, _) = attested_card(1, "infer.corp");
    let (other, _) = attested_card(2, "infer.corp");
    let Attestation::Tdx { quote } = &good.attestation else {
        unreachable!()
    };
    let mut tampered = quote.clone();
    tampered[300] ^= 1;
    let reasons = [
        verify_card(
            &ProviderCard {
                attestation: other.attestation.clone(),
                ..good.clone()
            },
            &test_policy(None),
        ),
        verify_card(
            &ProviderCard {
                attestation: Attestation::Tdx { quote: tampered },
                ..good.clone()
            },
            &test_policy(None),
        ),
        verify_card(&good, &test_policy(Some(Measurement([1; 48])))),
        verify_card(&good, &VerifyPolicy::default()),
    ]
    .map(|r| r.unwrap_err().to_string());
    for (i, a) in reasons.iter().enumerate() {
        for b in &reasons[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn an_unattested_card_passes_only_when_nothing_is_required() {
    let (ident, _) = identity(1, "infer.corp");
    let c = card(&ident, "infer.corp", Attestation::None);
    assert_eq!(
        verify_card(&c, &VerifyPolicy::default()),
        Ok(CardVerdict::Unattested)
    );
    let e = verify_card(&c, &test_policy(Some(MOCK_MRTD))).unwrap_err();
    assert_eq!(
        e,
        CardRejected::NotAttested {
            required: MOCK_MRTD
        }
    );
    assert!(e.to_string().contains("not attested"), "{e}");

    // A card whose id is not its envelope key's is refused before anything.
    let mut c = c;
    c.provider_id = ProviderId([0; 16]);
    assert_eq!(
        verify_card(&c, &VerifyPolicy::default()),
        Err(CardRejected::Inconsistent)
    );
}

#[test]
fn the_provider_refuses_a_platform_quote_that_is_not_over_its_report_data() {
    let (_, id) = identity(1, "infer.corp");
    let e = Attester::new(Arc::new(Misbinding), Some(MOCK_MRTD))
        .attest(&id)
        .unwrap_err();
    assert!(matches!(e, QuoteError::Unusable(_)), "{e:?}");
}

#[tokio::test]
async fn an_mrtd_mismatch_shows_on_the_page_in_the_json_and_in_the_metrics() {
    let (_, id) = identity(1, "infer.corp");
    let a = Attester::new(Arc::new(MockTdx), Some(Measurement([0xab; 48])))
        .attest(&id)
        .unwrap();
    assert_eq!(a.mrtd_ok, Some(false));

    let dashboard = Dashboard::new(
        Settings {
            coalition: "infer.corp".into(),
            refresh_sec: 5,
            rates: Default::default(),
            state_dir: None,
            attestation: AttestationMode::Tdx,
        },
        Fleet::new(Vec::new(), 1),
        Arc::new(ManualClock::new(1_000)),
    );
    dashboard.set_mrtd(MrtdState::from_verdict(a.mrtd_ok));
    let server = DashboardServer::start(dashboard.clone(), "127.0.0.1", 0)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (page, snap, metrics) = tokio::task::spawn_blocking(move || {
        (
            http::get_local(addr, "/dashboard").body,
            http::get_local(addr, "/snapshot.json").body,
            http::get_local(addr, "/metrics").body,
        )
    })
    .await
    .unwrap();
    server.stop().await;

    let snap: serde_json::Value = serde_json::from_str(&snap).unwrap();
    assert_eq!(snap["provider"]["mrtd"], "mismatch", "{snap}");
    assert!(page.contains("MISMATCH"), "{page}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("compute_bridge_mrtd_ok") && l.ends_with(" 0")),
        "{metrics}"
    );

    // A matching quote reads ok.
    let ok = Attester::new(Arc::new(MockTdx), Some(MOCK_MRTD))
        .attest(&id)
        .unwrap();
    dashboard.set_mrtd(MrtdState::from_verdict(ok.mrtd_ok));
    assert_eq!(dashboard.snapshot().provider.mrtd, MrtdState::Ok);
}

/// Counts the quotes it hands out (emulated TDX: RTMR3 from a file).
struct CountingMock(std::sync::atomic::AtomicUsize, EmulatedTdx);

impl QuoteSource for CountingMock {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.1.quote(report_data)
    }
}

#[test]
fn the_provider_loop_publishes_a_bound_quote_and_takes_a_fresh_one_with_each_refresh() {
    use compute_bridge_coalition::link::{ProviderLink, RequesterLink};
    use compute_bridge_coalition::{self as coalition, NetworkSettings};
    use compute_bridge_daemon::grant::{LoopSettings, ProviderLoop};
    use compute_bridge_daemon::journal::Journal;
    use compute_bridge_testkit::coalition::TestCoalition;
    use std::time::Duration;

    let coalition = TestCoalition::start(&format!("attest-loop-{}", std::process::id()));
    let state = tempfile::tempdir().unwrap();
    let ident = Identity::from_master(&[9; 32]);
    let id = CardIdentity {
        provider_id: ident.provider_id,
        envelope_key: ident.envelope.public(),
        coalition: coalition.network.clone(),
    };
    // One backend measured into an emulated RTMR3 before the first quote.
    let rtmr3 = Arc::new(EmulatedRtmr::open(&state.path().join("rtmr3")).unwrap());
    let mut measurer = Measurer::open(state.path(), Some(rtmr3.clone())).unwrap();
    measurer
        .measure(crate::measured::event("rack-1", 7, "https://api.example"))
        .unwrap();
    let measurer = Arc::new(std::sync::Mutex::new(measurer));
    let source = Arc::new(CountingMock(Default::default(), EmulatedTdx { rtmr3 }));
    let attester = Attester::new(source.clone(), Some(MOCK_MRTD));
    let first = attester.attest(&id).unwrap();
    let settings = |relays: &[String], bootstrap: &[String]| {
        NetworkSettings::parse(&coalition.network, relays, bootstrap, true).unwrap()
    };
    let net = settings(
        std::slice::from_ref(&coalition.relay_url),
        std::slice::from_ref(&coalition.bootstrap),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let card = coalition.block_on(async {
        let network = coalition::join(&net, Some(ident.node_key.clone()))
            .await
            .unwrap();
        let link = ProviderLink::open(Arc::new(network), net.bootstrap.clone(), ident.provider_id);
        let provider = ProviderLoop::new(
            Identity::from_master(&[9; 32]).envelope,
            Fleet::new(Vec::new(), 1),
            Journal::open(state.path()).unwrap(),
            link,
            Arc::new(compute_bridge_contract::events::Discard),
            LoopSettings {
                coalition: coalition.network.clone(),
                capacity_refresh: Duration::from_millis(300),
                watch: Default::default(),
                access_wait: Duration::from_secs(5),
                attestation: Some((attester, first)),
                measurer: Some(measurer),
                sweep_backends: Default::default(),
            },
        );
        let s = stop.clone();
        tokio::spawn(provider.run(async move { s.cancelled().await }));
        let requester = RequesterLink::open(
            Arc::new(coalition::join(&net, None).await.unwrap()),
            net.bootstrap.clone(),
        );
        requester
            .wait_for_cards(Duration::from_secs(60), |c| {
                c.iter().any(|c| c.provider_id == ident.provider_id)
            })
            .await
            .into_iter()
            .find(|c| c.provider_id == ident.provider_id)
            .expect("the card was published")
    });
    match verify_card(&card, &test_policy(Some(MOCK_MRTD))) {
        Ok(CardVerdict::Attested { measurements, .. }) => {
            assert_eq!(measurements.mrtd, MOCK_MRTD);
            // The card carries the log beside the quote, and it replays to
            // the quote's RTMR3.
            assert_eq!(card.measurements.events.len(), 1);
            assert!(card.measurements.extended);
            assert_ne!(measurements.rtmr[3], Measurement::ZERO);
            assert_eq!(card.measurements.verify(&measurements.rtmr[3]), Ok(()));
        }
        other => panic!("the published card does not verify: {other:?}"),
    }
    // The start quote plus at least one refresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while source.0.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no fresh quote was taken on refresh"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.cancel();
}
