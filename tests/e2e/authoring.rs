//! The component author's path, in each language the scaffold offers:
//! `components new` (Rust on the guest SDK, or `--lang python` on
//! componentize-py), build as the project's README says, `components
//! inspect`, and the `components test` conformance run against a real (toy)
//! cloud API, once with the right token and once with a wrong one.

use std::path::{Path, PathBuf};
use std::process::Command;

use compute_bridge_testkit::process::run;
use compute_bridge_testkit::python;
use compute_bridge_testkit::toy_cloud::ToyCloud;
use compute_bridge_testkit::workspace_root;

use crate::bridge_bin;

/// `compute-bridge components new toy --dir <work>/toy` with `extra`
/// arguments; the project's path and what the command printed.
fn scaffold(work: &Path, extra: &[&str]) -> (PathBuf, String) {
    let project = work.join("toy");
    let mut args = vec![
        "components",
        "new",
        "toy",
        "--dir",
        project.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&bridge_bin(), &args);
    assert_eq!(code, 0, "{out}{err}");
    (project, out)
}

/// `components inspect` says the bridge will load `wasm`.
fn assert_loads(wasm: &Path) {
    let (code, out, _) = run(
        &bridge_bin(),
        &["components", "inspect", wasm.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("will load"), "{out}");
}

/// Run the conformance on `wasm` against a fresh toy cloud, with the right
/// token and then a wrong one, and check what an author would read:
/// conformant and cleaned up; then a configuration failure. `backend_extra`
/// goes into the `[[backends]]` table; the wrong token's output is
/// returned for checks of each language's own wording.
fn conforms_against_the_toy_cloud(work: &Path, wasm: &Path, backend_extra: &str) -> String {
    let cloud = ToyCloud::start("s3cret-token", 8000);
    let config = work.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nstate_dir = \"state\"\n[[backends]]\nname = \"toy\"\ncomponent = {wasm:?}\n\
             {backend_extra}[backends.http]\nallowed_hosts = [{origin:?}]\n[backends.config]\napi = {origin:?}\n\
             token = \"${{TOY_TOKEN}}\"\nregions = [\"toy-1\"]\nmax_cpu_millicores = 4000\nmax_ram_mib = 8192\n",
            origin = cloud.origin(),
            wasm = wasm.display().to_string(),
        ),
    )
    .unwrap();
    let conformance = |token: &str| {
        let out = Command::new(bridge_bin())
            .args(["components", "test"])
            .arg(wasm)
            .arg("--config")
            .arg(&config)
            .env("TOY_TOKEN", token)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text, err)
    };
    let (ok, text, err) = conformance("s3cret-token");
    assert!(ok, "{text}{err}");
    assert!(
        text.contains("conformant:") && !text.contains("FAIL"),
        "{text}"
    );
    assert!(text.contains("PASS terminate again is a no-op"), "{text}");
    // The run cleaned up after itself.
    assert!(cloud.servers.lock().unwrap().is_empty());

    // With the wrong token every call fails as a config error, and the run
    // says so.
    let (ok, text, _) = conformance("wrong");
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL provision a small grant: configuration: HTTP 401"),
        "{text}"
    );
    text
}

#[test]
fn a_new_backend_from_the_template_builds_loads_and_conforms() {
    let work = tempfile::tempdir().unwrap();
    let (project, out) = scaffold(work.path(), &[]);
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

    assert_loads(&wasm);
    conforms_against_the_toy_cloud(work.path(), &wasm, "");
}

#[test]
fn a_new_python_backend_from_the_template_builds_loads_and_conforms() {
    let work = tempfile::tempdir().unwrap();
    let (project, out) = scaffold(work.path(), &["--lang", "python"]);
    assert!(
        out.contains("componentize-py -d wit -w backend componentize -p . app -o toy.wasm"),
        "{out}"
    );
    for f in ["app.py", "bridge_sdk.py", "README.md", "wit/backend.wit"] {
        assert!(project.join(f).is_file(), "{f} missing");
    }

    // Build it as the README says (with the pinned componentize-py of the
    // test-peers venv), against the project's own wit/; built once per
    // change of the template: the name carries its hash.
    let wasm = python::build_cached("template-toy", &project.join("wit"), &project, "app");
    assert_loads(&wasm);

    // Its compile cache is shared between runs of this test, as its build
    // is: a Python component takes seconds to compile.
    let shared = wasm.with_extension("compiled");
    std::fs::create_dir_all(work.path().join("state")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, work.path().join("state/compiled")).unwrap();
    let refused = conforms_against_the_toy_cloud(work.path(), &wasm, "memory_limit_mib = 128\n");
    // bridge_sdk's error names the key to check.
    assert!(refused.contains("check `token`"), "{refused}");
}
