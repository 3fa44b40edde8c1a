//! The bare-metal `podman` runtime for real: through the real bare-metal
//! component over a real sshd, a grant's image (a busybox rootfs imported
//! without a registry, pinned by digest) runs as a container under runc
//! with the grant's limits, which are read back from the container's
//! cgroup; the requester logs in with the workload key and lands in the
//! container; its CPU is metered; terminate leaves no container, no
//! container layer, no cgroup, no account and no sudoers rule.
//!
//! Runs as root (as CI does), like the other bare-metal tests.

use std::process::Command;
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, InstanceState};
use compute_bridge_testkit::podman;
use compute_bridge_testkit::sshd::Sshd;

use crate::baremetal::{
    Accounts, assert_ended_for_good, assert_root, host_state_dir, ssh, uid_of, workload,
    workload_key,
};
use crate::support::*;

/// The container's cgroup directory in the v1 hierarchy (or v2 file
/// system) that holds `file`, from its main process's /proc entry.
fn container_cgroup_file(id: &str, file: &str) -> String {
    let out = podman::podman()
        .args(["inspect", "--format", "{{.State.Pid}}", id])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let dirs = if controllers.is_empty() {
            vec![
                "/sys/fs/cgroup".to_string(),
                "/sys/fs/cgroup/unified".to_string(),
            ]
        } else {
            controllers
                .split(',')
                .map(|c| format!("/sys/fs/cgroup/{c}"))
                .collect()
        };
        for d in dirs {
            let p = format!("{d}{path}/{file}");
            if let Ok(v) = std::fs::read_to_string(&p) {
                return v.trim().to_string();
            }
        }
    }
    panic!("no {file} in the cgroups of container {id} (pid {pid}):\n{cgroups}")
}

/// Removes what a failed test leaves of grant `.0` that [`Accounts`] does
/// not: its container, sudoers rule and cgroups.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = podman::podman()
            .args(["rm", "--force", "--time", "0", &self.0])
            .output();
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/{}", self.0));
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for d in /sys/fs/cgroup/*/compute-bridge/{0} /sys/fs/cgroup/compute-bridge/{0}; do \
                 [ -d \"$d\" ] && find \"$d\" -depth -type d -exec rmdir {{}} +; done; true",
                self.0
            ))
            .status();
    }
}

#[tokio::test]
async fn a_podman_grant_runs_its_image_with_its_limits_and_leaves_nothing() {
    assert_root();
    let image = podman::import_busybox("cb-test-grant");
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = config(
        state.path(),
        &format!(
            "[[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\n{}\n\
             [backends.config]\nstate_dir = {:?}\n\n\
             [[backends.config.hosts]]\nlabel = \"rack\"\nregion = \"test-1\"\n\
             cpu_millicores = 2000\nram_mib = 1024\nruntime = \"podman\"\nmax_processes = 64\n\
             public_host = \"127.0.0.1\"\npublic_port = {}\npublic_host_key = {:?}\n",
            sshd.host_toml("rack"),
            host_state.path().display().to_string(),
            sshd.port,
            sshd.host_key,
        ),
    );
    let (_rt, backends) = load(&cfg);
    let b = &backends[0];
    let key = workload_key();
    let mut accounts = Accounts(Vec::new());

    let mut g = grant(&format!("podman-{}", std::process::id()));
    g.cpu_millicores = 500;
    g.ram_mib = 64;
    g.image = image.pinned();
    let provisioned = std::time::Instant::now();
    let inst = b.provision(&g, &workload(&key)).await.unwrap();
    accounts.track(&inst.user);
    let id = inst.user.clone();
    let _leftovers = Leftovers(id.clone());
    // The container starts in the background; `starting` until it runs.
    let start = std::time::Instant::now();
    loop {
        match b.status(&inst).await.unwrap() {
            InstanceState::Running => break,
            InstanceState::Starting => {}
            other => panic!(
                "the container did not start ({other:?}): {}",
                std::fs::read_to_string(
                    host_state
                        .path()
                        .join("grants")
                        .join(&id)
                        .join("launch.log")
                )
                .unwrap_or_default()
            ),
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(podman::containers_of(&id).len(), 1);

    // The limits, read back from the container's own cgroup.
    assert_eq!(
        container_cgroup_file(&id, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(container_cgroup_file(&id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(container_cgroup_file(&id, "cpu.cfs_period_us"), "100000");
    assert_eq!(container_cgroup_file(&id, "pids.max"), "64");

    // The requester lands in the container: its hostname, its busybox.
    let (code, out, err) = ssh(&inst, &key, "hostname; readlink /bin/sh");
    assert_eq!(code, 0, "login failed: {err}\nsshd log:\n{}", sshd.log());
    eprintln!(
        "provision to SSH login (podman): {:?}",
        provisioned.elapsed()
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), [id.as_str(), "busybox"]);
    // More memory than the grant's is killed (128 MiB in one buffer).
    let (code, _, err) = ssh(&inst, &key, "dd if=/dev/zero of=/dev/null bs=128M count=1");
    assert_eq!(code, 137, "a 128 MiB allocation in a 64 MiB grant: {err}");

    // A 10 s busy loop in the container (through the login, as a
    // requester runs one) is metered from the container's cgroup: at the
    // grant's half core that is about 5 core-seconds; at least 2 count.
    let (code, _, err) = ssh(&inst, &key, "timeout 10 sh -c 'while :; do :; done'; true");
    assert_eq!(code, 0, "{err}");
    let busy = b.usage(&inst).await.unwrap();
    assert!(busy.cpu_core_seconds >= 2, "{busy:?}");
    assert!(busy.ram_mib_seconds > 0, "{busy:?}");

    let stored = podman::stored_containers_of(&id);
    assert_eq!(stored.len(), 1, "{stored:?}");
    b.terminate(&inst).await.unwrap();
    assert_eq!(podman::containers_of(&id), Vec::<String>::new());
    assert_eq!(
        podman::stored_containers_of(&id),
        Vec::<String>::new(),
        "the container's layer is left in podman's storage"
    );
    assert_eq!(
        compute_bridge_testkit::grant_cgroups_left(&id),
        Vec::<String>::new(),
        "cgroups left"
    );
    assert_eq!(uid_of(&id), None, "the account is gone");
    assert!(!std::path::Path::new(&format!("/etc/sudoers.d/{id}")).exists());
    assert_ended_for_good(b, &inst, &key, host_state.path(), busy).await;
    // The operator's image is shared by grants and stays.
    let kept = Command::new("podman")
        .args(["image", "exists", &image.tag])
        .status()
        .unwrap();
    assert!(kept.success(), "the operator's imported image was removed");
}
