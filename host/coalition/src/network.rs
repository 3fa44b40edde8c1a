//! Joining the coalition's mosaik network (this module); the provider's
//! and requester's links to it are [`link`](crate::link), the local relay
//! [`relay`](crate::relay), and the protocol spoken on it is the contract's
//! ([`compute_bridge_contract::protocol`]).
//!
//! A coalition is a mosaik network whose id is the coalition's name. Every
//! node needs a relay to come up and a bootstrap peer to find the others:
//! production configs list the coalition's relays and bootstrap peers;
//! `coalition.local = true` runs a relay in the bridge (see
//! [`relay`](crate::relay)).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use mosaik::iroh::{EndpointAddr, RelayConfig, RelayMap, RelayMode, RelayUrl, TransportAddr};
use mosaik::{Network, SecretKey, discovery};

use compute_bridge_contract::protocol;

/// How long to wait for the node to reach a relay before giving up.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a coalition.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// The coalition's name (the mosaik network id is derived from it).
    pub network: String,
    /// Relays, tried in order.
    pub relays: Vec<RelayUrl>,
    /// Peers to sync with at start.
    pub bootstrap: Vec<EndpointAddr>,
    /// The address the node's sockets bind to (`coalition.bind`); every
    /// interface if `None`. See [`node_addresses`].
    pub bind: Option<IpAddr>,
    /// For a local coalition: the state dir whose rendezvous file
    /// ([`crate::relay::Rendezvous`]) the relay and bootstrap peer came from, read
    /// again when the provider cannot be reached (its relay may have moved
    /// to another port after a restart).
    pub rendezvous: Option<std::path::PathBuf>,
}

impl NetworkSettings {
    /// Settings from configured strings: relay URLs and `PEER_ID@ADDRESS`
    /// bootstrap peers; `loopback_only` binds the node to 127.0.0.1 (local
    /// coalitions, tests), else every interface until [`Self::with_bind`].
    pub fn parse(
        network: &str,
        relays: &[String],
        bootstrap: &[String],
        loopback_only: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            network: network.to_string(),
            relays: relays
                .iter()
                .map(|r| parse_relay_url(r).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            bootstrap: bootstrap
                .iter()
                .map(|b| parse_peer_addr(b).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            bind: loopback_only.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            rendezvous: None,
        })
    }

    /// Note that these settings came from the rendezvous file in
    /// `state_dir` (see [`Self::rendezvous`]).
    pub fn with_rendezvous(mut self, state_dir: std::path::PathBuf) -> Self {
        self.rendezvous = Some(state_dir);
        self
    }

    /// Bind the node to `bind` (`None`: every interface).
    pub fn with_bind(mut self, bind: Option<IpAddr>) -> Self {
        self.bind = bind;
        self
    }
}

/// The socket addresses a node bound to `ip` asks for: `ip` on an
/// ephemeral port, and the loopback address of the other family. iroh binds
/// one UDP socket per address family and, for a family it is given no
/// address for, the unspecified one (`0.0.0.0` or `[::]`: every
/// interface); mosaik 0.4.2 can only add addresses, not leave a family
/// out, so the other family is held to its loopback address, which only
/// this machine reaches. Where IPv6 has no loopback address at all (`[::1]`
/// cannot be bound), none is asked for: iroh's own `[::]` bind then fails
/// too, unless IPv6 works on other interfaces only, which is logged.
pub fn node_addresses(ip: IpAddr) -> BTreeSet<SocketAddr> {
    let other = match ip {
        IpAddr::V4(_) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
            match std::net::UdpSocket::bind(v6) {
                Ok(_) => Some(v6),
                Err(e) => {
                    if std::net::UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
                        .is_ok()
                    {
                        tracing::warn!(
                            "coalition.bind is {ip}, but this machine has no IPv6 loopback \
                             address ([::1]: {e}) to hold IPv6 to; the node also listens on [::]"
                        );
                    }
                    None
                }
            }
        }
        IpAddr::V6(_) => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    };
    std::iter::once(SocketAddr::new(ip, 0))
        .chain(other)
        .collect()
}

/// Where a node with `bind` listens, for `check-config` and the start-up
/// log.
pub fn describe_bind(bind: Option<IpAddr>) -> String {
    match bind {
        None => "every interface (UDP, an ephemeral port per address family; \
                 set coalition.bind to choose one address)"
            .into(),
        Some(ip) if ip.is_ipv4() => {
            format!("{ip} (UDP, an ephemeral port; IPv6 held to [::1])")
        }
        Some(ip) => format!("{ip} (UDP, an ephemeral port; IPv4 held to 127.0.0.1)"),
    }
}

/// Parse a relay URL.
pub fn parse_relay_url(s: &str) -> Result<RelayUrl, String> {
    s.parse::<RelayUrl>()
        .map_err(|e| format!("{s:?} is not a relay URL: {e}"))
}

/// Parse a bootstrap peer: `PEER_ID` or `PEER_ID@RELAY_URL` or
/// `PEER_ID@IP:PORT`; several addresses may follow, separated by `@`.
pub fn parse_peer_addr(s: &str) -> Result<EndpointAddr, String> {
    let mut parts = s.trim().split('@');
    let id =
        parts.next().unwrap_or_default().parse().map_err(|_| {
            format!("{s:?}: a bootstrap peer starts with its peer id (64 hex digits)")
        })?;
    let mut addr = EndpointAddr::new(id);
    for p in parts {
        if let Ok(ip) = p.parse::<SocketAddr>() {
            addr = addr.with_ip_addr(ip);
        } else {
            addr = addr.with_relay_url(
                parse_relay_url(p).map_err(|e| format!("bootstrap peer {s:?}: {e}"))?,
            );
        }
    }
    Ok(addr)
}

/// A node's bootstrap address as `PEER_ID@RELAY_URL` (the relay it uses),
/// the form [`parse_peer_addr`] reads.
pub fn format_peer_addr(addr: &EndpointAddr, relay: Option<&RelayUrl>) -> String {
    let relay = relay.or_else(|| {
        addr.addrs.iter().find_map(|a| match a {
            TransportAddr::Relay(u) => Some(u),
            _ => None,
        })
    });
    match relay {
        Some(r) => format!("{}@{r}", addr.id),
        None => addr.id.to_string(),
    }
}

/// How the node talks to one relay. iroh probes every relay it is given for
/// QUIC address discovery (QAD) on the relay's QUIC port and, before it
/// picks a home relay, waits for that probe up to its 3 s probe timeout
/// (iroh 1.4.1 `src/net_report.rs`, `PROBES_TIMEOUT` in
/// `src/net_report/defaults.rs`). A relay served over plain `http://` (the
/// in-process local relay, the testkit's relays) has no TLS and so no QUIC
/// endpoint (iroh-relay 1.4.1 `src/server.rs`: QAD needs a TLS server
/// config): that probe could only time out, so it is off for them
/// (`quic: None`) and the node joins once the relay answers its HTTP probe
/// (~0.2 s, iroh's `HTTPS_OFFSET`). `https://` relays keep QAD.
pub fn relay_config(url: &RelayUrl) -> RelayConfig {
    if url.scheme() == "http" {
        RelayConfig::new(url.clone(), None)
    } else {
        RelayConfig::from(url.clone())
    }
}

/// Join the coalition: build the node (waiting until it reaches a relay),
/// then sync the discovery catalog with each bootstrap peer.
///
/// The DHT auto-bootstrap is off: peers are found only through the
/// configured bootstrap peers, so the node talks to nothing but the
/// coalition's relays and peers.
pub async fn join(settings: &NetworkSettings, key: Option<SecretKey>) -> anyhow::Result<Network> {
    if settings.relays.is_empty() {
        anyhow::bail!(
            "coalition {:?} has no relay: set coalition.relays, or coalition.local = true",
            settings.network
        );
    }
    let relays: RelayMap = settings.relays.iter().map(relay_config).collect();
    let mut builder = Network::builder(settings.network.as_str())
        .with_relay_mode(RelayMode::Custom(relays))
        .with_discovery(
            discovery::Config::builder()
                .with_bootstrap(settings.bootstrap.clone())
                .no_dht_bootstrap(),
        );
    if let Some(ip) = settings.bind {
        builder = builder.with_addresses(node_addresses(ip));
    }
    if let Some(k) = key {
        builder = builder.with_secret_key(k);
    }
    let network = tokio::time::timeout(RELAY_TIMEOUT, builder.build())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "could not reach the coalition's relay ({}) within {}s",
                settings
                    .relays
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                RELAY_TIMEOUT.as_secs()
            )
        })?
        .context("starting the coalition node")?;
    sync(&network, &settings.bootstrap).await;
    Ok(network)
}

/// Log each change in an endpoint's (the node's) connection to its relays until the
/// endpoint closes: a lost relay as a warning with the error (iroh keeps
/// redialling it, backing off up to 16 s), and its return with how long it
/// was gone. Peers already connected keep their direct paths meanwhile; new
/// peers cannot find the node until a relay is back.
pub async fn watch_relays(endpoint: mosaik::iroh::Endpoint) {
    use mosaik::iroh::Watcher as _;
    let mut watcher = endpoint.home_relay_status();
    let mut lost: std::collections::BTreeMap<RelayUrl, std::time::Instant> = Default::default();
    let mut statuses = watcher.get();
    loop {
        for status in &statuses {
            let url = status.url();
            match (status.is_connected(), lost.contains_key(url)) {
                (false, false) => {
                    const LOST: &str = "lost the coalition relay; connected peers keep their \
                        direct paths, new peers cannot find this node until it is back; redialling";
                    match status.last_error() {
                        Some(e) => {
                            tracing::warn!(relay = %url, error = %format!("{e:#}"), "{LOST}")
                        }
                        None => tracing::warn!(relay = %url, "{LOST}"),
                    }
                    lost.insert(url.clone(), std::time::Instant::now());
                }
                (true, true) => {
                    let since = lost.remove(url).expect("checked");
                    tracing::info!(
                        relay = %url,
                        down_secs = since.elapsed().as_secs(),
                        "coalition relay connected again"
                    );
                }
                _ => {}
            }
        }
        statuses = tokio::select! {
            s = watcher.updated() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            () = endpoint.closed() => return,
        };
    }
}

/// Exchange discovery catalogs with `peers` (both ways), so they learn of
/// the streams this node opened since and it learns of theirs, without
/// waiting for the next gossip announcement. Best effort: failures are
/// logged.
pub async fn sync(network: &Network, peers: &[EndpointAddr]) {
    let syncs = peers.iter().map(|peer| async move {
        match tokio::time::timeout(
            Duration::from_secs(10),
            network.discovery().sync_with(peer.clone()),
        )
        .await
        {
            Ok(Ok(())) => tracing::debug!(peer = %peer.id, "synced catalogs"),
            Ok(Err(e)) => tracing::warn!(peer = %peer.id, "peer unreachable: {e}"),
            Err(_) => tracing::warn!(peer = %peer.id, "peer did not answer in 10s"),
        }
    });
    futures::future::join_all(syncs).await;
}

/// The peer id a card's [`NodeId`](protocol::NodeId) names; an error when
/// its 32 bytes are not an ed25519 public key (a card from a broken or
/// hostile provider: requesters skip it).
pub fn peer_id(node: &protocol::NodeId) -> anyhow::Result<mosaik::PeerId> {
    mosaik::PeerId::from_bytes(&node.0)
        .map_err(|e| anyhow::anyhow!("node {node} is not an ed25519 public key: {e}"))
}

/// The [`NodeId`](protocol::NodeId) a card publishes for `peer`.
pub fn node_id(peer: &mosaik::PeerId) -> protocol::NodeId {
    protocol::NodeId(*peer.as_bytes())
}

/// The address the catalog knows for `peer` (with its relay and IPs).
pub fn catalog_addr(network: &Network, peer: &mosaik::PeerId) -> EndpointAddr {
    network
        .discovery()
        .catalog()
        .get(peer)
        .map(|e| e.address().clone())
        .unwrap_or_else(|| EndpointAddr::new(*peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_node_is_the_peer_id_and_a_non_key_is_refused() {
        let id = SecretKey::generate().public();
        assert_eq!(peer_id(&node_id(&id)).unwrap(), id);
        assert_eq!(node_id(&id).to_string(), id.to_string());
        // 0x02 repeated is no point of the curve (its y has no x).
        let e = peer_id(&protocol::NodeId([2; 32])).unwrap_err();
        assert!(e.to_string().contains("not an ed25519 public key"), "{e}");
    }

    #[test]
    fn peer_addresses_round_trip() {
        let id = SecretKey::generate().public();
        let relay: RelayUrl = "http://127.0.0.1:3340/".parse().unwrap();
        let s = format_peer_addr(&EndpointAddr::new(id), Some(&relay));
        let back = parse_peer_addr(&s).unwrap();
        assert_eq!(back.id, id);
        assert_eq!(back.relay_urls().next(), Some(&relay));
        let ip = parse_peer_addr(&format!("{id}@127.0.0.1:9")).unwrap();
        assert_eq!(ip.ip_addrs().count(), 1);
        assert!(parse_peer_addr("nope@http://x/").is_err());
    }
}
