//! The coalition's relay goes away under a running bridge and comes back on
//! the same address: the bridge rejoins through it, its card is written
//! again, and no grant it accepted is lost or reported twice.
//!
//! On 127.0.0.1 peers that already know each other also hold direct paths,
//! so an outage does not cut them off; what it does take away is joining
//! (a new peer's only way into the coalition is the relay). The test checks
//! both sides of that.

use std::net::TcpStream;
use std::time::Duration;

use compute_bridge_contract::clock::now_unix;
use compute_bridge_daemon::journal::{Journal, Phase};
use compute_bridge_testkit::coalition::TestCoalition;

use crate::coalition::grant;
use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

#[test]
fn the_relay_going_away_and_coming_back_loses_no_accepted_grant() {
    let mut net = TestCoalition::start(&network_name("relay"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Each workload runs 15 s: the one accepted before the outage ends
    // while the relay is down.
    let config = write_config(dir.path(), &net.config_section(), "", "run_seconds = 15");
    let bridge = start_bridge(&config);
    let observer = net.block_on(Observer::start(&net, provider_id(&state)));
    let card = observer.card.clone();
    let session = net.block_on(observer.session());

    // Accepted before the outage.
    let before = grant(&card, |g| g.valid_to = now_unix() + 600);
    net.block_on(session.send_grant(before.clone())).unwrap();
    observer.wait_for(before.request_id, "access before the outage", MIN, |r| {
        accesses(r) == 1
    });

    // The relay goes away: nothing listens on its address any more.
    net.stop_relay();
    let relay = net.relay_addr();
    assert!(
        TcpStream::connect_timeout(&relay, Duration::from_secs(2)).is_err(),
        "the relay still answers on {relay}"
    );
    let down_at = now_unix();

    // A grant sent during the outage by the requester already connected.
    let during = grant(&card, |g| g.valid_to = now_unix() + 600);
    net.block_on(session.send_grant(during.clone())).unwrap();

    // A new requester cannot join while the relay is down, and says why.
    let (code, _, err) = compute_bridge_testkit::process::run(
        &agent_bin(),
        &with_net(&net, &["providers"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_ne!(code, 0, "a new requester joined with no relay: {err}");
    assert!(
        err.contains("could not reach the coalition's relay"),
        "{err}"
    );
    // The bridge noticed, said so, and carried on: the connected
    // requester's grant was served during the outage.
    bridge.wait_for_log("lost the coalition relay", MIN);
    observer.wait_for(during.request_id, "access during the outage", MIN, |r| {
        accesses(r) == 1
    });
    let outage = now_unix() - down_at;

    // The relay comes back on the same address.
    net.start_relay();
    let back_at = now_unix();
    eprintln!("relay down for {outage} s");

    // The bridge redials it and says so.
    bridge.wait_for_log("coalition relay connected again", MIN);

    // The bridge writes its card again: the observer, which stayed, sees a
    // refresh made after the relay came back.
    let start = std::time::Instant::now();
    loop {
        let fresh = observer
            .cards()
            .iter()
            .any(|c| c.provider_id == card.provider_id && c.refreshed_at > back_at);
        if fresh {
            break;
        }
        assert!(
            start.elapsed() < 2 * MIN,
            "no card refreshed after the relay came back; cards {:?}\n{}",
            observer.cards(),
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A new requester joins through the relay now and is served: it finds
    // the card, gets access and its usage report.
    let key_dir = dir.path().join("access").display().to_string();
    let mut agent = request_small(&net, "60s", &["--key-dir", &key_dir]);
    let after = printed_request_id(&agent);
    agent.wait_for_log("usage report: exited with code 0", 2 * MIN);
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());

    // The grants from before and during the outage: one access and one
    // usage report each, whatever path they took.
    for (what, id) in [
        ("before the outage", before.request_id),
        ("during the outage", during.request_id),
    ] {
        let heard = observer.wait_for(id, what, 2 * MIN, |r| usage_reports(r) >= 1);
        assert_eq!(accesses(&heard), 1, "{what}: {heard:?}");
        assert_eq!(usage_reports(&heard), 1, "{what}: {heard:?}");
    }

    // The bridge served each grant once and reported each once, and its
    // journal has all three finished.
    let mut bridge = bridge;
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    let log = bridge.log();
    for line in log.lines().filter(|l| l.contains("coalition relay")) {
        eprintln!("bridge: {line}");
    }
    assert_eq!(count_lines(&log, &["instance journaled"]), 3, "{log}");
    assert_eq!(count_lines(&log, &["usage report sent"]), 3, "{log}");
    let j = Journal::open(&state).unwrap();
    for id in [before.request_id, during.request_id, after] {
        let s = id.to_string();
        let entry = j.get(id).unwrap().expect("journaled");
        assert!(
            matches!(entry.phase, Phase::Reported { .. }),
            "{s}: {:?}",
            entry.phase
        );
    }
    assert!(j.unfinished().unwrap().is_empty());
}
