//! `coalition.bind` is where the bridge's coalition node listens, and
//! nowhere else: the sockets of a real `compute-bridge run`, read from
//! `/proc/<pid>/fd` and its socket tables, while it serves a grant.
//!
//! The address is 127.0.0.2: every Linux machine has it (all of
//! 127.0.0.0/8 is loopback), and it is not 127.0.0.1, so a node that only
//! asked "is the address loopback?" and bound 127.0.0.1 is caught, as is
//! one that binds every interface (`0.0.0.0`, `[::]`). Besides the node,
//! the process listens on the dashboard (127.0.0.1 only, by design) and,
//! because iroh binds one socket per address family and mosaik cannot
//! leave one out, on IPv6's loopback `[::1]` for a node bound to an IPv4
//! address (`coalition::node_addresses`).
//!
//! One more socket comes and goes: at each of iroh's net reports (at start
//! and now and then after) its portmapper searches for a UPnP gateway from
//! a UDP socket on `0.0.0.0`, closed within 1 s (portmapper 0.19
//! `UPNP_SEARCH_TIMEOUT`; igd-next's default bind address), and mosaik
//! 0.4.2 gives no way to turn the portmapper off. A sample that finds only
//! such sockets is taken again 2 s later, when they must be gone.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::process::{Running, run};
use compute_bridge_testkit::sockets::{self, Listening, Proto};

use crate::bridge_bin;
use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// The dashboard port of a config written by [`write_config`].
fn dashboard_port(config: &std::path::Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let v: toml::Table = toml::from_str(&text).unwrap();
    v["dashboard"]["port"].as_integer().unwrap() as u16
}

/// The sockets of `bridge` that are neither its dashboard nor on `bind`
/// (or the other family's loopback); and whether any is on `bind`.
fn stray(bridge: &Running, bind: IpAddr, dashboard: u16) -> (Vec<Listening>, bool) {
    let all: BTreeSet<Listening> = sockets::listening(bridge.pid().expect("running"));
    let held = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let is_dashboard =
        |l: &Listening| l.proto == Proto::Tcp && l.addr == ([127, 0, 0, 1], dashboard).into();
    let on_bind = all.iter().any(|l| l.addr.ip() == bind);
    let stray = all
        .into_iter()
        .filter(|l| !is_dashboard(l) && l.addr.ip() != bind && l.addr.ip() != held)
        .collect();
    (stray, on_bind)
}

/// [`stray`], but a sample whose only strays are UDP sockets on `0.0.0.0`
/// (a UPnP gateway search, see the module's doc) is taken again 2 s later,
/// up to three times; what is still there then is stray.
fn settled_stray(bridge: &Running, bind: IpAddr, dashboard: u16) -> (Vec<Listening>, bool) {
    let upnp_search =
        |l: &Listening| l.proto == Proto::Udp && l.addr.ip() == IpAddr::from([0, 0, 0, 0]);
    let mut sample = stray(bridge, bind, dashboard);
    for _ in 0..3 {
        if sample.0.is_empty() || !sample.0.iter().all(upnp_search) {
            break;
        }
        eprintln!(
            "a UDP socket on 0.0.0.0 (a UPnP gateway search?): {:?}; again in 2 s",
            sample.0
        );
        std::thread::sleep(Duration::from_secs(2));
        sample = stray(bridge, bind, dashboard);
    }
    sample
}

/// Stop `bridge`, then what `check-config` prints for `config`.
fn stop_then_check_config(bridge: &mut Running, config: &std::path::Path) -> String {
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    let (code, out, err) = run(
        &bridge_bin(),
        &["check-config", "--config", config.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    out
}

#[test]
fn the_node_listens_only_on_the_configured_address() {
    let bind: IpAddr = [127, 0, 0, 2].into();
    let net = TestCoalition::start(&network_name("bind"));
    let dir = tempfile::tempdir().unwrap();
    let coalition = net
        .config_section()
        .replace("bind = \"127.0.0.1\"", &format!("bind = \"{bind}\""));
    assert!(coalition.contains("127.0.0.2"), "{coalition}");
    let config = write_config(dir.path(), &coalition, "", "run_seconds = 2");
    let port = dashboard_port(&config);

    let mut bridge = start_bridge(&config);
    let (before, on_bind) = settled_stray(&bridge, bind, port);
    // A grant through the node: the sockets it serves it on count too.
    let mut agent = request_small(&net, "60s", &[]);
    agent.wait_for_log("access opened with the reply key", MIN);
    let (during, _) = settled_stray(&bridge, bind, port);
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());
    let (after, _) = settled_stray(&bridge, bind, port);
    eprintln!(
        "measured: the bridge listens on {}",
        sockets::listening(bridge.pid().unwrap())
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );

    assert!(
        on_bind,
        "nothing listens on {bind}: {:?}",
        sockets::listening(bridge.pid().unwrap())
    );
    for (when, found) in [
        ("at start", before),
        ("mid-grant", during),
        ("after", after),
    ] {
        assert!(
            found.is_empty(),
            "{when}, the bridge listens beyond coalition.bind = {bind} and its dashboard: {}",
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The log and check-config say where it listens.
    assert!(
        bridge.log().contains("listening=127.0.0.2"),
        "{}",
        bridge.log()
    );
    let out = stop_then_check_config(&mut bridge, &config);
    assert!(
        out.contains("coalition node listens on 127.0.0.2 (UDP"),
        "check-config does not say where the node listens:\n{out}"
    );
}

#[test]
fn a_local_coalition_keeps_its_relay_and_node_on_its_loopback_address() {
    let bind: IpAddr = [127, 0, 0, 3].into();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[coalition]\nnetwork = \"local.dev\"\nlocal = true\nbind = \"{bind}\"\n"),
        "",
        "run_seconds = 2",
    );
    let port = dashboard_port(&config);
    let mut bridge = start_bridge(&config);
    let all = sockets::listening(bridge.pid().unwrap());
    assert!(
        all.iter()
            .any(|l| l.proto == Proto::Tcp && l.addr.ip() == bind),
        "the relay does not listen on {bind}: {all:?}"
    );
    // The agent finds it through the rendezvous file, at that address.
    let mut ag = request_local(&config, "60s");
    assert_eq!(ag.wait(Duration::from_secs(120)), Some(0), "{}", ag.log());
    let (found, on_bind) = settled_stray(&bridge, bind, port);
    assert!(on_bind);
    assert!(found.is_empty(), "beyond {bind}: {found:?}");
    let out = stop_then_check_config(&mut bridge, &config);
    assert!(out.contains("local relay listens on 127.0.0.3"), "{out}");
}
