//! Load: a thousand grants at once through the fleet against a backend that
//! fails 30 % of provisions. Every grant ends, served or declined with a
//! reason, and nothing stays held. No timing is asserted; a generous
//! overall timeout only detects a hang.

use std::collections::BTreeSet;
use std::time::Duration;

use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::WorkloadEnding;
use compute_bridge_daemon::fleet::{Fleet, WatchPolicy};
use compute_bridge_testkit::components;

use crate::support::*;

const GRANTS: usize = 1000;
const FLAKY: &str = "fail_percent = 30\nrun_seconds = 1\nmax_cpu_millicores = 1000000\n";

/// What happened to one grant.
#[derive(Debug)]
enum Outcome {
    Served {
        backend: String,
        failed_over_from: Vec<String>,
    },
    Declined {
        reason: &'static str,
    },
}

/// The request ids the fake's `fail_percent = 30` fails, computed by the
/// same code natively.
fn predicted_failures() -> BTreeSet<String> {
    use cb_fake::sdk::{GrantSpec, MemoryHost, TdxRequirement, Workload};
    let host = MemoryHost::new();
    let fake = cb_fake::Fake::new(
        serde_json::from_str(r#"{"fail_percent": 30}"#).unwrap(),
        &host,
    );
    let w = Workload {
        ssh_user: "u".into(),
        ssh_public_key: String::new(),
    };
    (0..GRANTS)
        .map(|i| format!("load-{i}"))
        .filter(|id| {
            let g = GrantSpec {
                request_id: id.clone(),
                cpu_millicores: 500,
                ram_mib: 256,
                region: None,
                tdx: TdxRequirement::None,
                image: String::new(),
                valid_to: 0,
            };
            fake.provision(&g, &w).is_err()
        })
        .collect()
}

/// Send every grant at once; serve each placed one to its end (each runs
/// for about a second, so hundreds are watched at once).
async fn run(backends: &str) -> (Fleet, Vec<(String, Outcome)>) {
    let state = tempfile::tempdir().unwrap();
    let cfg = config(state.path(), backends);
    let (rt, loaded) = load(&cfg);
    std::mem::forget(rt);
    let fleet = Fleet::new(fleet_members(&cfg, &loaded), GRANTS as u32);
    fleet.refresh_capabilities().await;
    let policy = WatchPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        attempts: 3,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..GRANTS {
        let fleet = fleet.clone();
        tasks.spawn(async move {
            let id = format!("load-{i}");
            let outcome = match fleet.provision(&grant(&id), &workload()).await {
                Ok(p) => {
                    let out = fleet
                        .watch_until_exit(&p.reservation, &p.instance, now_unix() + 120, policy)
                        .await;
                    assert_eq!(out.ending, WorkloadEnding::Exited(0), "{id}");
                    assert!(out.terminate_error.is_none(), "{id}");
                    Outcome::Served {
                        backend: p.backend,
                        failed_over_from: p.failovers.iter().map(|f| f.from.clone()).collect(),
                    }
                }
                Err(d) => Outcome::Declined {
                    reason: d.reason_kind(),
                },
            };
            (id, outcome)
        });
    }
    let outcomes = tokio::time::timeout(Duration::from_secs(600), async {
        let mut v = Vec::with_capacity(GRANTS);
        while let Some(r) = tasks.join_next().await {
            v.push(r.expect("no grant task panics"));
        }
        v
    })
    .await
    .expect("hang detector: every grant ends within 10 minutes");
    (fleet, outcomes)
}

fn assert_nothing_held(fleet: &Fleet) {
    assert_eq!(fleet.active(), 0);
    for m in fleet.members() {
        assert_eq!(
            (m.active_grants, m.used_cpu_millicores, m.used_ram_mib),
            (0, 0, 0),
            "{}",
            m.name
        );
    }
}

#[tokio::test]
async fn a_thousand_grants_against_a_backend_failing_30_percent_all_end() {
    let (fleet, outcomes) = run(&backend_toml(
        "flaky",
        components::FAKE,
        &format!("[backends.config]\n{FLAKY}"),
    ))
    .await;
    let failing = predicted_failures();
    assert!((250..350).contains(&failing.len()), "{}", failing.len());

    let ids: BTreeSet<&str> = outcomes.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), GRANTS, "every grant ends exactly once");
    let mut declined = BTreeSet::new();
    for (id, o) in &outcomes {
        match o {
            Outcome::Served { backend, .. } => assert_eq!(backend, "flaky"),
            Outcome::Declined { reason } => {
                assert_eq!(*reason, "backends-failed", "{id}");
                declined.insert(id.clone());
            }
        }
    }
    // Exactly the provisions the backend failed were declined; every other
    // grant was served.
    assert_eq!(declined, failing);
    assert_nothing_held(&fleet);
}

#[tokio::test]
async fn with_a_second_backend_every_failure_fails_over_and_every_grant_is_served() {
    let (fleet, outcomes) = run(&[
        backend_toml(
            "flaky",
            components::FAKE,
            &format!("[backends.config]\n{FLAKY}"),
        ),
        backend_toml(
            "spare",
            components::FAKE,
            "[backends.config]\nrun_seconds = 1\nmax_cpu_millicores = 1000000\n",
        ),
    ]
    .concat())
    .await;
    let failing = predicted_failures();
    assert_eq!(outcomes.len(), GRANTS);
    let mut on_spare = BTreeSet::new();
    for (id, o) in &outcomes {
        let Outcome::Served {
            backend,
            failed_over_from,
        } = o
        else {
            panic!("{id} declined: {o:?}")
        };
        if backend == "spare" {
            assert_eq!(failed_over_from, &["flaky"], "{id}");
            on_spare.insert(id.clone());
        } else {
            assert!(failed_over_from.is_empty(), "{id}");
        }
    }
    assert_eq!(on_spare, failing);
    assert_nothing_held(&fleet);
}
