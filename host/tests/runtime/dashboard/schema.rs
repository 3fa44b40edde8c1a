//! `/snapshot.json` against its documented schema, docs/snapshot.schema.json.
//! A field added, removed, renamed or retyped in the snapshot fails here
//! until the schema (and docs/dashboard.md) say the same.

use compute_bridge_contract::backend::Usage;
use compute_bridge_contract::events::{DeclineReason, Event, EventSink};
use compute_bridge_daemon::dashboard::ProviderStatus;
use serde_json::Value;

use super::{Rig, grant};

fn schema() -> Value {
    let path = compute_bridge_testkit::workspace_root().join("docs/snapshot.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn violations(instance: &Value) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

/// A snapshot with every field populated: every event kind, every optional
/// value present.
async fn full_snapshot(state: &std::path::Path) -> Value {
    let rig = Rig::new(state, &["us-east-1"], true).await;
    let d = &rig.dashboard;
    d.set_provider_id("0123456789abcdef0123456789abcdef");
    d.set_status(ProviderStatus::Alive);
    d.set_module_version("Compute v0.6");
    d.set_component("aws", &format!("sha256:{}", "ab".repeat(32)));
    let p = rig
        .place(&grant("r1", "img", None), &crate::support::workload())
        .await
        .unwrap();
    rig.clock.advance(10);
    d.sample_capacity();
    rig.clock.advance(10);
    d.sample_capacity();
    rig.complete(
        p,
        Usage {
            cpu_core_seconds: 40,
            ram_mib_seconds: 4096,
            net_bytes: 1,
        },
    )
    .await;
    let declined = rig
        .place(
            &grant("r2", "img", Some("mars-1")),
            &crate::support::workload(),
        )
        .await;
    assert!(declined.is_err(), "no backend serves mars-1");
    d.record(Event::Failover {
        from: "aws".into(),
        from_region: Some("us-east-1".into()),
        to: None,
        to_region: None,
    });
    d.record(Event::GrantDeclined {
        reason: DeclineReason::JournalUnavailable,
    });
    d.record(Event::RevenueSettled { usd: 2.0 });
    d.record(Event::ComponentSwap {
        backend: "aws".into(),
        from: format!("sha256:{}", "ab".repeat(6)),
        to: format!("sha256:{}", "cd".repeat(6)),
        outcome: compute_bridge_contract::events::SwapOutcome::RolledBack,
    });
    d.record(Event::SubscriberJoined);
    d.record(Event::SubscriberLeft);
    d.record(Event::CardRefreshed);
    // A repeat shares the line: `count` 2, `first_at_unix` before `at_unix`.
    rig.clock.advance(2);
    d.record(Event::CardRefreshed);
    rig.clock.advance(3);
    // The page shows the measured component under its backend.
    let page = compute_bridge_daemon::dashboard::html::render(&d.snapshot());
    assert!(
        page.contains(&format!("component sha256:{}", "ab".repeat(32))),
        "{page}"
    );
    let v = serde_json::to_value(d.snapshot()).unwrap();
    // Make sure it really is full, so the schema's non-null branches are
    // exercised.
    for ptr in [
        "/provider/id_prefix",
        "/provider/module_version",
        "/window/idle_ratio",
        "/window/margin_ratio",
        "/backends/1/capacity",
        "/backends/1/window/idle_ratio",
        "/backends/1/component_sha256",
    ] {
        assert!(!v.pointer(ptr).unwrap().is_null(), "{ptr} is null");
    }
    let kinds: std::collections::BTreeSet<&str> = v["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 9, "every event kind: {kinds:?}");
    let aws = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "aws")
        .unwrap();
    assert_eq!(aws["component_swaps"]["rolled_back"], 1, "{aws}");
    assert!(aws["component_loaded_at_unix"].is_u64(), "{aws}");
    let card = &v["recent_events"][0];
    assert_eq!(card["kind"], "card-refreshed", "{card}");
    assert_eq!(card["count"], 2, "{card}");
    assert_eq!(
        card["at_unix"].as_u64().unwrap() - card["first_at_unix"].as_u64().unwrap(),
        2,
        "{card}"
    );
    v
}

#[tokio::test]
async fn a_full_and_an_empty_snapshot_match_the_documented_schema() {
    let state = tempfile::tempdir().unwrap();
    let full = full_snapshot(state.path()).await;
    let errors = violations(&full);
    assert!(
        errors.is_empty(),
        "snapshot drifted from docs/snapshot.schema.json:\n{}\n{full:#}",
        errors.join("\n")
    );

    // Before anything happened and before any backend answered: the nulls.
    let fresh_state = tempfile::tempdir().unwrap();
    let fresh = Rig::new(fresh_state.path(), &["us-east-1"], false).await;
    let empty = serde_json::to_value(fresh.dashboard.snapshot()).unwrap();
    assert!(empty["backends"][0]["capacity"].is_null());
    assert!(empty["backends"][0]["component_sha256"].is_null());
    assert!(empty["window"]["margin_ratio"].is_null());
    assert_eq!(empty["provider"]["mrtd"], "not-applicable");
    let errors = violations(&empty);
    assert!(errors.is_empty(), "{}\n{empty:#}", errors.join("\n"));
}

#[tokio::test]
async fn the_schema_check_catches_drift() {
    let state = tempfile::tempdir().unwrap();
    let full = full_snapshot(state.path()).await;
    let mut added = full.clone();
    added["window"]["requester"] = Value::String("someone".into());
    assert!(
        !violations(&added).is_empty(),
        "an undocumented field passed"
    );
    let mut removed = full.clone();
    removed["lifetime"]
        .as_object_mut()
        .unwrap()
        .remove("grants_served");
    assert!(!violations(&removed).is_empty(), "a missing field passed");
    let mut retyped = full.clone();
    retyped["grants"]["active"] = Value::String("3".into());
    assert!(!violations(&retyped).is_empty(), "a retyped field passed");
    let mut uncounted = full.clone();
    uncounted["recent_events"][0]
        .as_object_mut()
        .unwrap()
        .remove("count");
    assert!(
        !violations(&uncounted).is_empty(),
        "an event line without its count passed"
    );
    let mut event = full;
    event["recent_events"][0]["peer_id"] = Value::String("p".into());
    assert!(
        !violations(&event).is_empty(),
        "an event with an extra field passed"
    );
}

/// Every object in the schema is closed and requires all its properties,
/// so the drift check cannot be loosened by accident.
#[test]
fn the_schema_is_strict() {
    fn walk(v: &Value, at: &str, loose: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(branches)) = m.get("oneOf")
                    && m.contains_key("properties")
                {
                    // An object that is one of several shapes: each shape
                    // must be closed.
                    for (i, b) in branches.iter().enumerate() {
                        if b.get("additionalProperties") != Some(&Value::Bool(false))
                            && b.get("$ref").is_none()
                        {
                            loose
                                .push(format!("{at}/oneOf/{i}: additionalProperties is not false"));
                        }
                    }
                } else if let Some(Value::Object(props)) = m.get("properties")
                    && m.get("type") == Some(&Value::String("object".into()))
                {
                    if m.get("additionalProperties") != Some(&Value::Bool(false)) {
                        loose.push(format!("{at}: additionalProperties is not false"));
                    }
                    let required: Vec<&str> = m
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    for k in props.keys() {
                        if !required.contains(&k.as_str()) {
                            loose.push(format!("{at}: {k} is not required"));
                        }
                    }
                }
                for (k, child) in m {
                    walk(child, &format!("{at}/{k}"), loose);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), loose);
                }
            }
            _ => {}
        }
    }
    let mut loose = Vec::new();
    walk(&schema(), "", &mut loose);
    assert!(loose.is_empty(), "{}", loose.join("\n"));
}
