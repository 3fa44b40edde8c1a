//! What the provider loop tells the operator's view (the dashboard) about
//! its work, as types that cannot carry a requester's identity.
//!
//! Every variant holds only operator-side facts: backend names and regions
//! from the operator's own config, resource amounts, reason kinds, an amount
//! of settled revenue. There is no field for a peer id, reply key, request
//! id, image reference, prompt or per-settlement attribution, so none can
//! reach the dashboard's memory, its JSON, its metrics or its page.

use serde::Serialize;

use crate::backend::Usage;
pub use crate::protocol::DeclineReason;

/// Something the operator may see happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// A coalition agent subscribed to this provider's streams.
    SubscriberJoined,
    /// A coalition agent went away.
    SubscriberLeft,
    /// A grant was placed on `backend` in `region`.
    GrantAccepted {
        /// Backend name from the operator's config.
        backend: String,
        /// Region of the instance.
        region: String,
    },
    /// A grant's workload ended and was torn down.
    GrantCompleted {
        /// Backend name.
        backend: String,
        /// What it used.
        usage: Usage,
    },
    /// A grant was declined.
    GrantDeclined {
        /// Why, as a kind.
        reason: DeclineReason,
    },
    /// Provisioning failed over from one backend (or one of its regions)
    /// to the next.
    Failover {
        /// Backend that failed.
        from: String,
        /// The region of `from` it failed in, when the fleet chose one.
        from_region: Option<String>,
        /// Backend tried next, if any.
        to: Option<String>,
        /// The region tried next on `to`, when known.
        to_region: Option<String>,
    },
    /// Settled revenue credited to this provider (the amount only).
    RevenueSettled {
        /// USD.
        usd: f64,
    },
    /// The provider card was (re)published.
    CardRefreshed,
    /// A live swap of `backend`'s component went live, was refused at its
    /// check, or was rolled back by itself. The digests are the first
    /// [`DIGEST_PREFIX_LEN`] characters of `sha256:HEX` (operator facts:
    /// the operator chose both components).
    ComponentSwap {
        /// Backend name.
        backend: String,
        /// The component serving before, as a prefix.
        from: String,
        /// The component swapped to, as a prefix (on a rollback: the one
        /// rolled back from).
        to: String,
        /// What happened.
        outcome: SwapOutcome,
    },
}

/// Characters of `sha256:HEX` a [`Event::ComponentSwap`] keeps (`sha256:`
/// and 12 hex digits).
pub const DIGEST_PREFIX_LEN: usize = 19;

/// The first [`DIGEST_PREFIX_LEN`] characters of a component digest.
pub fn digest_prefix(digest: &str) -> String {
    digest.chars().take(DIGEST_PREFIX_LEN).collect()
}

/// How a live swap ended, for the operator's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapOutcome {
    /// Checked, measured and current (its probation then runs).
    Live,
    /// Refused at its read-only check: the old component stayed.
    Refused,
    /// Failed its probation: the old component is current again.
    RolledBack,
}

/// Where events go. The dashboard implements it; the provider loop holds
/// an `Arc<dyn EventSink>`. `record` must be cheap and never block for long:
/// it is called on the grant path.
pub trait EventSink: Send + Sync {
    /// Take one event.
    fn record(&self, event: Event);
}

/// A sink that drops everything (for commands and tests that run no
/// dashboard).
pub struct Discard;

impl EventSink for Discard {
    fn record(&self, _event: Event) {}
}
