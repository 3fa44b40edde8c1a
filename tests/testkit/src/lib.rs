//! Test peers and helpers shared by the suite.
//!
//! Every peer here is real and runs on 127.0.0.1 on a port it picks: an
//! OpenSSH server ([`sshd`]), moto for EC2 ([`moto`]), the GCP, Azure and
//! Hetzner API fakes ([`gcp_fake`], [`azure_fake`], [`hetzner_fake`], served
//! by [`fake_server`]; they live beside their backends,
//! `components/{gcp,azure,hetzner}/fake` and `components/cloud/fake-server`,
//! and are re-exported here), Python backends built with componentize-py
//! ([`python`]), a
//! scripted HTTP server for the http capability ([`http_server`]), the toy
//! cloud the component template speaks ([`toy_cloud`]), a coalition
//! network's relay and bootstrap node ([`coalition`]), headless Chromium
//! ([`chromium`]), a bare HTTP client ([`http`]), the bridge binary itself
//! ([`process`]), the sockets a process listens on ([`sockets`]), and a
//! fault-injecting proxy to put in front of any of
//! them ([`fault_proxy`]), a registry-free container image for the
//! podman runtime ([`podman`]), and the `vm` runtime's guest ([`guest`]). A peer that is not installed fails the test with
//! the command that installs it; nothing is skipped.

pub use cb_azure_fake as azure_fake;
pub use cb_fake_server as fake_server;
pub use cb_gcp_fake as gcp_fake;
pub use cb_hetzner_fake as hetzner_fake;

pub mod chromium;
pub mod coalition;
pub mod fault_proxy;
pub mod guest;
pub mod http;
pub mod http_server;
pub mod moto;
pub mod podman;
pub mod process;
pub mod python;
pub mod sockets;
pub mod sshd;
pub mod toy_cloud;

/// Every component's file: the shipped backends
/// (`compute-bridge-components`) and the test components
/// (`compute-bridge-test-components`, which the binary never builds).
pub mod components {
    pub use compute_bridge_components::*;
    pub use compute_bridge_test_components::*;
}

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.parent())
        .expect("tests/testkit lives two levels below the root")
        .to_path_buf()
}

/// The component at `wasm` with a custom section naming `tag` appended, in
/// `dir`: the same code under another SHA-256, as a rebuilt component would
/// be (the live-swap tests swap to it). Its path and bytes.
pub fn rebuilt_component(wasm: &str, dir: &std::path::Path, tag: &str) -> (PathBuf, Vec<u8>) {
    let mut bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("reading {wasm}: {e}"));
    let name = b"compute-bridge-test-rebuild";
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    assert!(body.len() < 128, "one LEB128 byte of size");
    bytes.push(0); // a custom section
    bytes.push(body.len() as u8);
    bytes.extend_from_slice(&body);
    let path = dir.join(format!("rebuilt-{tag}.wasm"));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// A copy of the fake component, in `dir`, with its test-only flaky switch
/// on (`cb_fake::FLAKY_MARKER`): it loads and answers like the fake, so it
/// passes a live swap's check, and its `status` fails from 2 s after its
/// first `status` call, so it fails the probation's polls and the bridge
/// rolls it back. Its path.
pub fn flaky_fake(dir: &std::path::Path) -> PathBuf {
    let mut bytes = std::fs::read(components::FAKE)
        .unwrap_or_else(|e| panic!("reading {}: {e}", components::FAKE));
    let marker = cb_fake::FLAKY_MARKER;
    let at: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(k, _)| k + marker.len())
        .collect();
    assert_eq!(
        at.len(),
        1,
        "the fake component carries its flaky switch exactly once"
    );
    assert_eq!(bytes[at[0]], b'0', "the fake is built with the switch off");
    bytes[at[0]] = b'1';
    let path = dir.join("flaky-fake.wasm");
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
/// For waiting on peers to come up, not for asserting speed.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Panic with the install hint when a peer's executable is missing.
pub fn require_executable(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if !p.exists() {
        panic!(
            "{path} is missing: this test needs the real {package}. \
             Run scripts/install-test-peers.sh (CI does) and try again."
        );
    }
    p
}

/// The cgroup directories the bare-metal host library made for grant `id`
/// that still exist (`/sys/fs/cgroup/<hierarchy>/compute-bridge/<id>`):
/// what a torn-down grant must not leave.
pub fn grant_cgroups_left(id: &str) -> Vec<String> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|dirs| {
            dirs.flatten()
                .map(|h| h.path().join("compute-bridge").join(id))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}
