//! The component author's path: scaffold from the template, build, inspect,
//! and pass the conformance run against a real (toy) cloud API.

use std::process::Command;

use compute_bridge_testkit::process::run;
use compute_bridge_testkit::toy_cloud::ToyCloud;
use compute_bridge_testkit::workspace_root;

use crate::bridge_bin;

#[test]
fn a_new_backend_from_the_template_builds_loads_and_conforms() {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("toy");
    let (code, out, err) = run(
        &bridge_bin(),
        &[
            "components",
            "new",
            "toy",
            "--dir",
            project.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cargo build --release"), "{out}");
    assert!(project.join(".cargo/config.toml").is_file());

    // Build it as an author would (a target dir under ours, so reruns are quick).
    let target = workspace_root().join("target/template-build");
    let status = Command::new(env!("CARGO"))
        .current_dir(&project)
        .args(["build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo");
    assert!(status.success(), "the template does not build");
    let wasm = target.join("wasm32-wasip2/release/toy_backend.wasm");

    let (code, out, _) = run(
        &bridge_bin(),
        &["components", "inspect", wasm.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("will load"), "{out}");

    let cloud = ToyCloud::start("s3cret-token", 8000);
    let config = work.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nstate_dir = \"state\"\n[[backends]]\nname = \"toy\"\ncomponent = {fake:?}\n\
             [backends.http]\nallowed_hosts = [{origin:?}]\n[backends.config]\napi = {origin:?}\n\
             token = \"${{TOY_TOKEN}}\"\nregions = [\"toy-1\"]\nmax_cpu_millicores = 4000\nmax_ram_mib = 8192\n",
            origin = cloud.origin(),
            fake = compute_bridge_testkit::components::FAKE
        ),
    )
    .unwrap();
    let out = Command::new(bridge_bin())
        .args([
            "components",
            "test",
            wasm.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .env("TOY_TOKEN", "s3cret-token")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("conformant:") && !text.contains("FAIL"),
        "{text}"
    );
    assert!(text.contains("PASS terminate again is a no-op"), "{text}");
    // The run cleaned up after itself.
    assert!(cloud.servers.lock().unwrap().is_empty());

    // With the wrong token every call fails as a config error, and the run says so.
    let out = Command::new(bridge_bin())
        .args([
            "components",
            "test",
            wasm.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .env("TOY_TOKEN", "wrong")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL provision a small grant: configuration: HTTP 401"),
        "{text}"
    );
}
