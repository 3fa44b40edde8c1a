//! A coalition for tests: an iroh relay and a bootstrap mosaik node, both in
//! this process on 127.0.0.1, on a runtime of their own.
//!
//! Bridges and agents started by a test point at [`TestCoalition::relay_url`]
//! and [`TestCoalition::bootstrap`]; unlike a local coalition (whose relay
//! lives in the bridge), this one outlives any bridge, so a test can kill a
//! bridge and start it again while its agents stay connected.

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
            let mut config = iroh_relay::server::ServerConfig::default();
            config.relay = Some(iroh_relay::server::RelayConfig::new((
                Ipv4Addr::LOCALHOST,
                0,
            )));
            let relay = iroh_relay::server::Server::spawn(config)
                .await
                .expect("starting an iroh relay on 127.0.0.1");
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
        Self {
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

    /// Run `f` on the coalition's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("running").block_on(f)
    }
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
