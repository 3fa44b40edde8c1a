//! The floors of the house (`docs/architecture.md`): no crate reaches up.
//!
//! Reads the workspace with `cargo metadata --no-deps --offline` and checks
//! every workspace dependency (normal, build and dev) of every package
//! against the table below:
//! - a crate under `host/` may depend only on the workspace crates its row
//!   allows (`contract ← sandbox ← daemon`, `contract ← coalition ←
//!   {daemon, requester}`, all of them ← the binaries package); a crate
//!   under `host/` that has no row fails the test until it is given one;
//! - a crate under `components/` depends on nothing outside `components/`
//!   (the WIT is its only link to the host);
//! - the test kit and the fuzz targets may use anything.
//!
//! Keeps nothing; runs no build.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Each `host/` crate and the workspace crates it may depend on. Crates that
/// do not exist yet (the re-cut of issue 18 is under way) have rows already
/// so that the first commit creating one is held to its floor.
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
    // and the benchmarks. Until the facade in `host/src/lib.rs` goes it
    // still holds the daemon's code, so it may use every floor, the shipped
    // components, and (tests only) the test kit, the test components and
    // the cloud backends' cores (run natively beside their components in
    // the interleaved bench).
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

/// Packages free to use anything (test tooling).
const UNRESTRICTED: &[&str] = &["tests/", "fuzz/"];

fn workspace() -> Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every workspace package: name → (path of its directory relative to the
/// workspace root, names of the workspace packages it depends on).
fn packages(meta: &Value) -> BTreeMap<String, (String, Vec<String>)> {
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
            .map(|d| d["name"].as_str().unwrap().to_string())
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
            for d in deps {
                if !allowed.contains(&d.as_str()) {
                    wrong.push(format!(
                        "{name} depends on {d}, which is not below its floor"
                    ));
                }
            }
        } else if dir.starts_with("components/") {
            for d in deps {
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
