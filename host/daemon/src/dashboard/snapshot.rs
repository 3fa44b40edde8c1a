//! The snapshot: everything the dashboard shows, as served at
//! `/snapshot.json` and rendered by `/dashboard` and `/metrics`.
//!
//! `docs/snapshot.schema.json` is its JSON Schema; a test fails when the two
//! disagree. No type here has a field that could hold a requester identity,
//! a peer id, a key, an image reference, a prompt or a per-settlement
//! attribution: strings are the operator's own backend names and regions,
//! the coalition's name and version, and this provider's own id prefix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use compute_bridge_contract::events::{DeclineReason, SwapOutcome};

/// Version of this JSON shape; bumped on any breaking change.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole dashboard at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When it was taken, Unix seconds.
    pub generated_at_unix: u64,
    /// Seconds between page reloads (`bridge.capacity_refresh_sec`).
    pub refresh_seconds: u64,
    /// This provider.
    pub provider: ProviderSnapshot,
    /// Coalition agents subscribed to this provider.
    pub subscribers: u64,
    /// Grants running now.
    pub grants: GrantsSnapshot,
    /// Counters over the bridge's life (kept across restarts).
    pub lifetime: LifetimeSnapshot,
    /// Every configured backend, in routing order.
    pub backends: Vec<BackendSnapshot>,
    /// The last 24 h.
    pub window: WindowSnapshot,
    /// The last 50 lines of events, newest first, repeats coalesced.
    pub recent_events: Vec<RecentEvent>,
}

/// The header: who this provider is and how it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSnapshot {
    /// The first 12 hex digits of this provider's id, once known.
    pub id_prefix: Option<String>,
    /// Registration with the coalition.
    pub status: ProviderStatus,
    /// Coalition name (its network id).
    pub coalition: String,
    /// The coalition's Compute module version, once known.
    pub module_version: Option<String>,
    /// Seconds since this process started.
    pub uptime_seconds: u64,
    /// Whether the measured MR_TD matches the expected one.
    pub mrtd: MrtdState,
}

/// Where the provider stands with the coalition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderStatus {
    /// The provider card has not been published.
    #[default]
    NotRegistered,
    /// The card is published.
    Registered,
    /// The card is published and refreshed on schedule.
    Alive,
}

impl ProviderStatus {
    /// As shown on the page.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotRegistered => "not registered",
            Self::Registered => "registered",
            Self::Alive => "alive",
        }
    }
}

/// The MR_TD check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MrtdState {
    /// The quote's MR_TD matches the expected value.
    Ok,
    /// It does not: this guest is not the image the operator expects.
    Mismatch,
    /// TDX attestation is on but no quote has been checked yet.
    Pending,
    /// Attestation is off (`attestation.mode = "none"`).
    NotApplicable,
}

impl MrtdState {
    /// The state for a quote's MR_TD check (`None`: nothing to compare
    /// with yet).
    pub fn from_verdict(mrtd_ok: Option<bool>) -> Self {
        match mrtd_ok {
            Some(true) => Self::Ok,
            Some(false) => Self::Mismatch,
            None => Self::Pending,
        }
    }

    /// As shown on the page.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Mismatch => "MISMATCH",
            Self::Pending => "pending",
            Self::NotApplicable => "n/a (attestation off)",
        }
    }
}

/// Running grants against the cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSnapshot {
    /// Grants running now.
    pub active: u32,
    /// The concurrency cap.
    pub cap: u32,
}

/// Counters since the bridge was first started with this state dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeSnapshot {
    /// Grants placed on a backend.
    pub grants_served: u64,
    /// Grants whose workload ended.
    pub grants_completed: u64,
    /// Grants declined.
    pub grants_declined: u64,
    /// Provisioning failovers.
    pub failovers: u64,
    /// Core-seconds used by finished workloads.
    pub cpu_core_seconds: u64,
    /// MiB-seconds used by finished workloads.
    pub ram_mib_seconds: u64,
    /// Bytes moved by finished workloads.
    pub net_bytes: u64,
    /// Settled revenue, USD.
    pub settled_revenue_usd: f64,
}

/// One configured backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSnapshot {
    /// Its name in the config.
    pub name: String,
    /// Whether grants are routed to it.
    pub enabled: bool,
    /// What it declared (`null` until it answered).
    pub capacity: Option<CapacitySnapshot>,
    /// Capacity reserved by running grants.
    pub used: UsedSnapshot,
    /// Grants running on it.
    pub active_grants: u32,
    /// The operator's rate for it (zeros without a `[rates.<name>]`).
    pub rate: RateSnapshot,
    /// Its part of the last 24 h.
    pub window: BackendWindow,
    /// Its measured component, `sha256:<64 hex>` (`null` until measured).
    pub component_sha256: Option<String>,
    /// When the component now serving became current, Unix seconds: the
    /// bridge's start, a live swap, or a rollback (`null` until measured).
    pub component_loaded_at_unix: Option<u64>,
    /// Live swaps of its component since the bridge started, by outcome.
    pub component_swaps: SwapCounts,
}

/// Live swaps of one backend's component since the bridge started (in
/// memory only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapCounts {
    /// Checked, measured and made current.
    pub live: u64,
    /// Refused at the read-only check (the old one stayed).
    pub refused: u64,
    /// Rolled back by the bridge after failing its probation.
    pub rolled_back: u64,
}

impl SwapCounts {
    /// Count one swap that ended with `outcome`.
    pub fn add(&mut self, outcome: SwapOutcome) {
        let n = match outcome {
            SwapOutcome::Live => &mut self.live,
            SwapOutcome::Refused => &mut self.refused,
            SwapOutcome::RolledBack => &mut self.rolled_back,
        };
        *n = n.saturating_add(1);
    }
}

/// A backend's declared capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySnapshot {
    /// Region labels.
    pub regions: Vec<String>,
    /// Whether it offers TDX guests.
    pub tdx_capable: bool,
    /// CPU, millicores.
    pub cpu_millicores: u32,
    /// Memory, MiB.
    pub ram_mib: u32,
    /// The MR_TD each region's TD guests boot to (bare-metal TD hosts).
    pub td_measurements: Vec<TdMeasurementSnapshot>,
}

/// The MR_TD of one region's TD guests: a firmware's measurement, which
/// names no one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdMeasurementSnapshot {
    /// The region label.
    pub region: String,
    /// MR_TD, 96 lowercase hex digits.
    pub mrtd: String,
}

/// Capacity held by running grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedSnapshot {
    /// CPU, millicores.
    pub cpu_millicores: u64,
    /// Memory, MiB.
    pub ram_mib: u64,
}

/// `[rates.<backend>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSnapshot {
    /// USD per core-hour.
    pub core_hour_usd: f64,
    /// USD per GiB-hour.
    pub ram_gib_hour_usd: f64,
}

/// One backend's last 24 h.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendWindow {
    /// Grants placed on it.
    pub grants_served: u64,
    /// Grants whose workload ended.
    pub grants_completed: u64,
    /// Provisioning attempts that failed over away from it.
    pub failovers_from: u64,
    /// Core-seconds used by finished workloads.
    pub cpu_core_seconds: u64,
    /// MiB-seconds used by finished workloads.
    pub ram_mib_seconds: u64,
    /// Bytes moved by finished workloads.
    pub net_bytes: u64,
    /// Cost of that usage at its rate, USD.
    pub estimated_cost_usd: f64,
    /// Share of its declared CPU not reserved by grants (`null` before any
    /// capacity was observed).
    pub idle_ratio: Option<f64>,
}

/// The last 24 h, all backends together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSnapshot {
    /// The window's span, seconds (86400).
    pub span_seconds: u64,
    /// How much of it this process observed (less than the span for a
    /// bridge up for less than a day).
    pub observed_seconds: u64,
    /// Grants placed.
    pub grants_served: u64,
    /// Grants whose workload ended.
    pub grants_completed: u64,
    /// Grants declined.
    pub grants_declined: u64,
    /// Declines by reason (every reason, zero or not).
    pub declines: BTreeMap<String, u64>,
    /// Provisioning failovers.
    pub failovers: u64,
    /// Core-seconds used by finished workloads.
    pub cpu_core_seconds: u64,
    /// MiB-seconds used by finished workloads.
    pub ram_mib_seconds: u64,
    /// Bytes moved by finished workloads.
    pub net_bytes: u64,
    /// 1 − reserved core-seconds / declared core-seconds over the observed
    /// time (`null` before any capacity was observed).
    pub idle_ratio: Option<f64>,
    /// Sum of the backends' estimated costs, USD.
    pub estimated_cost_usd: f64,
    /// Revenue settled to this provider, USD.
    pub settled_revenue_usd: f64,
    /// Revenue minus estimated cost, USD.
    pub net_usd: f64,
    /// Net / revenue (`null` without revenue).
    pub margin_ratio: Option<f64>,
}

/// A recent event with its time; repeats share one (see `count`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// When it last happened, Unix seconds.
    pub at_unix: u64,
    /// How long before the snapshot it last happened, seconds.
    pub age_seconds: u64,
    /// How many times it happened in a row (card refreshes: since the
    /// line first appeared), at least 1.
    pub count: u64,
    /// When it first happened, Unix seconds (`at_unix` when `count` is 1).
    pub first_at_unix: u64,
    /// What happened.
    #[serde(flatten)]
    pub what: RecentKind,
}

/// What happened, redacted to what the operator may see. Settlements show
/// that one happened, not how much (that would attribute an amount to a
/// moment, and so to a grant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RecentKind {
    /// A coalition agent subscribed.
    SubscriberJoined,
    /// A coalition agent went away.
    SubscriberLeft,
    /// A grant was placed.
    GrantAccepted {
        /// Backend.
        backend: String,
        /// Region of the instance.
        region: String,
    },
    /// A grant's workload ended.
    GrantCompleted {
        /// Backend.
        backend: String,
        /// Core-seconds it used.
        cpu_core_seconds: u64,
        /// MiB-seconds it used.
        ram_mib_seconds: u64,
        /// Bytes it moved.
        net_bytes: u64,
    },
    /// A grant was declined.
    GrantDeclined {
        /// Why.
        reason: DeclineReason,
    },
    /// Provisioning failed over.
    Failover {
        /// Backend that failed.
        from: String,
        /// Its region, when the fleet chose one.
        from_region: Option<String>,
        /// Backend tried next, if any.
        to: Option<String>,
        /// The region tried next (or where the grant landed), when known.
        to_region: Option<String>,
    },
    /// Revenue was settled (amount in the window totals only).
    RevenueSettled,
    /// The provider card was published.
    CardRefreshed,
    /// A live swap of a backend's component went live, was refused, or was
    /// rolled back (digests as `sha256:` and 12 hex digits).
    ComponentSwap {
        /// Backend.
        backend: String,
        /// The component serving before.
        from: String,
        /// The component swapped to (on a rollback: rolled back from).
        to: String,
        /// What happened.
        outcome: SwapOutcome,
    },
}
