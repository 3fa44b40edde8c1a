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
//!
//! One file per concern, each adding its methods to [`Fleet`]: this one
//! holds the routing table (members, the component each runs now, their
//! offers and the refresh); `capacity` the cap and the room a
//! [`Reservation`] holds; `route` placing a grant and what failed on the
//! way; `watch` polling a workload to its end and tearing it down.

mod capacity;
mod route;
mod watch;

pub use capacity::Reservation;
pub use route::{Failover, PlaceError, Placement};
pub use watch::{Teardown, WatchOutcome, WatchPolicy};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use compute_bridge_contract::backend::{Backend, Instance, Offer};

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
}

impl Member {
    /// The component serving it now.
    fn backend(&self) -> Arc<dyn Backend> {
        self.current.read().unwrap().backend.clone()
    }
}
