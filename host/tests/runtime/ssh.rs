//! The ssh capability against a real OpenSSH server: pinned host keys,
//! labels only, pooled sessions; and the local transport: builtin backends
//! only, a cleared environment, nothing left running after a call.

use compute_bridge_daemon::config::BootConfig;
use compute_bridge_sandbox::bindings::ssh::SshError;
use compute_bridge_sandbox::capabilities::ssh::SshCapability;
use compute_bridge_testkit::sshd::Sshd;

use crate::support::*;

fn capability(state: &std::path::Path, hosts: &str) -> (BootConfig, SshCapability) {
    // A builtin component: only those may have a `local` label.
    let cfg = config(state, &backend_toml("bm", "builtin:baremetal", hosts));
    let cap = SshCapability::new(&cfg, &cfg.backends[0]).expect("capability");
    (cfg, cap)
}

#[tokio::test]
async fn commands_run_on_the_labelled_host_with_output_and_status() {
    let sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(state.path(), &sshd.host_toml("rack-1"));
    assert_eq!(ssh.labels(), ["rack-1"]);
    let out = ssh
        .exec(
            "rack-1",
            "cat; echo err >&2; exit 3",
            b"from stdin".to_vec(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", sshd.log()));
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, b"from stdin");
    assert_eq!(out.stderr, b"err\n");
    // Many commands at once share pooled connections.
    let commands: Vec<String> = (0..12).map(|i| format!("echo {i}")).collect();
    let runs = commands.iter().map(|c| ssh.exec("rack-1", c, vec![]));
    for (i, r) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap().stdout, format!("{i}\n").into_bytes());
    }
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let mut sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let pinned = sshd.host_toml("rack-1");
    sshd.rotate_host_key();
    let (_cfg, ssh) = capability(state.path(), &pinned);
    let err = ssh.exec("rack-1", "id", vec![]).await.expect_err("refused");
    assert_eq!(err, SshError::HostKeyMismatch("rack-1".into()));
}

#[tokio::test]
async fn a_stopped_host_is_unreachable_and_errors_name_only_the_label() {
    let mut sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(state.path(), &sshd.host_toml("rack-1"));
    ssh.exec("rack-1", "true", vec![]).await.unwrap();
    sshd.stop();
    match ssh.exec("rack-1", "true", vec![]).await.expect_err("down") {
        SshError::Unreachable(m) => {
            assert!(m.starts_with("rack-1:"), "{m}");
            assert!(
                !m.contains("127.0.0.1") && !m.contains(&sshd.port.to_string()),
                "leaks the address: {m}"
            );
        }
        other => panic!("{other:?}"),
    }
    // It comes back: the pool drops the dead connection and reconnects.
    sshd.restart();
    ssh.exec("rack-1", "true", vec![]).await.unwrap();
}

#[tokio::test]
async fn a_refused_key_is_an_auth_error() {
    let sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let as_nobody = sshd
        .host_toml("rack-1")
        .replace("user = \"root\"", "user = \"nobody-here\"");
    let (_cfg, ssh) = capability(state.path(), &as_nobody);
    assert!(matches!(
        ssh.exec("rack-1", "id", vec![]).await,
        Err(SshError::Auth(_))
    ));
}

#[tokio::test]
async fn unknown_labels_are_refused_and_the_local_transport_runs_here() {
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(
        state.path(),
        "[backends.ssh.hosts.here]\ntransport = \"local\"\n",
    );
    let out = ssh.exec("here", "echo $((6*7))", vec![]).await.unwrap();
    assert_eq!(out.stdout, b"42\n");
    assert_eq!(
        ssh.exec("there", "true", vec![]).await,
        Err(SshError::UnknownHost("there".into()))
    );
}

#[tokio::test]
async fn output_is_capped() {
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(
        state.path(),
        "[backends.ssh]\nmax_output_bytes = 1000\n[backends.ssh.hosts.here]\ntransport = \"local\"\n",
    );
    let out = ssh
        .exec("here", "head -c 100000 /dev/zero", vec![])
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
}

#[tokio::test]
async fn a_component_from_a_file_cannot_have_a_local_label() {
    // A backend we did not write asks for this machine: refused where the
    // operator wrote it, with the reason and what to do instead.
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "[bridge]\nstate_dir = {:?}\n\n{}",
        state.path().display().to_string(),
        backend_toml(
            "outsider",
            compute_bridge_testkit::components::HOSTILE,
            "[backends.ssh.hosts.here]\ntransport = \"local\"\n",
        )
    );
    let Err(err) = compute_bridge_daemon::config::BootConfig::from_source(
        &compute_bridge_daemon::config::Source::embedded("test.toml", &text),
        &|_| None,
    ) else {
        panic!("a file component with a local label is refused");
    };
    assert_eq!(
        err.key.as_deref(),
        Some("backends[0].ssh.hosts.here.transport"),
        "{err}"
    );
    assert!(
        err.message.contains("only a backend shipped in the binary")
            && err.message.contains("identity key"),
        "{err}"
    );
}

#[tokio::test]
async fn a_local_command_sees_none_of_the_bridges_environment() {
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(
        state.path(),
        "[backends.ssh.hosts.here]\ntransport = \"local\"\n",
    );
    let out = ssh.exec("here", "env; pwd", vec![]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Every variable of the bridge's own environment (where `${ENV}`
    // secrets come from) but the three it sets is gone.
    let leaked: Vec<String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| !matches!(k.as_str(), "PATH" | "LANG" | "HOME"))
        .filter(|(k, v)| text.lines().any(|l| l == format!("{k}={v}")))
        .map(|(k, _)| k)
        .collect();
    assert!(leaked.is_empty(), "the command saw {leaked:?}:\n{text}");
    let names: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for name in &names {
        assert!(
            matches!(
                *name,
                "PATH" | "LANG" | "HOME" | "PWD" | "SHLVL" | "_" | "OLDPWD"
            ),
            "{name} in a local command's environment:\n{text}"
        );
    }
    assert!(
        text.contains("LANG=C.UTF-8\n") && text.contains("PATH=/usr/local/sbin:"),
        "{text}"
    );
    assert!(text.ends_with("\n/\n"), "starts in /: {text}");
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does
/// not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Kill `pids` if a test left them running.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-9", &p.to_string()])
                .status();
        }
    }
}

#[tokio::test]
async fn nothing_a_local_command_starts_outlives_its_call() {
    let state = tempfile::tempdir().unwrap();
    let (_cfg, ssh) = capability(
        state.path(),
        "[backends.ssh]\ntimeout_sec = 2\n[backends.ssh.hosts.here]\ntransport = \"local\"\n",
    );
    // A command that leaves a process behind and returns: the process, its
    // output closed, would run on after the call.
    let out = ssh
        .exec("here", "sleep 300 >/dev/null 2>&1 & echo $!", vec![])
        .await
        .unwrap();
    let left: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // A command that times out, with a child of its own: the timeout killed
    // the shell, and the child must go too.
    let pidfile = state.path().join("pid");
    let err = ssh
        .exec(
            "here",
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
            vec![],
        )
        .await
        .expect_err("times out");
    assert_eq!(err, SshError::Timeout);
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _reap = Reap(vec![left, child]);
    until(
        "the processes the commands started to be killed with their calls",
        std::time::Duration::from_secs(30),
        || !running(left) && !running(child),
    )
    .await;
}
