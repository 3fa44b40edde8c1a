//! The `[coalition]` section of a bridge's config: how a node reaches its
//! coalition's mosaik network. The daemon's boot config reads it (and
//! validates it, locating errors in the file); the requester reads the same
//! section of a bridge's config to find the same coalition. One type for
//! both, so they cannot drift. Keeps nothing.

use std::net::IpAddr;

use serde::Deserialize;

/// `[coalition]`: how the bridge reaches its coalition's mosaik network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalitionConfig {
    /// The coalition's name (its mosaik network id).
    #[serde(default = "default_network")]
    pub network: String,
    /// Run a coalition on this machine: an in-process relay on 127.0.0.1,
    /// with the relay URL and bootstrap address written to
    /// `state_dir/local-coalition.json` for `coalition-agent`. Defaults to
    /// true when no `relays` are configured. As written: use
    /// [`Self::is_local`] for whether the coalition is local.
    #[serde(default)]
    pub local: Option<bool>,
    /// Relay URLs of the coalition (`https://relay.example/`).
    #[serde(default)]
    pub relays: Vec<String>,
    /// Peers to sync with at start: `PEER_ID@RELAY_URL` or `PEER_ID@IP:PORT`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Address the node's sockets bind to (e.g. `10.0.0.5`); every
    /// interface if unset. A local coalition binds it too (its relay as
    /// well) and needs a loopback address; 127.0.0.1 if unset. Use
    /// [`Self::node_bind`].
    #[serde(default)]
    pub bind: Option<IpAddr>,
}

fn default_network() -> String {
    "local.dev".into()
}

impl Default for CoalitionConfig {
    fn default() -> Self {
        Self {
            network: default_network(),
            local: None,
            relays: Vec::new(),
            bootstrap: Vec::new(),
            bind: None,
        }
    }
}

impl CoalitionConfig {
    /// Whether the bridge runs a local coalition (`local`, or no relays).
    pub fn is_local(&self) -> bool {
        self.local.unwrap_or(self.relays.is_empty())
    }

    /// The address the node (and a local coalition's relay) binds to;
    /// `None`: every interface.
    pub fn node_bind(&self) -> Option<IpAddr> {
        if self.is_local() {
            Some(self.bind.unwrap_or(IpAddr::from([127, 0, 0, 1])))
        } else {
            self.bind
        }
    }
}
