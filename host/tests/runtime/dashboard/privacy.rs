//! The privacy canary: a unique string in every requester-side field of
//! real grants must come out nowhere the operator can look.

use std::path::Path;
use std::time::Duration;

use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_daemon::dashboard::DashboardServer;
use compute_bridge_daemon::fleet::WatchPolicy;
use compute_bridge_testkit::http;

use super::{Rig, debug_logs, grant, workload};

fn files_containing(dir: &Path, needle: &[u8], found: &mut Vec<String>, seen: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_containing(&path, needle, found, seen);
        } else {
            *seen += 1;
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_every_requester_field_shows_up_in_no_output() {
    let logs = debug_logs();
    // Unique per run, so nothing but this test can produce it.
    let canary = format!("cnry{}", hex_id());
    let state = tempfile::tempdir().unwrap();
    let rig = Rig::new(state.path(), &["us-east-1"], true).await;
    let server = DashboardServer::start(rig.dashboard.clone(), "127.0.0.1", 0)
        .await
        .unwrap();

    // Three grants go through the fleet: they fail over from gcp and run on
    // aws (the fake), which echoes the request id into its instance id, as a
    // careless backend might.
    for i in 0..3 {
        let g = compute_bridge_contract::backend::GrantSpec {
            // Big enough for the fake to report whole core-seconds.
            cpu_millicores: 2000,
            ..grant(
                &format!("{canary}-request-{i}"),
                &format!("registry.{canary}.example/app@sha256:{canary}"),
                None,
            )
        };
        let w = workload(&format!("u{canary}"), &format!("{canary}@requester"));
        let p = rig.place(&g, &w).await.expect("placed on aws");
        assert!(
            p.instance.instance_id.contains(&canary),
            "the fake echoes it"
        );
        let outcome = rig
            .fleet
            .watch_until_exit(
                &p.reservation,
                &p.instance,
                g.valid_to,
                WatchPolicy {
                    initial: Duration::from_millis(100),
                    max: Duration::from_millis(400),
                    attempts: 3,
                },
            )
            .await;
        assert!(outcome.usage.cpu_core_seconds > 0, "{outcome:?}");
        drop(p.reservation);
        rig.dashboard.record(Event::GrantCompleted {
            backend: p.backend,
            usage: outcome.usage,
        });
    }
    // One asks for a region (the canary) no backend has: declined.
    let g = grant(
        &format!("{canary}-request-x"),
        &format!("img-{canary}"),
        Some(&canary),
    );
    let declined = rig.place(&g, &workload("cb", &canary)).await;
    assert!(declined.is_err());
    rig.dashboard.record(Event::RevenueSettled { usd: 3.25 });
    rig.dashboard.record(Event::SubscriberJoined);
    rig.dashboard.record(Event::CardRefreshed);
    rig.clock.advance(5);
    rig.dashboard.sample_capacity();
    rig.clock.advance(5);
    rig.dashboard.sample_capacity();

    let addr = server.local_addr();
    let pages: Vec<(&str, String)> = ["/dashboard", "/snapshot.json", "/metrics"]
        .into_iter()
        .map(|path| {
            let r = http::get_local(addr, path);
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            (path, r.body)
        })
        .collect();
    // The outputs do show the grants (so the test is not vacuous)...
    let snapshot: serde_json::Value = serde_json::from_str(&pages[1].1).unwrap();
    assert_eq!(snapshot["lifetime"]["grants_served"], 3);
    assert_eq!(snapshot["window"]["grants_declined"], 1);
    assert_eq!(snapshot["window"]["failovers"], 3);
    assert!(pages[0].1.contains("Grant accepted on aws:us-east-1"));
    assert!(pages[2].1.contains("compute_bridge_grants_served_total 3"));
    // ...and never the canary.
    for (path, body) in &pages {
        assert!(!body.contains(&canary), "{path} leaks the canary:\n{body}");
    }

    server.stop().await;
    let mut found = Vec::new();
    let mut seen = 0;
    files_containing(state.path(), canary.as_bytes(), &mut found, &mut seen);
    assert!(
        state.path().join("dashboard-lifetime.json").exists(),
        "the counters were saved"
    );
    assert!(
        seen >= 2,
        "the state dir holds the counters and the identity"
    );
    assert!(
        found.is_empty(),
        "files in the state dir hold the canary: {found:?}"
    );

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains("routing grant") && logs.contains("provision failed, failing over"),
        "the debug log was captured"
    );
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&canary)).collect();
    assert!(
        leaks.is_empty(),
        "the debug log leaks the canary:\n{}",
        leaks.join("\n")
    );
}

fn hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}
