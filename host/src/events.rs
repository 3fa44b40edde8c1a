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

/// Why a grant was declined, as a kind (no free text that could quote the
/// grant back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeclineReason {
    /// The envelope or grant could not be decoded or opened.
    Malformed,
    /// `valid_to` has passed.
    Expired,
    /// `valid_from` is in the future.
    NotYetValid,
    /// Zero or absurd resources.
    BadResources,
    /// A request id seen before.
    Duplicate,
    /// The concurrency cap is reached.
    ConcurrencyCap,
    /// No enabled backend can ever serve it.
    NoBackend,
    /// Backends could serve it but none has room now.
    OverCapacity,
    /// Every candidate failed with no-capacity or transient.
    BackendsFailed,
    /// A backend rejected it.
    Rejected,
    /// A backend reported a configuration problem.
    BackendConfig,
    /// A backend failed otherwise.
    BackendError,
    /// The bridge is shutting down.
    ShuttingDown,
    /// The journal cannot record it (e.g. disk full), so it is not taken.
    JournalUnavailable,
}

impl DeclineReason {
    /// The kebab-case name, as shown and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::BadResources => "bad-resources",
            Self::Duplicate => "duplicate",
            Self::ConcurrencyCap => "concurrency-cap",
            Self::NoBackend => "no-backend",
            Self::OverCapacity => "over-capacity",
            Self::BackendsFailed => "backends-failed",
            Self::Rejected => "rejected",
            Self::BackendConfig => "backend-config",
            Self::BackendError => "backend-error",
            Self::ShuttingDown => "shutting-down",
            Self::JournalUnavailable => "journal-unavailable",
        }
    }

    /// Every reason, for exhaustive displays and tests.
    pub const ALL: [DeclineReason; 14] = [
        Self::Malformed,
        Self::Expired,
        Self::NotYetValid,
        Self::BadResources,
        Self::Duplicate,
        Self::ConcurrencyCap,
        Self::NoBackend,
        Self::OverCapacity,
        Self::BackendsFailed,
        Self::Rejected,
        Self::BackendConfig,
        Self::BackendError,
        Self::ShuttingDown,
        Self::JournalUnavailable,
    ];
}

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
