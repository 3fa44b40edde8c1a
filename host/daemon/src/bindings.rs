//! The host's bindings of the `backend` world: moved to
//! `compute-bridge-sandbox` ([`compute_bridge_sandbox::bindings`], issue 18)
//! and re-exported here at their old path until the re-cut's last move
//! rewrites the imports. Keeps nothing.

pub use compute_bridge_sandbox::bindings::*;
