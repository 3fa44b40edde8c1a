//! The nested component build, shared by the build scripts of
//! `compute-bridge-components` (the backends shipped in the binary) and
//! `compute-bridge-test-components` (the components only tests load), so
//! neither carries a copy and each builds only its own list.
//!
//! Both build into one target dir, `target/components` (cargo holds a lock
//! on the outer one while build scripts run); the two nested cargos take
//! turns on its lock. Invariant: only packages that build for
//! `wasm32-wasip2` are ever passed here; the native-only crates under
//! `components/` (the API fakes, this crate) never are.

#![warn(missing_docs)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The components' target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile they are built with (small, stripped; the root
/// `Cargo.toml`).
pub const PROFILE: &str = "component";

/// The workspace root: the nearest ancestor of the calling build script's
/// package with a `Cargo.lock`.
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .expect("a workspace with a Cargo.lock above the package")
        .to_path_buf()
}

/// `target/components` (under `CARGO_TARGET_DIR` when set).
pub fn target_dir(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("components")
}

/// Where the nested build writes `package`'s component.
pub fn wasm_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Build `packages` for [`TARGET`] with a nested cargo into
/// [`target_dir`], and tell cargo to rerun the calling build script when
/// the WIT, any component or the lock changes. Panics, saying how to
/// reproduce, if the build fails. Returns each package's `.wasm`, in order.
pub fn build(packages: &[&str]) -> Vec<PathBuf> {
    let workspace = workspace();
    for watched in ["wit", "components", "Cargo.lock", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target_dir = target_dir(&workspace);

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
    for package in packages {
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
    let status = cmd.status().expect("running cargo to build the components");
    if !status.success() {
        panic!(
            "building the components {packages:?} for {TARGET} failed (see the errors above); \
             reproduce with: cargo build --target {TARGET} --profile {PROFILE} -p <component>"
        );
    }
    packages
        .iter()
        .map(|p| {
            let file = wasm_path(&target_dir, p);
            assert!(file.exists(), "expected {} after the build", file.display());
            file
        })
        .collect()
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
