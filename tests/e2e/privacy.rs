//! The privacy contract on the real path: a real `compute-bridge` on a
//! bare-metal backend (this machine, `local` transport: a real Unix account
//! per grant) and its own local coalition, a real `coalition-agent
//! request` with a canary image and region, and then every surface the
//! operator has, searched for the requester.
//!
//! The agent writes what the provider could learn of it to a file of its
//! own (`--debug-identity-file`): its peer id and the public half of its
//! reply key, with the request id. The workload's private key is the one
//! the agent opened from the sealed bundle. None of these, nor the image,
//! may appear in the bridge's stdout or stderr, in any file under its
//! state dir (every file, read as bytes, while it runs and after it
//! stops), or in `/dashboard`, `/snapshot.json` or `/metrics`; the request
//! id may appear only in the journal, which needs it (`journal.rs` says
//! why). The region the grant asked for is not searched: it is where the
//! grant was placed, which the operator sees by design.
//!
//! Each search runs once at the default log level (no `COMPUTE_BRIDGE_LOG`
//! or `RUST_LOG`) and once at `COMPUTE_BRIDGE_LOG=debug`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use compute_bridge_testkit::process::Running;
use compute_bridge_testkit::{free_port, http};

use crate::bridge_bin;
use crate::support::{agent_bin, assert_root, network_name};

const MIN: Duration = Duration::from_secs(60);

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A bare-metal bridge on this machine with its own local coalition,
/// offering `region`.
fn config(dir: &Path, host_state: &Path, region: &str, port: u16) -> PathBuf {
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "[bridge]\nstate_dir = \"state\"\nconcurrency_cap = 2\ncapacity_refresh_sec = 2\n\n\
             [coalition]\nnetwork = {network:?}\nlocal = true\n\n\
             [dashboard]\nport = {port}\n\n\
             [[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\n\
             [backends.ssh.hosts.local]\ntransport = \"local\"\n\n\
             [backends.config]\nstate_dir = {state:?}\nsample_interval_sec = 1\n\n\
             [[backends.config.hosts]]\nlabel = \"local\"\nregion = {region:?}\n\
             cpu_millicores = 1000\nram_mib = 1024\nlimits = \"prlimit\"\n\
             public_host = \"127.0.0.1\"\npublic_port = 22\n",
            network = network_name("privacy"),
            state = host_state.display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// Every file under `dir`, recursively, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// What the requester is, as the provider could know it, in every form it
/// could be written in.
struct Canaries {
    /// (what, bytes) that must be nowhere.
    everywhere: Vec<(String, Vec<u8>)>,
    /// The request id: nowhere but the journal.
    request_id: String,
}

impl Canaries {
    fn read(identity_file: &Path, key_file: &Path, image: &str) -> Self {
        let identity: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(identity_file).unwrap()).unwrap();
        let peer: mosaik::PeerId = identity["peer_id"].as_str().unwrap().parse().unwrap();
        let reply = hex::decode(identity["reply_key"].as_str().unwrap()).unwrap();
        assert_eq!(reply.len(), 32);
        let request_id = identity["request_id"].as_str().unwrap().to_string();
        let peer_hex = peer.to_string();
        let mut everywhere = vec![
            ("peer id".into(), peer_hex.clone().into_bytes()),
            // mosaik's and iroh's short form: the first 5 bytes in hex.
            ("peer id (short)".into(), peer_hex.as_bytes()[..10].to_vec()),
            ("peer id (z-base-32)".into(), peer.to_z32().into_bytes()),
            ("peer id (raw)".into(), peer.as_bytes().to_vec()),
            ("reply key".into(), hex::encode(&reply).into_bytes()),
            (
                "reply key (base64)".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&reply)
                    .into_bytes(),
            ),
            ("reply key (raw)".into(), reply),
            ("image".into(), image.as_bytes().to_vec()),
        ];
        let (name, digest) = image.split_once("@sha256:").unwrap();
        everywhere.push(("image name".into(), name.as_bytes().to_vec()));
        everywhere.push(("image digest".into(), digest.as_bytes().to_vec()));
        let key = std::fs::read_to_string(key_file).unwrap();
        assert!(
            key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "{key}"
        );
        for (i, line) in key.lines().filter(|l| !l.starts_with("-----")).enumerate() {
            everywhere.push((format!("workload key line {i}"), line.as_bytes().to_vec()));
        }
        Self {
            everywhere,
            request_id,
        }
    }

    /// Every canary found in `surface`, as `what in surface`.
    fn found(&self, surface: &str, bytes: &[u8], request_id_allowed: bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .everywhere
            .iter()
            .filter(|(_, needle)| contains(bytes, needle))
            .map(|(what, _)| format!("{what} in {surface}"))
            .collect();
        if !request_id_allowed && contains(bytes, self.request_id.as_bytes()) {
            out.push(format!("request id in {surface}"));
        }
        out
    }
}

fn canary_run(log_level: Option<&str>) {
    assert_root("this test makes a Unix account through the bare-metal backend's local transport");
    let dir = tempfile::tempdir().unwrap();
    let host_state = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(host_state.path(), std::fs::Permissions::from_mode(0o711))
            .unwrap();
    }
    let image = format!(
        "canary-{}.example/model-{}@sha256:{}",
        random_hex(4),
        random_hex(4),
        random_hex(32)
    );
    let region = format!("canary-region-{}", random_hex(4));
    let port = free_port();
    let cfg = config(dir.path(), host_state.path(), &region, port);
    let cfg_arg = cfg.display().to_string();
    let state = dir.path().join("state");

    let env: Vec<(&str, &str)> = log_level
        .map(|l| vec![("COMPUTE_BRIDGE_LOG", l)])
        .unwrap_or_default();
    let unset: &[&str] = match log_level {
        Some(_) => &["RUST_LOG"],
        None => &["COMPUTE_BRIDGE_LOG", "RUST_LOG"],
    };
    let mut bridge = Running::spawn_with(
        None,
        &bridge_bin(),
        &["run", "--config", &cfg_arg],
        &env,
        unset,
    );
    bridge.wait_for_log("provider card published", Duration::from_secs(180));

    let identity_file = dir.path().join("identity.json");
    let key_dir = dir.path().join("access");
    let mut agent = Running::spawn(
        &agent_bin(),
        &[
            "request",
            "--config",
            &cfg_arg,
            "--cpu",
            "100",
            "--ram",
            "64",
            "--duration",
            "6s",
            "--image",
            &image,
            "--region",
            &region,
            "--key-dir",
            key_dir.to_str().unwrap(),
            "--debug-identity-file",
            identity_file.to_str().unwrap(),
        ],
        &[("COALITION_AGENT_LOG", "warn,iroh=error")],
    );
    assert_eq!(
        agent.wait(Duration::from_secs(180)),
        Some(0),
        "{}",
        agent.log()
    );
    let out = agent.log();
    assert!(out.contains("access opened with the reply key"), "{out}");
    assert!(out.contains("usage report: "), "{out}");
    bridge.wait_for_log("usage report sent", MIN);
    let canaries = Canaries::read(&identity_file, &key_dir.join("id_ed25519"), &image);
    // The agent printed its request id: the same one it wrote.
    assert!(out.contains(&canaries.request_id), "{out}");

    let mut found = Vec::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for path in ["/dashboard", "/snapshot.json", "/metrics"] {
        let r = http::get_local(addr, path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        found.extend(canaries.found(path, r.body.as_bytes(), false));
    }
    let snapshot: serde_json::Value =
        serde_json::from_str(&http::get_local(addr, "/snapshot.json").body).unwrap();
    assert_eq!(snapshot["lifetime"]["grants_completed"], 1, "{snapshot}");
    let mut journal_has_request_id = false;
    let mut search_state = |found: &mut Vec<String>, when: &str| {
        let all = files(&state);
        assert!(
            all.iter().any(|(p, _)| p.ends_with("journal.redb")),
            "no journal in {}",
            state.display()
        );
        for (path, bytes) in all {
            let journal = path.ends_with("journal.redb");
            journal_has_request_id |= journal && contains(&bytes, canaries.request_id.as_bytes());
            let surface = format!("{} ({when})", path.display());
            found.extend(canaries.found(&surface, &bytes, journal));
        }
    };
    search_state(&mut found, "while running");

    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    search_state(&mut found, "after stopping");
    let log = bridge.log();
    found.extend(canaries.found("the bridge's stdout and stderr", log.as_bytes(), false));

    assert!(
        found.is_empty(),
        "the requester is visible to the operator:\n  {}\n--- bridge log ---\n{log}",
        found.join("\n  ")
    );
    // The searches can find what they look for: the journal holds the
    // request id (it needs it), and the log tells this grant apart by its
    // local number instead.
    assert!(
        journal_has_request_id,
        "the request id is not in the journal"
    );
    assert!(log.contains("grant=#1"), "{log}");
    assert!(log.contains("subscriber joined"), "{log}");
    if log_level == Some("debug") {
        assert!(log.contains("DEBUG"), "not at debug: {log}");
    }
}

#[test]
fn no_requester_identity_reaches_the_operator_at_the_default_log_level() {
    canary_run(None);
}

#[test]
fn no_requester_identity_reaches_the_operator_at_debug() {
    canary_run(Some("debug"));
}
