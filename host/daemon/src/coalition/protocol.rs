//! The coalition's compute protocol: moved to `compute-bridge-contract`
//! ([`compute_bridge_contract::protocol`], with its wire pins) and
//! re-exported here at its old path until the re-cut's last move (issue
//! 18). Only the conversion from the fleet's ending stays here, for now.
//! Keeps nothing.

pub use compute_bridge_contract::protocol::*;

impl From<crate::fleet::Ending> for WorkloadEnding {
    fn from(e: crate::fleet::Ending) -> Self {
        match e {
            crate::fleet::Ending::Exited(c) => Self::Exited(c),
            crate::fleet::Ending::Gone => Self::Gone,
            crate::fleet::Ending::Expired => Self::Expired,
        }
    }
}
