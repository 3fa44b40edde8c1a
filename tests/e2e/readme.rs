//! The README's two-terminal demo, exactly as written: `compute-bridge
//! run` with no `--config` (the embedded config/local.toml: the bare-metal
//! backend on this machine, through its `local` transport) in a fresh
//! working directory, so `./.compute-bridge` lands there, and in the same
//! directory the agent command the README prints, also with no
//! `--config`. As root (as CI runs) the grant gets a real `cb-…` Unix
//! account. The agent's output has every phrase of the README's sample
//! output.

use std::time::Duration;

use compute_bridge_testkit::process::Running;

use crate::bridge_bin;
use crate::support::{account_exists, agent_bin, assert_root};

const README: &str = include_str!("../../README.md");

/// The fenced block that follows the line containing `after`.
fn block_after(after: &str) -> String {
    let start = README
        .find(after)
        .unwrap_or_else(|| panic!("the README no longer has {after:?}"));
    let rest = &README[start..];
    let open = rest.find("```").expect("a fenced block follows") + 3;
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("the block ends")].to_string()
}

#[test]
fn the_readme_two_terminal_demo_runs_on_the_embedded_default() {
    assert_root("the embedded default's bare-metal backend makes a Unix account per grant as root");
    // The two terminals, as the README writes them.
    let terminals = block_after("### Try the whole loop (two terminals)");
    let mut lines = terminals
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    assert_eq!(
        lines.next(),
        Some("cargo run --release -- run"),
        "{terminals}"
    );
    let agent_cmd = lines.next().expect("the agent's command");
    let agent_args: Vec<&str> = agent_cmd
        .strip_prefix("cargo run --release --bin coalition-agent -- ")
        .unwrap_or_else(|| panic!("not a coalition-agent command: {agent_cmd}"))
        .split_whitespace()
        .collect();
    assert!(!agent_args.contains(&"--config"), "{agent_cmd}");
    let sample = block_after("then waits for the usage report:");

    let dir = tempfile::tempdir().unwrap();
    // The second terminal first: the agent waits for a bridge (it used to
    // exit at once, "no local bridge found").
    let mut agent = Running::spawn_in(Some(dir.path()), &agent_bin(), &agent_args, &[]);
    agent.wait_for_log(
        "waiting for a local bridge: ./.compute-bridge/local-coalition.json does not exist yet",
        Duration::from_secs(60),
    );
    // Then `run` exactly, but on a free dashboard port: 8080 may be taken
    // on a shared machine.
    let mut bridge = Running::spawn_in(
        Some(dir.path()),
        &bridge_bin(),
        &["run", "--dashboard-port", "0"],
        &[],
    );
    bridge.wait_for_log("provider card published", Duration::from_secs(180));
    assert!(
        dir.path()
            .join(".compute-bridge/local-coalition.json")
            .is_file(),
        "the state dir is not ./.compute-bridge: {}",
        bridge.log()
    );
    assert_eq!(
        agent.wait(Duration::from_secs(180)),
        Some(0),
        "{}\n--- bridge ---\n{}",
        agent.log(),
        bridge.log()
    );
    let out = agent.log();
    if let Some(line) = out
        .lines()
        .find(|l| l.contains("access opened with the reply key"))
    {
        eprintln!("measured: {line}");
    }

    // What the README shows is what it printed (ids, times and paths
    // vary; every other phrase is checked in both).
    let mut differ = Vec::new();
    for phrase in [
        "request ",
        " sent to provider ",
        " (card not attested)",
        "access opened with the reply key ",
        " ms after the grant was sent (",
        " ms after start); log in with:",
        "  ssh -i /tmp/coalition-agent-",
        "/id_ed25519 -o IdentitiesOnly=yes ",
        " -p 22 cb-",
        "@127.0.0.1",
        "waiting for the usage report (the grant ends in at most 30s)",
        "usage report: expired at valid_to cpu_core_seconds=",
        " ram_mib_seconds=",
        " net_bytes=",
    ] {
        if !sample.contains(phrase) {
            differ.push(format!("the README's sample lacks {phrase:?}"));
        }
        if !out.contains(phrase) {
            differ.push(format!("the agent did not print {phrase:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{}\n--- the README's sample ---\n{sample}--- the agent printed ---\n{out}",
        differ.join("\n")
    );
    let ssh = out
        .lines()
        .find(|l| l.trim_start().starts_with("ssh -i "))
        .unwrap_or_else(|| panic!("no ssh line in:\n{out}"));
    // The agent's fresh key directory, as a first-time user gets it.
    if let Some(key) = ssh.split_whitespace().nth(2)
        && let Some(keys) = std::path::Path::new(key).parent()
        && keys.starts_with(std::env::temp_dir())
    {
        let _ = std::fs::remove_dir_all(keys);
    }
    let user = Some(ssh)
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, dest)| dest.split_once('@'))
        .map(|(u, _)| u.to_string())
        .unwrap_or_else(|| panic!("no user@host in:\n{out}"));
    assert!(
        !account_exists(&user),
        "{user} outlived its grant:\n{}",
        bridge.log()
    );

    bridge.signal("TERM");
    assert_eq!(
        bridge.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.log()
    );
    assert!(
        dir.path().join(".compute-bridge/journal.redb").is_file(),
        "no journal in ./.compute-bridge"
    );
    assert!(
        !dir.path()
            .join(".compute-bridge/local-coalition.json")
            .exists(),
        "the rendezvous file outlived the bridge"
    );
}
