//! Nothing a backend returns is trusted, end to end: the real bridge with
//! hostile backends (the `cb-hostile` component) and the real
//! `coalition-agent`; and the agent against a provider that is itself
//! hostile (played in-process here), since a requester must not trust the
//! provider either.
//!
//! What each attack hoped for, and what the tests look for instead:
//! - a login that is a shell command, printed in the `ssh` line the
//!   requester pastes: the line is pasted here, as a victim would, and
//!   nothing runs;
//! - a 24 MiB instance handle per grant, to fill the journal's disk;
//! - 2^63 core-seconds per grant, to wrap the requester's bill and the
//!   operator's counters;
//! - 4 MiB of region names and capacity claims of `u32::MAX`, to bloat the
//!   provider card every requester downloads;
//! - a host key with a second known_hosts line, or none at all, to make the
//!   requester trust an attacker's host.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compute_bridge_coalition::envelope::{self, EnvelopeKey};
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::protocol::{
    AccessBundle, Attestation, PROTOCOL_VERSION, ProviderCard, RequestId, UsageReport,
    WorkloadEnding,
};
use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::{components, free_port, http, wait_for};

use crate::support::*;

const MIN: Duration = Duration::from_secs(60);

/// A valid ed25519 host key line (its private half was thrown away), and
/// another an attacker would like trusted for every host.
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNOL++V6ayesnKlyKywg+VwHP9Gk9Jc/LcRtrWmSSAm";
const ATTACKER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMN0XwsgcbuEjiP3VMEcMDLaqctep+ypJkVrSaPgpA5F";

/// The login a hostile backend returned in the original attack, aimed at
/// `dir`: a command substitution and an ssh option.
fn injection(dir: &Path) -> String {
    format!(
        "x $(touch {d}/pwned) -oProxyCommand='touch {d}/pwned-by-proxy'",
        d = dir.display()
    )
}

/// A coalition for test `name`, a scratch dir, and in it the directory the
/// attacks aim their files at.
fn setup(name: &str) -> (TestCoalition, tempfile::TempDir, PathBuf) {
    let net = TestCoalition::start(&network_name(name));
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    (net, dir, victim)
}

/// Files the attacks would have made in `dir`.
fn pwned(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pwned"))
                .collect()
        })
        .unwrap_or_default()
}

/// Paste every `ssh` line `log` printed into a shell, as the requester is
/// told to (made non-interactive, and bounded).
fn paste_ssh_lines(log: &str) {
    for line in log.lines().map(str::trim).filter(|l| l.starts_with("ssh ")) {
        let cmd = line.replacen(
            "ssh ",
            "ssh -o BatchMode=yes -o ConnectTimeout=3 -o ConnectionAttempts=1 ",
            1,
        );
        let _ = Command::new("timeout")
            .args(["20", "sh", "-c", &format!("{cmd} true")])
            .output();
    }
}

/// Wait for agent `a` to exit, paste every `ssh` line it printed into a
/// shell, and check that `what` made no file in `victim`; its exit code and
/// output.
fn wait_and_paste(
    mut a: compute_bridge_testkit::process::Running,
    victim: &Path,
    what: &str,
) -> (Option<i32>, String) {
    let code = a.wait(Duration::from_secs(120));
    let log = a.log();
    paste_ssh_lines(&log);
    assert!(
        pwned(victim).is_empty(),
        "{what}: pasting the agent's ssh line ran {:?}\n{log}",
        pwned(victim)
    );
    (code, log)
}

/// `[[backends]]` for a hostile backend taking only grants for region
/// `name`, with `config` lines under `[backends.config]`.
fn hostile(name: &str, host: &str, config: &str) -> String {
    format!(
        "[[backends]]\nname = {name:?}\ncomponent = {wasm:?}\n{host}\n\
         [backends.config]\nonly_region = {name:?}\n{config}\n",
        wasm = components::HOSTILE,
    )
}

#[test]
fn a_hostile_backends_returns_reach_neither_the_requester_nor_the_journal_nor_the_card() {
    let (net, dir, victim) = setup("returns");
    let port = free_port();
    let backends = [
        hostile(
            "inject",
            "",
            &format!(
                "attack = \"instance\"\nuser = {:?}\nhost_key = {HOST_KEY:?}\n",
                injection(&victim)
            ),
        ),
        hostile(
            "filler",
            "memory_limit_mib = 128",
            "attack = \"instance\"\nhost_key = \"\"\npad_field = \"handle\"\npad_kib = 24576\n",
        ),
        hostile(
            "usage",
            "",
            &format!("attack = \"instance\"\nhost_key = {HOST_KEY:?}\nusage_pow2 = 63\n"),
        ),
        hostile(
            "regions",
            "memory_limit_mib = 128",
            "offer_regions = 65536\noffer_region_len = 64\n",
        ),
        hostile(
            "claims",
            "",
            "offer_cpu = 4294967295\noffer_ram = 4294967295\n",
        ),
    ]
    .concat();
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[bridge]\nstate_dir = \"state\"\nconcurrency_cap = 8\ncapacity_refresh_sec = 5\n\n\
             {coalition}\n[dashboard]\nport = {port}\n\n{backends}",
            coalition = net.config_section()
        ),
    )
    .unwrap();
    let mut bridge = start_bridge(&cfg);
    let provider = provider_id(&dir.path().join("state")).to_string();
    let request = |region: &str, key_dir: &Path| {
        let kd = key_dir.display().to_string();
        let extra = [
            "--provider",
            &provider,
            "--region",
            region,
            "--key-dir",
            &kd,
        ];
        request_small(&net, "5s", &extra)
    };

    // The card: the 4 MiB offer is not in it, the claim is cut to the
    // ceiling, and the whole card stays small.
    let (code, out, err) = compute_bridge_testkit::process::run(
        &agent_bin(),
        &with_net(&net, &["providers", "--json"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.len() < 64 * 1024,
        "the card list is {} bytes of JSON",
        out.len()
    );
    let cards: Vec<ProviderCard> = serde_json::from_str(&out).unwrap();
    let card = cards
        .iter()
        .find(|c| c.provider_id.to_string() == provider)
        .unwrap_or_else(|| panic!("no card of {provider} in {out}"));
    let wire = postcard::to_allocvec(card).unwrap().len();
    assert!(wire < 16 * 1024, "the card is {wire} bytes on the wire");
    let offer = |n: &str| card.backends.iter().find(|b| b.name == n).unwrap();
    assert!(
        offer("regions").regions.is_empty(),
        "{:?}",
        offer("regions").regions.len()
    );
    assert_eq!(
        (
            offer("claims").max_cpu_millicores,
            offer("claims").max_ram_mib
        ),
        (65_536_000, 1_073_741_824)
    );

    // A login that is a shell command: the grant is declined, no ssh line
    // runs anything.
    let a = request("inject", &dir.path().join("inject-keys"));
    let (code, log) = wait_and_paste(a, &victim, "the backend's login");
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("declined: backend-error"), "{log}");

    // A 24 MiB handle: declined, and the journal stays small.
    let journal = dir.path().join("state/journal.redb");
    let before = std::fs::metadata(&journal).unwrap().len();
    let mut a = request("filler", &dir.path().join("filler-keys"));
    assert_eq!(a.wait(Duration::from_secs(120)), Some(3), "{}", a.log());
    let after = std::fs::metadata(&journal).unwrap().len();
    assert!(
        after < before + (1 << 20),
        "the journal grew from {before} to {after} bytes"
    );

    // 2^63 of everything, three grants at once: each report is clamped to
    // what 100 millicores and 64 MiB could use in the grant's life, and the
    // operator's counters do not wrap.
    let mut agents: Vec<_> = (0..3)
        .map(|i| request("usage", &dir.path().join(format!("usage-keys-{i}"))))
        .collect();
    for a in &mut agents {
        assert_eq!(a.wait(Duration::from_secs(180)), Some(0), "{}", a.log());
        let log = a.log();
        let line = log
            .lines()
            .find(|l| l.starts_with("usage report: "))
            .unwrap_or_else(|| panic!("no usage report in\n{log}"));
        let field = |k: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        // At most 5 s of grant plus the bridge's allowance (provisioning,
        // second rounding, clock skew): far below 2^63.
        assert!(field("cpu_core_seconds") <= 10, "{line}");
        assert!(field("ram_mib_seconds") <= 64 * 60, "{line}");
        assert!(field("net_bytes") <= 12_500_000_000 * 60, "{line}");
    }
    let snap = http::get_local(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "/snapshot.json",
    );
    let v: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    let cpu = v["lifetime"]["cpu_core_seconds"].as_u64().unwrap();
    assert!((1..=30).contains(&cpu), "lifetime cpu_core_seconds = {cpu}");

    // The operator's log says what was refused and clamped, in one escaped
    // line each.
    bridge.signal("TERM");
    assert_eq!(bridge.wait(MIN), Some(0));
    let log = bridge.log();
    for needle in [
        "`user`",
        "POSIX",
        "`handle`",
        "16384",
        "usage clamped",
        "regions",
        "capacity claim",
    ] {
        assert!(
            log.contains(needle),
            "no {needle:?} in the bridge's log:\n{log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.starts_with("-oProxyCommand") || l.len() > 64 * 1024),
        "a forged or unbounded line in the bridge's log"
    );
}

/// A provider run by the test: it publishes a card, answers each grant
/// with the next access bundle in `bundles`, and sends a request's usage
/// report when the test says so ([`HostileProvider::report`]): only once
/// the agent has shown what it made of the access, since the two streams
/// do not keep each other's order.
struct HostileProvider {
    provider_id: String,
    reports: tokio::sync::mpsc::UnboundedSender<RequestId>,
    task: tokio::task::AbortHandle,
}

impl HostileProvider {
    /// Send the usage report of `request_id`.
    fn report(&self, request_id: RequestId) {
        self.reports.send(request_id).unwrap();
    }
}

impl Drop for HostileProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hostile_provider(net: &TestCoalition, bundles: Vec<AccessBundle>) -> HostileProvider {
    use compute_bridge_coalition::link::ProviderLink;
    let settings = join_settings(net);
    let bundles = Arc::new(Mutex::new(VecDeque::from(bundles)));
    let key = EnvelopeKey::generate();
    let provider_id = key.provider_id();
    let (reports, mut to_report) = tokio::sync::mpsc::unbounded_channel::<RequestId>();
    let task = net.block_on(async move {
        let network = Arc::new(
            compute_bridge_coalition::join(&settings, None)
                .await
                .unwrap(),
        );
        let link = Arc::new(ProviderLink::open(
            network.clone(),
            settings.bootstrap.clone(),
            provider_id,
        ));
        let mut grants = link.grants();
        link.announce().await;
        link.publish_card(ProviderCard {
            version: PROTOCOL_VERSION,
            provider_id,
            coalition: settings.network.clone(),
            module_version: "hostile".into(),
            node: link.node(),
            backends: Vec::new(),
            concurrency_cap: 8,
            active_grants: 0,
            envelope_key: key.public(),
            attestation: Attestation::None,
            measurements: Default::default(),
            refreshed_at: now_unix(),
        });
        let reporter = link.clone();
        tokio::spawn(async move {
            while let Some(request_id) = to_report.recv().await {
                let now = now_unix();
                let _ = reporter
                    .send_usage(UsageReport {
                        version: PROTOCOL_VERSION,
                        request_id,
                        provider_id,
                        ending: WorkloadEnding::Exited(0),
                        usage: Default::default(),
                        started_at: now,
                        ended_at: now,
                    })
                    .await;
            }
        });
        tokio::spawn(async move {
            let _network = network;
            let mut answered = std::collections::HashSet::new();
            while let Some(g) = grants.recv().await {
                if g.provider_id != provider_id || !answered.insert(g.request_id) {
                    continue;
                }
                let Some(bundle) = bundles.lock().unwrap().pop_front() else {
                    continue;
                };
                let reply = key.open_grant(&g).unwrap();
                let sealed =
                    envelope::seal_access(&reply, g.request_id, provider_id, &bundle).unwrap();
                link.send_access(sealed, MIN).await.unwrap();
            }
        })
        .abort_handle()
    });
    HostileProvider {
        provider_id: provider_id.to_string(),
        reports,
        task,
    }
}

fn private_key() -> String {
    use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]))
        .to_openssh(LineEnding::LF)
        .unwrap()
        .to_string()
}

fn bundle(host: &str, port: u16, user: &str, host_key: &str) -> AccessBundle {
    AccessBundle {
        host: host.into(),
        port,
        user: user.into(),
        private_key: private_key(),
        host_key: host_key.into(),
    }
}

#[test]
fn the_agent_opens_only_an_access_it_can_hand_over_safely() {
    let (net, dir, victim) = setup("agent-access");
    // A port nothing listens on: the pasted ssh lines fail to connect.
    let closed = free_port();
    let two_lines = format!("{HOST_KEY}\n* {ATTACKER_KEY}");
    let with_proxy = format!(
        "127.0.0.1 -oProxyCommand=touch {}/pwned-host",
        victim.display()
    );
    // (what, the bundle, extra agent flags, exit code, what the agent says)
    let cases: Vec<(&str, AccessBundle, Vec<&str>, i32, &str)> = vec![
        (
            "a login that is a shell command",
            bundle("127.0.0.1", closed, &injection(&victim), HOST_KEY),
            vec![],
            5,
            "not a POSIX portable login name",
        ),
        (
            "a host followed by an ssh option",
            bundle(&with_proxy, closed, "cb-1", HOST_KEY),
            vec![],
            5,
            "not a host name or IP address",
        ),
        (
            "a host key with a second known_hosts line",
            bundle("127.0.0.1", closed, "cb-1", &two_lines),
            vec![],
            5,
            "`host_key`",
        ),
        (
            "no host key",
            bundle("127.0.0.1", closed, "cb-1", ""),
            vec![],
            5,
            "--accept-new-host-key",
        ),
        (
            "no host key, trusted on first use as asked",
            bundle("127.0.0.1", closed, "cb-1", ""),
            vec!["--accept-new-host-key"],
            0,
            "StrictHostKeyChecking=accept-new",
        ),
        (
            "a fair access, into a key directory whose name is a command",
            bundle("127.0.0.1", closed, "cb-1", HOST_KEY),
            vec![],
            0,
            "StrictHostKeyChecking=yes",
        ),
    ];
    let provider = hostile_provider(&net, cases.iter().map(|c| c.1.clone()).collect());
    for (i, (what, b, flags, code, says)) in cases.iter().enumerate() {
        let key_dir: PathBuf = if i == cases.len() - 1 {
            dir.path()
                .join(format!("keys $(touch {}/pwned-dir) `x`", victim.display()))
        } else {
            dir.path().join(format!("keys-{i}"))
        };
        let kd = key_dir.display().to_string();
        let mut extra = vec!["--provider", &provider.provider_id, "--key-dir", &kd];
        extra.extend(flags.iter().copied());
        let a = request_small(&net, "30s", &extra);
        let request_id = printed_request_id(&a);
        // What the agent made of the access, then the usage report (an
        // agent that refused it has left by then).
        wait_for(what, Duration::from_secs(120), || {
            let log = a.log();
            (log.contains("waiting for the usage report") || log.contains("refusing")).then_some(())
        });
        provider.report(request_id);
        let (got, log) = wait_and_paste(a, &victim, what);
        assert_eq!(got, Some(*code), "{what}:\n{log}");
        assert!(log.contains(says), "{what}: no {says:?} in\n{log}");
        let known = std::fs::read_to_string(key_dir.join("known_hosts")).unwrap_or_default();
        assert!(
            !known.contains(ATTACKER_KEY),
            "{what}: the agent trusts the attacker's key:\n{known}"
        );
        if *code == 0 {
            let ssh = log
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("ssh "))
                .unwrap_or_else(|| panic!("{what}: no ssh line\n{log}"));
            assert!(ssh.contains("UserKnownHostsFile="), "{what}: {ssh}");
            if !b.host_key.is_empty() {
                assert_eq!(
                    known,
                    format!("[127.0.0.1]:{closed} {HOST_KEY}\n"),
                    "{what}"
                );
            }
        } else {
            assert!(
                !log.lines().any(|l| l.trim_start().starts_with("ssh ")),
                "{what}: an ssh line was printed\n{log}"
            );
            assert!(
                !key_dir.join("id_ed25519").exists(),
                "{what}: the key was written for an access that was refused"
            );
        }
    }
}
