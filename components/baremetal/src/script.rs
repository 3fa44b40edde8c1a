//! The commands the backend runs on a host: the host library (`host.sh`)
//! with the call's values assigned in front and one operation after it.
//!
//! Values are shell-quoted here; anything that ends up on a command line
//! on the host (podman's and systemd-run's arguments, the sudoers rule) is
//! built here too, as data, so it can be checked without a host.

use crate::config::{Accel, HostConfig, LimitsChoice, RuntimeKind, VmConfig};
use crate::grant::{Grant, GrantId};

/// The host library.
pub const LIBRARY: &str = include_str!("host.sh");

/// What the backend runs through the `ssh` capability: the user's shell on
/// the host reads the whole script from stdin first, so nothing the script
/// starts can read (and eat) the rest of it.
pub const COMMAND: &str = "sh -c \"$(cat)\" compute-bridge";

/// Exit status of a host that has no room for the grant.
pub const EXIT_FULL: i32 = 10;
/// Exit status of a host whose lock stayed taken.
pub const EXIT_BUSY: i32 = 11;
/// Exit status of a host that cannot run what its config asks.
pub const EXIT_UNSUPPORTED: i32 = 12;

/// Quote `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quote each word and join them: a value the library expands with
/// `eval "set -- $VAR"` back into exactly these words.
pub fn quote_words(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Values every operation needs.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// State directory on the host (root).
    pub state_dir: &'a str,
    /// The grant.
    pub id: &'a GrantId,
    /// Supervisor period, seconds.
    pub tick: u32,
}

/// Everything `provision` tells the host.
#[derive(Debug, Clone)]
pub struct ProvisionArgs<'a> {
    /// Where and which grant.
    pub target: Target<'a>,
    /// The host's config.
    pub host: &'a HostConfig,
    /// The grant.
    pub grant: &'a Grant<'a>,
    /// The workload's public key (`type base64`, already checked).
    pub key: &'a str,
    /// This bridge's provider id.
    pub provider: &'a str,
    /// This backend's name.
    pub backend: &'a str,
}

fn script(vars: &[(&str, String)], extra: &str, call: &str) -> String {
    let mut s = String::with_capacity(LIBRARY.len() + 2048);
    for (k, v) in vars {
        s.push_str(k);
        s.push('=');
        s.push_str(&quote(v));
        s.push('\n');
    }
    s.push_str(LIBRARY);
    s.push('\n');
    s.push_str(extra);
    s.push_str("cb_init\n");
    s.push_str(call);
    s.push('\n');
    s
}

fn base(t: &Target<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("CB_STATE_DIR", t.state_dir.to_string()),
        ("CB_ID", t.id.to_string()),
        ("CB_TICK", t.tick.to_string()),
    ]
}

/// Bytes of `mib` MiB.
fn bytes(mib: u32) -> u64 {
    u64::from(mib) * 1024 * 1024
}

/// CFS quota per 100 ms period for `millicores` (1000 = one full core).
pub fn cpu_quota_us(millicores: u32) -> u64 {
    (u64::from(millicores) * 100).max(1000)
}

/// The `provision` script.
pub fn provision(a: &ProvisionArgs<'_>) -> String {
    let g = a.grant;
    let mut vars = base(&a.target);
    vars.extend([
        ("CB_REQUEST", g.request_id.to_string()),
        ("CB_PROVIDER", a.provider.to_string()),
        ("CB_BACKEND", a.backend.to_string()),
        ("CB_CPU", g.cpu_millicores.to_string()),
        ("CB_RAM", g.ram_mib.to_string()),
        ("CB_CAP_CPU", a.host.cpu_millicores.to_string()),
        ("CB_CAP_RAM", a.host.ram_mib.to_string()),
        ("CB_TASKS", a.host.max_processes.to_string()),
        ("CB_VALID_TO", g.valid_to.to_string()),
        ("CB_RUNTIME", a.host.runtime.as_str().to_string()),
        // The host library refuses a TDX-required grant on any runtime but
        // a TD guest, whatever placement decided.
        ("CB_TDX", u8::from(g.tdx_required).to_string()),
        (
            "CB_LIMITS",
            match a.host.runtime {
                RuntimeKind::Process => a.host.limits.as_str(),
                RuntimeKind::Podman | RuntimeKind::Vm => LimitsChoice::Auto.as_str(),
            }
            .to_string(),
        ),
        ("CB_KEY", a.key.to_string()),
        (
            "CB_CPU_QUOTA_US",
            cpu_quota_us(g.cpu_millicores).to_string(),
        ),
        (
            "CB_MEM_BYTES",
            match a.host.runtime {
                RuntimeKind::Vm => bytes(g.ram_mib.saturating_add(VM_OVERHEAD_MIB)),
                _ => bytes(g.ram_mib),
            }
            .to_string(),
        ),
        (
            "CB_SYSTEMD_RUN",
            quote_words(&systemd_run_supervisor(
                a.target.id,
                g.cpu_millicores,
                g.ram_mib,
                a.host.max_processes,
            )),
        ),
    ]);
    if a.host.runtime == RuntimeKind::Podman {
        let run = podman_run(a.target.id, g, a.host.max_processes);
        vars.extend([
            (
                "CB_PODMAN_SYSTEMD",
                quote_words(&podman_under_systemd(a.target.id, &run)),
            ),
            (
                "CB_PODMAN_DETACHED",
                quote_words(&podman_detached(a.target.id, &run)),
            ),
            ("CB_SUDOERS", sudoers(a.target.id, a.target.state_dir)),
        ]);
    }
    if let (RuntimeKind::Vm, Some(vm)) = (a.host.runtime, &a.host.vm) {
        let td = g.tdx_required && a.host.has_td_runtime();
        vars.extend([
            ("CB_VM_KERNEL", vm.kernel.clone()),
            ("CB_VM_INITRD", vm.initrd.clone()),
            ("CB_VM_TD", u8::from(td).to_string()),
            (
                "CB_QEMU",
                quote_words(&qemu_args(a.target.id, a.target.state_dir, vm, g, td)),
            ),
        ]);
    }
    // The supervisor runs a copy of the library kept beside the grant, so
    // a newer bridge never changes a running grant's code under it.
    let lib_text = format!("cb_lib_text() {{\ncat <<'CB_LIB_END'\n{LIBRARY}\nCB_LIB_END\n}}\n");
    script(&vars, &lib_text, "cb_provision")
}

/// The `status` script.
pub fn status(t: &Target<'_>) -> String {
    script(&base(t), "", "cb_status")
}

/// The `usage` script.
pub fn usage(t: &Target<'_>) -> String {
    script(&base(t), "", "cb_usage")
}

/// The `terminate` script.
pub fn terminate(t: &Target<'_>) -> String {
    script(&base(t), "", "cb_terminate")
}

/// The `list` script: this provider's and backend's grants on one host.
pub fn list(state_dir: &str, provider: &str, backend: &str) -> String {
    let vars = vec![
        ("CB_STATE_DIR", state_dir.to_string()),
        ("CB_ID", "none".to_string()),
        ("CB_TICK", "1".to_string()),
        ("CB_PROVIDER", provider.to_string()),
        ("CB_BACKEND", backend.to_string()),
    ];
    script(&vars, "", "cb_list")
}

/// `systemd-run` for the supervisor unit of a `process` grant under
/// systemd; the library appends the command. `Delegate=yes` lets the
/// supervisor split the unit's cgroup into its own leaf and the workload's.
pub fn systemd_run_supervisor(id: &GrantId, cpu: u32, ram: u32, tasks: u32) -> Vec<String> {
    [
        "systemd-run".to_string(),
        format!("--unit={id}.service"),
        "--collect".into(),
        "--quiet".into(),
        format!("--description=compute-bridge grant {id}"),
        "--property=Delegate=yes".into(),
        format!("--property=CPUQuota={}%", cpu.div_ceil(10).max(1)),
        format!("--property=MemoryMax={}", bytes(ram)),
        "--property=MemorySwapMax=0".into(),
        format!("--property=TasksMax={tasks}"),
        "--".into(),
    ]
    .to_vec()
}

/// `podman run` for a `podman` grant: its image pinned by digest, its
/// limits, never a new privilege, named and labelled by the grant id.
///
/// The OCI runtime is runc, said explicitly: crun (which apt may install
/// as podman's default) refuses hybrid cgroup v1 hosts. The host library
/// adds `--ulimit`s the host can grant right after `run` (see
/// `cb_podman_cmd` in `host.sh`).
pub fn podman_run(id: &GrantId, g: &Grant<'_>, tasks: u32) -> Vec<String> {
    vec![
        "/usr/bin/podman".into(),
        "--runtime=runc".into(),
        "run".into(),
        format!("--name={id}"),
        format!("--hostname={id}"),
        "--replace".into(),
        "--pull=missing".into(),
        format!(
            "--cpus={}.{:03}",
            g.cpu_millicores / 1000,
            g.cpu_millicores % 1000
        ),
        format!("--memory={}m", g.ram_mib),
        format!("--memory-swap={}m", g.ram_mib),
        format!("--pids-limit={tasks}"),
        "--security-opt=no-new-privileges".into(),
        format!("--label=compute-bridge.grant={id}"),
        "--".into(),
        g.image.to_string(),
    ]
}

/// [`podman_run`] as the main process of the unit `cb-<id>.service`.
pub fn podman_under_systemd(id: &GrantId, run: &[String]) -> Vec<String> {
    let mut v = vec![
        "systemd-run".to_string(),
        format!("--unit={id}.service"),
        "--collect".into(),
        "--quiet".into(),
        format!("--description=compute-bridge grant {id}"),
        "--property=TimeoutStopSec=20".into(),
        "--".into(),
    ];
    v.extend_from_slice(run);
    v
}

/// [`podman_run`] detached (no systemd: conmon supervises the container),
/// with podman's own cgroup manager and the container's cgroups under
/// `compute-bridge/<id>`, beside the process runtime's grants: one place
/// to meter and to remove.
pub fn podman_detached(id: &GrantId, run: &[String]) -> Vec<String> {
    let mut v = run.to_vec();
    let at = v.iter().position(|a| a == "run").expect("a podman run") + 1;
    v.insert(1, "--cgroup-manager=cgroupfs".into());
    v.insert(at + 1, "--detach".into());
    v.insert(at + 2, format!("--cgroup-parent=/compute-bridge/{id}"));
    v
}

/// The sudoers rule of a `podman` grant's account: it may run exactly its
/// grant's `enter` script as root, with no arguments, keeping only
/// `SSH_ORIGINAL_COMMAND` from its environment.
pub fn sudoers(id: &GrantId, state_dir: &str) -> String {
    let enter = format!("{state_dir}/grants/{id}/enter");
    format!(
        "# compute-bridge grant {id}: enter its container. Removed with the grant.\n\
         Defaults!{enter} env_keep += \"SSH_ORIGINAL_COMMAND\"\n\
         {id} ALL=(root) NOPASSWD: {enter} \"\""
    )
}

/// MiB a `vm` grant's QEMU may use beyond the guest's memory (TCG's
/// translation cache and QEMU itself: an idle 256 MiB guest's QEMU had a
/// resident set of 230-243 MiB on the test machine), added to the memory
/// limit of the grant's cgroup.
pub const VM_OVERHEAD_MIB: u32 = 256;

/// Where a `vm` grant's files live on a host (root): its fw_cfg files,
/// host key, QMP socket, serial log, pid file and forwarded port.
pub fn vm_dir(state_dir: &str, id: &GrantId) -> String {
    format!("{state_dir}/grants/{id}/vm")
}

/// The QEMU command line of a `vm` grant, as data.
///
/// Per grant: `-smp` is the grant's CPU rounded up to whole vCPUs (the
/// exact share is the cgroup's CFS quota), `-m` its memory; the guest's
/// user, authorised key and (plain VMs) SSH host key come through fw_cfg,
/// which is never on a command line a guest process or host user can read
/// and, in a TD, not measured (so every grant's TD measures the same);
/// SSH is forwarded from an ephemeral port on `vm.bind_address` (QEMU
/// binds port 0; the host library asks it which port over QMP); QEMU
/// drops root for the grant's account (`-runas`).
///
/// `td`: a TD guest (`-object tdx-guest`, split irqchip, the TDX firmware
/// as `-bios`), per QEMU's `docs/system/i386/tdx.rst` (qemu/qemu): no host
/// key goes in (the host must not hold the key a TD answers with; the
/// guest makes its own), and virtio uses the platform IOMMU
/// (`iommu_platform=on`, required by Linux CoCo guests; unverified here,
/// no TDX hardware). This QEMU 7.2 has no `tdx-guest` object: TD grants
/// need QEMU 10.1+ and a host kernel with `kvm_intel.tdx=Y`.
pub fn qemu_args(
    id: &GrantId,
    state_dir: &str,
    vm: &VmConfig,
    g: &Grant<'_>,
    td: bool,
) -> Vec<String> {
    let v = vm_dir(state_dir, id);
    let mut a: Vec<String> = vec!["qemu-system-x86_64".into(), "-name".into(), id.to_string()];
    let push = |a: &mut Vec<String>, words: &[&str]| a.extend(words.iter().map(|w| w.to_string()));
    match (td, &vm.firmware) {
        (true, Some(firmware)) => {
            push(&mut a, &["-accel", "kvm", "-cpu", "host,pmu=off"]);
            push(
                &mut a,
                &[
                    "-object",
                    r#"{"qom-type":"tdx-guest","id":"tdx0","sept-ve-disable":true}"#,
                    "-machine",
                    "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                    "-bios",
                    firmware,
                ],
            );
        }
        _ => {
            push(&mut a, &["-machine", "q35", "-accel", vm.accel.as_str()]);
            if vm.accel == Accel::Kvm {
                push(&mut a, &["-cpu", "host"]);
            }
        }
    }
    let vcpus = g.cpu_millicores.div_ceil(1000).max(1).to_string();
    let mib = g.ram_mib.to_string();
    push(
        &mut a,
        &[
            "-smp",
            &vcpus,
            "-m",
            &mib,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            &vm.kernel,
            "-initrd",
            &vm.initrd,
            "-append",
            "console=ttyS0 panic=-1 quiet",
            "-serial",
            &format!("file:{v}/serial.log"),
            "-qmp",
            &format!("unix:{v}/qmp.sock,server=on,wait=off"),
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:{}:0-:22", vm.bind_address),
            "-device",
            if td {
                "virtio-net-pci,netdev=n0,romfile=,iommu_platform=on"
            } else {
                "virtio-net-pci,netdev=n0,romfile="
            },
            "-fw_cfg",
            &format!("name=opt/cb/user,file={v}/user"),
            "-fw_cfg",
            &format!("name=opt/cb/authorized_keys,file={v}/authorized_keys"),
        ],
    );
    if !td {
        push(
            &mut a,
            &[
                "-fw_cfg",
                &format!("name=opt/cb/host_key,file={v}/host_key"),
            ],
        );
    }
    push(
        &mut a,
        &[
            "-runas",
            id.as_str(),
            "-daemonize",
            "-pidfile",
            &format!("{v}/qemu.pid"),
        ],
    );
    a
}

/// `key=value` lines of a script's output.
pub fn parse_kv(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One `list` line: `grant=... user=... limits=... runtime=...`.
pub fn parse_list_line(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn id() -> GrantId {
        GrantId::new("p", "b", "r")
    }

    fn grant(image: &str) -> Grant<'_> {
        Grant {
            request_id: "req-1",
            cpu_millicores: 1500,
            ram_mib: 768,
            region: None,
            tdx_required: false,
            image,
            valid_to: 1_900_000_000,
        }
    }

    fn host(runtime: &str) -> HostConfig {
        Config::from_json(&format!(
            r#"{{"hosts": [{{"label": "h", "region": "r", "cpu_millicores": 4000, "ram_mib": 4096,
                "public_host": "x", "runtime": "{runtime}", "max_processes": 64}}]}}"#
        ))
        .unwrap()
        .hosts
        .remove(0)
    }

    /// Run `sh` on `text`, returning (status, stdout).
    fn sh(args: &[&str], text: &str) -> (i32, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("/bin/sh")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("/bin/sh");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn quoting_survives_the_shell() {
        for nasty in ["plain", "it's", "$(reboot)", "a b\tc", "`x`;\"y\"", ""] {
            let (code, out) = sh(&["-s"], &format!("printf %s {}", quote(nasty)));
            assert_eq!((code, out.as_str()), (0, nasty));
        }
        let words: Vec<String> = ["a b", "c'd", "$e"].map(String::from).to_vec();
        let (_, out) = sh(
            &["-s"],
            &format!(
                "V={}\neval \"set -- $V\"\nprintf '<%s>' \"$@\"",
                quote(&quote_words(&words))
            ),
        );
        assert_eq!(out, "<a b><c'd><$e>");
    }

    #[test]
    fn every_script_parses() {
        let id = id();
        let t = Target {
            state_dir: "/var/lib/compute-bridge",
            id: &id,
            tick: 1,
        };
        let image = format!("registry.example/app@sha256:{}", "a".repeat(64));
        let g = grant(&image);
        for rt in ["process", "podman", "vm"] {
            let h = if rt == "vm" { vm_host("") } else { host(rt) };
            let p = provision(&ProvisionArgs {
                target: t.clone(),
                host: &h,
                grant: &g,
                key: "ssh-ed25519 AAAA",
                provider: "prov",
                backend: "baremetal",
            });
            assert_eq!(sh(&["-n"], &p).0, 0, "provision ({rt}) does not parse");
        }
        for s in [status(&t), usage(&t), terminate(&t), list("/x", "p", "b")] {
            assert_eq!(sh(&["-n"], &s).0, 0);
        }
    }

    #[test]
    fn the_library_copy_is_written_verbatim() {
        let id = id();
        let h = host("process");
        let g = grant("x");
        let p = provision(&ProvisionArgs {
            target: Target {
                state_dir: "/s",
                id: &id,
                tick: 1,
            },
            host: &h,
            grant: &g,
            key: "ssh-ed25519 AAAA",
            provider: "prov",
            backend: "b",
        });
        // Define everything but run nothing: print the copy instead.
        let defs = p.replace("cb_init\ncb_provision\n", "cb_lib_text\n");
        let (code, out) = sh(&["-s"], &defs);
        assert_eq!(code, 0);
        assert_eq!(out.trim_end(), LIBRARY.trim_end());
    }

    #[test]
    fn podman_runs_the_pinned_image_with_the_grant_limits() {
        let id = id();
        let image = format!("registry.example/app@sha256:{}", "a".repeat(64));
        let run = podman_run(&id, &grant(&image), 64);
        assert_eq!(run[..3], ["/usr/bin/podman", "--runtime=runc", "run"]);
        for want in [
            format!("--name={id}"),
            "--cpus=1.500".into(),
            "--memory=768m".into(),
            "--memory-swap=768m".into(),
            "--pids-limit=64".into(),
            "--security-opt=no-new-privileges".into(),
            "--pull=missing".into(),
        ] {
            assert!(run.contains(&want), "{want} missing from {run:?}");
        }
        // The image comes last, after `--`: it cannot be read as an option.
        assert_eq!(run[run.len() - 2..], ["--".to_string(), image.clone()]);
        assert!(
            !run.iter()
                .any(|a| a == "--privileged" || a.starts_with("--cap-add"))
        );

        let detached = podman_detached(&id, &run);
        assert_eq!(
            detached[..6],
            [
                "/usr/bin/podman".to_string(),
                "--cgroup-manager=cgroupfs".into(),
                "--runtime=runc".into(),
                "run".into(),
                "--detach".into(),
                format!("--cgroup-parent=/compute-bridge/{id}")
            ]
        );
        assert_eq!(detached[detached.len() - 2..], run[run.len() - 2..]);
        let unit = podman_under_systemd(&id, &run);
        assert_eq!(unit[0], "systemd-run");
        assert!(unit.contains(&format!("--unit={id}.service")));
        assert_eq!(
            unit[unit.iter().position(|a| a == "--").unwrap() + 1],
            run[0]
        );
    }

    #[test]
    fn systemd_limits_match_the_grant() {
        let id = id();
        let v = systemd_run_supervisor(&id, 1500, 768, 64);
        for want in [
            "--property=CPUQuota=150%",
            "--property=MemoryMax=805306368",
            "--property=TasksMax=64",
            "--property=Delegate=yes",
        ] {
            assert!(v.iter().any(|a| a == want), "{want} missing from {v:?}");
        }
        assert_eq!(v.last().unwrap(), "--");
        // A sliver of a core still gets a quota systemd accepts.
        assert!(
            systemd_run_supervisor(&id, 5, 1, 8)
                .iter()
                .any(|a| a == "--property=CPUQuota=1%")
        );
        assert_eq!(cpu_quota_us(1000), 100_000);
        assert_eq!(cpu_quota_us(1), 1000);
    }

    #[test]
    fn sudoers_allows_only_the_grant_enter_script_without_arguments() {
        let id = id();
        let s = sudoers(&id, "/var/lib/compute-bridge");
        let enter = format!("/var/lib/compute-bridge/grants/{id}/enter");
        assert!(s.contains(&format!("{id} ALL=(root) NOPASSWD: {enter} \"\"")));
        assert!(s.contains(&format!(
            "Defaults!{enter} env_keep += \"SSH_ORIGINAL_COMMAND\""
        )));
        assert!(!s.contains("podman"), "no direct podman rule: {s}");
        assert!(!s.contains(" ALL\n") && !s.contains('*'), "{s}");
    }

    fn vm_host(extra: &str) -> HostConfig {
        Config::from_json(&format!(
            r#"{{"hosts": [{{"label": "h", "region": "r", "cpu_millicores": 4000, "ram_mib": 4096,
                "public_host": "x", "runtime": "vm", {extra}
                "vm": {{"kernel": "/g/vmlinuz", "initrd": "/g/initrd.img", "bind_address": "192.0.2.7"{firmware}}}}}]}}"#,
            firmware = if extra.contains("tdx_capable") {
                r#", "accel": "kvm", "firmware": "/usr/share/ovmf/OVMF.fd""#
            } else {
                ""
            }
        ))
        .unwrap()
        .hosts
        .remove(0)
    }

    /// The value after each occurrence of `flag` in `args`.
    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn a_vm_grant_gets_its_size_its_keys_by_fw_cfg_and_an_ephemeral_port() {
        let id = id();
        let h = vm_host("");
        let g = grant("ignored");
        let a = qemu_args(&id, "/s", h.vm.as_ref().unwrap(), &g, false);
        let v = format!("/s/grants/{id}/vm");
        assert_eq!(a[0], "qemu-system-x86_64");
        assert_eq!(values(&a, "-accel"), ["tcg"]);
        assert_eq!(values(&a, "-machine"), ["q35"]);
        // 1500 millicores: two vCPUs (the cgroup's quota holds it to 1.5).
        assert_eq!(values(&a, "-smp"), ["2"]);
        assert_eq!(values(&a, "-m"), ["768"]);
        assert_eq!(values(&a, "-kernel"), ["/g/vmlinuz"]);
        assert_eq!(values(&a, "-initrd"), ["/g/initrd.img"]);
        assert_eq!(
            values(&a, "-netdev"),
            ["user,id=n0,hostfwd=tcp:192.0.2.7:0-:22"]
        );
        assert_eq!(
            values(&a, "-fw_cfg"),
            [
                format!("name=opt/cb/user,file={v}/user"),
                format!("name=opt/cb/authorized_keys,file={v}/authorized_keys"),
                format!("name=opt/cb/host_key,file={v}/host_key"),
            ]
        );
        assert_eq!(values(&a, "-runas"), [id.as_str()]);
        assert_eq!(values(&a, "-pidfile"), [format!("{v}/qemu.pid")]);
        // Nothing per grant on the kernel command line (readable by every
        // guest process and, on the host, by `ps`).
        assert_eq!(values(&a, "-append"), ["console=ttyS0 panic=-1 quiet"]);
        assert!(
            !a.iter().any(|w| w.contains("tdx") || w == "-bios"),
            "{a:?}"
        );
    }

    #[test]
    fn a_td_grant_gets_the_tdx_machine_and_no_host_made_host_key() {
        let id = id();
        let mrtd = format!(r#""mrtd": "{}", "tdx_capable": true,"#, "ab".repeat(48));
        let h = vm_host(&mrtd);
        assert!(h.has_td_runtime());
        let mut g = grant("ignored");
        g.tdx_required = true;
        let a = qemu_args(&id, "/s", h.vm.as_ref().unwrap(), &g, true);
        // docs/system/i386/tdx.rst (qemu/qemu): the tdx-guest object and a
        // split kernel irqchip; TDVF loaded with -bios.
        assert_eq!(values(&a, "-accel"), ["kvm"]);
        assert_eq!(values(&a, "-cpu"), ["host,pmu=off"]);
        assert_eq!(
            values(&a, "-object"),
            [r#"{"qom-type":"tdx-guest","id":"tdx0","sept-ve-disable":true}"#]
        );
        assert_eq!(
            values(&a, "-machine"),
            ["q35,kernel-irqchip=split,confidential-guest-support=tdx0"]
        );
        assert_eq!(values(&a, "-bios"), ["/usr/share/ovmf/OVMF.fd"]);
        assert_eq!(
            values(&a, "-device"),
            ["virtio-net-pci,netdev=n0,romfile=,iommu_platform=on"]
        );
        // The host must not hold the key a TD answers with.
        assert!(
            !values(&a, "-fw_cfg").iter().any(|f| f.contains("host_key")),
            "{a:?}"
        );
        // The same host runs a grant without TDX as a plain VM on KVM.
        let plain = qemu_args(&id, "/s", h.vm.as_ref().unwrap(), &grant("x"), false);
        assert_eq!(values(&plain, "-accel"), ["kvm"]);
        assert!(!plain.iter().any(|w| w.contains("tdx")), "{plain:?}");
    }

    #[test]
    fn only_a_td_runtime_gets_a_td_flag_in_the_provision_script() {
        let id = id();
        let t = Target {
            state_dir: "/s",
            id: &id,
            tick: 1,
        };
        let mut g = grant("x");
        g.tdx_required = true;
        let script = |h: &HostConfig| {
            provision(&ProvisionArgs {
                target: t.clone(),
                host: h,
                grant: &g,
                key: "ssh-ed25519 AAAA",
                provider: "p",
                backend: "b",
            })
        };
        let td = script(&vm_host(&format!(
            r#""mrtd": "{}", "tdx_capable": true,"#,
            "ab".repeat(48)
        )));
        assert!(td.contains("\nCB_TDX='1'\n") && td.contains("\nCB_VM_TD='1'\n"));
        assert!(td.contains("tdx-guest"));
        // A plain VM host never gets CB_VM_TD: the library refuses there.
        let plain = script(&vm_host(""));
        assert!(plain.contains("\nCB_TDX='1'\n") && plain.contains("\nCB_VM_TD='0'\n"));
        assert!(!plain.contains("tdx-guest"));
        // And the vm grant's cgroup allows QEMU's own memory on top.
        assert!(plain.contains(&format!(
            "\nCB_MEM_BYTES='{}'\n",
            (768 + u64::from(VM_OVERHEAD_MIB)) << 20
        )));
    }

    #[test]
    fn output_parsing() {
        let kv = parse_kv("user=cb-1\nlimits=cgroup1\nhost_key=ssh-ed25519 AAAA x\nnoise\n");
        assert_eq!(kv["user"], "cb-1");
        assert_eq!(kv["host_key"], "ssh-ed25519 AAAA x");
        assert_eq!(kv.len(), 3);
        let l = parse_list_line("grant=cb-0123456789ab user=u limits=prlimit runtime=process");
        assert_eq!(l["grant"], "cb-0123456789ab");
        assert_eq!(l["runtime"], "process");
    }
}
