//! What the provider loop tells the operator's view: moved to
//! `compute-bridge-contract` ([`compute_bridge_contract::events`]) and
//! re-exported here at its old path until the re-cut's last move (issue
//! 18). Only the mapping from the fleet's reasons stays in this crate, for
//! now: the fleet is not a word of the contract. Keeps nothing.

pub use compute_bridge_contract::events::*;

impl From<&crate::fleet::Decline> for DeclineReason {
    fn from(d: &crate::fleet::Decline) -> Self {
        use crate::backend::ErrorKind;
        use crate::fleet::Decline;
        match d {
            Decline::ConcurrencyCap { .. } => Self::ConcurrencyCap,
            Decline::NoBackend(_) => Self::NoBackend,
            Decline::OverCapacity(_) => Self::OverCapacity,
            Decline::AllFailed { .. } => Self::BackendsFailed,
            Decline::Failed { error, .. } => match error.kind() {
                ErrorKind::Rejected => Self::Rejected,
                ErrorKind::Config => Self::BackendConfig,
                _ => Self::BackendError,
            },
        }
    }
}
