//! Reconcile: at start, before any grant is taken, bring every unfinished
//! journal entry to its end, and run the opt-in orphan sweep
//! ([`crate::sweep`]) on the backends whose operator asked for it.
//!
//! Each unfinished entry is handed back to the lifecycle by its phase:
//! `Provisioned` (access never handed out) is aborted; `Running` is
//! adopted by the fleet (its capacity taken again) and watched again, torn
//! down at once if past its `valid_to`; `Finished` has its usage report
//! sent. An entry on a backend no longer configured is logged and left
//! journaled.
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

use super::Inner;
use crate::coalition::protocol::DeclineReason;
use crate::events::Event;
use crate::fleet::now_unix;
use crate::journal::{JournalEntry, Phase};

impl Inner {
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
}
