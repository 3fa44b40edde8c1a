//! Helpers for the coalition tests: bridge configs on the fake backend (its
//! `.wasm` file: it is not built into the binary), the
//! real binaries, and an in-process observer that hears what a bridge
//! publishes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compute_bridge_coalition::NetworkSettings;
use compute_bridge_coalition::link::{ProviderSession, Reply, RequesterLink};
use compute_bridge_contract::protocol::{ProviderCard, ProviderId, RequestId};
use compute_bridge_testkit::coalition::TestCoalition;
use compute_bridge_testkit::process::Running;

use crate::bridge_bin;

/// The `coalition-agent` binary.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coalition-agent"))
}

/// A unique coalition name for one test.
pub fn network_name(test: &str) -> String {
    format!("e2e-{test}-{}", std::process::id())
}

/// Write a bridge config in `dir`: the fake backend with `fake` extra keys
/// under `[backends.config]`, the given `[coalition]` section, and
/// `bridge` extra keys under `[bridge]`.
pub fn write_config(dir: &Path, coalition: &str, bridge: &str, fake: &str) -> PathBuf {
    let text = format!(
        "[bridge]\nstate_dir = \"state\"\ncapacity_refresh_sec = 2\n{bridge}\n\
         {coalition}\n\
         [dashboard]\nport = {port}\n\n\
         [[backends]]\nname = \"fake\"\ncomponent = {fake_wasm:?}\n\
         [backends.config]\nregions = [\"local\"]\nmax_cpu_millicores = 4000\nmax_ram_mib = 4096\n{fake}\n",
        port = compute_bridge_testkit::free_port(),
        fake_wasm = compute_bridge_testkit::components::FAKE,
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A bridge process on `config`, up, taking grants and with its card
/// published.
pub fn start_bridge(config: &Path) -> Running {
    let b = restart_bridge(config);
    b.wait_for_log("provider card published", Duration::from_secs(60));
    b
}

/// A bridge process on `config`, up and taking grants (its card may not
/// be out yet).
pub fn restart_bridge(config: &Path) -> Running {
    restart_bridge_with(config, &[])
}

/// Like [`restart_bridge`], with `env` set for the bridge too.
pub fn restart_bridge_with(config: &Path, env: &[(&str, &str)]) -> Running {
    let cfg = config.display().to_string();
    let mut all = QUIET.to_vec();
    all.extend_from_slice(env);
    let b = Running::spawn(&bridge_bin(), &["run", "--config", &cfg], &all);
    b.wait_for_log("taking grants", Duration::from_secs(180));
    b
}

/// The provider id of the bridge whose state dir is `state_dir`.
pub fn provider_id(state_dir: &Path) -> ProviderId {
    compute_bridge_daemon::identity::Identity::load_or_create(state_dir)
        .unwrap()
        .provider_id
}

/// Log filters: iroh's public address lookups fail here by design.
const QUIET: &[(&str, &str)] = &[
    ("COMPUTE_BRIDGE_LOG", "info,iroh::address_lookup=error"),
    (
        "COALITION_AGENT_LOG",
        "warn,iroh=error,compute_bridge=debug,mosaik=debug",
    ),
];

/// Run `coalition-agent` with `args` in the background.
pub fn agent(args: &[&str]) -> Running {
    Running::spawn(&agent_bin(), args, QUIET)
}

/// Join a test coalition's flags to `args`.
pub fn with_net(coalition: &TestCoalition, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = coalition.agent_flags();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Like [`agent`] with owned args.
pub fn agent_owned(args: &[String]) -> Running {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    agent(&a)
}

/// `coalition-agent request --config config` (a local coalition, found
/// through its rendezvous file) for a small workload (100 millicores,
/// 64 MiB) lasting `duration`, in the background.
///
/// Without `NO_COLOR`, as a user runs it: its log, read through a pipe,
/// must come without terminal colour codes all the same.
pub fn request_local(config: &Path, duration: &str) -> Running {
    let cfg = config.display().to_string();
    let mut args = vec!["request", "--config", &cfg];
    args.extend(small(duration));
    Running::spawn_with(None, &agent_bin(), &args, QUIET, &["NO_COLOR"])
}

/// The flags of a small workload (100 millicores, 64 MiB) lasting
/// `duration`.
fn small(duration: &str) -> [&str; 6] {
    ["--cpu", "100", "--ram", "64", "--duration", duration]
}

/// Fail unless this test runs as root, saying `why` it must.
pub fn assert_root(why: &str) {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        String::from_utf8_lossy(&uid).trim(),
        "0",
        "{why}; run it as root (as CI does)"
    );
}

/// Whether Unix account `user` exists on this machine.
pub fn account_exists(user: &str) -> bool {
    std::process::Command::new("id")
        .arg(user)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `coalition-agent request` on `coalition` for a small workload (100
/// millicores, 64 MiB) lasting `duration`, with `extra` flags, in the
/// background.
pub fn request_small(coalition: &TestCoalition, duration: &str, extra: &[&str]) -> Running {
    let mut args = vec!["request"];
    args.extend(small(duration));
    args.extend_from_slice(extra);
    agent_owned(&with_net(coalition, &args))
}

/// Count lines of `log` containing every needle.
pub fn count_lines(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// The request id an agent printed.
pub fn printed_request_id(agent: &Running) -> RequestId {
    agent.wait_for_log("request ", Duration::from_secs(120));
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("request "))
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How an in-process node joins `coalition` (on 127.0.0.1).
pub fn join_settings(coalition: &TestCoalition) -> NetworkSettings {
    NetworkSettings::parse(
        &coalition.network,
        std::slice::from_ref(&coalition.relay_url),
        std::slice::from_ref(&coalition.bootstrap),
        true,
    )
    .unwrap()
}

/// An in-process coalition peer that subscribes to one provider's streams
/// and keeps everything it hears.
pub struct Observer {
    link: Arc<RequesterLink>,
    heard: Arc<Mutex<Vec<Reply>>>,
    /// The provider's card as first seen.
    pub card: ProviderCard,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Join `coalition` and subscribe to `provider`, waiting until both ends
    /// are connected.
    pub async fn start(coalition: &TestCoalition, provider: ProviderId) -> Self {
        Self::start_inner(coalition, provider, None).await
    }

    /// Like [`Self::start`] for a provider whose card is already known (a
    /// restarted bridge may take a while to write it again).
    pub async fn start_with_card(coalition: &TestCoalition, card: ProviderCard) -> Self {
        Self::start_inner(coalition, card.provider_id, Some(card)).await
    }

    async fn start_inner(
        coalition: &TestCoalition,
        provider: ProviderId,
        known: Option<ProviderCard>,
    ) -> Self {
        let settings = join_settings(coalition);
        let network = compute_bridge_coalition::join(&settings, None)
            .await
            .unwrap();
        let link = Arc::new(RequesterLink::open(
            Arc::new(network),
            settings.bootstrap.clone(),
        ));
        let card = match known {
            Some(card) => {
                // Learn where its node is from the coalition's bootstrap.
                card
            }
            None => link
                .wait_for_cards(Duration::from_secs(60), |c| {
                    c.iter().any(|c| c.provider_id == provider)
                })
                .await
                .into_iter()
                .find(|c| c.provider_id == provider)
                .expect("the provider's card reached the observer"),
        };
        let session = link
            .connect(card.node, Duration::from_secs(60))
            .await
            .expect("the observer subscribed to the provider");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(collect(session, heard.clone()));
        Self {
            link,
            heard,
            card,
            task,
        }
    }

    /// A session of the observer's own with the provider (for crafted
    /// grants).
    pub async fn session(&self) -> ProviderSession {
        self.link
            .connect(self.card.node, Duration::from_secs(60))
            .await
            .expect("subscribed")
    }

    /// The newest card the observer's node has heard from each provider.
    pub fn cards(&self) -> Vec<ProviderCard> {
        self.link.cards()
    }

    /// Everything heard about `request_id` so far.
    pub fn about(&self, request_id: RequestId) -> Vec<Reply> {
        self.heard
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.request_id() == request_id)
            .cloned()
            .collect()
    }

    /// Wait (blocking) until `pred` holds for what was heard about
    /// `request_id`.
    pub fn wait_for(
        &self,
        request_id: RequestId,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Reply]) -> bool,
    ) -> Vec<Reply> {
        let start = std::time::Instant::now();
        loop {
            let about = self.about(request_id);
            if pred(&about) {
                return about;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; heard {about:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keep every reply from the session (any request id).
async fn collect(mut session: ProviderSession, heard: Arc<Mutex<Vec<Reply>>>) {
    while let Some(r) = session.next_any().await {
        heard.lock().unwrap().push(r);
    }
}

/// Count accesses in `replies`.
pub fn accesses(replies: &[Reply]) -> usize {
    replies
        .iter()
        .filter(|r| matches!(r, Reply::Access(_)))
        .count()
}

/// Count usage reports in `replies`.
pub fn usage_reports(replies: &[Reply]) -> usize {
    replies
        .iter()
        .filter(|r| matches!(r, Reply::Usage(_)))
        .count()
}
