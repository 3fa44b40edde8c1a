//! The coalition: joining its mosaik network, the provider's and
//! requester's links to it ([`link`]) and the local relay ([`relay`]) moved
//! to `compute-bridge-coalition` ([`compute_bridge_coalition`]) and are
//! re-exported here at their old paths until the re-cut's last move (issue
//! 18). The protocol spoken on it is the contract's
//! (`compute_bridge_contract::protocol`). Keeps nothing.

pub use compute_bridge_coalition::network::*;
pub use compute_bridge_coalition::{link, relay};
