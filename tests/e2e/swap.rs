//! `compute-bridge components swap` against a running bridge binary: the
//! progress lines, the errors an operator can meet (no bridge, unknown
//! backend, a component that does not load), and the control socket's mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::process::run;

use crate::bridge_bin;
use crate::support::*;

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
