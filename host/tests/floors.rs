//! The floors of the house (`docs/architecture.md`): no crate reaches up; and
//! the build they make: the run command and the suite share their dependencies.
//!
//! Reads the workspace with `cargo metadata --no-deps --offline` and checks
//! every workspace dependency (normal, build and dev) of every package
//! against the table below:
//! - a crate under `host/` may depend only on the workspace crates its row
//!   allows (`contract ← sandbox ← daemon`, `contract ← coalition ←
//!   {daemon, requester}`, all of them ← the binaries package), and in its
//!   tests only (dev-dependencies) also on what `HOST_TEST_FLOORS` gives
//!   it; a crate under `host/` that has no row fails the test until it is
//!   given one;
//! - a crate under `components/` depends on nothing outside `components/`
//!   (the WIT is its only link to the host);
//! - the test kit and the fuzz targets may use anything.
//!
//! The last test reads cargo's unit graph for the run command and for the
//! suite.
//!
//! Keeps nothing; runs no build.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Each `host/` crate and the workspace crates it may depend on.
const HOST_FLOORS: &[(&str, &[&str])] = &[
    ("compute-bridge-contract", &[]),
    ("compute-bridge-sandbox", &["compute-bridge-contract"]),
    ("compute-bridge-coalition", &["compute-bridge-contract"]),
    (
        "compute-bridge-daemon",
        &[
            "compute-bridge-contract",
            "compute-bridge-sandbox",
            "compute-bridge-coalition",
            "compute-bridge-components",
        ],
    ),
    (
        "compute-bridge-requester",
        &["compute-bridge-contract", "compute-bridge-coalition"],
    ),
    // The binaries package: both mains, the runtime and end-to-end tests
    // and the benchmarks, with no library of its own. The bridge's main
    // runs the daemon and the agent's the requester, and the tests reach
    // every floor, so it may use every floor, the shipped components, and
    // (tests only) the test kit,
    // the test components and the cloud backends' cores (run natively
    // beside their components in the interleaved bench).
    (
        "compute-bridge",
        &[
            "compute-bridge-contract",
            "compute-bridge-sandbox",
            "compute-bridge-coalition",
            "compute-bridge-daemon",
            "compute-bridge-requester",
            "compute-bridge-components",
            "compute-bridge-testkit",
            "cb-fake",
            "cb-hostile-sandbox",
            "cb-aws",
            "cb-gcp",
        ],
    ),
];

/// What a `host/` crate may use in its own tests only (a dev-dependency),
/// beyond its row in `HOST_FLOORS`.
const HOST_TEST_FLOORS: &[(&str, &[&str])] = &[
    // The daemon's unit tests load the test-only `fake` component by the
    // path the test kit names (`config`'s builtin-name refusal).
    ("compute-bridge-daemon", &["compute-bridge-testkit"]),
];

/// Packages free to use anything (test tooling).
const UNRESTRICTED: &[&str] = &["tests/", "fuzz/"];

/// What `cargo ARGS` prints as JSON, run in this package (with
/// `RUSTC_BOOTSTRAP=1` when it asks for an unstable option).
fn cargo_json(args: &[&str]) -> Value {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    if args.contains(&"unstable-options") {
        cargo.env("RUSTC_BOOTSTRAP", "1");
    }
    let out = cargo.output().expect("running cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo prints JSON")
}

fn workspace() -> Value {
    cargo_json(&[
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ])
}

/// Every workspace package: name → (path of its directory relative to the
/// workspace root, the workspace packages it depends on, each with whether
/// it is a dev-dependency only).
fn packages(meta: &Value) -> BTreeMap<String, (String, Vec<(String, bool)>)> {
    let root = meta["workspace_root"].as_str().unwrap().to_string() + "/";
    let mut out = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let dir = p["manifest_path"]
            .as_str()
            .unwrap()
            .strip_prefix(&root)
            .unwrap()
            .trim_end_matches("Cargo.toml")
            .to_string();
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d.get("path").is_some_and(|v| !v.is_null()))
            .map(|d| (d["name"].as_str().unwrap().to_string(), d["kind"] == "dev"))
            .collect();
        out.insert(p["name"].as_str().unwrap().to_string(), (dir, deps));
    }
    out
}

#[test]
fn no_crate_depends_on_a_floor_above_its_own() {
    let all = packages(&workspace());
    let mut wrong = Vec::new();
    for (name, (dir, deps)) in &all {
        if UNRESTRICTED.iter().any(|u| dir.starts_with(u)) {
            continue;
        }
        if dir.starts_with("host/") || dir.is_empty() {
            let Some((_, allowed)) = HOST_FLOORS.iter().find(|(n, _)| n == name) else {
                wrong.push(format!(
                    "{name} ({dir}) has no row in HOST_FLOORS: give it its floor there and in \
                     docs/architecture.md"
                ));
                continue;
            };
            let in_tests = HOST_TEST_FLOORS
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&[][..], |(_, t)| *t);
            for (d, dev) in deps {
                let test_only = *dev && in_tests.contains(&d.as_str());
                if !allowed.contains(&d.as_str()) && !test_only {
                    wrong.push(format!(
                        "{name} depends on {d}, which is not below its floor"
                    ));
                }
            }
        } else if dir.starts_with("components/") {
            for (d, _) in deps {
                let to = &all[d].0;
                if !to.starts_with("components/") {
                    wrong.push(format!(
                        "{name} ({dir}) depends on {d} ({to}): a component crate knows the \
                         host only through the WIT"
                    ));
                }
            }
        } else {
            wrong.push(format!(
                "{name} ({dir}) is in no floor: place it in host/, components/, tests/ or fuzz/"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_floors_the_table_names_are_all_below_the_binaries() {
    // The table itself must not let a lower floor name a higher one: rank
    // each row by the rows it allows, and check every allowed crate that
    // has a row ranks lower.
    let rank = |name: &str| HOST_FLOORS.iter().position(|(n, _)| *n == name);
    for (i, (name, allowed)) in HOST_FLOORS.iter().enumerate() {
        for a in *allowed {
            if let Some(j) = rank(a) {
                assert!(j < i, "{name} allows {a}, which is listed at or above it");
            }
        }
    }
    // And the ground floor exists (this test would pass vacuously without it).
    let all = packages(&workspace());
    assert!(
        all.contains_key("compute-bridge-contract"),
        "the contract crate is missing"
    );
}

/// Packages the suite may compile again after the run command, with the
/// reason. None: since the emulated TDX of the measured-backends tests
/// (`COMPUTE_BRIDGE_EMULATED_RTMR3`), the binaries carry tdx-quote's `mock`
/// feature too, the last feature only the suite turned on.
const BUILT_AGAIN_BY_THE_SUITE: &[&str] = &[];

/// The units `cargo` would compile for `args`, each reduced to an identity
/// that, like cargo's own metadata hash, covers the package, target, mode,
/// features, platform, profile and (recursively) its dependencies; mapped to
/// the unit's package name. Reads `--unit-graph`, which is behind `-Z
/// unstable-options` (hence `RUSTC_BOOTSTRAP`); the format has been
/// version 1 since cargo 1.51.
fn units(args: &[&str]) -> BTreeMap<String, String> {
    let mut args = args.to_vec();
    args.extend(["--release", "--offline", "--locked"]);
    args.extend(["-Z", "unstable-options", "--unit-graph"]);
    let graph = cargo_json(&args);
    assert_eq!(graph["version"], 1, "the unit graph's format changed");
    let list = graph["units"].as_array().expect("units");
    fn identity(i: usize, list: &[Value], memo: &mut BTreeMap<usize, String>) -> String {
        if let Some(id) = memo.get(&i) {
            return id.clone();
        }
        let unit = &list[i];
        let mut deps: Vec<String> = unit["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| identity(d["index"].as_u64().expect("index") as usize, list, memo))
            .collect();
        deps.sort();
        // The package id names the checkout's path for workspace members;
        // the same path in both graphs, so it can stay in.
        let id = serde_json::json!([
            unit["pkg_id"],
            unit["target"]["name"],
            unit["target"]["kind"],
            unit["mode"],
            unit["features"],
            unit["platform"],
            unit["profile"],
            deps,
        ])
        .to_string();
        let digest = format!("{:x}", Sha256::digest(id.as_bytes()));
        memo.insert(i, digest.clone());
        digest
    }
    let mut memo = BTreeMap::new();
    (0..list.len())
        .filter(|&i| list[i]["mode"] != "run-custom-build")
        .map(|i| {
            let package = list[i]["pkg_id"].as_str().unwrap_or_default();
            // "registry+https://…#name@1.2.3" or "path+file:///…#name@0.1.0".
            let name = package
                .rsplit('#')
                .next()
                .and_then(|n| n.split('@').next())
                .unwrap_or(package)
                .to_string();
            (identity(i, list, &mut memo), name)
        })
        .collect()
}

/// The README's two commands, one after the other, compile every shared
/// dependency once: what `cargo run --release` builds (the binaries
/// package) is what `scripts/test.sh` (the whole workspace with its
/// dev-dependencies) reuses. Before the feature pins, jsonschema's
/// `serde_json/float_roundtrip` and wit-bindgen's `anyhow/std` made the suite
/// compile 75 units again, cranelift and wasmtime among them. A new
/// dev-dependency that turns a feature on fails this until the feature is
/// pinned (host/daemon/Cargo.toml, which the binaries depend on, for the
/// binaries' side; components/artifacts for proc macros and build scripts).
#[test]
fn the_run_command_and_the_suite_build_shared_crates_once() {
    let run = units(&["build", "-p", "compute-bridge"]);
    let suite = units(&["test", "--workspace", "--no-run"]);
    assert!(
        run.values().any(|p| p == "wasmtime") && run.len() > 100,
        "the run command's unit graph was not read ({} units)",
        run.len()
    );
    let mut again: Vec<&str> = run
        .iter()
        .filter(|(id, _)| !suite.contains_key(*id))
        .map(|(_, package)| package.as_str())
        .filter(|package| !BUILT_AGAIN_BY_THE_SUITE.contains(package))
        .collect();
    again.sort();
    again.dedup();
    assert!(
        again.is_empty(),
        "the suite compiles these packages again after `cargo run --release`, because \
         it resolves other features for them (or for a dependency); pin the features \
         the suite turns on in host/daemon/Cargo.toml's `Feature pins` block (or, for proc \
         macros and build scripts, in components/artifacts/Cargo.toml):\n{}",
        again.join(" ")
    );
}
