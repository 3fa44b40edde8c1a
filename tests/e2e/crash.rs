//! Crash safety: `kill -9` the bridge at the two moments that matter and
//! check, after a restart on the same state dir, that every workload still
//! ends and is reported exactly once (or, if its access was never handed
//! out, torn down and never reported).
//!
//! The fake backend keeps no state of its own, so "no instance left
//! running" is checked through the bridge: its teardown and its journal.
//! Once the bare-metal backend lands, the same tests should also check that
//! the workload's account is gone.

use std::time::Duration;

use compute_bridge_coalition::link::Reply;
use compute_bridge_contract::protocol::{ComputeGrant, GRANTS_STREAM};
use compute_bridge_daemon::journal::{Journal, Phase};
use compute_bridge_testkit::coalition::TestCoalition;

use crate::coalition::grant;
use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

#[test]
fn a_workload_watched_across_kill_9_still_ends_at_valid_to_with_one_usage_report() {
    let net = TestCoalition::start(&network_name("crash-watch"));
    let dir = tempfile::tempdir().unwrap();
    // The workload never exits by itself: only valid_to ends it.
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 3600");
    let mut bridge = start_bridge(&config);
    let state = dir.path().join("state");
    let observer = net.block_on(Observer::start(&net, provider_id(&state)));

    let mut agent = request_small(&net, "40s", &[]);
    let request_id = printed_request_id(&agent);
    agent.wait_for_log("access opened with the reply key", MIN);
    bridge.wait_for_log("access handed out", MIN);

    bridge.signal("KILL");
    assert_eq!(bridge.wait(MIN), None, "killed by the signal");
    let first_run = bridge.log();
    assert!(!first_run.contains("usage report sent"), "{first_run}");

    let bridge = restart_bridge(&config);
    bridge.wait_for_log("still running; watching again", MIN);
    // Reconnecting to a restarted node can take mosaik a while.
    agent.wait_for_log(
        "usage report: expired at valid_to",
        Duration::from_secs(240),
    );
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());
    bridge.wait_for_log("usage report sent", MIN);

    // The observer that listened before the crash may have heard it once
    // (if its subscription came back in time) and again when the agent
    // asked for it: every copy is the one report.
    let reports: Vec<_> = observer
        .about(request_id)
        .into_iter()
        .filter_map(|r| match r {
            Reply::Usage(u) => Some(u),
            _ => None,
        })
        .collect();
    assert!(reports.windows(2).all(|w| w[0] == w[1]), "{reports:?}");
    // One grant: the log counts its lines (it names no request id).
    let both = format!("{first_run}{}", bridge.log());
    assert_eq!(count_lines(&both, &["usage report sent"]), 1, "{both}");
    assert_eq!(
        count_lines(&both, &["workload ended and torn down"]),
        1,
        "{both}"
    );
    assert_eq!(count_lines(agent.log().as_str(), &["usage report:"]), 1);

    // The journal has it reported, so no later start sends it again.
    let mut bridge = bridge;
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    let j = Journal::open(&state).unwrap();
    assert!(matches!(
        j.get(request_id).unwrap().unwrap().phase,
        Phase::Reported { .. }
    ));
    assert!(j.unfinished().unwrap().is_empty());
}

#[test]
fn kill_9_before_access_is_handed_out_leaves_nothing_running_and_nothing_reported() {
    let net = TestCoalition::start(&network_name("crash-early"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 3600");
    let mut bridge = start_bridge(&config);
    let state = dir.path().join("state");

    // A requester that sends a grant but does not listen for access: the
    // bridge provisions, journals, and then waits for someone to hand the
    // access to. That wait is where it is killed; no test hook needed.
    let (card, request_id, _requester) = net.block_on(async {
        let settings = join_settings(&net);
        let network = compute_bridge_coalition::join(&settings, None)
            .await
            .unwrap();
        let network = std::sync::Arc::new(network);
        let link = compute_bridge_coalition::link::RequesterLink::open(
            network.clone(),
            settings.bootstrap.clone(),
        );
        let provider = provider_id(&state);
        let card = link
            .wait_for_cards(MIN, |c| c.iter().any(|c| c.provider_id == provider))
            .await
            .into_iter()
            .find(|c| c.provider_id == provider)
            .expect("card");
        let grants = network
            .streams()
            .producer::<ComputeGrant>()
            .with_stream_id(GRANTS_STREAM)
            .build()
            .unwrap();
        let node = compute_bridge_coalition::peer_id(&card.node).unwrap();
        compute_bridge_coalition::sync(
            &network,
            &[compute_bridge_coalition::catalog_addr(&network, &node)],
        )
        .await;
        tokio::time::timeout(
            MIN,
            grants
                .when()
                .subscribed()
                .with_predicate(move |p| *p.id() == node),
        )
        .await
        .expect("the bridge subscribed to our grants");
        let g = grant(&card, |g| {
            g.valid_to = compute_bridge_contract::clock::now_unix() + 600
        });
        let id = g.request_id;
        use futures::SinkExt;
        let mut grants = grants;
        tokio::time::timeout(MIN, grants.send(g))
            .await
            .expect("the grant went out within a minute")
            .unwrap();
        (card, id, network)
    });
    bridge.wait_for_log("waiting for a subscriber to hand out access", MIN);
    assert_eq!(count_lines(&bridge.log(), &["instance journaled"]), 1);
    bridge.signal("KILL");
    assert_eq!(bridge.wait(MIN), None);
    let first_run = bridge.log();

    let mut bridge = restart_bridge(&config);
    bridge.wait_for_log(
        "torn down before access was handed out; nothing to report",
        MIN,
    );
    let log = bridge.log();
    assert_eq!(
        count_lines(&log, &["access was never handed out; tearing down"]),
        1,
        "{log}"
    );
    // A requester listening now hears nothing about it: no access, no usage.
    let observer = net.block_on(Observer::start_with_card(&net, card.clone()));
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    assert!(
        !observer
            .about(request_id)
            .iter()
            .any(|r| matches!(r, Reply::Access(_) | Reply::Usage(_))),
        "{:?}",
        observer.about(request_id)
    );
    let both = format!("{first_run}{}", bridge.log());
    assert_eq!(count_lines(&both, &["usage report sent"]), 0, "{both}");
    assert_eq!(count_lines(&both, &["access handed out"]), 0, "{both}");

    // The journal says it is over and will never be reported.
    let j = Journal::open(&state).unwrap();
    assert_eq!(j.get(request_id).unwrap().unwrap().phase, Phase::Aborted);
    assert!(j.unfinished().unwrap().is_empty());

    // And a third start does nothing more with it.
    drop(j);
    let mut third = restart_bridge(&config);
    third.signal("TERM");
    assert_eq!(third.wait(MIN), Some(0), "{}", third.log());
    assert!(!third.log().contains("grant=#"), "{}", third.log());
}

/// `kill -9` at twenty random moments of a stream of grants, restarting
/// each time on the same state dir. Afterwards nothing is forgotten (every
/// grant the bridge journaled is in the journal and final), nothing is
/// reported twice, and nothing ran much past its `valid_to`.
#[test]
fn kill_9_at_twenty_random_points_forgets_nothing_and_reports_nothing_twice() {
    use rand::Rng;
    const KILLS: usize = 20;
    let net = TestCoalition::start(&network_name("crash-random"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &net.config_section(),
        "concurrency_cap = 64",
        "run_seconds = 2",
    );
    let state = dir.path().join("state");
    let mut rng = rand::rng();
    let mut logs = String::new();
    let mut card = None;
    let mut last_valid_to = 0;
    let mut sent = 0;
    let mut ids = Vec::new();
    for _ in 0..KILLS {
        let mut bridge = restart_bridge(&config);
        // A requester listening for access, so grants get past
        // provisioning; then a few grants, and the kill at a random moment.
        let observer = match &card {
            None => net.block_on(Observer::start(&net, provider_id(&state))),
            Some(c) => net.block_on(Observer::start_with_card(&net, Clone::clone(c))),
        };
        card.get_or_insert(observer.card.clone());
        let session = net.block_on(observer.session());
        for _ in 0..rng.random_range(1..=3) {
            let valid_to = compute_bridge_contract::clock::now_unix() + rng.random_range(4..=20);
            let g = grant(&observer.card, |g| g.valid_to = valid_to);
            let id = g.request_id;
            if net.block_on(session.send_grant(g)).is_ok() {
                ids.push(id);
                sent += 1;
                last_valid_to = last_valid_to.max(valid_to);
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..3000)));
        bridge.signal("KILL");
        assert_eq!(bridge.wait(MIN), None, "killed by the signal");
        logs.push_str(&bridge.log());
    }
    assert!(sent >= KILLS, "only {sent} grants went out");

    // A last run, with a listener, past every grant's valid_to.
    let mut bridge = restart_bridge(&config);
    let _observer = net.block_on(Observer::start_with_card(&net, card.unwrap()));
    let settle = last_valid_to + 15;
    while compute_bridge_contract::clock::now_unix() < settle {
        std::thread::sleep(Duration::from_millis(500));
    }
    // Until every report that can go out has.
    std::thread::sleep(Duration::from_secs(5));
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    logs.push_str(&bridge.log());

    // The log names no request id, so the grants are followed through the
    // journal, by the ids the test sent, and the log is counted: every
    // grant it says was journaled is there (a kill between the commit and
    // the log line leaves one more entry than lines), and it said "usage
    // report sent" exactly once per reported entry.
    let j = Journal::open(&state).unwrap();
    assert!(j.unfinished().unwrap().is_empty(), "{:?}", j.unfinished());
    let mut journaled = Vec::new();
    let mut reported = 0;
    for id in &ids {
        let Some(entry) = j.get(*id).unwrap() else {
            continue;
        };
        journaled.push(*id);
        match &entry.phase {
            Phase::Reported { report } => {
                reported += 1;
                // Torn down by valid_to, or by the first run after it (a
                // restart takes a few seconds).
                assert!(
                    report.ended_at <= entry.valid_to + 30,
                    "{id} ran {} s past valid_to",
                    report.ended_at - entry.valid_to
                );
            }
            Phase::Aborted => {}
            other => panic!("{id} left {other:?}"),
        }
    }
    let journaled_lines = count_lines(&logs, &["instance journaled"]);
    assert!(journaled_lines > 0, "no grant was ever journaled:\n{logs}");
    assert!(
        journaled_lines <= journaled.len(),
        "{journaled_lines} grants logged as journaled, {} in the journal: some were forgotten",
        journaled.len()
    );
    let sent_lines = count_lines(&logs, &["usage report sent"]);
    assert_eq!(
        sent_lines, reported,
        "{reported} reported in the journal, {sent_lines} sends logged"
    );
    eprintln!(
        "measured: {KILLS} kills, {sent} grants sent, {} journaled, {reported} reported, {} aborted",
        journaled.len(),
        journaled.len() - reported
    );
}

/// The embedded default (`compute-bridge run` with no `--config`, in a
/// fresh working directory; the bare-metal backend, so root): its relay
/// lives in the bridge. A 25 s grant, `kill -9` of the bridge once access
/// is handed out, a restart on the same state dir: the waiting agent gets
/// exactly one usage report. With `hold_port`, something else takes the
/// relay's port while the bridge is down; returns the bridge's logs.
fn the_embedded_default_survives_kill_9(hold_port: bool) -> String {
    use compute_bridge_coalition::relay::{RELAY_PORT_FILE, Rendezvous};
    use compute_bridge_testkit::process::Running;

    assert_root("the embedded default's bare-metal backend makes a Unix account per grant");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".compute-bridge");
    let env = [
        ("COMPUTE_BRIDGE_LOG", "info,iroh::address_lookup=error"),
        ("COALITION_AGENT_LOG", "warn,iroh=error,compute_bridge=info"),
    ];
    let run = || {
        let b = Running::spawn_in(
            Some(dir.path()),
            &crate::bridge_bin(),
            &["run", "--dashboard-port", "0"],
            &env,
        );
        b.wait_for_log("taking grants", Duration::from_secs(180));
        b
    };
    let mut bridge = run();
    let mut agent = Running::spawn_in(
        Some(dir.path()),
        &agent_bin(),
        &[
            "request",
            "--cpu",
            "100",
            "--ram",
            "64",
            "--duration",
            "25s",
        ],
        &env,
    );
    agent.wait_for_log("access opened with the reply key", MIN);
    bridge.wait_for_log("access handed out", MIN);
    let relay_before = Rendezvous::read(&state).expect("the rendezvous file").relay;
    bridge.signal("KILL");
    assert_eq!(bridge.wait(MIN), None, "killed by the signal");
    let first_run = bridge.log();

    let port: u16 = std::fs::read_to_string(state.join(RELAY_PORT_FILE))
        .expect("the relay's port is kept in the state dir")
        .trim()
        .parse()
        .unwrap();
    assert!(
        relay_before.contains(&format!(":{port}/")),
        "{relay_before}"
    );
    let _held = hold_port.then(|| {
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the dead relay's port is free")
    });
    let mut bridge = run();
    bridge.wait_for_log("provider card published", MIN);
    let relay_after = Rendezvous::read(&state).expect("the rendezvous file").relay;
    if hold_port {
        assert_ne!(relay_after, relay_before, "{}", bridge.log());
    } else {
        assert_eq!(relay_after, relay_before, "{}", bridge.log());
    }
    agent.wait_for_log(
        "usage report: expired at valid_to",
        Duration::from_secs(240),
    );
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());
    assert_eq!(count_lines(agent.log().as_str(), &["usage report:"]), 1);
    // The report went out once its requester listened: at the workload's
    // end, or (an agent back only after that) as the answer to its
    // repeated grant. Never twice through the journal's own path.
    compute_bridge_testkit::wait_for("the usage report to go out", MIN, || {
        let log = bridge.log();
        (log.contains("usage report sent") || log.contains("sending its usage report again"))
            .then_some(())
    });
    let both = format!("{first_run}{}", bridge.log());
    let sent = count_lines(&both, &["usage report sent"]);
    if hold_port {
        assert!(sent <= 1, "{both}");
    } else {
        assert_eq!(sent, 1, "{both}");
    }
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    both
}

#[test]
fn the_embedded_default_restarted_after_kill_9_keeps_its_relay_address_and_the_waiting_agent_gets_one_report()
 {
    the_embedded_default_survives_kill_9(false);
}

/// When the relay's old port is taken at the restart, the relay moves, the
/// bridge says so naming both ports, and the waiting agent follows it
/// through the rendezvous file.
#[test]
fn the_embedded_default_whose_relay_port_was_taken_moves_and_the_waiting_agent_follows_it() {
    let logs = the_embedded_default_survives_kill_9(true);
    let warned = logs
        .lines()
        .find(|l| l.contains("of the last run is taken"))
        .unwrap_or_else(|| panic!("no warning that the relay moved:\n{logs}"));
    assert!(warned.contains("the relay moved to port "), "{warned}");
}
