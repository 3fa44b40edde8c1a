//! compute-bridge: turn an operator's cloud and bare-metal capacity into an
//! attested compute provider for a coalition network.
//!
//! This package is the top floor (`docs/architecture.md`): the two binaries
//! (`compute-bridge`, `src/main.rs`, and `coalition-agent`,
//! `src/bin/coalition-agent.rs`), the runtime and end-to-end tests, and the
//! benchmarks. Its library is a facade that keeps every old
//! `compute_bridge::…` path compiling until the re-cut's last move (issue
//! 18): everything the provider runs is `compute-bridge-daemon`'s
//! (`host/daemon`), re-exported here at the root, and [`agent`] is the
//! requester's side, `compute-bridge-requester`, which the daemon may not
//! depend on. Keeps nothing.

#![warn(missing_docs)]

pub mod agent;

pub use compute_bridge_daemon::*;
