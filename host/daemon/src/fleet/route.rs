//! Routing: the first backend in config order that can satisfy a grant and
//! has room provisions it, region by region for a grant that names none,
//! failing over on `no-capacity` and `transient` ([`Fleet::provision`]);
//! what did not place it is a [`PlaceError`], whose [`PlaceError::reason`]
//! is the one mapping to the protocol's decline reasons. Keeps nothing
//! beyond the call: the reservation it returns holds the room.

use std::sync::Arc;

use compute_bridge_contract::backend::{
    Backend, BackendError, ErrorKind, GrantSpec, Instance, Offer, TdxRequirement, Workload,
};
use compute_bridge_contract::protocol::DeclineReason;
use serde::Serialize;

use super::capacity::release_capacity_only;
use super::{Fleet, Reservation};

/// A failover from one backend (or one region of it) to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failover {
    /// Backend that failed.
    pub from: String,
    /// The region it was asked to place in, when the fleet chose one (a
    /// grant that names no region is offered region by region).
    pub region: Option<String>,
    /// Why (no-capacity or transient).
    pub kind: ErrorKind,
    /// Its message.
    pub message: String,
}

impl Failover {
    /// `backend[/region] (kind: message)`, for logs and decline texts.
    pub fn describe(&self) -> String {
        match &self.region {
            Some(r) => format!("{}/{r} ({}: {})", self.from, self.kind, self.message),
            None => format!("{} ({}: {})", self.from, self.kind, self.message),
        }
    }
}

/// Why a grant was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// The concurrency cap is reached.
    #[error("concurrency cap reached ({active} of {cap} grants running)")]
    ConcurrencyCap {
        /// Grants running.
        active: u32,
        /// The cap.
        cap: u32,
    },
    /// No enabled backend could ever serve it (region, size, TDX).
    #[error("no backend can satisfy this grant ({0})")]
    NoBackend(String),
    /// Backends could serve it, but none has room now.
    #[error("no backend has room for this grant ({0})")]
    OverCapacity(String),
    /// Every candidate failed with no-capacity or transient.
    #[error("every candidate backend failed: {}", .failovers.iter().map(Failover::describe).collect::<Vec<_>>().join("; "))]
    AllFailed {
        /// The failures, in order.
        failovers: Vec<Failover>,
    },
    /// A backend refused it with an error that is not retried elsewhere.
    #[error("backend {backend} failed: {error}")]
    Failed {
        /// The backend.
        backend: String,
        /// Its error.
        error: BackendError,
        /// Failovers before it.
        failovers: Vec<Failover>,
    },
}

impl PlaceError {
    /// Why, as the word the wire, the events and the dashboard carry (the
    /// one mapping from the fleet's reasons to the protocol's).
    pub fn reason(&self) -> DeclineReason {
        match self {
            Self::ConcurrencyCap { .. } => DeclineReason::ConcurrencyCap,
            Self::NoBackend(_) => DeclineReason::NoBackend,
            Self::OverCapacity(_) => DeclineReason::OverCapacity,
            Self::AllFailed { .. } => DeclineReason::BackendsFailed,
            Self::Failed { error, .. } => match error.kind() {
                ErrorKind::Rejected => DeclineReason::Rejected,
                ErrorKind::Config => DeclineReason::BackendConfig,
                _ => DeclineReason::BackendError,
            },
        }
    }

    /// [`PlaceError::reason`] as its short stable word (`backends-failed`).
    pub fn reason_kind(&self) -> &'static str {
        self.reason().as_str()
    }

    /// Failovers that happened before the decline.
    pub fn failovers(&self) -> &[Failover] {
        match self {
            Self::AllFailed { failovers } | Self::Failed { failovers, .. } => failovers,
            _ => &[],
        }
    }
}

/// A grant placed on a backend.
pub struct Placement {
    /// The backend that provisioned it.
    pub backend: String,
    /// The digest of the component that provisioned it (`sha256:HEX`), if
    /// the bridge measured it.
    pub component: Option<String>,
    /// The instance it returned.
    pub instance: Instance,
    /// Failovers on the way.
    pub failovers: Vec<Failover>,
    /// Held until the grant ends.
    pub reservation: Reservation,
}

impl Fleet {
    /// Place `grant`: the first candidate in order that can satisfy it and
    /// has room provisions it, failing over on no-capacity and transient.
    pub async fn provision(
        &self,
        grant: &GrantSpec,
        workload: &Workload,
    ) -> Result<Placement, PlaceError> {
        self.take_slot()?;
        let result = self.place(grant, workload).await;
        if result.is_err() {
            self.release_slot();
        }
        result
    }

    async fn place(&self, grant: &GrantSpec, workload: &Workload) -> Result<Placement, PlaceError> {
        let mut failovers: Vec<Failover> = Vec::new();
        let mut full: Vec<&str> = Vec::new();
        let mut unsuitable: Vec<String> = Vec::new();
        for (i, m) in self.inner.members.iter().enumerate() {
            let name = m.name.as_str();
            // One component places the grant from start to end, even if a
            // swap makes another current meanwhile.
            let current = m.current.read().unwrap().clone();
            let backend = &current.backend;
            if !m.enabled {
                continue;
            }
            let caps = m.caps.lock().unwrap().clone();
            let Some(caps) = caps else {
                unsuitable.push(format!("{name}: capabilities unknown"));
                continue;
            };
            if grant.tdx == TdxRequirement::Required && !caps.tdx_capable {
                unsuitable.push(format!("{name}: not TDX-capable"));
                continue;
            }
            if !backend.can_satisfy(grant).await {
                unsuitable.push(format!("{name}: cannot satisfy"));
                continue;
            }
            let Some(reservation) = self.reserve(i, grant) else {
                full.push(name);
                continue;
            };
            tracing::info!(backend = name, "routing grant");
            match self
                .try_regions(backend, grant, workload, &caps, &mut failovers)
                .await
            {
                Ok(instance) => {
                    return Ok(Placement {
                        backend: name.to_string(),
                        component: current.component.clone(),
                        instance,
                        failovers,
                        // The slot taken in `provision` travels with the
                        // reservation; its drop releases both.
                        reservation,
                    });
                }
                Err(Attempt::NextBackend) => release_capacity_only(reservation),
                Err(Attempt::NoRegionFits) => {
                    release_capacity_only(reservation);
                    unsuitable.push(format!("{name}: no region can satisfy"));
                }
                Err(Attempt::Final(e)) => {
                    release_capacity_only(reservation);
                    tracing::warn!(
                        backend = name,
                        "provision failed: {}",
                        grant.redact(&e.to_string())
                    );
                    return Err(PlaceError::Failed {
                        backend: name.to_string(),
                        error: e,
                        failovers,
                    });
                }
            }
        }
        if !failovers.is_empty() {
            return Err(PlaceError::AllFailed { failovers });
        }
        if !full.is_empty() {
            return Err(PlaceError::OverCapacity(format!(
                "full: {}",
                full.join(", ")
            )));
        }
        Err(PlaceError::NoBackend(if unsuitable.is_empty() {
            "no enabled backends".into()
        } else {
            unsuitable.join("; ")
        }))
    }

    /// Provision on member `m`: in the grant's own region if it names one,
    /// else in each of the backend's regions in turn while the answer is
    /// `no-capacity`. Failures that move on are pushed to `failovers`.
    async fn try_regions(
        &self,
        backend: &Arc<dyn Backend>,
        grant: &GrantSpec,
        workload: &Workload,
        caps: &Offer,
        failovers: &mut Vec<Failover>,
    ) -> Result<Instance, Attempt> {
        let name = backend.name();
        // Only a grant without a region is steered, and only across more
        // than one region: otherwise the backend chooses, as it always has.
        let steered = grant.region.is_none() && caps.regions.len() > 1;
        let regions: Vec<Option<&str>> = if steered {
            caps.regions.iter().map(|r| Some(r.as_str())).collect()
        } else {
            vec![None]
        };
        let mut asked = 0;
        for region in regions {
            let in_region;
            let spec = match region {
                Some(r) => {
                    in_region = GrantSpec {
                        region: Some(r.to_string()),
                        ..grant.clone()
                    };
                    // The backend may offer a region that cannot take this
                    // grant (no type of that size there): skip it quietly.
                    if !backend.can_satisfy(&in_region).await {
                        continue;
                    }
                    &in_region
                }
                None => grant,
            };
            asked += 1;
            match backend.provision(spec, workload).await {
                Ok(instance) => return Ok(instance),
                Err(e) if e.is_failover() => {
                    let next_region = e.kind() == ErrorKind::NoCapacity && steered;
                    match region {
                        Some(r) => tracing::warn!(
                            backend = name,
                            region = r,
                            "provision failed, failing over: {}",
                            grant.redact(&e.to_string())
                        ),
                        None => tracing::warn!(
                            backend = name,
                            "provision failed, failing over: {}",
                            grant.redact(&e.to_string())
                        ),
                    }
                    failovers.push(Failover {
                        from: name.to_string(),
                        region: region.map(str::to_string),
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                    if !next_region {
                        return Err(Attempt::NextBackend);
                    }
                }
                Err(e) => return Err(Attempt::Final(e)),
            }
        }
        Err(if asked == 0 {
            Attempt::NoRegionFits
        } else {
            Attempt::NextBackend
        })
    }
}

/// Why provisioning on one backend did not place the grant.
enum Attempt {
    /// Failed over (recorded): try the next backend.
    NextBackend,
    /// The backend can satisfy the grant, but none of its regions can.
    NoRegionFits,
    /// A failure that is not retried elsewhere.
    Final(BackendError),
}
