//! Reconcile: at start, before any grant is taken, bring every unfinished
//! journal entry to its end, and run the opt-in orphan sweep
//! ([`sweep_orphans`]) on the backends whose operator asked for it.
//!
//! Each unfinished entry is handed back to the lifecycle by its phase:
//! `Provisioned` (access never handed out) is aborted; `Running` is
//! adopted by the fleet (its capacity taken again) and watched again, torn
//! down at once if past its `valid_to`; `Finished` has its usage report
//! sent. A placed entry (`Provisioned`, `Running`) on a backend no longer
//! configured is logged and left journaled; a `Finished` one still has its
//! report sent, which needs no backend.
//!
//! The orphan sweep: an instance can outlive the bridge's memory of it (a
//! crash between `provision` returning and the journal write, or a journal
//! lost with its disk). Such an instance serves no grant and costs the
//! operator money. A backend that can list its instances (by tag, label,
//! naming convention) lets the bridge find them; with `sweep_orphans =
//! true` on that backend, reconcile calls [`sweep_orphans`] once, before
//! the journal's entries are handed back, with the instance ids the journal
//! knows. Opt-in because it terminates: an operator who runs two bridges
//! with the same provider id (never intended) would have each sweep the
//! other's instances.
//!
//! Invariants:
//! - reconciliation never sends a reported one (`Reported` and `Aborted`
//!   are final), so a usage report is sent once across crashes;
//! - each reconciled request id is marked seen for this run, so a replay
//!   of its grant is declined as a duplicate;
//! - the sweep is told every instance id the journal knows on its backend,
//!   so it terminates only instances the journal never recorded.
//!
//! What it keeps: nothing of its own; finished entries a week past are
//! pruned from the journal here.

use std::collections::HashSet;
use std::sync::Arc;

use super::LoopState;
use crate::journal::{JournalEntry, Phase};
use compute_bridge_contract::backend::Backend;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::Event;
use compute_bridge_contract::protocol::DeclineReason;

impl LoopState {
    /// Bring every unfinished journal entry to its end, and tear down any
    /// instance a backend runs for this provider that the journal does not
    /// know (provisioned just before a crash, never journaled).
    pub(super) async fn reconcile(self: &Arc<Self>) {
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
            let placed = matches!(entry.phase, Phase::Provisioned | Phase::Running);
            let reservation = if placed {
                // Its room is taken again on the backend that placed it,
                // which is also the one that watches or tears it down.
                let Some(r) = self.fleet.adopt(&entry.backend, &entry.grant_spec()) else {
                    tracing::error!(
                        grant = %seq,
                        backend = %entry.backend,
                        instance = %entry.grant_spec().redact(&entry.instance.instance_id),
                        "journaled on a backend that is no longer configured; leaving it \
                         journaled: add the backend to [[backends]] again and restart to \
                         watch it and tear it down"
                    );
                    continue;
                };
                Some(r)
            } else {
                None
            };
            match (entry.phase.clone(), reservation) {
                (Phase::Provisioned, Some(reservation)) => {
                    tracing::info!(grant = %seq, "access was never handed out; tearing down");
                    let i = self.clone();
                    self.tasks.spawn(async move {
                        i.abort(entry, reservation, DeclineReason::ShuttingDown, seq)
                            .await;
                    });
                }
                (Phase::Running, Some(reservation)) => {
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
                (Phase::Finished { report }, _) => {
                    tracing::info!(grant = %seq, "usage report not yet sent; sending");
                    let i = self.clone();
                    self.tasks
                        .spawn(async move { i.deliver(report, seq).await });
                }
                (Phase::Reported { .. } | Phase::Aborted, _)
                | (Phase::Provisioned | Phase::Running, None) => {}
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
            sweep_orphans(b.as_ref(), &known).await;
        }
    }
}

/// List `backend`'s instances, terminate each one whose id is not in
/// `known_instance_ids`, and return the ids it terminated.
///
/// Every orphan found is logged with its id and region (never anything
/// about a requester: instances carry none). A failed listing or
/// termination is logged and skipped; the sweep never stops the bridge.
pub async fn sweep_orphans(
    backend: &dyn Backend,
    known_instance_ids: &HashSet<String>,
) -> Vec<String> {
    let instances = match backend.list_instances().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(backend = backend.name(), error = %e, "orphan sweep: could not list instances");
            return Vec::new();
        }
    };
    let mut terminated = Vec::new();
    for instance in instances {
        if known_instance_ids.contains(&instance.instance_id) {
            continue;
        }
        tracing::warn!(
            backend = backend.name(),
            instance = %instance.instance_id,
            region = %instance.region,
            "orphan sweep: instance unknown to the journal; terminating"
        );
        match backend.terminate(&instance).await {
            Ok(()) => terminated.push(instance.instance_id),
            Err(e) => tracing::warn!(
                backend = backend.name(),
                instance = %instance.instance_id,
                error = %e,
                "orphan sweep: could not terminate"
            ),
        }
    }
    if !terminated.is_empty() {
        tracing::info!(
            backend = backend.name(),
            count = terminated.len(),
            "orphan sweep: terminated instances the journal did not know"
        );
    }
    terminated
}
