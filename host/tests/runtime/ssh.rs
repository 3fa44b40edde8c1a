//! The ssh capability against a real OpenSSH server: pinned host keys,
//! labels only, pooled sessions, and the local transport.

use compute_bridge::bindings::ssh::SshError;
use compute_bridge::capabilities::ssh::SshCapability;
use compute_bridge::config::BootConfig;
use compute_bridge_testkit::sshd::Sshd;

use crate::support::*;

fn capability(state: &std::path::Path, hosts: &str) -> (BootConfig, SshCapability) {
    let cfg = config(
        state,
        &backend_toml("bm", compute_bridge_testkit::components::FAKE, hosts),
    );
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
