//! The provider loop: grant → validate → admit and provision (fleet) →
//! journal → seal and publish access → watch to the end → exactly one usage
//! report, with events for the operator's view at every step.
//!
//! One [`ProviderLoop`] owns one shared `LoopState`: the provider's keys, the
//! fleet, the journal, the link, the event sink, the settings, and what
//! this run alone remembers (the request ids seen, the card's attestation,
//! the last [`GrantSeq`]). Each concern adds its own `impl LoopState` in its
//! own file, and reaches the others only through what they open to it
//! (`pub(super)`):
//! - `intake`: a grant addressed to this provider is checked
//!   ([`validate`]), deduplicated, and handed on or declined;
//! - `lifecycle`: provision → journal → seal and hand out access → watch →
//!   teardown → exactly one usage report, and the abort of a workload
//!   whose access was never handed out;
//! - `reconcile`: at start, the journal's unfinished workloads brought to
//!   their end, and the opt-in orphan sweep ([`sweep_orphans`]);
//! - `card`: the provider card republished with a fresh quote, and
//!   subscribers counted;
//! - `settlements`: settlements credited to the journal's counters.
//!
//! Invariants every part keeps:
//! - a bad grant is declined with a reason and a log line, never a crash;
//! - on shutdown the loop stops taking grants and leaves running workloads
//!   journaled for the next start to watch;
//! - its log lines name no requester: no peer id (subscribers are counted),
//!   no request id (a grant is `grant=#N`, a [`GrantSeq`] of this run), no
//!   image, reply key, workload key, region asked for, or settlement
//!   amount; a backend's message, and the id of an instance it made for
//!   the grant (a backend may name an instance after the request id; the
//!   test backend does), are logged only through [`GrantSpec::redact`]. Resources, the backend and
//!   the region the grant was placed in are the operator's own facts and
//!   are logged.
//!
//! [`GrantSpec::redact`]: compute_bridge_contract::backend::GrantSpec::redact

mod card;
mod intake;
mod lifecycle;
mod reconcile;
mod settlements;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::attest::{Attested, Attester};
use crate::fleet::{Fleet, WatchPolicy};
use crate::journal::Journal;
use crate::measure::SharedMeasurer;
use compute_bridge_coalition::envelope::EnvelopeKey;
use compute_bridge_coalition::link::ProviderLink;
use compute_bridge_contract::events::{Event, EventSink};
use compute_bridge_contract::measurement::MeasurementLog;
use compute_bridge_contract::protocol::{Attestation, ProviderId};

pub use intake::validate;
pub use lifecycle::failover_events;
pub use reconcile::sweep_orphans;

use intake::Seen;

/// How long the loop waits for a subscriber before publishing a sealed
/// access bundle (it is sent to `compute.access`, which only requesters
/// consume). If nobody listens by then (or by `valid_to`), the workload is
/// torn down: nobody could use it.
pub const ACCESS_WAIT: Duration = Duration::from_secs(60);

/// How long shutdown waits for grants in flight to reach a safe point.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// The coalition's name (for the card).
    pub coalition: String,
    /// Seconds between card refreshes.
    pub capacity_refresh: Duration,
    /// How workloads are polled.
    pub watch: WatchPolicy,
    /// How long to wait for someone to hand access to.
    pub access_wait: Duration,
    /// In `tdx` mode: the attester and the quote taken at start. The card
    /// carries the quote; every refresh takes a fresh one (keeping the last
    /// good one if that fails). `None`: the card says `Attestation::None`.
    pub attestation: Option<(Attester, Attested)>,
    /// The measurement log the card carries beside the quote (`None`: an
    /// empty one, for tests that measure nothing). The quote in
    /// `attestation` was taken after every event in it was extended.
    pub measurer: Option<SharedMeasurer>,
    /// Backends whose operator opted into the orphan sweep
    /// (`sweep_orphans = true`); see [`sweep_orphans`].
    pub sweep_backends: HashSet<String>,
}

/// Everything the loop needs. Build with [`ProviderLoop::new`], then
/// [`ProviderLoop::run`].
pub struct ProviderLoop {
    inner: Arc<LoopState>,
}

struct LoopState {
    provider_id: ProviderId,
    envelope: EnvelopeKey,
    fleet: Fleet,
    journal: Journal,
    link: ProviderLink,
    events: Arc<dyn EventSink>,
    settings: LoopSettings,
    /// Request ids taken or declined in this run (the journal covers runs
    /// before it).
    seen: Mutex<Seen>,
    /// What the card's `attestation` says now, and the measurement log its
    /// quote was taken over (changed together).
    attestation: Mutex<(Attestation, MeasurementLog)>,
    /// The last [`GrantSeq`] handed out in this run.
    last_seq: AtomicU64,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Notified when the card must be republished now (a live swap
    /// measured a component).
    card_now: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ProviderLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderLoop({})", self.inner.provider_id)
    }
}

/// How the log tells grants apart: an opaque number assigned in this
/// process as each grant addressed to this provider arrives (or as the
/// journal hands one back at start), shown as `grant=#17`. Request ids are
/// chosen by requesters, so no log line names one; this number is not
/// derived from anything the requester sent, is never journaled, sent or
/// shown on the dashboard, and starts again at `#1` after a restart, so it
/// links nothing beyond one run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantSeq(u64);

impl std::fmt::Display for GrantSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl ProviderLoop {
    /// Assemble the loop.
    pub fn new(
        envelope: EnvelopeKey,
        fleet: Fleet,
        journal: Journal,
        link: ProviderLink,
        events: Arc<dyn EventSink>,
        settings: LoopSettings,
    ) -> Self {
        let attestation = match &settings.attestation {
            Some((_, a)) => Attestation::Tdx {
                quote: a.quote.clone(),
            },
            None => Attestation::None,
        };
        let log = settings
            .measurer
            .as_ref()
            .map(|m| m.lock().unwrap().log().clone())
            .unwrap_or_default();
        let attestation = (attestation, log);
        Self {
            inner: Arc::new(LoopState {
                provider_id: envelope.provider_id(),
                envelope,
                fleet,
                journal,
                link,
                events,
                settings,
                attestation: Mutex::new(attestation),
                seen: Mutex::new(Seen::default()),
                last_seq: AtomicU64::new(0),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                card_now: Arc::new(tokio::sync::Notify::new()),
            }),
        }
    }

    /// Republish the card (with a fresh quote over the measurement log)
    /// whenever `trigger` is notified, besides every `capacity_refresh`.
    /// Call before [`Self::run`].
    pub fn with_card_trigger(mut self, trigger: Arc<tokio::sync::Notify>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("the loop is not running yet")
            .card_now = trigger;
        self
    }

    /// The provider id.
    pub fn provider_id(&self) -> ProviderId {
        self.inner.provider_id
    }

    /// Reconcile the journal, publish the card, then take grants until
    /// `shutdown` resolves. Returns once the loop has stopped: grants in
    /// flight got [`SHUTDOWN_GRACE`] to reach the journal, running workloads
    /// stay journaled.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        inner.reconcile().await;
        let mut grants = inner.link.grants();
        let settlements = inner.link.settlements();
        inner.link.announce().await;
        {
            let i = inner.clone();
            inner
                .tasks
                .spawn(async move { i.refresh_card_forever().await });
            let i = inner.clone();
            inner
                .tasks
                .spawn(async move { i.watch_subscribers().await });
            let i = inner.clone();
            inner
                .tasks
                .spawn(async move { i.take_settlements(settlements).await });
        }
        tracing::info!(provider_id = %inner.provider_id, "taking grants");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                g = grants.recv() => match g {
                    Some(g) => inner.clone().on_grant(g).await,
                    None => {
                        tracing::error!("the grant stream closed; stopping");
                        break;
                    }
                },
            }
        }
        drop(grants);
        tracing::info!("no longer taking grants; running workloads stay journaled");
        inner.stop.cancel();
        inner.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some grants were still being placed after {}s; the next start reconciles them",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        Ok(())
    }
}

impl LoopState {
    fn record(&self, e: Event) {
        self.events.record(e);
    }

    /// The next grant's log number.
    fn next_seq(&self) -> GrantSeq {
        GrantSeq(self.last_seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}
