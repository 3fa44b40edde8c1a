//! The dashboard's notion of "now": moved to `compute-bridge-contract`
//! ([`compute_bridge_contract::clock`]) and re-exported here at its old
//! path until the re-cut's last move (issue 18). Keeps nothing.

pub use compute_bridge_contract::clock::{Clock, ManualClock, SystemClock};
