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
//! state dir and reads that file, waiting for it (and passing over a file
//! whose bridge process is gone) while the bridge is not up yet. The bridge
//! removes the file when it stops cleanly; a stale file (after a crash)
//! names a relay that no longer answers until the bridge is restarted on
//! the same state dir: its relay comes back on the same port, so the file
//! is true again and agents that were waiting on the crashed run
//! reconnect. If that port is taken, the relay moves (said in the log) and
//! a waiting agent, which reads the file again while its provider is
//! unreachable, follows it.

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
                    let r = Self::spawn_at(ip, 0).await?;
                    let now = r.port();
                    tracing::warn!(
                        "the local relay's port {port} of the last run is taken ({e:#}); \
                         the relay moved to port {now}: agents waiting on the last run \
                         find it again through {RENDEZVOUS_FILE}"
                    );
                    r
                }
            },
            None => Self::spawn_at(ip, 0).await?,
        };
        let port = relay.port();
        std::fs::write(&file, format!("{port}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(relay)
    }

    /// Its TCP port.
    pub fn port(&self) -> u16 {
        self.server.http_addr().map(|a| a.port()).unwrap_or(0)
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
    /// The bridge's process id: for messages, and to pass over a file a
    /// crashed bridge left ([`Self::is_alive`]).
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

    /// Read it, waiting up to `wait` for a live bridge's file: an agent
    /// started before the bridge (or beside one still coming up) finds it
    /// once the bridge's node is up. Looks every 100 ms; a file whose
    /// bridge process is gone (left by a crash) is passed over until the
    /// wait ends, when it is used as it is. Says once, on stderr, what it
    /// is waiting for. A file that exists but does not parse is an error at
    /// once; no file by the end is today's "no local bridge found".
    pub fn read_waiting(state_dir: &Path, wait: std::time::Duration) -> anyhow::Result<Self> {
        let path = Self::path(state_dir);
        let until = std::time::Instant::now() + wait;
        let mut said = (false, false);
        loop {
            let out_of_time = std::time::Instant::now() >= until;
            if path.exists() {
                let r = Self::read(state_dir)?;
                if r.is_alive() || out_of_time {
                    return Ok(r);
                }
                if !said.1 {
                    eprintln!(
                        "waiting for a local bridge: {} names process {}, which is not \
                         running (a bridge that stopped without removing it)",
                        path.display(),
                        r.pid
                    );
                    said.1 = true;
                }
            } else if out_of_time {
                return Self::read(state_dir);
            } else if !said.0 {
                eprintln!(
                    "waiting for a local bridge: {} does not exist yet",
                    path.display()
                );
                said.0 = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Read it if it is there and its bridge process is running (see
    /// [`Self::is_alive`]); `None` otherwise.
    pub fn read_live(state_dir: &Path) -> Option<Self> {
        Self::read(state_dir).ok().filter(Self::is_alive)
    }

    /// False when its process is gone: Linux's `/proc` has no entry for
    /// its pid. Where there is no `/proc`, nothing is known and it counts
    /// as alive. (A bridge in another pid namespace looks gone: its file is
    /// then used only once [`Self::read_waiting`]'s wait ends.)
    pub fn is_alive(&self) -> bool {
        !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{}", self.pid)).exists()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rendezvous(relay: &str, pid: u32) -> Rendezvous {
        Rendezvous {
            network: "local.dev".into(),
            relay: relay.into(),
            bootstrap: format!("peer@{relay}"),
            pid,
        }
    }

    /// The pid of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn an_agent_waiting_for_a_bridge_passes_over_a_crashed_ones_file_until_the_live_one_is_written()
    {
        let dir = tempfile::tempdir().unwrap();
        let stale = rendezvous("http://127.0.0.1:1/", dead_pid());
        stale.write(dir.path()).unwrap();
        assert!(!stale.is_alive());
        let live = rendezvous("http://127.0.0.1:2/", std::process::id());
        let writer = {
            let (dir, live) = (dir.path().to_path_buf(), live.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                live.write(&dir).unwrap();
            })
        };
        let found = Rendezvous::read_waiting(dir.path(), Duration::from_secs(30)).unwrap();
        writer.join().unwrap();
        assert_eq!(found, live);
        assert_eq!(Rendezvous::read_live(dir.path()), Some(live));
    }

    #[test]
    fn a_crashed_bridges_file_is_used_once_the_wait_ends_and_no_file_is_no_local_bridge_found() {
        let dir = tempfile::tempdir().unwrap();
        let e = Rendezvous::read_waiting(dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(
            e.to_string().starts_with("no local bridge found: ")
                && e.to_string().contains("does not exist"),
            "{e}"
        );
        let stale = rendezvous("http://127.0.0.1:1/", dead_pid());
        stale.write(dir.path()).unwrap();
        assert_eq!(Rendezvous::read_live(dir.path()), None);
        assert_eq!(
            Rendezvous::read_waiting(dir.path(), Duration::from_millis(200)).unwrap(),
            stale
        );
    }
}
