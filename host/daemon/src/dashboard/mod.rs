//! The operator's read-only view: aggregate state only, served on
//! 127.0.0.1 as an HTML page, a JSON snapshot and Prometheus metrics.
//!
//! The operator sees how their capacity is used, never who uses it. The
//! dashboard's inputs are [`Event`]s (identity-free by type), the fleet's
//! routing table, the boot config and a few provider facts set through
//! [`Dashboard`]'s setters; none can carry a requester identity, so none can
//! reach its memory, its page, its JSON, its metrics or its file on disk.
//!
//! - [`clock`]: "now", injectable;
//! - [`window`]: the rolling 24 h window (5-minute buckets);
//! - [`state`]: window, lifetime counters, subscribers, recent events;
//! - [`lifetime`]: the counters' file in the state dir;
//! - [`cost`]: cost, revenue, net and margin;
//! - [`snapshot`]: the JSON shape (`docs/snapshot.schema.json`);
//! - [`html`], [`metrics`]: the page and the Prometheus exposition;
//! - [`server`]: the loopback-only HTTP server.
//!
//! `docs/dashboard.md` defines every field.

pub mod cost;
pub mod html;
pub mod lifetime;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::config::{AttestationMode, BootConfig, Rate};
use crate::fleet::Fleet;
use compute_bridge_contract::events::{DeclineReason, Event, EventSink};

use compute_bridge_contract::clock::{Clock, SystemClock};
pub use lifetime::{Lifetime, LifetimeStore, PersistError};
pub use server::{BindError, DashboardServer};
pub use snapshot::{MrtdState, ProviderStatus, Snapshot};

use snapshot::*;
use state::State;

/// Characters of the provider id shown.
pub const PROVIDER_ID_PREFIX_LEN: usize = 12;

/// What the dashboard takes from the boot config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The coalition's name.
    pub coalition: String,
    /// Seconds between page reloads.
    pub refresh_sec: u64,
    /// Cost rates by backend name.
    pub rates: BTreeMap<String, Rate>,
    /// Where lifetime counters are kept (`None`: not kept).
    pub state_dir: Option<PathBuf>,
    /// How the bridge attests itself (decides what MR_TD can say).
    pub attestation: AttestationMode,
}

impl Settings {
    /// The settings in `cfg`.
    pub fn from_config(cfg: &BootConfig) -> Self {
        Self {
            coalition: cfg.coalition.network.clone(),
            refresh_sec: cfg.bridge.capacity_refresh_sec,
            rates: cfg.rates.clone(),
            state_dir: Some(cfg.state_dir()),
            attestation: cfg.attestation.mode,
        }
    }
}

/// Facts about this provider that other parts of the bridge learn.
#[derive(Debug, Clone)]
struct Facts {
    id_prefix: Option<String>,
    status: ProviderStatus,
    /// When the provider card was last published (unix seconds).
    last_card: Option<u64>,
    module_version: Option<String>,
    mrtd: MrtdState,
    /// Each backend's measured component (`sha256:HEX`), by name.
    components: BTreeMap<String, String>,
    /// When each backend's current component became current (unix seconds).
    loaded_at: BTreeMap<String, u64>,
    /// Each backend's live swaps since start, by outcome.
    swaps: BTreeMap<String, SwapCounts>,
}

struct DashboardState {
    clock: Arc<dyn Clock>,
    started_at: u64,
    fleet: Fleet,
    /// Backend names in routing order; slot `names.len()` collects events
    /// naming a backend the fleet does not have.
    names: Vec<String>,
    rates: Vec<Rate>,
    settings: Settings,
    store: Option<LifetimeStore>,
    facts: RwLock<Facts>,
    state: Mutex<State>,
}

/// The dashboard: an [`EventSink`] and the snapshot builder. Cheap to
/// clone; every clone shares one state.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<DashboardState>,
}

impl Dashboard {
    /// A dashboard over `fleet`, with the lifetime counters saved in
    /// `settings.state_dir`. An unreadable counters file is moved aside
    /// (and logged) rather than stopping the bridge.
    pub fn new(settings: Settings, fleet: Fleet, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_unix();
        let names: Vec<String> = fleet.members().into_iter().map(|m| m.name).collect();
        let rates = names
            .iter()
            .map(|n| settings.rates.get(n).copied().unwrap_or_default())
            .collect();
        let store = settings.state_dir.as_deref().map(LifetimeStore::new);
        let lifetime = match &store {
            None => Lifetime::default(),
            Some(s) => s.load().unwrap_or_else(|e| {
                match s.set_aside() {
                    Ok(aside) => tracing::warn!(
                        "{e}; moved it to {} and starting the counters from zero",
                        aside.display()
                    ),
                    Err(e2) => tracing::warn!("{e}; starting the counters from zero ({e2})"),
                }
                Lifetime::default()
            }),
        };
        let mrtd = match settings.attestation {
            AttestationMode::None => MrtdState::NotApplicable,
            AttestationMode::Tdx => MrtdState::Pending,
        };
        Self {
            inner: Arc::new(DashboardState {
                clock,
                started_at: now,
                state: Mutex::new(State::new(names.len() + 1, lifetime, now)),
                fleet,
                names,
                rates,
                settings,
                store,
                facts: RwLock::new(Facts {
                    id_prefix: None,
                    status: ProviderStatus::NotRegistered,
                    last_card: None,
                    module_version: None,
                    mrtd,
                    components: BTreeMap::new(),
                    loaded_at: BTreeMap::new(),
                    swaps: BTreeMap::new(),
                }),
            }),
        }
    }

    /// A dashboard for a started bridge: its config, fleet and provider id,
    /// on the system clock.
    pub fn for_bridge(bridge: &crate::bridge::Bridge) -> Self {
        let d = Self::new(
            Settings::from_config(&bridge.config),
            bridge.fleet.clone(),
            Arc::new(SystemClock),
        );
        d.set_provider_id(&bridge.provider_id);
        if let Some((_, attested)) = &bridge.attestation {
            d.set_mrtd(MrtdState::from_verdict(attested.mrtd_ok));
        }
        for e in &bridge.measurer.lock().unwrap().log().events {
            d.set_component(&e.event.backend, &e.event.component_sha256.to_string());
        }
        // Live swaps and rollbacks become events on the page and counters.
        bridge.swapper.send_events_to(Arc::new(d.clone()));
        d.set_module_version(&format!(
            "Compute v{}",
            compute_bridge_contract::protocol::PROTOCOL_VERSION
        ));
        d
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the operator's view down with it.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn facts_mut(&self) -> std::sync::RwLockWriteGuard<'_, Facts> {
        self.inner.facts.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Show this provider's id (only its first
    /// [`PROVIDER_ID_PREFIX_LEN`] characters are kept).
    pub fn set_provider_id(&self, id: &str) {
        let prefix: String = id.chars().take(PROVIDER_ID_PREFIX_LEN).collect();
        self.facts_mut().id_prefix = Some(prefix);
    }

    /// Override the registration status. The provider loop does not call
    /// this: its card events ([`Event::CardRefreshed`]) drive the status.
    pub fn set_status(&self, status: ProviderStatus) {
        self.facts_mut().status = status;
    }

    /// Set the coalition's Compute module version (the provider loop).
    pub fn set_module_version(&self, version: &str) {
        self.facts_mut().module_version = Some(version.to_string());
    }

    /// Show backend `name`'s measured component (`sha256:HEX`; the last
    /// call for a name wins, as the measurement log's last event does),
    /// loaded now.
    pub fn set_component(&self, name: &str, digest: &str) {
        let now = self.inner.clock.now_unix();
        let mut f = self.facts_mut();
        f.components.insert(name.to_string(), digest.to_string());
        f.loaded_at.insert(name.to_string(), now);
    }

    /// Set the MR_TD verdict (attestation). With attestation off the
    /// dashboard keeps saying so: a verdict then is refused and logged.
    pub fn set_mrtd(&self, mrtd: MrtdState) {
        if self.inner.settings.attestation == AttestationMode::None
            && mrtd != MrtdState::NotApplicable
        {
            tracing::warn!(
                "ignoring an MR_TD verdict ({}) while attestation is off",
                mrtd.label()
            );
            return;
        }
        self.facts_mut().mrtd = mrtd;
    }

    fn slot_of(&self, backend: &str) -> usize {
        self.inner
            .names
            .iter()
            .position(|n| n == backend)
            .unwrap_or(self.inner.names.len())
    }

    /// Sample the fleet's declared and reserved CPU into the window (for
    /// idle %). The server calls it every few seconds.
    pub fn sample_capacity(&self) {
        let members = self.inner.fleet.members();
        let mut cpu: Vec<(u64, u64)> = members
            .iter()
            .map(|m| {
                let declared = match (&m.offer, m.enabled) {
                    (Some(c), true) => u64::from(c.max_cpu_millicores),
                    _ => 0,
                };
                (declared, m.used_cpu_millicores)
            })
            .collect();
        cpu.push((0, 0));
        let now = self.inner.clock.now_unix();
        self.state().sample(now, &cpu);
    }

    /// Save the lifetime counters if they changed since the last save.
    pub fn persist(&self) -> Result<(), PersistError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let lifetime = {
            let mut s = self.state();
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            s.lifetime
        };
        store.save(&lifetime).inspect_err(|_| {
            // Try again next time.
            self.state().dirty = true;
        })
    }

    /// Everything the dashboard shows, now.
    pub fn snapshot(&self) -> Snapshot {
        let inner = &*self.inner;
        let members = inner.fleet.members();
        let facts = inner
            .facts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = inner.clock.now_unix();
        let (figures, lifetime, subscribers, recent, now) = {
            let mut s = self.state();
            let now = s.tick(now);
            let figures = s.window.totals(now).clone();
            let recent: Vec<RecentEvent> = s
                .recent
                .iter()
                .rev()
                .map(|r| RecentEvent {
                    at_unix: r.last,
                    age_seconds: now.saturating_sub(r.last),
                    count: r.count,
                    first_at_unix: r.first,
                    what: r.kind.clone(),
                })
                .collect();
            (figures, s.lifetime, s.subscribers, recent, now)
        };

        let mut window_cost = 0.0;
        let backends: Vec<BackendSnapshot> = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let t = &figures.backends[i];
                let rate = inner.rates[i];
                let cost = cost::cost_usd(&rate, t.cpu_core_seconds, t.ram_mib_seconds);
                window_cost += cost;
                BackendSnapshot {
                    // The fleet's current component follows a live swap
                    // (and its rollback); what was set by hand otherwise.
                    component_sha256: inner
                        .fleet
                        .component(&m.name)
                        .or_else(|| facts.components.get(&m.name).cloned()),
                    component_loaded_at_unix: facts.loaded_at.get(&m.name).copied(),
                    component_swaps: facts.swaps.get(&m.name).copied().unwrap_or_default(),
                    name: m.name,
                    enabled: m.enabled,
                    capacity: m.offer.map(|c| CapacitySnapshot {
                        regions: c.regions,
                        tdx_capable: c.tdx_capable,
                        cpu_millicores: c.max_cpu_millicores,
                        ram_mib: c.max_ram_mib,
                        td_measurements: (c.td_measurements.into_iter())
                            .map(|m| TdMeasurementSnapshot {
                                region: m.region,
                                mrtd: m.mrtd,
                            })
                            .collect(),
                    }),
                    used: UsedSnapshot {
                        cpu_millicores: m.used_cpu_millicores,
                        ram_mib: m.used_ram_mib,
                    },
                    active_grants: m.active_grants,
                    rate: RateSnapshot {
                        core_hour_usd: rate.core_hour_usd,
                        ram_gib_hour_usd: rate.ram_gib_hour_usd,
                    },
                    window: BackendWindow {
                        grants_served: t.grants_served,
                        grants_completed: t.grants_completed,
                        failovers_from: t.failovers_from,
                        cpu_core_seconds: t.cpu_core_seconds,
                        ram_mib_seconds: t.ram_mib_seconds,
                        net_bytes: t.net_bytes,
                        estimated_cost_usd: cost,
                        idle_ratio: idle_ratio(
                            t.capacity_millicore_seconds,
                            t.reserved_millicore_seconds,
                        ),
                    },
                }
            })
            .collect();

        let all = figures.all_backends();
        let economics = cost::Economics::new(window_cost, figures.revenue_micros);
        let status = live_status(&facts, now, inner.settings.refresh_sec);
        Snapshot {
            schema_version: SCHEMA_VERSION,
            generated_at_unix: now,
            refresh_seconds: inner.settings.refresh_sec,
            provider: ProviderSnapshot {
                id_prefix: facts.id_prefix,
                status,
                coalition: inner.settings.coalition.clone(),
                module_version: facts.module_version,
                uptime_seconds: now.saturating_sub(inner.started_at),
                mrtd: facts.mrtd,
            },
            subscribers,
            grants: GrantsSnapshot {
                active: inner.fleet.active(),
                cap: inner.fleet.cap(),
            },
            lifetime: LifetimeSnapshot {
                grants_served: lifetime.grants_served,
                grants_completed: lifetime.grants_completed,
                grants_declined: lifetime.grants_declined,
                failovers: lifetime.failovers,
                cpu_core_seconds: lifetime.cpu_core_seconds,
                ram_mib_seconds: lifetime.ram_mib_seconds,
                net_bytes: lifetime.net_bytes,
                settled_revenue_usd: cost::usd_from_micros(lifetime.revenue_micros),
            },
            backends,
            window: WindowSnapshot {
                span_seconds: window::WINDOW_SECS,
                observed_seconds: figures.observed_seconds.min(window::WINDOW_SECS),
                grants_served: all.grants_served,
                grants_completed: all.grants_completed,
                grants_declined: figures.declines_total(),
                declines: DeclineReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), figures.declines[*r as usize]))
                    .collect(),
                failovers: all.failovers_from,
                cpu_core_seconds: all.cpu_core_seconds,
                ram_mib_seconds: all.ram_mib_seconds,
                net_bytes: all.net_bytes,
                idle_ratio: idle_ratio(
                    all.capacity_millicore_seconds,
                    all.reserved_millicore_seconds,
                ),
                estimated_cost_usd: economics.cost_usd,
                settled_revenue_usd: economics.revenue_usd,
                net_usd: economics.net_usd,
                margin_ratio: economics.margin_ratio,
            },
            recent_events: recent,
        }
    }
}

/// 1 − reserved / declared, within [0, 1]; `None` before any capacity.
fn idle_ratio(declared: u64, reserved: u64) -> Option<f64> {
    (declared > 0).then(|| (1.0 - reserved as f64 / declared as f64).clamp(0.0, 1.0))
}

/// A card refreshed within two refresh periods (plus slack for a slow
/// coalition) keeps the provider `alive`; a card that stopped being
/// refreshed falls back to `registered`: the coalition still has it, but it
/// is going stale.
fn live_status(facts: &Facts, now: u64, refresh_sec: u64) -> ProviderStatus {
    match (facts.status, facts.last_card) {
        (ProviderStatus::Alive, Some(t)) if now.saturating_sub(t) > 2 * refresh_sec + 10 => {
            ProviderStatus::Registered
        }
        (status, _) => status,
    }
}

impl EventSink for Dashboard {
    fn record(&self, event: Event) {
        if matches!(event, Event::CardRefreshed) {
            let now = self.inner.clock.now_unix();
            let mut f = self.facts_mut();
            // The first publication registers; each refresh after it
            // shows the card is kept alive.
            f.status = match f.last_card {
                None => ProviderStatus::Registered,
                Some(_) => ProviderStatus::Alive,
            };
            f.last_card = Some(now);
        }
        if let Event::ComponentSwap {
            backend, outcome, ..
        } = &event
        {
            let now = self.inner.clock.now_unix();
            let mut f = self.facts_mut();
            f.swaps.entry(backend.clone()).or_default().add(*outcome);
            if *outcome != compute_bridge_contract::events::SwapOutcome::Refused {
                f.loaded_at.insert(backend.clone(), now);
            }
        }
        let Some((delta, kind)) = state::plan(event, |b| self.slot_of(b)) else {
            tracing::debug!("ignored a settlement that is not a finite, non-negative amount");
            return;
        };
        let now = self.inner.clock.now_unix();
        self.state().apply(now, delta, kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::backend::Usage;
    use compute_bridge_contract::clock::ManualClock;

    fn dashboard(attestation: AttestationMode) -> (Dashboard, ManualClock) {
        let clock = ManualClock::new(1_700_000_000);
        let settings = Settings {
            coalition: "infer.corp".into(),
            refresh_sec: 30,
            rates: BTreeMap::from([(
                "aws".to_string(),
                Rate {
                    core_hour_usd: 0.05,
                    ram_gib_hour_usd: 0.01,
                },
            )]),
            state_dir: None,
            attestation,
        };
        let d = Dashboard::new(settings, Fleet::new(Vec::new(), 4), Arc::new(clock.clone()));
        (d, clock)
    }

    #[test]
    fn the_window_rolls_with_the_injected_clock_and_lifetime_stays() {
        let (d, clock) = dashboard(AttestationMode::None);
        d.record(Event::GrantAccepted {
            backend: "aws".into(),
            region: "us-east-1".into(),
        });
        d.record(Event::GrantCompleted {
            backend: "aws".into(),
            usage: Usage {
                cpu_core_seconds: 36_000,
                ram_mib_seconds: 0,
                net_bytes: 0,
            },
        });
        d.record(Event::RevenueSettled { usd: 2.0 });
        clock.advance(23 * 3600);
        let s = d.snapshot();
        assert_eq!(s.window.grants_served, 1);
        assert_eq!(s.window.cpu_core_seconds, 36_000);
        assert_eq!(s.window.settled_revenue_usd, 2.0);
        assert_eq!(s.provider.uptime_seconds, 23 * 3600);
        assert_eq!(s.recent_events[0].age_seconds, 23 * 3600);
        // A day (and one bucket) later the window is empty; the lifetime
        // counters and the event list are not windowed.
        clock.advance(3600 + window::BUCKET_SECS);
        let s = d.snapshot();
        assert_eq!(s.window.grants_served, 0);
        assert_eq!(s.window.cpu_core_seconds, 0);
        assert_eq!(s.window.settled_revenue_usd, 0.0);
        assert_eq!(s.window.margin_ratio, None);
        assert_eq!(s.lifetime.grants_served, 1);
        assert_eq!(s.lifetime.cpu_core_seconds, 36_000);
        assert_eq!(s.recent_events.len(), 3);
    }

    /// A quiet day: a grant an hour, the card refreshed every 30 s. Every
    /// grant is still on the page at the end (before coalescing, the last
    /// 50 events were all card refreshes within 25 minutes of a grant).
    #[test]
    fn a_day_of_card_refreshes_leaves_every_grant_on_the_page() {
        let (d, clock) = dashboard(AttestationMode::None);
        for _ in 0..24 {
            d.record(Event::GrantAccepted {
                backend: "aws".into(),
                region: "us-east-1".into(),
            });
            for _ in 0..120 {
                clock.advance(30);
                d.record(Event::CardRefreshed);
            }
        }
        let s = d.snapshot();
        let page = html::render(&s);
        let grants = s
            .recent_events
            .iter()
            .filter(|e| matches!(e.what, snapshot::RecentKind::GrantAccepted { .. }))
            .count();
        assert_eq!(grants, 24, "{page}");
        assert_eq!(page.matches("Grant accepted on aws:us-east-1").count(), 24);
        assert_eq!(page.matches("Provider card refreshed").count(), 1, "{page}");
    }

    #[test]
    fn card_refreshes_show_as_one_line_with_their_count_and_first_time() {
        let (d, clock) = dashboard(AttestationMode::None);
        d.record(Event::GrantAccepted {
            backend: "aws".into(),
            region: "us-east-1".into(),
        });
        for _ in 0..42 {
            clock.advance(10);
            d.record(Event::CardRefreshed);
        }
        clock.advance(5);
        let s = d.snapshot();
        assert_eq!(s.recent_events.len(), 2, "{:?}", s.recent_events);
        let card = &s.recent_events[0];
        assert_eq!((card.count, card.age_seconds), (42, 5));
        assert_eq!(card.at_unix - card.first_at_unix, 410);
        let page = html::render(&s);
        assert!(
            page.contains("[t-5s]   Provider card refreshed ×42, first t-6m"),
            "{page}"
        );
        assert!(page.contains("Grant accepted on aws:us-east-1"), "{page}");
    }

    #[test]
    fn with_attestation_off_mrtd_never_says_ok() {
        let (d, _) = dashboard(AttestationMode::None);
        assert_eq!(d.snapshot().provider.mrtd, MrtdState::NotApplicable);
        d.set_mrtd(MrtdState::Ok);
        assert_eq!(d.snapshot().provider.mrtd, MrtdState::NotApplicable);
        let (d, _) = dashboard(AttestationMode::Tdx);
        assert_eq!(d.snapshot().provider.mrtd, MrtdState::Pending);
        d.set_mrtd(MrtdState::Mismatch);
        assert_eq!(d.snapshot().provider.mrtd, MrtdState::Mismatch);
    }

    #[test]
    fn card_publications_register_then_keep_alive_and_a_stale_card_falls_back() {
        let (d, clock) = dashboard(AttestationMode::None);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::NotRegistered);
        d.record(Event::CardRefreshed);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::Registered);
        clock.advance(30);
        d.record(Event::CardRefreshed);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::Alive);
        // Refreshes stop (the coalition is unreachable): two periods and
        // the slack later the card is no longer called alive.
        clock.advance(2 * 30 + 10);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::Alive);
        clock.advance(1);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::Registered);
        d.record(Event::CardRefreshed);
        assert_eq!(d.snapshot().provider.status, ProviderStatus::Alive);
    }

    #[test]
    fn only_the_provider_id_prefix_is_kept() {
        let (d, _) = dashboard(AttestationMode::None);
        d.set_provider_id("0123456789abcdef0123456789abcdef");
        assert_eq!(
            d.snapshot().provider.id_prefix.as_deref(),
            Some("0123456789ab")
        );
    }

    /// A backend reporting 2^63 of everything per grant (as a hostile one
    /// did): every counter saturates at `u64::MAX` instead of wrapping, so
    /// the lifetime totals (and the file they are saved to) never read
    /// less than before and `/metrics` counters never go backwards.
    #[test]
    fn huge_usage_saturates_every_counter_and_metrics_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_700_000_000);
        let settings = Settings {
            coalition: "c".into(),
            refresh_sec: 30,
            rates: BTreeMap::new(),
            state_dir: Some(dir.path().to_path_buf()),
            attestation: AttestationMode::None,
        };
        let d = Dashboard::new(settings, Fleet::new(Vec::new(), 4), Arc::new(clock.clone()));
        let huge = Usage {
            cpu_core_seconds: 1 << 63,
            ram_mib_seconds: 1 << 63,
            net_bytes: 1 << 63,
        };
        let counter = |text: &str, name: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let mut last = (0, 0);
        for i in 1..=3u64 {
            d.record(Event::GrantCompleted {
                backend: "aws".into(),
                usage: huge,
            });
            clock.advance(window::BUCKET_SECS);
            let s = d.snapshot();
            let m = metrics::render(&s);
            let now = (
                s.lifetime.cpu_core_seconds,
                counter(&m, "compute_bridge_cpu_core_seconds_total"),
            );
            assert!(
                now.0 >= last.0 && now.1 >= last.1,
                "grant {i}: lifetime {:?} after {:?}",
                now,
                last
            );
            assert!(
                s.window.net_bytes >= 1 << 63,
                "grant {i}: window {:?}",
                s.window.net_bytes
            );
            last = now;
        }
        let s = d.snapshot();
        assert_eq!(
            (
                s.lifetime.cpu_core_seconds,
                s.lifetime.ram_mib_seconds,
                s.lifetime.net_bytes
            ),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!(s.window.cpu_core_seconds, u64::MAX);
        d.persist().unwrap();
        let saved = LifetimeStore::new(dir.path()).load().unwrap();
        assert_eq!(saved.cpu_core_seconds, u64::MAX);
        // A day later the window has let go of all of it; lifetime has not.
        clock.advance(window::WINDOW_SECS);
        let s = d.snapshot();
        assert_eq!(s.window.cpu_core_seconds, 0);
        assert_eq!(s.lifetime.cpu_core_seconds, u64::MAX);
    }

    #[test]
    fn idle_is_the_unreserved_share_of_declared_capacity() {
        assert_eq!(idle_ratio(0, 0), None);
        assert_eq!(idle_ratio(4000, 1000), Some(0.75));
        // Over-commit after a restart (adopted grants) reads as 0 %, not
        // negative.
        assert_eq!(idle_ratio(1000, 3000), Some(0.0));
    }
}
