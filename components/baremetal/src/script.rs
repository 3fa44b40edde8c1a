//! The commands the backend runs on a host: the host library (`host.sh`)
//! with the call's values assigned in front and one operation after it.
//!
//! Values are shell-quoted here; anything that ends up on a command line
//! on the host (podman's and systemd-run's arguments, the sudoers rule) is
//! built here too, as data, so it can be checked without a host.

use crate::config::{HostConfig, LimitsChoice, RuntimeKind};
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
        ("CB_MEM_BYTES", bytes(g.ram_mib).to_string()),
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
        for rt in ["process", "podman"] {
            let h = host(rt);
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
