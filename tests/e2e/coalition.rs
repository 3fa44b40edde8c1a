//! The provider loop end to end: real `compute-bridge` and `coalition-agent`
//! processes on a coalition whose relay and bootstrap node run in the test,
//! on 127.0.0.1, with the fake backend.

use std::time::Duration;

use compute_bridge_coalition::envelope::{self, EnvelopeKey};
use compute_bridge_coalition::link::Reply;
use compute_bridge_contract::backend::TdxRequirement;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::{ComputeGrant, DeclineReason, Manifest, ProviderCard};
use compute_bridge_daemon::journal::Journal;
use compute_bridge_testkit::coalition::TestCoalition;

use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// 100 millicores, 64 MiB of the agent's default image, anywhere.
fn small_manifest() -> Manifest {
    Manifest {
        image: compute_bridge_requester::DEFAULT_IMAGE.into(),
        cpu_millicores: 100,
        ram_mib: 64,
        region: None,
        tdx: TdxRequirement::None,
    }
}

/// A grant for `card` from a throwaway reply key, sealed unless told not
/// to be.
pub fn grant(card: &ProviderCard, edit: impl FnOnce(&mut ComputeGrant)) -> ComputeGrant {
    let now = now_unix();
    let mut g = ComputeGrant::unsealed(card.provider_id, small_manifest(), now, now + 60);
    edit(&mut g);
    g.envelope =
        envelope::seal_grant(&card.envelope_key, &g, &EnvelopeKey::generate().public()).unwrap();
    g
}

#[test]
fn a_grant_gets_access_only_its_reply_key_opens_then_exactly_one_usage_report() {
    let net = TestCoalition::start(&network_name("grant"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 3");
    let bridge = start_bridge(&config);
    let state = dir.path().join("state");
    let provider = provider_id(&state);
    let observer = net.block_on(Observer::start(&net, provider));

    let keys = dir.path().join("access");
    let key_dir = keys.display().to_string();
    let mut agent = request_small(&net, "30s", &["--key-dir", &key_dir]);
    let request_id = printed_request_id(&agent);
    agent.wait_for_log("usage report: exited with code 0", MIN);
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());
    let out = agent.log();
    if let Some(ms) = out.lines().find(|l| l.starts_with("access opened")) {
        eprintln!("measured: {ms}");
    }

    // The access bundle: one, and only the reply key opens it.
    let replies = observer.wait_for(request_id, "the usage report", MIN, |r| {
        usage_reports(r) >= 1
    });
    let sealed: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Access(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sealed.len(), 1, "{replies:?}");
    assert!(EnvelopeKey::generate().open_access(&sealed[0]).is_err());
    let bridge_key = compute_bridge_daemon::identity::Identity::load_or_create(&state).unwrap();
    assert!(
        bridge_key.envelope.open_access(&sealed[0]).is_err(),
        "not even the bridge's own key opens a bundle sealed to the reply key"
    );

    // The agent opened it: a private key file of mode 0600 and an ssh line.
    use std::os::unix::fs::PermissionsExt;
    let key_file = keys.join("id_ed25519");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{key}"
    );
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        out.contains(&format!("ssh -i {}", key_file.display())),
        "{out}"
    );

    // The private key is nowhere on the bridge's side (tests/e2e/privacy.rs
    // searches every surface for every form of the requester's identity).
    let secret_line = key.lines().nth(2).expect("a key body line");
    assert!(!bridge.log().contains(secret_line));
    for f in std::fs::read_dir(&state).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes
                .windows(secret_line.len())
                .any(|w| w == secret_line.as_bytes()),
            "the workload key is in the state dir"
        );
    }

    // Exactly one usage report, heard and sent; the log tells the grant
    // by its local number, never by its request id.
    assert_eq!(usage_reports(&observer.about(request_id)), 1);
    bridge.wait_for_log("usage report sent", MIN);
    let log = bridge.log();
    assert_eq!(
        count_lines(&log, &["usage report sent", "grant=#1"]),
        1,
        "{log}"
    );
    assert_eq!(
        count_lines(&log, &["instance journaled", "grant=#1"]),
        1,
        "{log}"
    );
    assert!(!log.contains(&request_id.to_string()), "{log}");
}

#[test]
fn two_bridges_on_one_coalition_each_take_only_their_own_grants() {
    let net = TestCoalition::start(&network_name("two"));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_bridge(&write_config(
        da.path(),
        &net.config_section(),
        "",
        "run_seconds = 2",
    ));
    let b = start_bridge(&write_config(
        db.path(),
        &net.config_section(),
        "",
        "run_seconds = 2",
    ));
    let (pa, pb) = (
        provider_id(&da.path().join("state")),
        provider_id(&db.path().join("state")),
    );
    assert_ne!(pa, pb);

    let mut list = agent_owned(&with_net(
        &net,
        &["providers", "--json", "--wait", "60s", "--at-least", "2"],
    ));
    assert_eq!(
        list.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        list.log()
    );
    let out = list.log();
    assert!(
        out.contains(&pa.to_string()) && out.contains(&pb.to_string()),
        "{out}"
    );

    let mut ids = Vec::new();
    for p in [pa, pb] {
        let ps = p.to_string();
        let mut ag = request_small(&net, "20s", &["--provider", &ps]);
        let id = printed_request_id(&ag);
        assert_eq!(ag.wait(Duration::from_secs(120)), Some(0), "{}", ag.log());
        ids.push(id.to_string());
    }
    // Each took one grant (a grant for another provider is dropped before
    // it gets a number); neither log names a request id.
    let (la, lb) = (a.log(), b.log());
    assert_eq!(count_lines(&la, &["grant received"]), 1, "{la}");
    assert_eq!(count_lines(&lb, &["grant received"]), 1, "{lb}");
    assert_eq!(count_lines(&la, &["instance journaled"]), 1, "{la}");
    assert_eq!(count_lines(&lb, &["instance journaled"]), 1, "{lb}");
    for id in &ids {
        assert!(!la.contains(id) && !lb.contains(id), "{la}\n{lb}");
    }
}

#[test]
fn each_bad_grant_is_declined_with_its_reason_and_the_bridge_carries_on() {
    let net = TestCoalition::start(&network_name("declines"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &net.config_section(),
        "concurrency_cap = 1",
        "run_seconds = 3600",
    );
    let mut bridge = start_bridge(&config);
    let provider = provider_id(&dir.path().join("state"));
    let observer = net.block_on(Observer::start(&net, provider));
    let card = observer.card.clone();
    let session = net.block_on(observer.session());
    let now = now_unix();

    // Each grant is sent after the previous one's answer, so the slot the
    // cap guards is taken only when the test means it to be. The log
    // counts declines by reason (it names no request id).
    let logged = std::cell::RefCell::new(std::collections::BTreeMap::<&str, usize>::new());
    let declined = |g: ComputeGrant, reason: DeclineReason| {
        let id = g.request_id;
        net.block_on(session.send_grant(g)).unwrap();
        let replies = observer.wait_for(id, reason.as_str(), MIN, |r| {
            r.iter().any(|r| matches!(r, Reply::Decline(_)))
        });
        let got: Vec<_> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Decline(d) => Some(d.reason),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![reason], "request {id}");
        // A duplicate's original got access; nothing else did.
        let accesses = replies
            .iter()
            .filter(|r| matches!(r, Reply::Access(_)))
            .count();
        let expected = usize::from(reason == DeclineReason::Duplicate);
        assert_eq!(accesses, expected, "access for request {id}: {replies:?}");
        let mut logged = logged.borrow_mut();
        let n = logged.entry(reason.as_str()).or_default();
        *n += 1;
        let log = bridge.log();
        assert_eq!(
            count_lines(
                &log,
                &["grant declined", &format!("reason={}", reason.as_str())]
            ),
            *n,
            "{log}"
        );
        assert!(!log.contains(&id.to_string()), "{log}");
    };

    let mut broken = grant(&card, |_| {});
    broken.envelope.ciphertext[0] ^= 1;
    declined(broken, DeclineReason::Malformed);
    declined(
        grant(&card, |g| g.manifest.image = "alpine:latest".into()),
        DeclineReason::Malformed,
    );
    declined(
        grant(&card, |g| {
            g.valid_from = now - 120;
            g.valid_to = now - 60;
        }),
        DeclineReason::Expired,
    );
    declined(
        grant(&card, |g| {
            g.valid_from = now + 600;
            g.valid_to = now + 900;
        }),
        DeclineReason::NotYetValid,
    );
    declined(
        grant(&card, |g| g.manifest.cpu_millicores = 0),
        DeclineReason::BadResources,
    );
    declined(
        grant(&card, |g| g.manifest.ram_mib = u32::MAX),
        DeclineReason::BadResources,
    );
    declined(
        grant(&card, |g| g.manifest.tdx = TdxRequirement::Required),
        DeclineReason::NoBackend,
    );
    // One good grant takes the only slot; its replay is a duplicate; a
    // second good grant meets the cap.
    let good = grant(&card, |g| g.valid_to = now_unix() + 600);
    let good_id = good.request_id;
    net.block_on(session.send_grant(good.clone())).unwrap();
    observer.wait_for(good_id, "access for the good grant", MIN, |r| {
        r.iter().any(|r| matches!(r, Reply::Access(_)))
    });
    declined(good, DeclineReason::Duplicate);
    declined(grant(&card, |_| {}), DeclineReason::ConcurrencyCap);

    // The agent binary reports a decline and exits 3.
    let mut ag = request_small(&net, "20s", &["--tdx", "required"]);
    assert_eq!(ag.wait(Duration::from_secs(120)), Some(3), "{}", ag.log());
    // The good grant still holds the only slot.
    assert!(
        ag.log().contains("declined: concurrency-cap"),
        "{}",
        ag.log()
    );
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());

    // SIGTERM: the bridge stops taking grants and exits cleanly, leaving the
    // running workload journaled for the next start to watch.
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    assert!(bridge.log().contains("running workloads stay journaled"));
    let j = Journal::open(&dir.path().join("state")).unwrap();
    assert_eq!(
        j.get(good_id).unwrap().unwrap().phase,
        compute_bridge_daemon::journal::Phase::Running
    );
}

#[test]
fn a_settlement_reaches_the_bridge_as_an_amount_only() {
    let net = TestCoalition::start(&network_name("settle"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &net.config_section(), "", "");
    let mut bridge = start_bridge(&config);
    let mut ag = agent_owned(&with_net(&net, &["settle", "--usd", "12.5"]));
    assert_eq!(ag.wait(Duration::from_secs(120)), Some(0), "{}", ag.log());
    assert!(
        ag.log().contains("settlement of $12.500000 sent"),
        "{}",
        ag.log()
    );
    bridge.wait_for_log("settlement credited", MIN);
    let log = bridge.log();
    let line = log
        .lines()
        .find(|l| l.contains("settlement credited"))
        .unwrap();
    // Not even the amount (an amount at a moment can be matched to a
    // grant): the dashboard shows sums only. Nothing that points at who
    // paid.
    assert!(!line.contains("12.5"), "{line}");
    assert!(
        !line.contains("peer") && !line.contains("request"),
        "{line}"
    );

    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    let j = Journal::open(&dir.path().join("state")).unwrap();
    assert_eq!(j.counters().unwrap().settled_micro_usd, 12_500_000);
}

#[test]
fn the_readme_demo_runs_on_a_local_coalition_from_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[coalition]\nnetwork = \"local.dev\"\nlocal = true\n",
        "",
        "run_seconds = 2",
    );
    let mut bridge = start_bridge(&config);
    assert!(bridge.log().contains("local coalition"), "{}", bridge.log());
    let rendezvous = dir.path().join("state/local-coalition.json");
    assert!(rendezvous.is_file());

    let cfg = config.display().to_string();
    let mut ag = request_local(&config, "60s");
    assert_eq!(ag.wait(Duration::from_secs(120)), Some(0), "{}", ag.log());
    let out = ag.log();
    assert!(out.contains("access opened with the reply key"), "{out}");
    assert!(out.contains("ssh -i "), "{out}");
    assert!(out.contains("usage report: "), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "the agent's log, read through a pipe, has terminal colour codes:\n{out}"
    );

    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    assert!(
        !rendezvous.exists(),
        "the rendezvous file outlived the bridge"
    );
    let (code, _, err) =
        compute_bridge_testkit::process::run(&agent_bin(), &["providers", "--config", &cfg]);
    assert_ne!(code, 0);
    assert!(err.contains("no local bridge found"), "{err}");
}

#[test]
fn a_requester_that_missed_its_usage_report_gets_it_again_by_repeating_its_grant() {
    let net = TestCoalition::start(&network_name("missed-report"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 2");
    let bridge = start_bridge(&config);
    let provider = provider_id(&dir.path().join("state"));
    let first = net.block_on(Observer::start(&net, provider));
    let card = first.card.clone();
    let session = net.block_on(first.session());

    let g = grant(&card, |g| g.valid_to = now_unix() + 600);
    let id = g.request_id;
    net.block_on(session.send_grant(g.clone())).unwrap();
    let heard = first.wait_for(id, "the usage report", MIN, |r| usage_reports(r) == 1);
    let original = heard.iter().find_map(|r| match r {
        Reply::Usage(u) => Some(u.clone()),
        _ => None,
    });
    bridge.wait_for_log("usage report sent", MIN);

    // A requester that was not subscribed when the report went out: it
    // hears nothing about the request until it repeats the grant, and then
    // the same report, not a decline.
    let late = net.block_on(Observer::start_with_card(&net, card.clone()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(late.about(id).is_empty(), "{:?}", late.about(id));
    net.block_on(session.send_grant(g)).unwrap();
    let again = late.wait_for(id, "the report again", MIN, |r| usage_reports(r) == 1);
    assert_eq!(again.len(), 1, "only the report, no decline: {again:?}");
    let Reply::Usage(report) = &again[0] else {
        unreachable!()
    };
    assert_eq!(Some(report), original.as_ref(), "the very same report");
    bridge.wait_for_log("sending its usage report again", MIN);
    // Sent once unprompted, once on request; the workload ran once.
    let log = bridge.log();
    assert_eq!(count_lines(&log, &["usage report sent"]), 1, "{log}");
    assert_eq!(count_lines(&log, &["instance journaled"]), 1, "{log}");
    // The repeat is a grant of its own in the log (a second number).
    assert_eq!(
        count_lines(&log, &["sending its usage report again", "grant=#2"]),
        1,
        "{log}"
    );
}

/// A grant that has to wait for its provider to subscribe (a subscription
/// that dropped, a provider still starting) is stamped when it goes out,
/// so the wait does not eat into its validity window.
#[test]
fn a_grant_waiting_for_its_provider_is_stamped_when_it_goes_out() {
    use compute_bridge_coalition as coalition;
    use compute_bridge_coalition::link::{ProviderLink, RequesterLink};
    use std::sync::Arc;

    let net = TestCoalition::start(&network_name("stamp"));
    let settings = join_settings(&net);
    net.block_on(async {
        let provider = Arc::new(coalition::join(&settings, None).await.unwrap());
        let requester = RequesterLink::open(
            Arc::new(coalition::join(&settings, None).await.unwrap()),
            settings.bootstrap.clone(),
        );
        let session = requester.session(provider.local().id());
        let provider_id = EnvelopeKey::generate().provider_id();
        let template = ComputeGrant::unsealed(provider_id, small_manifest(), 0, 0);
        let asked_at = now_unix();
        let sending = tokio::spawn(async move {
            session
                .send_stamped_grant(|| {
                    let mut g = template.clone();
                    g.valid_from = now_unix();
                    g.valid_to = g.valid_from + 20;
                    g
                })
                .await
        });
        // Nobody takes grants yet: the send waits.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!sending.is_finished(), "sent with nobody subscribed");

        let link = ProviderLink::open(provider.clone(), settings.bootstrap.clone(), provider_id);
        let mut grants = link.grants();
        let requester_addr = requester.network().local().addr();
        let got = tokio::time::timeout(MIN, async {
            loop {
                coalition::sync(&provider, std::slice::from_ref(&requester_addr)).await;
                if let Ok(g) = tokio::time::timeout(Duration::from_secs(2), grants.recv()).await {
                    break g.expect("the grant stream closed");
                }
            }
        })
        .await
        .expect("the grant reached the provider");
        let sent = sending.await.unwrap().expect("sent");
        assert_eq!(got.request_id, sent.request_id);
        assert!(
            got.valid_from >= asked_at + 4,
            "stamped at {} though asked at {asked_at} and held back 4 s",
            got.valid_from
        );
        assert_eq!(got.valid_to - got.valid_from, 20);
    });
}
