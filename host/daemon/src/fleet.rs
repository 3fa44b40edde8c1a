//! The fleet: routes each grant to the first backend that can take it,
//! fails over, accounts capacity, and watches workloads to their end.
//!
//! Routing walks backends in config order. A disabled backend is never
//! tried; a TDX-required grant skips backends that are not TDX-capable; the
//! first whose `can-satisfy` says yes and that has room provisions. A grant
//! that names no region is offered to a backend one region at a time, in
//! the order the backend lists its regions: `no-capacity` moves on to the
//! backend's next region, then to the next backend; `transient` moves on to
//! the next backend. Every such step is reported as a failover. The concurrency cap and each backend's declared
//! capacity are checked before provisioning: a grant that does not fit is
//! declined with a reason, never dropped.
//!
//! Each backend's capabilities are refreshed on their own: every backend
//! is asked at once, each answer goes into the routing table as it comes,
//! and [`Fleet::refresh_capabilities`] waits for them no longer than
//! [`REFRESH_WAIT`]. A backend still answering then keeps its last answer
//! for that card, and the next refreshes do not wait for it until it
//! answers in time again, so one slow backend neither holds the card back
//! nor keeps the others out of routing. (Each call also has the backend's
//! own short `capabilities_timeout_sec`, and `can-satisfy` its
//! `can_satisfy_timeout_sec`, enforced by the sandbox.)
//!
//! The fleet reports what happened in its return values ([`Placement`],
//! [`PlaceError`], [`WatchOutcome`]); it knows nothing of the coalition, the
//! journal or the dashboard.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use compute_bridge_contract::protocol::{DeclineReason, WorkloadEnding};

use compute_bridge_contract::backend::{
    Backend, BackendError, ErrorKind, GrantSpec, Instance, InstanceState, Offer, TdxRequirement,
    Usage, Workload,
};
use compute_bridge_sandbox::capabilities::log::escape;

use compute_bridge_contract::clock::now_unix;

/// How long [`Fleet::refresh_capabilities`] waits for the backends'
/// answers before it returns with what it has.
pub const REFRESH_WAIT: Duration = Duration::from_secs(5);

struct Member {
    /// Its name (the same for every component it runs).
    name: String,
    /// The component serving it now: every call reads it afresh, so a
    /// swap ([`Fleet::replace`]) reaches running watchers at their next
    /// call, and a call under way finishes on the component it started on.
    current: RwLock<Current>,
    /// Instances being watched on it now (by instance id): the ones a swap
    /// must check and hand over.
    watched: Mutex<HashMap<String, Instance>>,
    enabled: bool,
    caps: Mutex<Option<Offer>>,
    used: Mutex<Used>,
    /// A `capabilities` call is under way (not started again meanwhile).
    refreshing: AtomicBool,
    /// Its last answer took longer than [`REFRESH_WAIT`]: refreshes do not
    /// wait for it until it answers in time again.
    slow: AtomicBool,
}

/// The component a backend runs now.
#[derive(Clone)]
struct Current {
    backend: Arc<dyn Backend>,
    /// Its SHA-256 (`sha256:HEX`), once the bridge measured it.
    component: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Used {
    cpu_millicores: u64,
    ram_mib: u64,
    grants: u32,
}

struct FleetState {
    members: Vec<Member>,
    cap: u32,
    active: Mutex<u32>,
}

/// The routing table and its accounting. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetState>,
}

/// One backend, for the routing table and the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Name.
    pub name: String,
    /// Routed to?
    pub enabled: bool,
    /// The last offer it declared (`None` until it answered).
    pub offer: Option<Offer>,
    /// CPU reserved by running grants, millicores.
    pub used_cpu_millicores: u64,
    /// Memory reserved by running grants, MiB.
    pub used_ram_mib: u64,
    /// Grants running on it.
    pub active_grants: u32,
}

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

/// Capacity and a concurrency slot held by one running grant; released on
/// drop.
pub struct Reservation {
    inner: Arc<FleetState>,
    member: usize,
    cpu: u64,
    ram: u64,
    /// Whether dropping it also frees a concurrency slot.
    holds_slot: bool,
}

impl Reservation {
    /// The backend holding it.
    pub fn backend(&self) -> &str {
        &self.member().name
    }

    /// The member it holds room on: the only way the fleet finds the
    /// backend of a placed grant.
    fn member(&self) -> &Member {
        &self.inner.members[self.member]
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut u = self.inner.members[self.member].used.lock().unwrap();
            u.cpu_millicores = u.cpu_millicores.saturating_sub(self.cpu);
            u.ram_mib = u.ram_mib.saturating_sub(self.ram);
            u.grants = u.grants.saturating_sub(1);
        }
        if self.holds_slot {
            let mut a = self.inner.active.lock().unwrap();
            *a = a.saturating_sub(1);
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

/// The result of watching a workload to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOutcome {
    /// How it ended.
    pub ending: WorkloadEnding,
    /// What it used (zero if the backend could not say; see `usage_error`).
    pub usage: Usage,
    /// Why usage is zero, if the backend failed to report it.
    pub usage_error: Option<String>,
    /// Why terminate failed, if it did (the instance may still exist).
    pub terminate_error: Option<String>,
}

/// What tearing a workload down found ([`Fleet::tear_down`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// What it used (zero if the backend could not say; see `usage_error`).
    pub usage: Usage,
    /// Why usage is zero, if the backend failed to report it.
    pub usage_error: Option<String>,
    /// Why terminate failed, if it did (the instance may still exist).
    pub terminate_error: Option<String>,
}

/// Polling schedule for `watch_until_exit`.
#[derive(Debug, Clone, Copy)]
pub struct WatchPolicy {
    /// First interval.
    pub initial: Duration,
    /// Longest interval.
    pub max: Duration,
    /// Attempts at terminate and usage on transient failures.
    pub attempts: u32,
}

impl Default for WatchPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            attempts: 5,
        }
    }
}

impl Fleet {
    /// A fleet over `backends` in routing order, with the concurrency cap.
    pub fn new(backends: Vec<(Arc<dyn Backend>, bool)>, cap: u32) -> Self {
        Self {
            inner: Arc::new(FleetState {
                members: backends
                    .into_iter()
                    .map(|(backend, enabled)| Member {
                        name: backend.name().to_string(),
                        current: RwLock::new(Current {
                            backend,
                            component: None,
                        }),
                        watched: Mutex::new(HashMap::new()),
                        enabled,
                        caps: Mutex::new(None),
                        used: Mutex::new(Used::default()),
                        refreshing: AtomicBool::new(false),
                        slow: AtomicBool::new(false),
                    })
                    .collect(),
                cap,
                active: Mutex::new(0),
            }),
        }
    }

    /// The concurrency cap.
    pub fn cap(&self) -> u32 {
        self.inner.cap
    }

    /// Grants running now.
    pub fn active(&self) -> u32 {
        *self.inner.active.lock().unwrap()
    }

    /// Ask every backend for its capabilities, each on its own, and
    /// remember each answer as it comes. Returns once every backend that
    /// answered the last time in time has answered, or after
    /// [`REFRESH_WAIT`]; the others answer in the background (one call at a
    /// time each). A backend that fails keeps its last answer (and is
    /// logged).
    pub async fn refresh_capabilities(&self) {
        let mut waited = Vec::new();
        for i in 0..self.inner.members.len() {
            let m = &self.inner.members[i];
            if m.refreshing.swap(true, Ordering::AcqRel) {
                continue;
            }
            let inner = self.inner.clone();
            let ask = tokio::spawn(async move {
                let m = &inner.members[i];
                let started = Instant::now();
                match m.backend().capabilities().await {
                    Ok(c) => *m.caps.lock().unwrap() = Some(c),
                    Err(e) => tracing::warn!(
                        backend = m.name,
                        "capabilities unavailable, keeping the last answer: {e}"
                    ),
                }
                m.slow
                    .store(started.elapsed() > REFRESH_WAIT, Ordering::Release);
                m.refreshing.store(false, Ordering::Release);
            });
            if !m.slow.load(Ordering::Acquire) {
                waited.push((i, ask));
            }
        }
        let answers = futures::future::join_all(waited.iter_mut().map(|(_, ask)| ask));
        if tokio::time::timeout(REFRESH_WAIT, answers).await.is_err() {
            for (i, ask) in &waited {
                if !ask.is_finished() {
                    let m = &self.inner.members[*i];
                    m.slow.store(true, Ordering::Release);
                    tracing::warn!(
                        backend = m.name,
                        "capabilities not in after {}s: going on with its last answer; \
                         it is asked again in the background",
                        REFRESH_WAIT.as_secs()
                    );
                }
            }
        }
    }

    /// The routing table with current use.
    pub fn members(&self) -> Vec<MemberView> {
        self.inner
            .members
            .iter()
            .map(|m| {
                let u = *m.used.lock().unwrap();
                MemberView {
                    name: m.name.clone(),
                    enabled: m.enabled,
                    offer: m.caps.lock().unwrap().clone(),
                    used_cpu_millicores: u.cpu_millicores,
                    used_ram_mib: u.ram_mib,
                    active_grants: u.grants,
                }
            })
            .collect()
    }

    /// The component serving the backend called `name` now.
    pub fn backend(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.index_of(name).map(|i| self.inner.members[i].backend())
    }

    /// The names of the backends, in routing order.
    pub fn names(&self) -> Vec<String> {
        self.inner.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The digest (`sha256:HEX`) of the component serving `name` now, if
    /// the bridge measured it.
    pub fn component(&self, name: &str) -> Option<String> {
        let i = self.index_of(name)?;
        self.inner.members[i]
            .current
            .read()
            .unwrap()
            .component
            .clone()
    }

    /// Record that the component serving `name` is `component`
    /// (`sha256:HEX`), as measured at start.
    pub fn set_component(&self, name: &str, component: String) {
        if let Some(i) = self.index_of(name) {
            self.inner.members[i].current.write().unwrap().component = Some(component);
        }
    }

    /// Make `backend` (whose component is `component`) the one serving
    /// `name`, for new grants and for every watcher's next call; returns
    /// the one it replaces (`None`: no such backend). Calls under way
    /// finish on the component they started on.
    pub fn replace(
        &self,
        name: &str,
        backend: Arc<dyn Backend>,
        component: String,
    ) -> Option<(Arc<dyn Backend>, Option<String>)> {
        let i = self.index_of(name)?;
        let mut current = self.inner.members[i].current.write().unwrap();
        let old = std::mem::replace(
            &mut *current,
            Current {
                backend,
                component: Some(component),
            },
        );
        Some((old.backend, old.component))
    }

    /// The instances being watched on `name` now.
    pub fn watched(&self, name: &str) -> Vec<Instance> {
        let Some(i) = self.index_of(name) else {
            return Vec::new();
        };
        let mut v: Vec<Instance> = self.inner.members[i]
            .watched
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        v
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.inner.members.iter().position(|m| m.name == name)
    }

    fn take_slot(&self) -> Result<(), PlaceError> {
        let mut a = self.inner.active.lock().unwrap();
        if *a >= self.inner.cap {
            return Err(PlaceError::ConcurrencyCap {
                active: *a,
                cap: self.inner.cap,
            });
        }
        *a += 1;
        Ok(())
    }

    fn release_slot(&self) {
        let mut a = self.inner.active.lock().unwrap();
        *a = a.saturating_sub(1);
    }

    /// Reserve room for `grant` on member `i`, if its declared capacity
    /// allows. The concurrency slot must already be held.
    fn reserve(&self, i: usize, grant: &GrantSpec) -> Option<Reservation> {
        let m = &self.inner.members[i];
        let caps = m.caps.lock().unwrap().clone()?;
        let mut u = m.used.lock().unwrap();
        let cpu = u64::from(grant.cpu_millicores);
        let ram = u64::from(grant.ram_mib);
        if u.cpu_millicores + cpu > u64::from(caps.max_cpu_millicores)
            || u.ram_mib + ram > u64::from(caps.max_ram_mib)
        {
            return None;
        }
        u.cpu_millicores += cpu;
        u.ram_mib += ram;
        u.grants += 1;
        Some(Reservation {
            inner: self.inner.clone(),
            member: i,
            cpu,
            ram,
            holds_slot: true,
        })
    }

    /// Re-take capacity for a grant already placed on `backend` (after a
    /// restart), so it can be watched or torn down there. Over-commits
    /// rather than refusing: the workload exists. `None` when this fleet
    /// has no backend of that name.
    pub fn adopt(&self, backend: &str, grant: &GrantSpec) -> Option<Reservation> {
        let i = self.index_of(backend)?;
        *self.inner.active.lock().unwrap() += 1;
        let mut u = self.inner.members[i].used.lock().unwrap();
        u.cpu_millicores += u64::from(grant.cpu_millicores);
        u.ram_mib += u64::from(grant.ram_mib);
        u.grants += 1;
        Some(Reservation {
            inner: self.inner.clone(),
            member: i,
            cpu: u64::from(grant.cpu_millicores),
            ram: u64::from(grant.ram_mib),
            holds_slot: true,
        })
    }

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

    /// Poll `instance`, placed under `reservation`, with backoff until it
    /// exits, disappears or `valid_to` passes; then [`Self::tear_down`] it.
    ///
    /// The reservation names the backend: a grant is watched, read and
    /// terminated on the backend that placed it (or adopted it after a
    /// restart), and on no other. Every call asks the component serving
    /// that backend at that moment, so a swap takes over a running watch at
    /// its next call; the instance is listed in [`Self::watched`]
    /// meanwhile.
    pub async fn watch_until_exit(
        &self,
        reservation: &Reservation,
        instance: &Instance,
        valid_to: u64,
        policy: WatchPolicy,
    ) -> WatchOutcome {
        let m = reservation.member();
        let backend = m.name.as_str();
        m.watched
            .lock()
            .unwrap()
            .insert(instance.instance_id.clone(), instance.clone());
        struct Unwatch<'a>(&'a Member, &'a str);
        impl Drop for Unwatch<'_> {
            fn drop(&mut self) {
                self.0.watched.lock().unwrap().remove(self.1);
            }
        }
        let _unwatch = Unwatch(m, &instance.instance_id);
        let mut interval = policy.initial;
        let ending = loop {
            let now = now_unix();
            if now >= valid_to {
                break WorkloadEnding::Expired;
            }
            match m.backend().status(instance).await {
                Ok(InstanceState::Exited(c)) => break WorkloadEnding::Exited(c),
                Ok(InstanceState::Gone) => break WorkloadEnding::Gone,
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    backend,
                    instance = %escape(&instance.instance_id),
                    "status failed, will poll again: {e}"
                ),
            }
            let left = Duration::from_secs(valid_to.saturating_sub(now_unix()));
            tokio::time::sleep(interval.min(left.max(Duration::from_millis(50)))).await;
            interval = (interval * 2).min(policy.max);
        };
        let Teardown {
            usage,
            usage_error,
            terminate_error,
        } = self.tear_down(reservation, instance, policy).await;
        WatchOutcome {
            ending,
            usage,
            usage_error,
            terminate_error,
        }
    }

    /// Read the usage of `instance`, placed under `reservation`, then
    /// terminate it, each retried `policy.attempts` times on transient
    /// failures. Usage is read before terminate because some backends (bare
    /// metal) account from state that terminate removes.
    pub async fn tear_down(
        &self,
        reservation: &Reservation,
        instance: &Instance,
        policy: WatchPolicy,
    ) -> Teardown {
        let m = reservation.member();
        let backend = m.name.as_str();
        let (usage, usage_error) = match retry(policy.attempts, || async {
            m.backend().usage(instance).await
        })
        .await
        {
            Ok(u) => (u, None),
            Err(e) => {
                tracing::warn!(backend, instance = %escape(&instance.instance_id), "usage unavailable: {e}");
                (Usage::default(), Some(e.to_string()))
            }
        };
        let terminate_error = match retry(policy.attempts, || async {
            m.backend().terminate(instance).await
        })
        .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(backend, instance = %escape(&instance.instance_id), "terminate failed: {e}");
                Some(e.to_string())
            }
        };
        Teardown {
            usage,
            usage_error,
            terminate_error,
        }
    }
}

impl Member {
    /// The component serving it now.
    fn backend(&self) -> Arc<dyn Backend> {
        self.current.read().unwrap().backend.clone()
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

/// Give back a reservation's capacity but keep the concurrency slot: the
/// grant is still being placed elsewhere.
fn release_capacity_only(mut r: Reservation) {
    r.holds_slot = false;
}

async fn retry<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut n = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == ErrorKind::Transient && n + 1 < attempts => {
                n += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}
