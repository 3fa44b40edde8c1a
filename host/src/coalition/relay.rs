//! The local coalition: an in-process iroh relay on 127.0.0.1 (or the
//! loopback address `coalition.bind` names) for `coalition.local = true`,
//! and the rendezvous file that tells a
//! `coalition-agent` on the same machine how to reach the bridge.
//!
//! A mosaik node only comes up once it reaches a relay, and peers find each
//! other through a bootstrap address. A local bridge therefore runs its own
//! relay (plain HTTP, loopback only, on the port it had last time in this
//! state dir, or an ephemeral one) and writes
//! `state_dir/local-coalition.json` with the relay URL and its own
//! bootstrap address. The agent, given the same config, resolves the same
//! state dir and reads that file. The bridge removes the file when it stops
//! cleanly; a stale file (after a crash) names a relay that no longer
//! answers, and the agent says so, until the bridge is restarted on the same
//! state dir: its relay comes back on the same port, so the file is true
//! again and agents that were waiting on the crashed run reconnect.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// File name under the state dir.
pub const RENDEZVOUS_FILE: &str = "local-coalition.json";

/// The local relay's port, kept across runs (see
/// [`LocalRelay::spawn_keeping_port`]).
pub const RELAY_PORT_FILE: &str = "local-relay.port";

/// An iroh relay running in this process on 127.0.0.1.
pub struct LocalRelay {
    server: iroh_relay::server::Server,
    url: String,
}

impl std::fmt::Debug for LocalRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalRelay({})", self.url)
    }
}

impl LocalRelay {
    /// Start a relay on 127.0.0.1 on an ephemeral port (plain HTTP, no QUIC
    /// address discovery, no metrics server).
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_on(0).await
    }

    /// Start a relay on 127.0.0.1:`port` (0 picks one).
    pub async fn spawn_on(port: u16) -> anyhow::Result<Self> {
        Self::spawn_at(Ipv4Addr::LOCALHOST.into(), port).await
    }

    /// Start a relay on `ip`:`port` (0 picks one).
    pub async fn spawn_at(ip: IpAddr, port: u16) -> anyhow::Result<Self> {
        let mut config = iroh_relay::server::ServerConfig::default();
        config.relay = Some(iroh_relay::server::RelayConfig::new((ip, port)));
        let server = iroh_relay::server::Server::spawn(config)
            .await
            .with_context(|| format!("starting the local relay on {ip}"))?;
        let addr = server
            .http_addr()
            .context("the local relay has no HTTP address")?;
        Ok(Self {
            server,
            url: format!("http://{addr}/"),
        })
    }

    /// Start the local coalition's relay on `ip`, on the port it had the
    /// last time this state dir's bridge ran (kept in [`RELAY_PORT_FILE`]),
    /// so that agents waiting on a bridge that crashed find it again at the
    /// address they have; a fresh port when there is none, or when that one
    /// is taken now (said in the log: waiting agents then need restarting).
    pub async fn spawn_keeping_port(state_dir: &Path, ip: IpAddr) -> anyhow::Result<Self> {
        let file = state_dir.join(RELAY_PORT_FILE);
        let before = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
            .filter(|p| *p != 0);
        let relay = match before {
            Some(port) => match Self::spawn_at(ip, port).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        port,
                        "the local relay's port of the last run is not free ({e:#}); \
                         agents waiting on that run will not find this one"
                    );
                    Self::spawn_at(ip, 0).await?
                }
            },
            None => Self::spawn_at(ip, 0).await?,
        };
        let port = relay.server.http_addr().map(|a| a.port()).unwrap_or(0);
        std::fs::write(&file, format!("{port}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(relay)
    }

    /// Its URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop it.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}

/// What an agent needs to join a local bridge's coalition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendezvous {
    /// The coalition (network) name.
    pub network: String,
    /// The relay URL.
    pub relay: String,
    /// The bridge's bootstrap address (`PEER_ID@RELAY_URL`).
    pub bootstrap: String,
    /// The bridge's process id, for messages.
    pub pid: u32,
}

impl Rendezvous {
    /// Its path under `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(RENDEZVOUS_FILE)
    }

    /// Write it atomically.
    pub fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(state_dir);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Read it, with a message that says what to do if it is not there.
    pub fn read(state_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            anyhow::anyhow!(
                "no local bridge found: {} does not exist. Start one with \
                 `compute-bridge run` using the same config (the agent looks in the \
                 state dir that config names)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Read it, waiting up to `wait` for it to appear: an agent started
    /// beside a bridge that is still coming up finds it once the bridge's
    /// node is up. Says once, on stderr, what it is waiting for. A file that
    /// exists but does not parse is an error at once.
    pub fn read_waiting(state_dir: &Path, wait: std::time::Duration) -> anyhow::Result<Self> {
        let path = Self::path(state_dir);
        let until = std::time::Instant::now() + wait;
        let mut said = false;
        while !path.exists() && std::time::Instant::now() < until {
            if !said {
                eprintln!(
                    "waiting up to {}s for a local bridge to write {} (start one with \
                     `compute-bridge run` using the same config)",
                    wait.as_secs(),
                    path.display()
                );
                said = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self::read(state_dir)
    }

    /// Remove it if it is still the one this process wrote.
    pub fn remove_if_mine(state_dir: &Path) {
        if let Ok(r) = Self::read(state_dir)
            && r.pid == std::process::id()
        {
            let _ = std::fs::remove_file(Self::path(state_dir));
        }
    }
}
