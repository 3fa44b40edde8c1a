//! Live swap of a backend's component (issue 20): load a new `.wasm` under
//! the backend's own config and limits, check it against the component it
//! replaces, measure it, make it current, and roll back by itself if it
//! then fails.
//!
//! A swap, in order ([`Swapper::swap_file`]):
//! 1. **load**: the new component under the backend's `[[backends]]`
//!    entry (config, capabilities, limits): the import policy refuses it
//!    here like any component;
//! 2. **check**, read-only, before it serves any grant: its `capabilities`
//!    must answer; its `list-instances` must list the instances the old
//!    one lists; and `status` of every instance the old one runs (those it
//!    lists, and those the fleet is watching on it) must be what the old
//!    one answers. A check that fails or disagrees refuses the swap: the
//!    old component stays, nothing is measured;
//! 3. **measure**: its event (backend, SHA-256, policy) appended to the
//!    measurement log and extended into RTMR3 exactly as at start, so the
//!    card's log replays to the new RTMR3; the card is republished;
//! 4. **live**: new grants are placed by it and every watcher's next call
//!    goes to it ([`Fleet::replace`]); a call under way finishes on the
//!    component it started on, so no grant is dropped or reported twice.
//!
//! Then a **probation** of `2 × swap_rollback_polls` polls, one every
//! [`POLL_INTERVAL`]: each asks the new component `capabilities`,
//! `list-instances` and `status` of every watched instance, and compares
//! with the old one's answers. `swap_rollback_polls` bad polls in a row
//! roll back: the old component is current again, measured again (a new
//! event: the log only grows), and the card republished. One swap at a
//! time per bridge, probation included.
//!
//! Keeps nothing on disk itself (the measurement log and the journal do).
//! Its messages name no instance id (a backend may name an instance after
//! the request id): an instance is "#k of N" with its region.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_bridge_contract::measurement::BackendMeasurement;
use compute_bridge_sandbox::BootView;
use tokio::sync::Notify;

use crate::config::BootConfig;
use crate::fleet::Fleet;
use crate::measure::{SharedMeasurer, measurement_of};
use compute_bridge_contract::backend::{Backend, Instance};
use compute_bridge_contract::events::{Event, EventSink, SwapOutcome, digest_prefix};
use compute_bridge_sandbox::Runtime;

/// Time between two probation polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a swap did not happen (the old component stays), or could not be
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    /// No backend of that name.
    #[error("no backend is called {name:?}; this bridge's backends are: {}", .known.join(", "))]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: Vec<String>,
    },
    /// Another swap (or its probation) is under way.
    #[error(
        "a swap is already under way on this bridge (with its probation); swap again once it \
         has gone live and passed its probation, or rolled back"
    )]
    Busy,
    /// The component did not load (file, import policy, compile).
    #[error("backend {backend}: the new component did not load: {why}")]
    Load {
        /// The backend.
        backend: String,
        /// Why (the whole error chain).
        why: String,
    },
    /// It is the component already serving.
    #[error("backend {backend} already runs component {component}; nothing to swap")]
    Same {
        /// The backend.
        backend: String,
        /// Its digest.
        component: String,
    },
    /// A read-only check failed or disagreed with the old component.
    #[error(
        "backend {backend}: the new component failed its check, so the old one stays and \
         nothing was measured: {why}"
    )]
    Check {
        /// The backend.
        backend: String,
        /// Which check and why.
        why: String,
    },
    /// Measuring it failed (the log or the register).
    #[error("backend {backend}: measuring the new component failed, so the old one stays: {why}")]
    Measure {
        /// The backend.
        backend: String,
        /// Why.
        why: String,
    },
}

/// A step of a swap, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Loaded under the backend's config and limits.
    Loaded {
        /// Its digest.
        component: String,
    },
    /// Passed the read-only checks.
    Checked {
        /// Instances whose status was compared.
        instances: usize,
    },
    /// Measured: the event's place in the log.
    Measured {
        /// Its `seq`.
        seq: u64,
        /// Whether it was extended into RTMR3 (`false` with `attestation =
        /// "none"`: logged only).
        extended: bool,
    },
    /// Current for new grants and running watchers.
    Live,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loaded { component } => write!(f, "loaded {component}"),
            Self::Checked { instances } => write!(
                f,
                "checked: capabilities, list-instances and the status of {instances} \
                 running instance(s) agree with the old component"
            ),
            Self::Measured {
                seq,
                extended: true,
            } => write!(
                f,
                "measured: event {seq} of the measurement log, extended into RTMR3; the card \
                 is republished"
            ),
            Self::Measured {
                seq,
                extended: false,
            } => write!(
                f,
                "measured: event {seq} of the measurement log (attestation none: not extended \
                 into RTMR3); the card is republished"
            ),
            Self::Live => write!(f, "live: new grants and running watchers use it"),
        }
    }
}

/// How a swap's probation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probation {
    /// Every poll but fewer than `swap_rollback_polls` in a row were good.
    Passed {
        /// Polls made.
        polls: u32,
    },
    /// Rolled back to the old component.
    RolledBack {
        /// What the last bad poll saw.
        why: String,
        /// The old component's new event in the log.
        seq: Option<u64>,
    },
}

/// A swap that went live; its probation runs on.
pub struct Swapped {
    /// The backend.
    pub backend: String,
    /// The component now serving.
    pub component: String,
    /// The one it replaced.
    pub previous: Option<String>,
    /// Its event in the measurement log.
    pub seq: u64,
    /// Load to live.
    pub took: Duration,
    /// The probation: resolves when it passed or rolled back.
    pub probation: tokio::task::JoinHandle<Probation>,
}

/// Swaps components of a running bridge. Cheap to clone.
#[derive(Clone)]
pub struct Swapper {
    inner: Arc<SwapperState>,
}

#[derive(Clone)]
struct SwapperState {
    config: BootConfig,
    provider_id: String,
    runtime: Arc<Runtime>,
    fleet: Fleet,
    measurer: SharedMeasurer,
    card_now: Arc<Notify>,
    rollback_polls: u32,
    poll_interval: Duration,
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Where swaps, refusals and rollbacks are told (the dashboard).
    events: Arc<std::sync::OnceLock<Arc<dyn EventSink>>>,
}

impl Swapper {
    /// A swapper over a started bridge's parts; `card_now` is notified
    /// when the card must be republished (a new measurement).
    pub fn new(
        config: BootConfig,
        provider_id: String,
        runtime: Arc<Runtime>,
        fleet: Fleet,
        measurer: SharedMeasurer,
        card_now: Arc<Notify>,
    ) -> Self {
        let rollback_polls = config.bridge.swap_rollback_polls;
        Self {
            inner: Arc::new(SwapperState {
                config,
                provider_id,
                runtime,
                fleet,
                measurer,
                card_now,
                rollback_polls,
                poll_interval: POLL_INTERVAL,
                busy: Arc::new(tokio::sync::Mutex::new(())),
                events: Arc::new(std::sync::OnceLock::new()),
            }),
        }
    }

    /// The same swapper polling every `interval` in probation (tests).
    pub fn with_poll_interval(self, interval: Duration) -> Self {
        let mut inner = (*self.inner).clone();
        inner.poll_interval = interval;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Tell `sink` of every swap that goes live, is refused at its check,
    /// or is rolled back (backend name, digest prefixes, outcome). The
    /// first sink given stays.
    pub fn send_events_to(&self, sink: Arc<dyn EventSink>) {
        let _ = self.inner.events.set(sink);
    }

    fn tell(&self, backend: &str, from: Option<&str>, to: &str, outcome: SwapOutcome) {
        if let Some(sink) = self.inner.events.get() {
            sink.record(Event::ComponentSwap {
                backend: backend.to_string(),
                from: digest_prefix(from.unwrap_or("unmeasured")),
                to: digest_prefix(to),
                outcome,
            });
        }
    }

    /// What is notified when the card must be republished.
    pub fn card_trigger(&self) -> Arc<Notify> {
        self.inner.card_now.clone()
    }

    /// Swap `backend`'s component for the one in `file`, loaded under the
    /// backend's config and limits. `progress` sees each step.
    pub async fn swap_file(
        &self,
        backend: &str,
        file: &Path,
        progress: impl FnMut(&Step),
    ) -> Result<Swapped, SwapError> {
        let cfg = self.backend_config(backend)?;
        let load_err = |e: anyhow::Error| SwapError::Load {
            backend: backend.to_string(),
            why: format!("{e:#}"),
        };
        let mut spec = self
            .inner
            .config
            .backend_spec(cfg, &self.inner.provider_id)
            .map_err(load_err)?;
        spec.bytes = std::fs::read(file)
            .map_err(|e| anyhow::Error::from(e).context(format!("reading {}", file.display())))
            .map_err(load_err)?;
        spec.component = file.display().to_string();
        self.swap_spec(spec, progress).await
    }

    /// Swap to the component `spec` describes (its backend's name is
    /// `spec.at.backend`).
    pub async fn swap_spec(
        &self,
        spec: compute_bridge_sandbox::BackendSpec,
        progress: impl FnMut(&Step),
    ) -> Result<Swapped, SwapError> {
        let backend = spec.at.backend.to_string();
        self.backend_config(&backend)?;
        let busy = self.take_busy()?;
        let started = Instant::now();
        let measurement = measurement_of(&spec);
        let runtime = self.inner.runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&spec))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
            .map_err(|e| SwapError::Load {
                backend: backend.clone(),
                why: format!("{e:#}"),
            })?;
        let new: Arc<dyn Backend> = Arc::new(loaded.0);
        self.go_live(busy, started, new, measurement, progress)
            .await
    }

    /// Swap `measurement.backend` to `new`, a component already loaded
    /// whose measurement is `measurement` (tests put a component behind a
    /// wrapper here).
    pub async fn swap_loaded(
        &self,
        new: Arc<dyn Backend>,
        measurement: BackendMeasurement,
        progress: impl FnMut(&Step),
    ) -> Result<Swapped, SwapError> {
        self.backend_config(&measurement.backend)?;
        let busy = self.take_busy()?;
        self.go_live(busy, Instant::now(), new, measurement, progress)
            .await
    }

    fn backend_config(&self, name: &str) -> Result<&crate::config::BackendConfig, SwapError> {
        self.inner
            .config
            .backends
            .iter()
            .find(|b| b.name == name && self.inner.fleet.backend(name).is_some())
            .ok_or_else(|| SwapError::UnknownBackend {
                name: name.to_string(),
                known: self.inner.fleet.names(),
            })
    }

    fn take_busy(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, SwapError> {
        self.inner
            .busy
            .clone()
            .try_lock_owned()
            .map_err(|_| SwapError::Busy)
    }

    async fn go_live(
        &self,
        busy: tokio::sync::OwnedMutexGuard<()>,
        started: Instant,
        new: Arc<dyn Backend>,
        measurement: BackendMeasurement,
        mut progress: impl FnMut(&Step),
    ) -> Result<Swapped, SwapError> {
        let inner = &self.inner;
        let name = measurement.backend.clone();
        let component = measurement.component_sha256.to_string();
        let previous = inner.fleet.component(&name);
        if previous.as_deref() == Some(component.as_str()) {
            return Err(SwapError::Same {
                backend: name,
                component,
            });
        }
        let old = inner
            .fleet
            .backend(&name)
            .expect("backend_config found it in the fleet");
        tracing::info!(backend = %name, %component, "swap: component loaded");
        progress(&Step::Loaded {
            component: component.clone(),
        });

        let checked = check(
            &name,
            old.as_ref(),
            new.as_ref(),
            &inner.fleet.watched(&name),
        )
        .await
        .map_err(|why| {
            tracing::warn!(backend = %name, %component, "swap refused: {why}");
            self.tell(&name, previous.as_deref(), &component, SwapOutcome::Refused);
            SwapError::Check {
                backend: name.clone(),
                why,
            }
        })?;
        tracing::info!(backend = %name, instances = checked, "swap: component checked");
        progress(&Step::Checked { instances: checked });

        let (old_event, logged, extended) = {
            let mut m = inner.measurer.lock().unwrap_or_else(|p| p.into_inner());
            let old_event = m.log().current(&name).cloned();
            let logged = m.measure(measurement).map_err(|e| SwapError::Measure {
                backend: name.clone(),
                why: e.to_string(),
            })?;
            (old_event, logged, m.log().extended)
        };
        tracing::info!(backend = %name, %component, event = logged.seq, "swap: component measured");
        progress(&Step::Measured {
            seq: logged.seq,
            extended,
        });

        inner.fleet.replace(&name, new.clone(), component.clone());
        inner.card_now.notify_one();
        self.tell(&name, previous.as_deref(), &component, SwapOutcome::Live);
        let took = started.elapsed();
        tracing::info!(
            backend = %name,
            %component,
            ms = took.as_millis() as u64,
            "swap: component live"
        );
        progress(&Step::Live);

        let probation = tokio::spawn(self.clone().probation(
            busy,
            name.clone(),
            old,
            previous.clone(),
            old_event,
            new,
            component.clone(),
        ));
        Ok(Swapped {
            backend: name,
            component,
            previous,
            seq: logged.seq,
            took,
            probation,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn probation(
        self,
        _busy: tokio::sync::OwnedMutexGuard<()>,
        name: String,
        old: Arc<dyn Backend>,
        old_component: Option<String>,
        old_event: Option<BackendMeasurement>,
        new: Arc<dyn Backend>,
        component: String,
    ) -> Probation {
        let inner = &self.inner;
        let n = inner.rollback_polls.max(1);
        let mut bad_in_row = 0;
        for poll in 1..=2 * n {
            tokio::time::sleep(inner.poll_interval).await;
            let watched = inner.fleet.watched(&name);
            match check(&name, old.as_ref(), new.as_ref(), &watched).await {
                Ok(_) => bad_in_row = 0,
                Err(why) => {
                    bad_in_row += 1;
                    tracing::warn!(
                        backend = %name,
                        %component,
                        poll,
                        bad_in_row,
                        of = n,
                        "swap probation: {why}"
                    );
                    if bad_in_row >= n {
                        let back = self
                            .roll_back(&name, old, old_component.clone(), old_event, why)
                            .await;
                        self.tell(
                            &name,
                            old_component.as_deref(),
                            &component,
                            SwapOutcome::RolledBack,
                        );
                        return back;
                    }
                }
            }
        }
        tracing::info!(backend = %name, %component, polls = 2 * n, "swap probation passed");
        Probation::Passed { polls: 2 * n }
    }

    async fn roll_back(
        &self,
        name: &str,
        old: Arc<dyn Backend>,
        old_component: Option<String>,
        old_event: Option<BackendMeasurement>,
        why: String,
    ) -> Probation {
        let inner = &self.inner;
        let seq = match old_event {
            Some(e) => {
                let mut m = inner.measurer.lock().unwrap_or_else(|p| p.into_inner());
                match m.measure(e) {
                    Ok(l) => Some(l.seq),
                    Err(e) => {
                        // The old component was measured before; failing to
                        // log it again leaves the card with the new one as
                        // current, which the requester would then trust
                        // wrongly: say so loudly and keep going back.
                        tracing::error!(
                            backend = name,
                            "rollback: measuring the old component again failed ({e}); the \
                             card's log names the new one as current until the bridge restarts"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        inner.fleet.replace(
            name,
            old,
            old_component.unwrap_or_else(|| "unmeasured".into()),
        );
        inner.card_now.notify_one();
        tracing::warn!(
            backend = name,
            event = ?seq,
            "swap ROLLED BACK to the old component, measured again: {why}"
        );
        Probation::RolledBack { why, seq }
    }
}

/// The read-only check of `new` against `old` on backend `name`: the
/// number of instances whose status was compared, or what failed.
async fn check(
    name: &str,
    old: &dyn Backend,
    new: &dyn Backend,
    watched: &[Instance],
) -> Result<usize, String> {
    new.capabilities()
        .await
        .map_err(|e| format!("capabilities failed: {e}"))?;
    let listed_new = new
        .list_instances()
        .await
        .map_err(|e| format!("list-instances failed: {e}"))?;
    let mut instances: Vec<Instance> = watched.to_vec();
    match old.list_instances().await {
        Ok(listed_old) => {
            let ids = |v: &[Instance]| -> BTreeSet<String> {
                v.iter().map(|i| i.instance_id.clone()).collect()
            };
            let (a, b) = (ids(&listed_old), ids(&listed_new));
            if a != b {
                return Err(format!(
                    "list-instances disagrees: the old component lists {} instance(s), the new \
                     one {}, {} of them not listed by both",
                    a.len(),
                    b.len(),
                    a.symmetric_difference(&b).count()
                ));
            }
            for i in listed_old {
                if !instances.iter().any(|w| w.instance_id == i.instance_id) {
                    instances.push(i);
                }
            }
        }
        Err(e) => tracing::warn!(
            backend = name,
            "swap check: the old component's list-instances failed ({e}); comparing the \
             watched instances only"
        ),
    }
    let total = instances.len();
    for (k, i) in instances.iter().enumerate() {
        let theirs = new.status(i).await.map_err(|e| {
            format!(
                "status of running instance #{} of {total} (region {}) failed: {e}",
                k + 1,
                i.region
            )
        })?;
        match old.status(i).await {
            Ok(ours) if ours != theirs => {
                return Err(format!(
                    "status of running instance #{} of {total} (region {}) disagrees: the old \
                     component says {ours:?}, the new one {theirs:?}",
                    k + 1,
                    i.region
                ));
            }
            _ => {}
        }
    }
    Ok(total)
}
