//! The bare-metal `vm` runtime for real, in one QEMU boot (TCG): through
//! the real bare-metal component (its commands reach this machine over a
//! real sshd, as on an operator's rack), a grant becomes a QEMU guest booted from the
//! suite's own guest (built from Debian packages, cached under `target/`);
//! the requester logs in to the guest's SSH on the forwarded port, as the
//! grant's user with the workload key, checking the per-grant host key the
//! instance reported; a busy loop in the guest is metered from QEMU's
//! cgroup; terminate leaves no QEMU, no grant directory (keys, sockets,
//! logs), no account and no listener on the port, and is idempotent.
//!
//! Runs as root (as CI does), like the other bare-metal tests.

use std::time::{Duration, Instant};

use compute_bridge_contract::backend::{Backend, InstanceState};
use compute_bridge_testkit::guest;
use compute_bridge_testkit::sshd::Sshd;

use crate::baremetal::{
    Accounts, assert_ended_for_good, assert_root, host_state_dir, ssh, uid_of, workload,
    workload_key,
};
use crate::support::*;

#[tokio::test]
async fn a_vm_grant_boots_a_guest_the_requester_logs_in_to_and_leaves_nothing() {
    assert_root();
    let g = guest::build();
    let sshd = Sshd::start();
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = config(
        state.path(),
        &format!(
            "[[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\n{}\n\
             [backends.config]\nstate_dir = {:?}\n\
             [[backends.config.hosts]]\nlabel = \"here\"\nregion = \"test-1\"\n\
             cpu_millicores = 2000\nram_mib = 1024\nruntime = \"vm\"\npublic_host = \"127.0.0.1\"\n\
             [backends.config.hosts.vm]\nkernel = {:?}\ninitrd = {:?}\naccel = \"tcg\"\n\
             bind_address = \"127.0.0.1\"\n",
            sshd.host_toml("here"),
            host_state.path().display().to_string(),
            g.kernel.display().to_string(),
            g.initrd.display().to_string(),
        ),
    );
    let (_rt, backends) = load(&cfg);
    let b = &backends[0];
    let key = workload_key();
    let mut accounts = Accounts(Vec::new());

    let mut grant = grant(&format!("vm-{}", std::process::id()));
    grant.cpu_millicores = 1000;
    grant.ram_mib = 256;
    let inst = b.provision(&grant, &workload(&key)).await.unwrap();
    accounts.track(&inst.user);
    let vm_dir = host_state.path().join("grants").join(&inst.user).join("vm");
    let qemu_pid: u32 = std::fs::read_to_string(vm_dir.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(inst.public_host, "127.0.0.1");
    assert_ne!(inst.ssh_port, 22, "the guest's own forwarded port");
    assert!(
        inst.host_key.starts_with("ssh-ed25519 "),
        "the grant's own host key: {}",
        inst.host_key
    );
    assert_eq!(b.status(&inst).await.unwrap(), InstanceState::Running);

    // The guest boots (several seconds under TCG); then the requester logs
    // in, checking the host key it was given.
    let start = Instant::now();
    let out = loop {
        let (code, out, err) = ssh(
            &inst,
            &key,
            "id -un; cat /proc/cpuinfo | grep -c ^processor",
        );
        if code == 0 {
            break out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no login into the guest within 180 s: {err}\nserial:\n{}",
            std::fs::read_to_string(vm_dir.join("serial.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("provision to SSH login (TCG): {:?}", start.elapsed());
    assert_eq!(out.lines().collect::<Vec<_>>(), [inst.user.as_str(), "1"]);

    // A 10 s busy loop in the guest (through the login, as a requester
    // runs one) shows up as QEMU's CPU, on top of the boot's: at the
    // grant's one core, at least 3 more core-seconds.
    let before = b.usage(&inst).await.unwrap();
    let (code, _, err) = ssh(&inst, &key, "timeout 10 sh -c 'while :; do :; done'; true");
    assert_eq!(code, 0, "{err}");
    let busy = b.usage(&inst).await.unwrap();
    assert!(
        busy.cpu_core_seconds >= before.cpu_core_seconds + 3,
        "{before:?} then {busy:?}"
    );

    b.terminate(&inst).await.unwrap();
    // Gone, or a zombie its new parent has yet to reap (QEMU daemonized).
    let state = std::fs::read_to_string(format!("/proc/{qemu_pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()));
    assert!(
        matches!(state, None | Some('Z')),
        "QEMU (pid {qemu_pid}) still runs (state {state:?})"
    );
    assert!(!vm_dir.exists(), "the grant's VM files are left");
    assert_eq!(uid_of(&inst.user), None, "the account is gone");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", inst.ssh_port)).is_err(),
        "the forwarded port {} still listens",
        inst.ssh_port
    );
    assert_ended_for_good(b, &inst, &key, host_state.path(), busy).await;
}
