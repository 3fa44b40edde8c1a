//! The requester's side (`coalition-agent`'s library): moved to
//! `compute-bridge-requester` ([`compute_bridge_requester`]) and re-exported
//! here at its old path until the re-cut's last move (issue 18). Keeps
//! nothing.

pub use compute_bridge_requester::*;
