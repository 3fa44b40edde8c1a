//! The host capabilities (`http`, `ssh`, `log`, `cache`, `config`): moved
//! to `compute-bridge-sandbox` ([`compute_bridge_sandbox::capabilities`],
//! one folder each, issue 18) and re-exported here at their old path until
//! the re-cut's last move rewrites the imports. Keeps nothing.

pub use compute_bridge_sandbox::capabilities::*;
