//! The backend contract: moved to `compute-bridge-contract`
//! ([`compute_bridge_contract::backend`], the ground floor, issue 18) and
//! re-exported here at its old path until the last move of the re-cut
//! rewrites the imports. Keeps nothing.

pub use compute_bridge_contract::backend::*;
