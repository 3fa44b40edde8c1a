//! A coalition for tests: an iroh relay and a bootstrap mosaik node, both in
//! this process on 127.0.0.1, on a runtime of their own.
//!
//! Bridges and agents started by a test point at [`TestCoalition::relay_url`]
//! and [`TestCoalition::bootstrap`]; unlike a local coalition (whose relay
//! lives in the bridge), this one outlives any bridge, so a test can kill a
//! bridge and start it again while its agents stay connected, and the relay
//! can be stopped and started again on the same address while everything
//! else runs ([`TestCoalition::stop_relay`], [`TestCoalition::start_relay`]).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mosaik::iroh::{RelayMap, RelayMode, RelayUrl};
use mosaik::{Network, discovery};

/// A relay plus a bootstrap node; both stop on drop.
pub struct TestCoalition {
    rt: Option<tokio::runtime::Runtime>,
    relay: Option<iroh_relay::server::Server>,
    node: Option<Network>,
    relay_addr: SocketAddr,
    /// The coalition (network) name.
    pub network: String,
    /// `http://127.0.0.1:PORT/`.
    pub relay_url: String,
    /// The bootstrap node as `PEER_ID@RELAY_URL`.
    pub bootstrap: String,
}

impl TestCoalition {
    /// Start a relay and a bootstrap node for coalition `network`.
    pub fn start(network: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the test coalition");
        let (relay, node, relay_url) = rt.block_on(async {
            let relay = spawn_relay(0).await;
            let url: RelayUrl = format!("http://{}/", relay.http_addr().expect("relay address"))
                .parse()
                .expect("relay url");
            let node = tokio::time::timeout(
                Duration::from_secs(60),
                Network::builder(network)
                    .with_relay_mode(RelayMode::Custom(RelayMap::from(url.clone())))
                    .with_addresses(BTreeSet::from([SocketAddr::from((Ipv4Addr::LOCALHOST, 0))]))
                    .with_discovery(discovery::Config::builder().no_dht_bootstrap())
                    .build(),
            )
            .await
            .expect("the bootstrap node reached the relay")
            .expect("starting the bootstrap node");
            (relay, node, url)
        });
        let bootstrap = format!("{}@{relay_url}", node.local().id());
        let relay_addr = relay.http_addr().expect("relay address");
        Self {
            relay_addr,
            rt: Some(rt),
            relay: Some(relay),
            node: Some(node),
            network: network.to_string(),
            relay_url: relay_url.to_string(),
            bootstrap,
        }
    }

    /// The `[coalition]` table a bridge config needs to join this coalition.
    pub fn config_section(&self) -> String {
        format!(
            "[coalition]\nnetwork = {:?}\nlocal = false\nrelays = [{:?}]\nbootstrap = [{:?}]\nbind = \"127.0.0.1\"\n",
            self.network, self.relay_url, self.bootstrap
        )
    }

    /// The `coalition-agent` flags that join this coalition.
    pub fn agent_flags(&self) -> Vec<String> {
        vec![
            "--network".into(),
            self.network.clone(),
            "--relay".into(),
            self.relay_url.clone(),
            "--bootstrap".into(),
            self.bootstrap.clone(),
        ]
    }

    /// The relay's address (`127.0.0.1:PORT`); it stays the same across
    /// [`Self::stop_relay`] and [`Self::start_relay`].
    pub fn relay_addr(&self) -> SocketAddr {
        self.relay_addr
    }

    /// Shut the relay down: its listener closes and every peer's relay
    /// connection drops. The bootstrap node and everything else stay up.
    pub fn stop_relay(&mut self) {
        if let Some(r) = self.relay.take() {
            self.block_on(async move {
                let _ = r.shutdown().await;
            });
        }
    }

    /// Start the relay again on the address it had (after
    /// [`Self::stop_relay`]). Peers find it at the same URL.
    pub fn start_relay(&mut self) {
        assert!(self.relay.is_none(), "the relay is already running");
        let port = self.relay_addr().port();
        let relay = self.block_on(async move {
            // The old listener's port can take a moment to be free again.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match try_spawn_relay(port).await {
                    Ok(r) => break r,
                    Err(e) if std::time::Instant::now() < deadline => {
                        eprintln!("relay not yet back on port {port}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("restarting the relay on port {port}: {e}"),
                }
            }
        });
        self.relay = Some(relay);
    }

    /// Run `f` on the coalition's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("running").block_on(f)
    }
}

async fn spawn_relay(port: u16) -> iroh_relay::server::Server {
    try_spawn_relay(port)
        .await
        .expect("starting an iroh relay on 127.0.0.1")
}

/// A plain-HTTP relay on `127.0.0.1:port` (0: any free port).
async fn try_spawn_relay(port: u16) -> Result<iroh_relay::server::Server, String> {
    let mut config = iroh_relay::server::ServerConfig::default();
    config.relay = Some(iroh_relay::server::RelayConfig::new((
        Ipv4Addr::LOCALHOST,
        port,
    )));
    iroh_relay::server::Server::spawn(config)
        .await
        .map_err(|e| format!("{e:#}"))
}

impl Drop for TestCoalition {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            let node = self.node.take();
            let relay = self.relay.take();
            rt.block_on(async move {
                drop(node);
                if let Some(r) = relay {
                    let _ = r.shutdown().await;
                }
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
