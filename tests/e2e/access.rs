//! The whole path a requester sees, on real peers: a grant through the
//! coalition, the bare-metal backend making a Unix account on a real sshd
//! (this machine, reached over SSH), the sealed access opened by
//! `coalition-agent`, a login with exactly the `ssh` command it prints, and
//! the account gone after the grant. Meanwhile the operator's dashboard
//! shows the grant and nothing that names the requester or its image.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::sshd::Sshd;
use compute_bridge_testkit::{free_port, http};

use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// An image reference no dashboard may show (it would say what the
/// requester runs).
const CANARY_IMAGE: &str = "canary.example/secret-model@sha256:c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn config(
    dir: &Path,
    net: &TestCoalition,
    sshd: &Sshd,
    host_state: &Path,
    port: u16,
) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "[bridge]\nstate_dir = \"state\"\nconcurrency_cap = 2\ncapacity_refresh_sec = 5\n\n\
             {coalition}\n\
             [dashboard]\nbind = \"127.0.0.1\"\nport = {port}\n\n\
             [[backends]]\nname = \"baremetal\"\ncomponent = \"builtin:baremetal\"\n\n{ssh}\n\
             [backends.config]\nstate_dir = {state:?}\nsample_interval_sec = 1\n\n\
             [[backends.config.hosts]]\nlabel = \"rack\"\nregion = \"test-1\"\n\
             cpu_millicores = 1000\nram_mib = 1024\nlimits = \"prlimit\"\n\
             public_host = \"127.0.0.1\"\npublic_port = {sshd_port}\npublic_host_key = {host_key:?}\n",
            coalition = net.config_section(),
            ssh = sshd.host_toml("rack"),
            state = host_state.display().to_string(),
            sshd_port = sshd.port,
            host_key = sshd.host_key,
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_requester_logs_in_with_the_printed_ssh_command_and_the_account_is_gone_after() {
    assert_root("this test makes Unix accounts through the bare-metal backend");
    let sshd = Sshd::start();
    let host_state = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(host_state.path(), std::fs::Permissions::from_mode(0o711))
            .unwrap();
    }
    let net = TestCoalition::start(&network_name("access"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), &net, &sshd, host_state.path(), port);
    let mut bridge = start_bridge(&cfg);

    let keys = dir.path().join("access");
    let key_dir = keys.display().to_string();
    let mut agent = agent_owned(&with_net(
        &net,
        &[
            "request",
            "--cpu",
            "250",
            "--ram",
            "128",
            "--duration",
            "25s",
            "--image",
            CANARY_IMAGE,
            "--key-dir",
            &key_dir,
        ],
    ));
    let request_id = printed_request_id(&agent);
    agent.wait_for_log("access opened with the reply key", MIN);
    let out = agent.log();
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("ssh -i "))
        .unwrap_or_else(|| panic!("no ssh command printed:\n{out}"))
        .trim()
        .to_string();
    let user = line
        .rsplit_once(' ')
        .and_then(|(_, dest)| dest.split_once('@'))
        .map(|(u, _)| u.to_string())
        .unwrap_or_else(|| panic!("no user@host at the end of {line:?}"));
    assert!(user.starts_with("cb-"), "{line}");
    assert!(account_exists(&user), "the backend made no account {user}");

    // Exactly the printed command, made non-interactive, with a command.
    let cmd = format!(
        "{} whoami",
        line.replacen("ssh ", "ssh -o BatchMode=yes -o ConnectTimeout=10 ", 1)
    );
    let login = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(
        login.status.success(),
        "{cmd}: {}\nsshd: {}",
        String::from_utf8_lossy(&login.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), user);

    // The operator sees the grant, and nothing about who asked or for what.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let snap = http::get_local(addr, "/snapshot.json");
    let v: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    assert_eq!(v["grants"]["active"], 1, "{v}");
    let id = request_id.to_string();
    let secret_line = std::fs::read_to_string(keys.join("id_ed25519"))
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_string();
    for path in ["/dashboard", "/snapshot.json", "/metrics"] {
        let body = http::get_local(addr, path).body;
        for canary in [
            CANARY_IMAGE,
            "secret-model",
            "c0ffee00c0ffee00",
            &id,
            &id[..8],
            &user,
            &secret_line,
        ] {
            assert!(!body.contains(canary), "{path} shows {canary:?}:\n{body}");
        }
    }
    assert!(
        !bridge.log().contains(&secret_line),
        "the private key is in the bridge's log"
    );

    // The grant ends at valid_to: one usage report, and the account, its
    // processes and its key are gone.
    agent.wait_for_log("usage report: ", Duration::from_secs(120));
    assert_eq!(agent.wait(MIN), Some(0), "{}", agent.log());
    bridge.wait_for_log("usage report sent", MIN);
    assert!(!account_exists(&user), "{user} outlived its grant");
    let again = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(!again.status.success(), "logged in after the grant ended");

    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0), "{}", bridge.log());
    let log = bridge.log();
    assert!(!log.contains(CANARY_IMAGE), "the bridge logged the image");
}
