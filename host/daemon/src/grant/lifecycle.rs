//! A grant's life once intake let it in: provision (fleet) → journal →
//! seal and hand out access → watch to the end → teardown → exactly one
//! usage report, with events for the operator's view at every step; and
//! the abort of a workload whose access was never handed out.
//!
//! Invariants:
//! - a workload is journaled before its access is published, so a crash at
//!   any point leaves either nothing running (orphans are swept on start
//!   through each backend's `list-instances`) or a journal entry that the
//!   next start reconciles (`reconcile`);
//! - the workload's SSH private key is generated here
//!   ([`workload_keypair`]), lives in memory only until it is sealed to the
//!   grant's reply key, and is never logged, journaled or shown; the
//!   backend gets the public half;
//! - a usage report is sent once: its journal entry moves to `Reported`
//!   right after the send;
//! - nothing a backend returns is passed on unchecked: an instance whose
//!   fields are over their bounds or would not be safe in the requester's
//!   `ssh` line is torn down and declined before it is journaled or sealed,
//!   and usage is clamped to what the grant could have used
//!   ([`bounded_usage`]);
//! - a watch stopped by shutdown returns early and leaves its workload
//!   journaled; a failed teardown leaves it `Running`, for the next start
//!   to retry.
//!
//! What it never keeps: the private key and the reply key past the seal
//! (both zeroized), and the access bundle past its send.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{GrantSeq, LoopState};
use crate::fleet::{Failover, Reservation, WatchPolicy};
use crate::journal::{JournalEntry, Phase};
use compute_bridge_coalition::envelope;
use compute_bridge_contract::backend::{GrantSpec, Usage, UsageBound, Workload};
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::Event;
use compute_bridge_contract::protocol::{
    AccessBundle, ComputeGrant, DeclineReason, PROTOCOL_VERSION, UsageReport,
};

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

impl LoopState {
    pub(super) async fn serve(
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
                let reason = decline.reason();
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
        if let Err(e) = compute_bridge_contract::backend::check_provisioned(
            &placement.backend,
            &placement.instance,
        ) {
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
                self.abort(entry, placement.reservation, DeclineReason::Malformed, seq)
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
            self.abort(entry, placement.reservation, reason, seq).await;
            return;
        }
        if let Err(e) = self.journal.advance(request_id, Phase::Running).await {
            // The access is out: keep watching; a restart will see
            // `Provisioned` and tear down early, which is the safe side.
            tracing::error!(grant = %seq, "journal: {e}");
        }
        tracing::info!(grant = %seq, "access handed out");
        self.watch(entry, placement.reservation, seq).await;
    }

    /// Tear down an instance the journal does not know (best effort).
    /// Its id is logged through [`GrantSpec::redact`]: a backend may name
    /// an instance after the request id (the test backend uses it whole;
    /// the shipped ones do not).
    async fn teardown_unjournaled(
        &self,
        backend: &str,
        instance: &compute_bridge_contract::backend::Instance,
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
    /// `reservation` is the room it holds on its backend (from placing it,
    /// or adopted again after a restart): the teardown goes to that
    /// backend, and the room is given back once it is gone.
    pub(super) async fn abort(
        self: &Arc<Self>,
        entry: JournalEntry,
        reservation: Reservation,
        reason: DeclineReason,
        seq: GrantSeq,
    ) {
        let request_id = entry.request_id;
        let policy = WatchPolicy {
            initial: Duration::from_millis(10),
            ..self.settings.watch
        };
        let teardown = self
            .fleet
            .tear_down(&reservation, &entry.instance, policy)
            .await;
        if let Some(e) = &teardown.terminate_error {
            tracing::error!(grant = %seq, "terminate failed, the instance may still exist: {e}");
            return;
        }
        self.record(Event::GrantCompleted {
            backend: entry.backend.clone(),
            usage: bounded_usage(&entry, teardown.usage, now_unix()),
        });
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
    pub(super) async fn watch(
        self: &Arc<Self>,
        entry: JournalEntry,
        reservation: Reservation,
        seq: GrantSeq,
    ) {
        let request_id = entry.request_id;
        let outcome = tokio::select! {
            o = self.fleet.watch_until_exit(&reservation, &entry.instance, entry.valid_to, self.settings.watch) => o,
            () = self.stop.cancelled() => return,
        };
        if let Some(e) = &outcome.terminate_error {
            // Leave it `Running`: the next start retries the teardown.
            tracing::error!(grant = %seq, "terminate failed, will retry on the next start: {e}");
            return;
        }
        drop(reservation);
        let ended_at = now_unix();
        let usage = bounded_usage(&entry, outcome.usage, ended_at);
        let ending = outcome.ending;
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
    pub(super) async fn deliver(self: &Arc<Self>, report: UsageReport, seq: GrantSeq) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
            kind: compute_bridge_contract::backend::ErrorKind::NoCapacity,
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
