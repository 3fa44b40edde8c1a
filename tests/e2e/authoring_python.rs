//! The component author's path in Python: scaffold with `components new
//! --lang python`, build with componentize-py (the pinned one of the
//! test-peers venv), inspect, and pass the conformance run against a real
//! (toy) cloud API.

use std::process::Command;

use compute_bridge_testkit::process::run;
use compute_bridge_testkit::python;
use compute_bridge_testkit::toy_cloud::ToyCloud;

use crate::bridge_bin;

#[test]
fn a_new_python_backend_from_the_template_builds_loads_and_conforms() {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("toy");
    let (code, out, err) = run(
        &bridge_bin(),
        &[
            "components",
            "new",
            "toy",
            "--lang",
            "python",
            "--dir",
            project.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("componentize-py -d wit -w backend componentize -p . app -o toy.wasm"),
        "{out}"
    );
    for f in ["app.py", "bridge_sdk.py", "README.md", "wit/backend.wit"] {
        assert!(project.join(f).is_file(), "{f} missing");
    }

    // Build it as the README says, against the project's own wit/ (built
    // once per change of the template: the name carries its hash).
    let wasm = python::build_cached("template-toy", &project.join("wit"), &project, "app");

    let (code, out, _) = run(
        &bridge_bin(),
        &["components", "inspect", wasm.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("will load"), "{out}");

    // The conformance run, against the toy cloud the template speaks. Its
    // compile cache is shared between runs of this test (the build is too).
    let cloud = ToyCloud::start("s3cret-token", 8000);
    let shared = wasm.with_extension("compiled");
    std::fs::create_dir_all(work.path().join("state")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, work.path().join("state/compiled")).unwrap();
    let config = work.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[bridge]\nstate_dir = \"state\"\n[[backends]]\nname = \"toy\"\ncomponent = {wasm:?}\n\
             memory_limit_mib = 128\n\
             [backends.http]\nallowed_hosts = [{origin:?}]\n[backends.config]\napi = {origin:?}\n\
             token = \"${{TOY_TOKEN}}\"\nregions = [\"toy-1\"]\nmax_cpu_millicores = 4000\nmax_ram_mib = 8192\n",
            origin = cloud.origin(),
            wasm = wasm.display().to_string(),
        ),
    )
    .unwrap();
    let conformance = |token: &str| {
        Command::new(bridge_bin())
            .args(["components", "test"])
            .arg(&wasm)
            .arg("--config")
            .arg(&config)
            .env("TOY_TOKEN", token)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = conformance("s3cret-token");
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
    assert!(cloud.servers.lock().unwrap().is_empty());

    // With the wrong token every call fails as a config error naming the key.
    let out = conformance("wrong");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL provision a small grant: configuration: HTTP 401")
            && text.contains("check `token`"),
        "{text}"
    );
}
