//! The provider loop: grant → validate → admit and provision (fleet) →
//! journal → seal and publish access → watch to the end → exactly one usage
//! report, with events for the operator's view at every step.
//!
//! Invariants:
//! - a workload is journaled before its access is published, so a crash at
//!   any point leaves either nothing running (orphans are swept on start
//!   through each backend's `list-instances`) or a journal entry that the
//!   next start reconciles;
//! - the workload's SSH private key is generated here, lives in memory only
//!   until it is sealed to the grant's reply key, and is never logged,
//!   journaled or shown; the backend gets the public half;
//! - a usage report is sent once: its journal entry moves to `Reported`
//!   right after the send, and reconciliation never sends a reported one;
//! - nothing a backend returns is passed on unchecked: an instance whose
//!   fields are over their bounds or would not be safe in the requester's
//!   `ssh` line is torn down and declined before it is journaled or sealed,
//!   and usage is clamped to what the grant could have used;
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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::attest::{Attested, Attester, CardIdentity};
use crate::backend::{GrantSpec, Usage, UsageBound, Workload};
use crate::coalition::link::ProviderLink;
use crate::coalition::protocol::{
    AccessBundle, Attestation, BackendOffer, CLOCK_SKEW_SECONDS, ComputeGrant, Decline,
    DeclineReason, MAX_GRANT_CPU_MILLICORES, MAX_GRANT_RAM_MIB, MAX_GRANT_SECONDS,
    PROTOCOL_VERSION, ProviderCard, ProviderId, RequestId, UsageReport, WorkloadEnding,
};
use crate::envelope::{self, EnvelopeKey};
use crate::events::{Event, EventSink};
use crate::fleet::{Failover, Fleet, Reservation, WatchPolicy, now_unix};
use crate::journal::{Journal, JournalEntry, Phase};
use crate::measure::SharedMeasurer;
use compute_bridge_contract::measurement::MeasurementLog;

/// How long the loop waits for a subscriber before publishing a sealed
/// access bundle (it is sent to `compute.access`, which only requesters
/// consume). If nobody listens by then (or by `valid_to`), the workload is
/// torn down: nobody could use it.
pub const ACCESS_WAIT: Duration = Duration::from_secs(60);

/// How long a decline waits for a subscriber.
const DECLINE_WAIT: Duration = Duration::from_secs(10);

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
    /// (`sweep_orphans = true`); see [`crate::sweep`].
    pub sweep_backends: HashSet<String>,
}

/// Everything the loop needs. Build with [`ProviderLoop::new`], then
/// [`ProviderLoop::run`].
pub struct ProviderLoop {
    inner: Arc<Inner>,
}

struct Inner {
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

/// Check a grant addressed to this provider; on success, the reply key from
/// its envelope. Cheap checks come first; the envelope is opened only for a
/// well-formed grant.
pub fn validate(
    grant: &ComputeGrant,
    envelope: &EnvelopeKey,
    now: u64,
) -> Result<[u8; 32], DeclineReason> {
    if grant.version != PROTOCOL_VERSION
        || !grant.manifest.image_is_pinned()
        || grant.valid_to <= grant.valid_from
        || grant
            .manifest
            .region
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > 64)
    {
        return Err(DeclineReason::Malformed);
    }
    let reply_key = envelope
        .open_grant(grant)
        .map_err(|_| DeclineReason::Malformed)?;
    if now >= grant.valid_to {
        return Err(DeclineReason::Expired);
    }
    if grant.valid_from > now + CLOCK_SKEW_SECONDS {
        return Err(DeclineReason::NotYetValid);
    }
    let m = &grant.manifest;
    if m.cpu_millicores == 0
        || m.ram_mib == 0
        || m.cpu_millicores > MAX_GRANT_CPU_MILLICORES
        || m.ram_mib > MAX_GRANT_RAM_MIB
        || grant.valid_to - grant.valid_from > MAX_GRANT_SECONDS
    {
        return Err(DeclineReason::BadResources);
    }
    Ok(reply_key)
}

/// Request ids seen in this run, each kept until its grant's `valid_to`:
/// after that a replay is declined as expired before this set is asked, so
/// forgetting it keeps memory flat however many grants pass through (a
/// restart forgets them all, which the journal and expiry already cover).
#[derive(Debug, Default)]
struct Seen {
    valid_to: HashMap<RequestId, u64>,
    /// Size at which expired ids are next swept out (amortized: the sweep
    /// runs when the set has doubled since the last one).
    sweep_at: usize,
}

impl Seen {
    /// Remember `id` (valid until `valid_to`); false if it was already
    /// seen.
    fn insert(&mut self, id: RequestId, valid_to: u64, now: u64) -> bool {
        if self.valid_to.len() >= self.sweep_at {
            self.valid_to.retain(|_, v| *v > now);
            self.sweep_at = (self.valid_to.len() * 2).max(1024);
        }
        match self.valid_to.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(valid_to);
                true
            }
        }
    }
}

/// A fresh ed25519 keypair for one workload: the OpenSSH public line for
/// the backend and the OpenSSH private key for the access bundle.
fn workload_keypair() -> anyhow::Result<(String, Zeroizing<String>)> {
    use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("compute-bridge workload");
    let public = key.public_key().to_openssh()?;
    let private = key.to_openssh(LineEnding::LF)?;
    Ok((public, private))
}

/// `usage` as reported for `entry`, ended at `ended_at`: clamped to what
/// the grant could have used in its life (logged when it was).
fn bounded_usage(entry: &JournalEntry, usage: Usage, ended_at: u64) -> Usage {
    let life = ended_at.saturating_sub(entry.started_at);
    let bound = UsageBound::for_grant(entry.cpu_millicores, entry.ram_mib, life);
    let (clamped, cut) = usage.clamped(&bound);
    if !cut.is_empty() {
        tracing::warn!(
            backend = %entry.backend,
            "usage clamped: the backend reported {} core-s, {} MiB-s, {} bytes for {} millicores and {} MiB over {life} s; reporting {} core-s, {} MiB-s, {} bytes",
            usage.cpu_core_seconds, usage.ram_mib_seconds, usage.net_bytes,
            entry.cpu_millicores, entry.ram_mib,
            clamped.cpu_core_seconds, clamped.ram_mib_seconds, clamped.net_bytes
        );
    }
    clamped
}

/// `from → to` failover events: each failed backend (or region of one)
/// hands over to the next one tried, and the last to `placed` (backend and
/// the instance's region), if the grant was placed.
pub fn failover_events(failovers: &[Failover], placed: Option<(&str, &str)>) -> Vec<Event> {
    failovers
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (to, to_region) = match failovers.get(i + 1) {
                Some(n) => (Some(n.from.clone()), n.region.clone()),
                None => match placed {
                    Some((b, r)) => (Some(b.to_string()), Some(r.to_string())),
                    None => (None, None),
                },
            };
            Event::Failover {
                from: f.from.clone(),
                from_region: f.region.clone(),
                to,
                to_region,
            }
        })
        .collect()
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
            inner: Arc::new(Inner {
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

impl Inner {
    fn record(&self, e: Event) {
        self.events.record(e);
    }

    /// The next grant's log number.
    fn next_seq(&self) -> GrantSeq {
        GrantSeq(self.last_seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Send a decline in the background (best effort: only requesters
    /// listening now hear it).
    fn decline(self: &Arc<Self>, request_id: RequestId, seq: GrantSeq, reason: DeclineReason) {
        self.record(Event::GrantDeclined { reason });
        let d = Decline {
            version: PROTOCOL_VERSION,
            request_id,
            provider_id: self.provider_id,
            reason,
        };
        let i = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = i.link.send_decline(d, DECLINE_WAIT).await {
                tracing::debug!(grant = %seq, "decline not delivered: {e}");
            }
        });
    }

    async fn on_grant(self: Arc<Self>, grant: ComputeGrant) {
        if grant.provider_id != self.provider_id {
            return;
        }
        let request_id = grant.request_id;
        let seq = self.next_seq();
        let journaled = match self.journal.get(request_id) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(grant = %seq, "journal unavailable: {e}");
                self.decline(request_id, seq, DeclineReason::JournalUnavailable);
                return;
            }
        };
        // A requester whose subscription was down when its report went out
        // (this bridge restarted, say) sends its grant again to ask for it.
        // Reports go to every subscriber anyway, so a repeat from anyone
        // may have it; consumers tell them apart by request id.
        if let Some(report) = journaled.as_ref().and_then(|e| e.phase.report()) {
            tracing::info!(grant = %seq, "grant repeated after its workload ended; sending its usage report again");
            let (report, i) = (report.clone(), self.clone());
            self.tasks.spawn(async move {
                tokio::select! {
                    r = i.link.send_usage(report) => if let Err(e) = r {
                        tracing::warn!(grant = %seq, "usage report not sent again: {e}");
                    },
                    () = i.stop.cancelled() => {}
                }
            });
            return;
        }
        let reply_key = match validate(&grant, &self.envelope, now_unix()) {
            Ok(k) => k,
            Err(reason) => {
                tracing::warn!(grant = %seq, reason = %reason.as_str(), "grant declined");
                self.decline(request_id, seq, reason);
                return;
            }
        };
        let fresh = self
            .seen
            .lock()
            .unwrap()
            .insert(request_id, grant.valid_to, now_unix());
        if !fresh || journaled.is_some() {
            tracing::warn!(grant = %seq, reason = %DeclineReason::Duplicate.as_str(), "grant declined");
            self.decline(request_id, seq, DeclineReason::Duplicate);
            return;
        }
        tracing::info!(
            grant = %seq,
            cpu_millicores = grant.manifest.cpu_millicores,
            ram_mib = grant.manifest.ram_mib,
            valid_to = grant.valid_to,
            "grant received"
        );
        let i = self.clone();
        self.tasks
            .spawn(async move { i.serve(grant, Zeroizing::new(reply_key), seq).await });
    }

    async fn serve(
        self: Arc<Self>,
        grant: ComputeGrant,
        reply_key: Zeroizing<[u8; 32]>,
        seq: GrantSeq,
    ) {
        let request_id = grant.request_id;
        let m = &grant.manifest;
        let spec = GrantSpec {
            request_id: request_id.to_string(),
            cpu_millicores: m.cpu_millicores,
            ram_mib: m.ram_mib,
            region: m.region.clone(),
            tdx: m.tdx,
            image: m.image.clone(),
            valid_to: grant.valid_to,
        };
        let (public_key, private_key) = match workload_keypair() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(grant = %seq, "generating the workload key failed: {e}");
                self.decline(request_id, seq, DeclineReason::BackendError);
                return;
            }
        };
        let workload = Workload {
            ssh_user: format!("cb-{}", &request_id.to_string()[..8]),
            ssh_public_key: public_key,
        };
        // The workload holds resources from here: its usage is bounded by
        // its life from here.
        let started_at = now_unix();
        let placement = match self.fleet.provision(&spec, &workload).await {
            Ok(p) => p,
            Err(decline) => {
                for e in failover_events(decline.failovers(), None) {
                    self.record(e);
                }
                let reason = DeclineReason::from(&decline);
                // The backends' messages may quote the grant back; the
                // log names neither its request id nor its image.
                tracing::warn!(
                    grant = %seq,
                    reason = %reason.as_str(),
                    "grant declined: {}",
                    spec.redact(&decline.to_string())
                );
                self.decline(request_id, seq, reason);
                return;
            }
        };
        // A sandboxed backend's instance was checked on its way in; this
        // holds every backend to it before anything is journaled or sealed.
        if let Err(e) = crate::backend::check_provisioned(&placement.backend, &placement.instance) {
            tracing::warn!(grant = %seq, "{}", spec.redact(&e.to_string()));
            self.teardown_unjournaled(&placement.backend, &placement.instance, &spec)
                .await;
            self.decline(request_id, seq, DeclineReason::BackendError);
            return;
        }
        for e in failover_events(
            &placement.failovers,
            Some((&placement.backend, &placement.instance.region)),
        ) {
            self.record(e);
        }
        let entry = JournalEntry {
            request_id,
            backend: placement.backend.clone(),
            instance: placement.instance.clone(),
            component: placement.component.clone(),
            cpu_millicores: m.cpu_millicores,
            ram_mib: m.ram_mib,
            valid_to: grant.valid_to,
            started_at,
            phase: Phase::Provisioned,
        };
        if let Err(e) = self.journal.record(&entry).await {
            tracing::error!(grant = %seq, "cannot journal the instance, tearing it down: {e}");
            self.teardown_unjournaled(&placement.backend, &placement.instance, &spec)
                .await;
            self.decline(request_id, seq, DeclineReason::JournalUnavailable);
            return;
        }
        tracing::info!(
            grant = %seq,
            backend = %placement.backend,
            region = %placement.instance.region,
            instance = %spec.redact(&placement.instance.instance_id),
            "instance journaled"
        );
        self.record(Event::GrantAccepted {
            backend: placement.backend.clone(),
            region: placement.instance.region.clone(),
        });

        let bundle = AccessBundle {
            host: placement.instance.public_host.clone(),
            port: placement.instance.ssh_port,
            user: placement.instance.user.clone(),
            private_key: private_key.to_string(),
            host_key: placement.instance.host_key.clone(),
        };
        drop(private_key);
        let sealed = envelope::seal_access(&reply_key, request_id, self.provider_id, &bundle);
        drop(bundle);
        drop(reply_key);
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(grant = %seq, "the reply key is unusable ({e}); tearing down");
                self.abort(
                    entry,
                    Some(placement.reservation),
                    DeclineReason::Malformed,
                    seq,
                )
                .await;
                return;
            }
        };
        let wait = self.settings.access_wait.min(Duration::from_secs(
            grant.valid_to.saturating_sub(now_unix()),
        ));
        if !self.link.access_has_subscriber() {
            tracing::info!(grant = %seq, "waiting for a subscriber to hand out access");
        }
        let sent = tokio::select! {
            r = self.link.send_access(sealed, wait) => r,
            () = self.stop.cancelled() => {
                tracing::info!(grant = %seq, "stopping before access was handed out; the next start tears it down");
                return;
            }
        };
        if let Err(e) = sent {
            tracing::warn!(grant = %seq, "access not handed out ({e}); tearing down");
            // The wait is bounded by `valid_to`: a grant whose life ran out
            // while nobody took its access is declined as what it is, not
            // as a bridge going away.
            let reason = if now_unix() >= grant.valid_to {
                DeclineReason::Expired
            } else {
                DeclineReason::ShuttingDown
            };
            self.abort(entry, Some(placement.reservation), reason, seq)
                .await;
            return;
        }
        if let Err(e) = self.journal.advance(request_id, Phase::Running).await {
            // The access is out: keep watching; a restart will see
            // `Provisioned` and tear down early, which is the safe side.
            tracing::error!(grant = %seq, "journal: {e}");
        }
        tracing::info!(grant = %seq, "access handed out");
        self.watch(entry, Some(placement.reservation), seq).await;
    }

    /// Tear down an instance the journal does not know (best effort).
    /// Its id is logged through [`GrantSpec::redact`]: a backend may name
    /// an instance after the request id (the test backend uses it whole;
    /// the shipped ones do not).
    async fn teardown_unjournaled(
        &self,
        backend: &str,
        instance: &crate::backend::Instance,
        spec: &GrantSpec,
    ) {
        if let Some(b) = self.fleet.backend(backend)
            && let Err(e) = b.terminate(instance).await
        {
            tracing::error!(
                backend,
                instance = %spec.redact(&instance.instance_id),
                "terminate failed: {}",
                spec.redact(&e.to_string())
            );
        }
    }

    /// Tear down a workload whose access was never handed out: no usage
    /// report (the requester never had it), a decline, journal `Aborted`.
    async fn abort(
        self: &Arc<Self>,
        entry: JournalEntry,
        reservation: Option<Reservation>,
        reason: DeclineReason,
        seq: GrantSeq,
    ) {
        let request_id = entry.request_id;
        let policy = WatchPolicy {
            initial: Duration::from_millis(10),
            ..self.settings.watch
        };
        // Watching with valid_to = 0 reads usage and terminates at once.
        match self
            .fleet
            .watch_until_exit(&entry.backend, &entry.instance, 0, policy)
            .await
        {
            Ok(outcome) => {
                if let Some(e) = &outcome.terminate_error {
                    tracing::error!(grant = %seq, "terminate failed, the instance may still exist: {e}");
                    return;
                }
                self.record(Event::GrantCompleted {
                    backend: entry.backend.clone(),
                    usage: bounded_usage(&entry, outcome.usage, now_unix()),
                });
            }
            Err(e) => {
                tracing::error!(grant = %seq, "cannot tear down: {e}");
                return;
            }
        }
        drop(reservation);
        match self.journal.advance(request_id, Phase::Aborted).await {
            Ok(()) => tracing::info!(
                grant = %seq,
                "torn down before access was handed out; nothing to report"
            ),
            Err(e) => tracing::error!(grant = %seq, "journal: {e}"),
        }
        self.decline(request_id, seq, reason);
    }

    /// Watch a running workload to its end, then report its usage once.
    /// Returns early (leaving it journaled) when the loop stops.
    async fn watch(
        self: &Arc<Self>,
        entry: JournalEntry,
        reservation: Option<Reservation>,
        seq: GrantSeq,
    ) {
        let request_id = entry.request_id;
        let outcome = tokio::select! {
            o = self.fleet.watch_until_exit(&entry.backend, &entry.instance, entry.valid_to, self.settings.watch) => o,
            () = self.stop.cancelled() => return,
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(grant = %seq, "cannot watch: {e}");
                return;
            }
        };
        if let Some(e) = &outcome.terminate_error {
            // Leave it `Running`: the next start retries the teardown.
            tracing::error!(grant = %seq, "terminate failed, will retry on the next start: {e}");
            return;
        }
        drop(reservation);
        let ended_at = now_unix();
        let usage = bounded_usage(&entry, outcome.usage, ended_at);
        let ending = WorkloadEnding::from(outcome.ending);
        tracing::info!(
            grant = %seq,
            backend = %entry.backend,
            ending = %ending,
            cpu_core_seconds = usage.cpu_core_seconds,
            ram_mib_seconds = usage.ram_mib_seconds,
            net_bytes = usage.net_bytes,
            "workload ended and torn down"
        );
        self.record(Event::GrantCompleted {
            backend: entry.backend.clone(),
            usage,
        });
        let report = UsageReport {
            version: PROTOCOL_VERSION,
            request_id,
            provider_id: self.provider_id,
            ending,
            usage,
            started_at: entry.started_at,
            ended_at,
        };
        if let Err(e) = self
            .journal
            .advance(
                request_id,
                Phase::Finished {
                    report: report.clone(),
                },
            )
            .await
        {
            tracing::error!(grant = %seq, "journal: {e}");
        }
        self.deliver(report, seq).await;
    }

    /// Send a usage report once a requester listens, then mark it reported.
    async fn deliver(self: &Arc<Self>, report: UsageReport, seq: GrantSeq) {
        let request_id = report.request_id;
        let sent = tokio::select! {
            r = self.link.send_usage(report.clone()) => r,
            () = self.stop.cancelled() => return,
        };
        match sent {
            Ok(()) => {
                if let Err(e) = self
                    .journal
                    .advance(request_id, Phase::Reported { report })
                    .await
                {
                    tracing::error!(grant = %seq, "journal: {e}");
                }
                tracing::info!(grant = %seq, "usage report sent");
            }
            Err(e) => tracing::warn!(grant = %seq, "usage report not sent: {e}"),
        }
    }

    /// Bring every unfinished journal entry to its end, and tear down any
    /// instance a backend runs for this provider that the journal does not
    /// know (provisioned just before a crash, never journaled).
    async fn reconcile(self: &Arc<Self>) {
        let entries = match self.journal.unfinished() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot read the journal; nothing reconciled: {e}");
                return;
            }
        };
        match self.journal.prune(now_unix().saturating_sub(7 * 24 * 3600)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "pruned week-old finished journal entries"),
            Err(e) => tracing::warn!("journal prune failed: {e}"),
        }
        self.sweep_orphans(&entries).await;
        if entries.is_empty() {
            return;
        }
        tracing::info!(entries = entries.len(), "reconciling the journal");
        for entry in entries {
            let request_id = entry.request_id;
            let seq = self.next_seq();
            self.seen
                .lock()
                .unwrap()
                .insert(request_id, entry.valid_to, now_unix());
            if self.fleet.backend(&entry.backend).is_none() {
                tracing::error!(
                    grant = %seq,
                    backend = %entry.backend,
                    instance = %entry.grant_spec().redact(&entry.instance.instance_id),
                    "journaled on a backend that is no longer configured; leaving it journaled"
                );
                continue;
            }
            match entry.phase.clone() {
                Phase::Provisioned => {
                    tracing::info!(grant = %seq, "access was never handed out; tearing down");
                    let i = self.clone();
                    self.tasks.spawn(async move {
                        i.abort(entry, None, DeclineReason::ShuttingDown, seq).await;
                    });
                }
                Phase::Running => {
                    let reservation = self.fleet.adopt(&entry.backend, &entry.grant_spec());
                    self.record(Event::GrantAccepted {
                        backend: entry.backend.clone(),
                        region: entry.instance.region.clone(),
                    });
                    if now_unix() >= entry.valid_to {
                        tracing::info!(grant = %seq, "past valid_to; tearing down");
                    } else {
                        tracing::info!(
                            grant = %seq,
                            valid_to = entry.valid_to,
                            "still running; watching again"
                        );
                    }
                    let i = self.clone();
                    self.tasks
                        .spawn(async move { i.watch(entry, reservation, seq).await });
                }
                Phase::Finished { report } => {
                    tracing::info!(grant = %seq, "usage report not yet sent; sending");
                    let i = self.clone();
                    self.tasks
                        .spawn(async move { i.deliver(report, seq).await });
                }
                Phase::Reported { .. } | Phase::Aborted => {}
            }
        }
    }

    /// Run the opt-in orphan sweep on each backend that asked for it, with
    /// the instance ids the journal knows on that backend.
    async fn sweep_orphans(&self, journaled: &[JournalEntry]) {
        for name in &self.settings.sweep_backends {
            let Some(b) = self.fleet.backend(name) else {
                continue;
            };
            let known: HashSet<String> = journaled
                .iter()
                .filter(|e| &e.backend == name)
                .map(|e| e.instance.instance_id.clone())
                .collect();
            crate::sweep::sweep_orphans(b.as_ref(), &known).await;
        }
    }

    fn card(&self) -> ProviderCard {
        let (attestation, measurements) = self.attestation.lock().unwrap().clone();
        ProviderCard {
            version: PROTOCOL_VERSION,
            provider_id: self.provider_id,
            coalition: self.settings.coalition.clone(),
            module_version: env!("CARGO_PKG_VERSION").to_string(),
            node: self.link.node(),
            backends: self
                .fleet
                .members()
                .into_iter()
                .map(|m| {
                    BackendOffer::bounded(
                        m.name,
                        m.enabled,
                        m.capabilities.unwrap_or_default(),
                        m.used_cpu_millicores,
                        m.used_ram_mib,
                    )
                })
                .collect(),
            concurrency_cap: self.fleet.cap(),
            active_grants: self.fleet.active(),
            envelope_key: self.envelope.public(),
            attestation,
            measurements,
            refreshed_at: now_unix(),
        }
    }

    /// Take a fresh quote for the card (`tdx` mode) over the measurement
    /// log as it is now: the log is read and the quote taken under the
    /// measurer's lock, so no extend falls between them. On failure the
    /// card keeps the last good pair.
    async fn refresh_quote(&self) {
        let measurer = self.settings.measurer.clone();
        let Some((attester, _)) = &self.settings.attestation else {
            if let Some(m) = measurer {
                self.attestation.lock().unwrap().1 = m.lock().unwrap().log().clone();
            }
            return;
        };
        let attester = attester.clone();
        let identity = CardIdentity {
            provider_id: self.provider_id,
            envelope_key: self.envelope.public(),
            coalition: self.settings.coalition.clone(),
        };
        let quoted = move || {
            let held = measurer.as_ref().map(|m| m.lock().unwrap());
            let log = held.as_ref().map(|m| m.log().clone()).unwrap_or_default();
            attester.attest(&identity).map(|a| (a, log))
        };
        match tokio::task::spawn_blocking(quoted).await {
            Ok(Ok((a, log))) => {
                *self.attestation.lock().unwrap() = (Attestation::Tdx { quote: a.quote }, log)
            }
            Ok(Err(e)) => {
                tracing::warn!("TDX quote not refreshed; the card keeps the last one: {e}")
            }
            Err(e) => tracing::warn!("TDX quote not refreshed: {e}"),
        }
    }

    async fn refresh_card_forever(self: Arc<Self>) {
        let mut first = true;
        loop {
            if !first {
                self.fleet.refresh_capabilities().await;
                self.refresh_quote().await;
            }
            self.link.publish_card(self.card());
            if first {
                tracing::info!(provider_id = %self.provider_id, "provider card published");
            } else {
                tracing::debug!("provider card refreshed");
            }
            self.record(Event::CardRefreshed);
            first = false;
            tokio::select! {
                () = tokio::time::sleep(self.settings.capacity_refresh) => {}
                () = self.card_now.notified() => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Count subscribers as they come and go. Subscribers are requesters:
    /// the log and the dashboard get the count, never a peer id.
    async fn watch_subscribers(self: Arc<Self>) {
        let mut known = std::collections::BTreeSet::new();
        loop {
            let now = self.link.subscribers();
            for _ in now.difference(&known) {
                tracing::info!(subscribers = now.len(), "subscriber joined");
                self.record(Event::SubscriberJoined);
            }
            for _ in known.difference(&now) {
                tracing::info!(subscribers = now.len(), "subscriber left");
                self.record(Event::SubscriberLeft);
            }
            known = now;
            tokio::select! {
                () = self.link.subscriptions_changed(Duration::from_secs(5)) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    async fn take_settlements(
        self: Arc<Self>,
        mut settlements: mosaik::streams::Consumer<crate::coalition::protocol::Settlement>,
    ) {
        loop {
            let s = tokio::select! {
                s = settlements.recv() => match s { Some(s) => s, None => return },
                () = self.stop.cancelled() => return,
            };
            if s.provider_id != self.provider_id {
                continue;
            }
            if s.version != PROTOCOL_VERSION || s.window.to < s.window.from {
                tracing::warn!("malformed settlement ignored");
                continue;
            }
            // No amount in the log: an amount at a moment can be matched
            // to a grant. The dashboard shows the sums (window, lifetime).
            match self.journal.add_settled(s.amount_micro_usd) {
                Ok(_) => tracing::info!("settlement credited (amounts: the dashboard's totals)"),
                Err(e) => tracing::error!("settlement received but not saved: {e}"),
            }
            self.record(Event::RevenueSettled { usd: s.usd() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TdxRequirement;
    use crate::coalition::protocol::Manifest;

    fn grant(provider: &EnvelopeKey, now: u64) -> ComputeGrant {
        let mut g = ComputeGrant::unsealed(
            provider.provider_id(),
            Manifest {
                image: format!("x@sha256:{}", "0".repeat(64)),
                cpu_millicores: 100,
                ram_mib: 64,
                region: None,
                tdx: TdxRequirement::None,
            },
            now,
            now + 60,
        );
        reseal(provider, &mut g);
        g
    }

    fn reseal(provider: &EnvelopeKey, g: &mut ComputeGrant) {
        g.envelope = envelope::seal_grant(&provider.public(), g, &[9; 32]).unwrap();
    }

    #[test]
    fn validation_names_each_reason() {
        let p = EnvelopeKey::generate();
        let now = 1_000_000;
        assert_eq!(validate(&grant(&p, now), &p, now), Ok([9; 32]));

        let mut g = grant(&p, now);
        g.envelope.ciphertext[3] ^= 0x40;
        assert_eq!(validate(&g, &p, now), Err(DeclineReason::Malformed));

        let mut g = grant(&p, now);
        g.manifest.image = "alpine:latest".into();
        reseal(&p, &mut g);
        assert_eq!(validate(&g, &p, now), Err(DeclineReason::Malformed));

        let g = grant(&p, now - 120);
        assert_eq!(validate(&g, &p, now), Err(DeclineReason::Expired));

        let g = grant(&p, now + 60);
        assert_eq!(validate(&g, &p, now), Err(DeclineReason::NotYetValid));
        // Within the clock-skew allowance it is fine.
        let g = grant(&p, now + CLOCK_SKEW_SECONDS);
        assert!(validate(&g, &p, now).is_ok());

        for (cpu, ram) in [
            (0, 64),
            (100, 0),
            (MAX_GRANT_CPU_MILLICORES + 1, 64),
            (100, MAX_GRANT_RAM_MIB + 1),
        ] {
            let mut g = grant(&p, now);
            g.manifest.cpu_millicores = cpu;
            g.manifest.ram_mib = ram;
            reseal(&p, &mut g);
            assert_eq!(
                validate(&g, &p, now),
                Err(DeclineReason::BadResources),
                "{cpu} {ram}"
            );
        }
        let mut g = grant(&p, now);
        g.valid_to = now + MAX_GRANT_SECONDS + 1;
        reseal(&p, &mut g);
        assert_eq!(validate(&g, &p, now), Err(DeclineReason::BadResources));
    }

    #[test]
    fn seen_ids_are_refused_until_their_grant_expires_then_forgotten() {
        let mut seen = Seen::default();
        let old = RequestId::random();
        assert!(seen.insert(old, 100, 50));
        assert!(!seen.insert(old, 500, 60), "a replay is refused");
        // Enough later grants to trigger sweeps: the expired id goes, the
        // live ones stay, and the set stays bounded by the live ones.
        let live: Vec<RequestId> = (0..5000).map(|_| RequestId::random()).collect();
        for id in &live {
            assert!(seen.insert(*id, 10_000, 200));
        }
        assert!(!seen.valid_to.contains_key(&old));
        assert!(live.iter().all(|id| !seen.insert(*id, 10_000, 300)));
        // Fifty rounds of 2,000 grants that expire before the next round:
        // without sweeping the set would reach 105,000 ids; it stays within
        // twice what is live (5,000 + one round).
        let mut largest = 0;
        for round in 1..=50u64 {
            for _ in 0..2000 {
                seen.insert(
                    RequestId::random(),
                    1000 + round * 10 + 5,
                    1000 + round * 10,
                );
                largest = largest.max(seen.valid_to.len());
            }
        }
        assert!(largest <= 2 * (5000 + 2000) + 1, "{largest}");
        assert!(live.iter().all(|id| seen.valid_to.contains_key(id)));
    }

    #[test]
    fn workload_keys_are_fresh_ed25519_pairs() {
        let (pub1, priv1) = workload_keypair().unwrap();
        let (pub2, _) = workload_keypair().unwrap();
        assert!(pub1.starts_with("ssh-ed25519 "), "{pub1}");
        assert_ne!(pub1, pub2);
        let parsed = russh::keys::ssh_key::PrivateKey::from_openssh(priv1.as_bytes()).unwrap();
        assert_eq!(parsed.public_key().to_openssh().unwrap(), pub1);
    }

    #[test]
    fn failovers_chain_to_the_backend_that_took_the_grant() {
        let f = |from: &str, region: Option<&str>| Failover {
            from: from.into(),
            region: region.map(str::to_string),
            kind: crate::backend::ErrorKind::NoCapacity,
            message: String::new(),
        };
        let ev = failover_events(
            &[
                f("aws", Some("us-east-1")),
                f("aws", Some("us-west-2")),
                f("gcp", None),
            ],
            Some(("bare", "home")),
        );
        let e =
            |from: &str, fr: Option<&str>, to: Option<&str>, tr: Option<&str>| Event::Failover {
                from: from.into(),
                from_region: fr.map(str::to_string),
                to: to.map(str::to_string),
                to_region: tr.map(str::to_string),
            };
        assert_eq!(
            ev,
            vec![
                e("aws", Some("us-east-1"), Some("aws"), Some("us-west-2")),
                e("aws", Some("us-west-2"), Some("gcp"), None),
                e("gcp", None, Some("bare"), Some("home")),
            ]
        );
        let ev = failover_events(&[f("aws", None)], None);
        assert_eq!(ev, vec![e("aws", None, None, None)]);
    }
}
