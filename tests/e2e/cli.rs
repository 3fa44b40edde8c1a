//! The commands an operator types first.

use std::time::Duration;

use compute_bridge_testkit::process::{Running, run};

use crate::bridge_bin;

#[test]
fn run_on_the_embedded_default_logs_its_routing_table_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bridge_bin();
    // The embedded default keeps its state in ./.compute-bridge.
    // A free dashboard port: 8080 may be taken on a shared machine.
    let mut bridge = Running::spawn_in(
        Some(dir.path()),
        &bin,
        &["run", "--dashboard-port", "0"],
        &[],
    );
    bridge.wait_for_log("routing table", Duration::from_secs(120));
    bridge.wait_for_log("ready", Duration::from_secs(30));
    let log = bridge.log();
    assert!(log.contains("1. fake"), "{log}");
    assert!(log.contains("dashboard listening on 127.0.0.1:"), "{log}");
    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        bridge.log()
    );
    assert!(bridge.log().contains("shutting down"));
}

#[test]
fn version_and_help_read_well() {
    let (code, out, _) = run(&bridge_bin(), &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("compute-bridge "), "{out}");
    let (code, out, _) = run(&bridge_bin(), &["--help"]);
    assert_eq!(code, 0);
    for cmd in ["run", "check-config", "components"] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
}
