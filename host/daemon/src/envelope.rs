//! Sealing (HPKE) of grants' secrets and access bundles: moved to
//! `compute-bridge-coalition` ([`compute_bridge_coalition::envelope`]) and
//! re-exported here at its old path until the re-cut's last move (issue
//! 18). Keeps nothing.

pub use compute_bridge_coalition::envelope::*;
