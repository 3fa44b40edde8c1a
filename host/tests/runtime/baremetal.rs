//! The bare-metal backend through the real host against a real OpenSSH
//! server: per-grant accounts a requester logs in to, measured usage,
//! cleanup, and the failures an operator meets (full host, host down,
//! swapped host key).
//!
//! These tests create Unix accounts (`cb-*`) on this machine, so they run
//! as root, as CI does; a guard removes what a failed test leaves behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, BackendError, Instance, InstanceState, Workload};
use compute_bridge_sandbox::ComponentBackend;
use compute_bridge_testkit::require_executable;
use compute_bridge_testkit::sshd::Sshd;

use crate::support::*;

/// A workload keypair, as the host's provider loop will generate it.
pub(crate) struct WorkloadKey {
    dir: tempfile::TempDir,
    private: PathBuf,
    public: String,
}

pub(crate) fn workload_key() -> WorkloadKey {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("workload");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "requester", "-f"])
        .arg(&private)
        .status()
        .expect("running ssh-keygen (install openssh-client)")
        .success();
    assert!(ok, "ssh-keygen failed");
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    WorkloadKey {
        dir,
        private,
        public: public.trim().to_string(),
    }
}

/// A state directory on the "host" (this machine) the grant accounts can
/// traverse, like /var/lib/compute-bridge.
pub(crate) fn host_state_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}

/// A boot config with one bare-metal backend whose one host is `sshd`.
pub(crate) fn setup(
    state: &Path,
    host_state: &Path,
    sshd: &Sshd,
    cpu: u32,
    limits: &str,
) -> compute_bridge_daemon::config::BootConfig {
    setup_with(
        state,
        host_state,
        sshd,
        cpu,
        limits,
        &sshd.host_toml("rack"),
    )
}

/// Like [`setup`], reaching the host through `ssh_section` (labelled
/// `rack`); requesters still log in through `sshd`.
fn setup_with(
    state: &Path,
    host_state: &Path,
    sshd: &Sshd,
    cpu: u32,
    limits: &str,
    ssh_section: &str,
) -> compute_bridge_daemon::config::BootConfig {
    config(
        state,
        &format!(
            "[[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\n{ssh_section}\n\
             [backends.config]\nstate_dir = {:?}\n\n\
             [[backends.config.hosts]]\nlabel = \"rack\"\nregion = \"test-1\"\n\
             cpu_millicores = {cpu}\nram_mib = 1024\nlimits = {limits:?}\n\
             public_host = \"127.0.0.1\"\npublic_port = {}\npublic_host_key = {:?}\n",
            host_state.display().to_string(),
            sshd.port,
            sshd.host_key,
        ),
    )
}

pub(crate) fn assert_root() {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    assert_eq!(
        String::from_utf8_lossy(&uid).trim(),
        "0",
        "the bare-metal tests create Unix accounts and must run as root (as CI does)"
    );
}

/// Removes accounts a test created, with their processes and cgroups, if
/// the test did not get to terminate them.
pub(crate) struct Accounts(pub(crate) Vec<String>);

impl Accounts {
    pub(crate) fn track(&mut self, user: &str) {
        assert!(user.starts_with("cb-"), "unexpected workload user {user}");
        self.0.push(user.to_string());
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.0 {
            let Some(uid) = uid_of(user) else { continue };
            for pid in pids_of(uid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            // userdel fails while another process holds the account files'
            // locks (a killed useradd holds them until it is reaped).
            for _ in 0..20 {
                let _ = Command::new("userdel").args(["-f", user]).status();
                if uid_of(user).is_none() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            for h in ["cpu", "cpuacct", "memory", "pids"] {
                let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{h}/compute-bridge/{user}"));
            }
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/compute-bridge/{user}"));
        }
    }
}

pub(crate) fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .flatten()
}

/// Live (non-zombie) processes whose real uid is `uid`.
pub(crate) fn pids_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let real_uid = field("Uid:")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        if real_uid == uid.to_string() && !field("State:").starts_with('Z') {
            pids.push(pid);
        }
    }
    pids
}

/// Run `command` over SSH as the instance's user with the workload's key,
/// checking the host key the instance reported.
pub(crate) fn ssh(instance: &Instance, key: &WorkloadKey, command: &str) -> (i32, String, String) {
    let ssh = require_executable("/usr/bin/ssh", "OpenSSH client (openssh-client)");
    let known = key.dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[{}]:{} {}\n",
            instance.public_host, instance.ssh_port, instance.host_key
        ),
    )
    .unwrap();
    let out = Command::new(ssh)
        .arg("-i")
        .arg(&key.private)
        .arg("-p")
        .arg(instance.ssh_port.to_string())
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .arg(format!("{}@{}", instance.user, instance.public_host))
        .arg(command)
        .output()
        .expect("running ssh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn workload(key: &WorkloadKey) -> Workload {
    Workload {
        ssh_user: "ignored".into(),
        ssh_public_key: key.public.clone(),
    }
}

fn limits_of(instance: &Instance) -> String {
    let h: serde_json::Value = serde_json::from_str(&instance.handle).unwrap();
    h["limits"].as_str().unwrap_or_default().to_string()
}

/// The whole life of a grant, under the limit mechanism `limits` chose.
async fn lifecycle(limits: &str) -> String {
    assert_root();
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(state.path(), host_state.path(), &sshd, 2000, limits);
    let (_rt, backends) = load(&cfg);
    let b: &ComponentBackend = &backends[0];
    let key = workload_key();
    let mut accounts = Accounts(Vec::new());

    let caps = b.capabilities().await.unwrap();
    assert_eq!(caps.regions, ["test-1"]);
    assert_eq!(caps.max_cpu_millicores, 2000);

    let mut g = grant(&format!("life-{limits}-{}", std::process::id()));
    g.cpu_millicores = 1000;
    assert!(b.can_satisfy(&g).await);
    let provisioned = std::time::Instant::now();
    let inst = b.provision(&g, &workload(&key)).await.unwrap();
    accounts.track(&inst.user);
    assert_eq!(
        (
            inst.region.as_str(),
            inst.public_host.as_str(),
            inst.ssh_port
        ),
        ("test-1", "127.0.0.1", sshd.port)
    );
    assert_eq!(
        inst.host_key,
        sshd.host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mechanism = limits_of(&inst);
    assert!(
        ["systemd", "cgroup2", "cgroup1", "prlimit"].contains(&mechanism.as_str()),
        "{mechanism}"
    );
    assert_eq!(b.status(&inst).await.unwrap(), InstanceState::Running);
    let uid = uid_of(&inst.user).expect("the grant's account exists");

    // The requester logs in with the workload key and runs commands.
    let (code, out, err) = ssh(
        &inst,
        &key,
        "id -un; echo $HOME; touch work-file && echo wrote",
    );
    assert_eq!(code, 0, "login failed: {err}\nsshd log:\n{}", sshd.log());
    eprintln!(
        "provision to SSH login (process, limits {limits} -> {mechanism}): {:?}",
        provisioned.elapsed()
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], inst.user);
    assert!(lines[1].ends_with("/work"), "{out}");
    assert_eq!(lines[2], "wrote");
    // Each login runs inside the grant's limits.
    let (_, out, _) = ssh(&inst, &key, "ulimit -v; cat /proc/self/cgroup");
    match mechanism.as_str() {
        // 256 MiB of address space, in KiB.
        "prlimit" => assert_eq!(out.lines().next(), Some("262144"), "{out}"),
        "cgroup1" | "cgroup2" => assert!(
            out.contains(&format!("/compute-bridge/{}", inst.user)),
            "login outside the grant's cgroup: {out}"
        ),
        _ => {}
    }
    // The forced command cannot be swapped: the key file is root's.
    let (code, _, _) = ssh(&inst, &key, "echo x >> ~/../.ssh/authorized_keys");
    assert_ne!(code, 0, "the requester rewrote its own authorized_keys");

    // A busy workload holding ~20 MB shows up as CPU and memory.
    let (code, _, err) = ssh(
        &inst,
        &key,
        "nohup sh -c 'x=$(head -c 20000000 /dev/zero | tr \"\\\\0\" a); while :; do :; done' \
         >/dev/null 2>&1 & echo started",
    );
    assert_eq!(code, 0, "{err}");
    let busy = wait_for_async_usage(b, &inst).await;
    assert!(
        !pids_of(uid).is_empty(),
        "the busy loop runs as the account"
    );

    b.terminate(&inst).await.unwrap();
    assert_eq!(uid_of(&inst.user), None, "the account is gone");
    assert!(
        pids_of(uid).is_empty(),
        "processes left: {:?}",
        pids_of(uid)
    );
    assert_ended_for_good(b, &inst, &key, host_state.path(), busy).await;
    mechanism
}

/// After a grant's terminate: it is gone, its key no longer logs in,
/// nothing of it is left in the host's state dir, a second terminate
/// succeeds, and its final usage stays readable (at least `busy`).
pub(crate) async fn assert_ended_for_good(
    b: &ComponentBackend,
    inst: &Instance,
    key: &WorkloadKey,
    host_state: &Path,
    busy: compute_bridge_contract::backend::Usage,
) {
    assert_eq!(b.status(inst).await.unwrap(), InstanceState::Gone);
    let (code, _, _) = ssh(inst, key, "true");
    assert_ne!(code, 0, "the workload key still logs in");
    assert!(
        std::fs::read_dir(host_state.join("grants"))
            .unwrap()
            .next()
            .is_none(),
        "grant state left on the host"
    );
    b.terminate(inst).await.unwrap();
    let last = b.usage(inst).await.unwrap();
    assert!(
        last.cpu_core_seconds >= busy.cpu_core_seconds,
        "{last:?} < {busy:?}"
    );
}

/// Poll `usage` until it shows CPU and memory (the busy loop needs a
/// moment to get a core on a loaded machine, memory a second sample).
async fn wait_for_async_usage(
    b: &ComponentBackend,
    inst: &Instance,
) -> compute_bridge_contract::backend::Usage {
    let start = std::time::Instant::now();
    loop {
        let u = b.usage(inst).await.unwrap();
        if u.cpu_core_seconds >= 1 && u.ram_mib_seconds >= 20 {
            return u;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no CPU or memory measured for a busy workload within 60 s: {u:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_grant_lives_logs_in_uses_cpu_and_leaves_nothing_behind() {
    let mechanism = lifecycle("auto").await;
    eprintln!("limit mechanism chosen on this machine: {mechanism}");
}

#[tokio::test]
async fn the_prlimit_fallback_limits_logins_and_samples_their_cpu() {
    assert_eq!(lifecycle("prlimit").await, "prlimit");
}

#[tokio::test]
async fn a_full_host_says_no_capacity_until_a_grant_ends() {
    assert_root();
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(state.path(), host_state.path(), &sshd, 1000, "auto");
    let (_rt, backends) = load(&cfg);
    let b = &backends[0];
    let key = workload_key();
    let mut accounts = Accounts(Vec::new());
    let pid = std::process::id();

    let mut first = grant(&format!("fill-a-{pid}"));
    first.cpu_millicores = 600;
    let a = b.provision(&first, &workload(&key)).await.unwrap();
    accounts.track(&a.user);
    // Provisioning the same request again finds the same grant.
    assert_eq!(b.provision(&first, &workload(&key)).await.unwrap(), a);

    let mut second = grant(&format!("fill-b-{pid}"));
    second.cpu_millicores = 600;
    match b.provision(&second, &workload(&key)).await {
        Err(BackendError::NoCapacity(m)) => assert!(m.contains("600 of 1000"), "{m}"),
        other => panic!("expected no-capacity, got {other:?}"),
    }
    // Nothing of the refused grant was created.
    assert_eq!(
        std::fs::read_dir(host_state.path().join("grants"))
            .unwrap()
            .count(),
        1
    );

    b.terminate(&a).await.unwrap();
    let c = b.provision(&second, &workload(&key)).await.unwrap();
    accounts.track(&c.user);
    let listed = b.list_instances().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance_id, c.instance_id);
    b.terminate(&c).await.unwrap();
    assert!(b.list_instances().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stopped_sshd_is_transient() {
    assert_root();
    let mut sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(state.path(), host_state.path(), &sshd, 1000, "auto");
    sshd.stop();
    let (_rt, backends) = load(&cfg);
    let key = workload_key();
    match backends[0]
        .provision(
            &grant(&format!("down-{}", std::process::id())),
            &workload(&key),
        )
        .await
    {
        Err(BackendError::Transient(m)) => assert!(m.contains("rack"), "{m}"),
        other => panic!("expected transient, got {other:?}"),
    }
    // Capabilities come from the config: a host that is down does not
    // take the backend off the routing table.
    assert!(backends[0].capabilities().await.is_ok());
}

#[tokio::test]
async fn a_changed_host_key_is_refused_as_a_config_error() {
    assert_root();
    let mut sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(state.path(), host_state.path(), &sshd, 1000, "auto");
    let (_rt, backends) = load(&cfg);
    sshd.rotate_host_key();
    let key = workload_key();
    let g = grant(&format!("swapped-{}", std::process::id()));
    match backends[0].provision(&g, &workload(&key)).await {
        Err(BackendError::Config(m)) => {
            assert!(m.contains("[backends.ssh.hosts.rack] host_key"), "{m}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    // Nothing ran on the impostor.
    assert!(!host_state.path().join("grants").exists());
}

#[tokio::test]
async fn the_local_transport_serves_a_grant_on_this_machine() {
    // The embedded default reaches its host this way: commands run here
    // through /bin/sh, and requesters log in through the machine's sshd.
    assert_root();
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup_with(
        state.path(),
        host_state.path(),
        &sshd,
        1000,
        "auto",
        "[backends.ssh.hosts.rack]\ntransport = \"local\"\n",
    );
    let (_rt, backends) = load(&cfg);
    let b = &backends[0];
    let key = workload_key();
    let mut accounts = Accounts(Vec::new());
    let inst = b
        .provision(
            &grant(&format!("local-{}", std::process::id())),
            &workload(&key),
        )
        .await
        .unwrap();
    accounts.track(&inst.user);
    let (code, out, err) = ssh(&inst, &key, "id -un");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), inst.user);
    b.terminate(&inst).await.unwrap();
    assert_eq!(uid_of(&inst.user), None);
}

#[tokio::test]
async fn the_baremetal_component_passes_the_conformance_run_against_sshd() {
    assert_root();
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(state.path(), host_state.path(), &sshd, 2000, "prlimit");
    let (_rt, backends) = load(&cfg);
    assert_conforms(backends[0].as_ref()).await;
}
