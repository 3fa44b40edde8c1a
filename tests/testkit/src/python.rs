//! Python backends built with componentize-py, for the tests that load
//! them: the Hetzner backend (`components/hetzner`, [`hetzner_component`])
//! and any project the tests scaffold ([`componentize`]).
//!
//! componentize-py comes from the venv `scripts/install-test-peers.sh`
//! creates (`target/test-peers/venv`), pinned there to the version the
//! sandbox's policy admits. A missing componentize-py fails the test with
//! the command that installs it; nothing is skipped.
//!
//! A build goes into the target dir under a name that carries a hash of
//! its inputs (the Python sources, the WIT, the componentize-py version),
//! so sources that change are rebuilt and unchanged ones never are; a file
//! lock makes parallel tests (and test binaries) build it once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::workspace_root;

/// The venv `scripts/install-test-peers.sh` creates.
const VENV: &str = "target/test-peers/venv";

/// The componentize-py executable, or a panic that says how to install it.
pub fn componentize_py() -> PathBuf {
    let exe = workspace_root().join(VENV).join("bin/componentize-py");
    if !exe.is_file() {
        panic!(
            "componentize-py is missing ({} does not exist): the Python backend tests build \
             their component with it. Run scripts/install-test-peers.sh (it installs the pinned \
             componentize-py into {VENV}) and try again.",
            exe.display()
        );
    }
    exe
}

/// `componentize-py --version`, e.g. `componentize-py 0.25.1`.
pub fn componentize_py_version() -> String {
    let out = Command::new(componentize_py())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running componentize-py --version: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Build the component of app module `app` in `src` against the `backend`
/// world of `wit` into `out`, with componentize-py. Panics with its output
/// when it fails.
pub fn componentize(wit: &Path, src: &Path, app: &str, out: &Path) {
    let output = Command::new(componentize_py())
        .arg("-d")
        .arg(wit)
        .args(["-w", "backend", "componentize", "-p"])
        .arg(src)
        .arg(app)
        .arg("-o")
        .arg(out)
        // Keep the sources free of __pycache__.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running componentize-py: {e}"));
    if !output.status.success() {
        panic!(
            "componentize-py could not build {} from {}:\n{}{}",
            out.display(),
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The cargo target dir the running test was built in.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    // <target>/<profile>/deps/<test binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Every file under `dir` whose name ends in one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n != "__pycache__" && n != "fake")
            {
                files(&p, exts, out);
            }
        } else if exts.iter().any(|x| p.extension().is_some_and(|e| e == *x)) {
            out.push(p);
        }
    }
    out.sort();
}

/// The Hetzner backend (`components/hetzner`, app module `app`), built
/// once per change of its sources; its path. Shared by every test of a
/// process (and across processes through the lock and the hashed name).
pub fn hetzner_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            build_cached(
                "hetzner",
                &root.join("wit"),
                &root.join("components/hetzner"),
                "app",
            )
        })
        .clone()
}

/// Build `src` (app module `app`) against the `backend` world of `wit`
/// into `<target>/python-components/<name>-<hash>.wasm` unless it is
/// there; its path.
pub fn build_cached(name: &str, wit: &Path, src: &Path, app: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(componentize_py_version().as_bytes());
    h.update(app.as_bytes());
    for (dir, ext) in [(src, "py"), (wit, "wit")] {
        let mut inputs = Vec::new();
        files(dir, &[ext], &mut inputs);
        for p in &inputs {
            h.update(
                p.strip_prefix(dir)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update([0]);
            h.update(std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())));
        }
    }
    let hash = hex::encode(&h.finalize()[..8]);
    let dir = target_dir().join("python-components");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let out = dir.join(format!("{name}-{hash}.wasm"));
    let lock_path = dir.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if !out.is_file() {
        let tmp = dir.join(format!("{name}-{hash}.wasm.tmp{}", std::process::id()));
        componentize(wit, src, app, &tmp);
        std::fs::rename(&tmp, &out)
            .unwrap_or_else(|e| panic!("renaming into {}: {e}", out.display()));
    }
    drop(lock);
    out
}
