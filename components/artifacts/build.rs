//! Builds every backend component for `wasm32-wasip2` with a nested cargo
//! invocation, so `cargo build` / `cargo test` from a clean clone produce the
//! `.wasm` files the host embeds and the tests load.
//!
//! The nested build uses its own target dir (`target/components`): cargo
//! holds a lock on the outer one while build scripts run.
//!
//! It also makes, from WAT, the test-only components that no guest SDK can
//! express ([`crafted`]): `CRAFTED_MANY_MEMORIES`,
//! `CRAFTED_MEMORY_AND_TABLE` and `CRAFTED_BUILT_FOR_0_1_0`, never shipped.

mod crafted;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, constant name, shipped in the binary?). Test components
/// (`components/testing/*`) are built for the tests, which load them by
/// path, and never embedded: a release binary cannot run them.
const COMPONENTS: &[(&str, &str, bool)] = &[
    ("cb-aws", "AWS", true),
    ("cb-baremetal", "BAREMETAL", true),
    ("cb-fake", "FAKE", false),
    ("cb-gcp", "GCP", true),
    ("cb-azure", "AZURE", true),
    ("cb-hostile", "HOSTILE", false),
    ("cb-hostile-imports", "HOSTILE_IMPORTS", false),
    ("cb-hostile-sandbox", "HOSTILE_SANDBOX", false),
];

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "component";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    for watched in ["wit", "components", "Cargo.lock", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("components");

    ensure_target_installed();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    for (package, _, _) in COMPONENTS {
        cmd.args(["-p", package]);
    }
    // Whatever the outer build set for itself (clippy's wrapper, rustflags
    // for the host target, cargo's internal variables) must not leak in.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let inherited = key.starts_with("CARGO_HOME")
            || key.starts_with("CARGO_NET")
            || key.starts_with("CARGO_HTTP")
            || key.starts_with("CARGO_REGISTR");
        if (key.starts_with("CARGO_") && !inherited)
            || key.starts_with("__CARGO")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTFLAGS")
            || key == "RUSTDOCFLAGS"
            || key == "CLIPPY_ARGS"
            || key == "CLIPPY_CONF_DIR"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .expect("running cargo to build the backend components");
    if !status.success() {
        panic!(
            "building the backend components for {TARGET} failed (see the errors above); \
             reproduce with: cargo build --target {TARGET} --profile {PROFILE} -p <component>"
        );
    }

    let out_dir = target_dir.join(TARGET).join(PROFILE);
    let mut code = String::new();
    for (package, konst, _) in COMPONENTS {
        let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.exists(), "expected {} after the build", file.display());
        writeln!(
            code,
            "/// `{package}` as built for {TARGET}.\npub const {konst}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
    }
    // The hand-made attackers (see crafted.rs), with the sizes the sandbox
    // tests attack a 16 MiB budget with.
    let crafted_dir = target_dir.join("crafted");
    std::fs::create_dir_all(&crafted_dir).unwrap();
    let wit = workspace.join("wit");
    for (konst, stem, bytes) in [
        (
            "CRAFTED_MANY_MEMORIES",
            "many_memories",
            // 13 more core modules, 15 MiB of memory each.
            crafted::many_memories(&wit, 13, 15),
        ),
        (
            "CRAFTED_MEMORY_AND_TABLE",
            "memory_and_table",
            // 64 KiB short of 16 MiB of memory, then 10,000 table elements.
            crafted::memory_and_table(&wit, 16, 10_000),
        ),
        (
            "CRAFTED_BUILT_FOR_0_1_0",
            "built_for_0_1_0",
            // A backend of the 0.1.0 world, which 0.2.0 hosts refuse.
            crafted::built_for(&wit, "0.1.0"),
        ),
    ] {
        let file = crafted_dir.join(format!("{stem}.wasm"));
        // A new file, not the old one rewritten in place: a target dir
        // made by hard-linking another's shares its inodes, and writing
        // through them would change the other tree's components too.
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, bytes).unwrap();
        writeln!(
            code,
            "/// Test-only hand-made component `{stem}` (see `components/artifacts/crafted.rs`).\n\
             pub const {konst}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
    }
    let shipped: Vec<String> = COMPONENTS
        .iter()
        .filter(|c| c.2)
        .map(|(package, _, _)| {
            let name = package.trim_start_matches("cb-");
            let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
            format!(
                "({name:?}, include_bytes!({:?}) as &[u8])",
                file.display().to_string()
            )
        })
        .collect();
    writeln!(
        code,
        "/// The backends shipped inside the `compute-bridge` binary, by name.\n\
         pub static BUILTIN: &[(&str, &[u8])] = &[{}];",
        shipped.join(", ")
    )
    .unwrap();
    let test_only: Vec<String> = COMPONENTS
        .iter()
        .filter(|c| !c.2)
        .map(|(package, _, _)| {
            let name = package.trim_start_matches("cb-");
            let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
            format!("({name:?}, {:?})", file.display().to_string())
        })
        .collect();
    writeln!(
        code,
        "/// Test components, by name, with the file this build wrote: not in\n\
         /// the binary; a config loads them by path.\n\
         pub static TEST_ONLY: &[(&str, &str)] = &[{}];",
        test_only.join(", ")
    )
    .unwrap();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("components.rs");
    std::fs::write(out, code).unwrap();
}

/// rust-toolchain.toml lists the target, but rustup only installs listed
/// targets with the toolchain itself; add it if an existing toolchain lacks it.
fn ensure_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let present = sysroot
        .map(|s| s.join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if present {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target (rustup target add {TARGET})");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; run it by hand"
        );
    }
}
