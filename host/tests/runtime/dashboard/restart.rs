//! Lifetime counters survive a restart; the window and raw events do not.

use compute_bridge_contract::backend::Usage;
use compute_bridge_contract::events::{DeclineReason, Event, EventSink};
use compute_bridge_daemon::dashboard::LifetimeStore;

use super::Rig;

#[tokio::test]
async fn lifetime_counters_survive_a_restart_and_only_they_are_written() {
    let state = tempfile::tempdir().unwrap();
    {
        let rig = Rig::new(state.path(), &["us-east-1"], true).await;
        let d = &rig.dashboard;
        for _ in 0..4 {
            d.record(Event::GrantAccepted {
                backend: "aws".into(),
                region: "us-east-1".into(),
            });
        }
        d.record(Event::GrantCompleted {
            backend: "aws".into(),
            usage: Usage {
                cpu_core_seconds: 7200,
                ram_mib_seconds: 1024,
                net_bytes: 10,
            },
        });
        d.record(Event::GrantDeclined {
            reason: DeclineReason::ConcurrencyCap,
        });
        d.record(Event::RevenueSettled { usd: 1.25 });
        d.persist().unwrap();
    }
    // Only aggregates are on disk: exactly the counter names, numbers only.
    let text = std::fs::read_to_string(state.path().join(LifetimeStore::FILE_NAME)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v["lifetime"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "cpu_core_seconds",
            "failovers",
            "grants_completed",
            "grants_declined",
            "grants_served",
            "net_bytes",
            "ram_mib_seconds",
            "revenue_micros"
        ]
    );
    assert!(
        v["lifetime"]
            .as_object()
            .unwrap()
            .values()
            .all(|x| x.is_u64())
    );
    assert!(
        !text.contains("us-east-1") && !text.contains("aws"),
        "{text}"
    );

    let rig = Rig::new(state.path(), &["us-east-1"], true).await;
    let s = rig.dashboard.snapshot();
    assert_eq!(s.lifetime.grants_served, 4);
    assert_eq!(s.lifetime.grants_completed, 1);
    assert_eq!(s.lifetime.grants_declined, 1);
    assert_eq!(s.lifetime.cpu_core_seconds, 7200);
    assert_eq!(s.lifetime.settled_revenue_usd, 1.25);
    // The window and the event list start empty in the new process.
    assert_eq!(s.window.grants_served, 0);
    assert!(s.recent_events.is_empty());
}

#[tokio::test]
async fn a_damaged_counters_file_does_not_stop_the_dashboard() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join(LifetimeStore::FILE_NAME), "not json").unwrap();
    let rig = Rig::new(state.path(), &["us-east-1"], true).await;
    assert_eq!(rig.dashboard.snapshot().lifetime.grants_served, 0);
    assert!(
        state
            .path()
            .join("dashboard-lifetime.json.corrupt")
            .exists()
    );
}
