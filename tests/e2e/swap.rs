//! `compute-bridge components swap` against a running bridge binary: the
//! progress lines, the errors an operator can meet (no bridge, unknown
//! backend, a component that does not load), and the control socket's mode;
//! then a swap under 50 running grants and 50 arriving ones, and a second
//! swap that rolls back by itself, each grant served and reported once and
//! the card's measurement log replaying to the quote's RTMR3 after each.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::measurement::ComponentDigest;
use compute_bridge_contract::protocol::ComputeGrant;
use compute_bridge_daemon::journal::Journal;
use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::process::run;

use crate::bridge_bin;
use crate::coalition::grant;
use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// The fake component under another digest.
fn rebuilt_fake(dir: &Path, tag: &str) -> PathBuf {
    compute_bridge_testkit::rebuilt_component(compute_bridge_testkit::components::FAKE, dir, tag).0
}

fn swap(config: &Path, backend: &str, file: &Path) -> (i32, String, String) {
    run(
        &bridge_bin(),
        &[
            "components",
            "swap",
            backend,
            file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
}

#[test]
fn components_swap_prints_each_step_and_says_what_went_wrong() {
    let net = TestCoalition::start(&network_name("swap-cli"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &net.config_section(),
        "swap_rollback_polls = 1",
        "",
    );
    let v2 = rebuilt_fake(dir.path(), "v2");
    let socket = dir.path().join("state").join("control.sock");

    // No bridge yet: the socket it tried is named.
    let (code, out, err) = swap(&config, "fake", &v2);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("no bridge is running") && err.contains(&socket.display().to_string()),
        "{err}"
    );

    let bridge = start_bridge(&config);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let (code, out, err) = swap(&config, "fake", &v2);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("loaded sha256:"), "{out}");
    assert!(lines[1].starts_with("checked:"), "{out}");
    assert!(
        lines[2].starts_with("measured: event 1 ") && lines[2].contains("not extended"),
        "attestation none: {out}"
    );
    assert!(lines[3].starts_with("live:"), "{out}");
    assert!(
        lines[4].contains("backend fake runs sha256:") && lines[4].contains("probation passed"),
        "{out}"
    );
    bridge.wait_for_log("swap: component live", std::time::Duration::from_secs(10));
    // The operator's view shows the component now serving.
    let digest = lines[0].trim_start_matches("loaded ");
    let text = std::fs::read_to_string(&config).unwrap();
    let port = toml::from_str::<toml::Table>(&text).unwrap()["dashboard"]["port"]
        .as_integer()
        .unwrap() as u16;
    let snap =
        compute_bridge_testkit::http::get_local(([127, 0, 0, 1], port).into(), "/snapshot.json");
    let v: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    assert_eq!(v["backends"][0]["component_sha256"], digest, "{v}");

    // An unknown backend: the names there are.
    let (code, _, err) = swap(&config, "aws", &v2);
    assert_eq!(code, 1);
    assert!(
        err.contains("no backend is called \"aws\"") && err.contains("backends are: fake"),
        "{err}"
    );
    // A file that is no component: the loader's reason, the old one stays.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    let (code, _, err) = swap(&config, "fake", &junk);
    assert_eq!(code, 1);
    assert!(err.contains("the new component did not load"), "{err}");
    // The same component again is no swap.
    let (code, _, err) = swap(&config, "fake", &v2);
    assert_eq!(code, 1);
    assert!(err.contains("already runs component"), "{err}");
    drop(bridge);
}

/// `coalition-agent providers` until it shows `backend fake` measured as
/// `component` and says the card's log replays to the quote's RTMR3 (the
/// card is republished after a swap, so an earlier run may see the old one).
fn card_replays_with(net: &TestCoalition, component: &str) {
    let want = format!("measured: component {component}");
    let mut last = String::new();
    for _ in 0..10 {
        let mut p = agent_owned(&with_net(net, &["providers", "--wait", "60s"]));
        let code = p.wait(Duration::from_secs(120));
        last = p.log();
        assert_eq!(code, Some(0), "{last}");
        if last.contains(&want) {
            assert!(
                last.contains("the log replays to the quote's RTMR3"),
                "{last}"
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("the card never showed {want}:\n{last}");
}

#[test]
fn a_swap_under_100_grants_serves_each_once_and_a_failing_component_rolls_back_by_itself() {
    let net = TestCoalition::start(&network_name("swap-load"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Workloads run 150 s: all 100 still run at the second swap, whose
    // check and probation poll each of them.
    let config = write_config(
        dir.path(),
        &net.config_section(),
        "swap_rollback_polls = 2\nconcurrency_cap = 200",
        "run_seconds = 150",
    );
    // Room for 100 small grants (100 millicores, 64 MiB each; the cap of
    // 200 concurrent grants is in [bridge] above), and emulated
    // TDX so the card carries a quote whose RTMR3 the agent replays.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_cpu_millicores = 4000", "max_cpu_millicores = 64000")
        .replace("max_ram_mib = 4096", "max_ram_mib = 65536")
        + &format!(
            "\n[attestation]\nmode = \"tdx\"\nexpected_mrtd = \"{}\"\n",
            "00".repeat(48)
        );
    std::fs::write(&config, text).unwrap();
    let rtmr3 = dir.path().join("rtmr3");
    let bridge = restart_bridge_with(
        &config,
        &[(
            compute_bridge_daemon::measure::EMULATED_RTMR3_ENV,
            rtmr3.to_str().unwrap(),
        )],
    );
    bridge.wait_for_log("provider card published", Duration::from_secs(120));
    let observer = net.block_on(Observer::start(&net, provider_id(&state)));
    let card = observer.card.clone();
    let session = net.block_on(observer.session());
    // 50 grants running.
    let mut grants: Vec<ComputeGrant> = (0..50)
        .map(|_| {
            let g = grant(&card, |g| g.valid_to = now_unix() + 900);
            net.block_on(session.send_grant(g.clone())).unwrap();
            g
        })
        .collect();
    for g in &grants {
        observer.wait_for(g.request_id, "access before the swap", 3 * MIN, |r| {
            accesses(r) == 1
        });
    }

    // The swap, with 50 more arriving: 25 from once it has loaded, 25 from
    // once it is live (its probation under way).
    let (v2, v2_bytes) = compute_bridge_testkit::rebuilt_component(
        compute_bridge_testkit::components::FAKE,
        dir.path(),
        "v2",
    );
    let v2_digest = ComponentDigest::of(&v2_bytes).to_string();
    let swapping = {
        let (config, v2) = (config.clone(), v2.clone());
        std::thread::spawn(move || swap(&config, "fake", &v2))
    };
    // Each of these is sent once the one before has its access, and its
    // grant -> access time printed (measured, not asserted: BENCHMARKS.md).
    let mut took = Vec::new();
    let mut one_by_one = |n: usize| -> Vec<ComputeGrant> {
        (0..n)
            .map(|_| {
                let g = grant(&card, |g| g.valid_to = now_unix() + 900);
                let t = std::time::Instant::now();
                net.block_on(session.send_grant(g.clone())).unwrap();
                observer.wait_for(g.request_id, "access during the swap", 3 * MIN, |r| {
                    accesses(r) == 1
                });
                took.push(t.elapsed());
                g
            })
            .collect()
    };
    bridge.wait_for_log("swap: component loaded", MIN);
    grants.extend(one_by_one(25));
    bridge.wait_for_log("swap: component live", MIN);
    let after_live = one_by_one(25);
    grants.extend(after_live.iter().cloned());
    took.sort();
    eprintln!(
        "measured: grant -> access during a swap (50 grants, 50 running, 50 ms polling): \
         median {} ms, max {} ms",
        took[took.len() / 2].as_millis(),
        took[took.len() - 1].as_millis()
    );
    let (code, out, err) = swapping.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("probation passed"), "{out}");
    eprintln!("measured: the swap under load printed:\n{out}");
    for g in &grants {
        observer.wait_for(g.request_id, "access around the swap", 3 * MIN, |r| {
            accesses(r) == 1
        });
    }
    card_replays_with(&net, &v2_digest);

    // A component that passes the check (it answers like the fake) and
    // fails its status polls once live: the bridge rolls back by itself.
    let flaky = compute_bridge_testkit::flaky_fake(dir.path());
    let (code, out, err) = swap(&config, "fake", &flaky);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("checked:") && out.contains("live:"), "{out}");
    eprintln!("measured: the swap that rolled back printed:\n{out}{err}");
    assert!(
        format!("{out}{err}").contains("ROLLED BACK"),
        "{out}\n{err}"
    );
    bridge.wait_for_log("swap ROLLED BACK", MIN);
    // The card names v2 again, as a new event, and still replays.
    card_replays_with(&net, &v2_digest);

    // The operator sees both swaps and the rollback, with no identity: the
    // backend, digest prefixes and the outcome; /metrics counts them.
    let text = std::fs::read_to_string(&config).unwrap();
    let port = toml::from_str::<toml::Table>(&text).unwrap()["dashboard"]["port"]
        .as_integer()
        .unwrap() as u16;
    let at = ([127, 0, 0, 1], port).into();
    let snap = compute_bridge_testkit::http::get_local(at, "/snapshot.json");
    let v: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    let fake = &v["backends"][0];
    assert_eq!(fake["component_sha256"], v2_digest.as_str(), "{fake}");
    assert_eq!(
        fake["component_swaps"],
        serde_json::json!({"live": 2, "refused": 0, "rolled_back": 1}),
        "{fake}"
    );
    assert!(fake["component_loaded_at_unix"].is_u64(), "{fake}");
    let flaky_digest = ComponentDigest::of(&std::fs::read(&flaky).unwrap()).to_string();
    let rolled_back = serde_json::json!({
        "kind": "component-swap",
        "backend": "fake",
        "from": &v2_digest[..19],
        "to": &flaky_digest[..19],
        "outcome": "rolled-back",
    });
    assert!(
        v["recent_events"].as_array().unwrap().iter().any(|e| {
            rolled_back
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, want)| &e[k] == want)
        }),
        "{v:#}"
    );
    let metrics = compute_bridge_testkit::http::get_local(at, "/metrics").body;
    for line in [
        "compute_bridge_component_swaps_total{backend=\"fake\"} 2",
        "compute_bridge_component_rollbacks_total{backend=\"fake\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }

    // Every grant ends once: one access, one usage report, and nothing more
    // a while after the last.
    for g in &grants {
        observer.wait_for(g.request_id, "its usage report", 6 * MIN, |r| {
            usage_reports(r) >= 1
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    for g in &grants {
        let heard = observer.about(g.request_id);
        assert_eq!(accesses(&heard), 1, "{heard:?}");
        assert_eq!(usage_reports(&heard), 1, "{heard:?}");
    }
    let log = bridge.log();
    assert_eq!(count_lines(&log, &["usage report sent"]), 100, "{log}");
    drop(bridge);

    // The journal names the component that provisioned each instance: the
    // 25 sent after the swap went live were placed by v2.
    let j = Journal::open(&state).unwrap();
    let fake =
        ComponentDigest::of(&std::fs::read(compute_bridge_testkit::components::FAKE).unwrap())
            .to_string();
    for g in &grants {
        let e = j.get(g.request_id).unwrap().expect("journaled");
        let c = e.component.as_deref().unwrap_or_default();
        assert!(c == fake || c == v2_digest, "{c}");
        if after_live.iter().any(|a| a.request_id == g.request_id) {
            assert_eq!(c, v2_digest);
        }
    }
}
