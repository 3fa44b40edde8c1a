//! Intake: a grant addressed to this provider arrives, is checked, is
//! deduplicated, and is handed to the lifecycle or declined.
//!
//! Cheap checks come first ([`validate`]: version, pinned image, times,
//! region, then the envelope opened, then expiry and resources); the
//! envelope is opened only for a well-formed grant.
//!
//! Invariants:
//! - a bad grant is declined with a reason (`DeclineReason`) and a log line
//!   naming its `grant=#N`, never a crash; a decline is sent in the
//!   background, best effort (only requesters listening now hear it);
//! - a request id is taken at most once: within this run by [`Seen`],
//!   across runs by the journal (a journaled one is a duplicate);
//! - a grant repeated after its workload ended asks for its usage report
//!   again: it is sent again from the journal, and nothing is provisioned.
//!
//! What it never keeps: the grant, its reply key (handed to the lifecycle
//! and zeroized there), or a request id past its grant's `valid_to` (after
//! that a replay is declined as expired before [`Seen`] is asked, so memory
//! stays flat however many grants pass through).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{GrantSeq, LoopState};
use compute_bridge_coalition::envelope::EnvelopeKey;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::Event;
use compute_bridge_contract::protocol::{
    CLOCK_SKEW_SECONDS, ComputeGrant, Decline, DeclineReason, MAX_GRANT_CPU_MILLICORES,
    MAX_GRANT_RAM_MIB, MAX_GRANT_SECONDS, PROTOCOL_VERSION, RequestId,
};

/// How long a decline waits for a subscriber.
const DECLINE_WAIT: Duration = Duration::from_secs(10);

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
pub(super) struct Seen {
    valid_to: HashMap<RequestId, u64>,
    /// Size at which expired ids are next swept out (amortized: the sweep
    /// runs when the set has doubled since the last one).
    sweep_at: usize,
}

impl Seen {
    /// Remember `id` (valid until `valid_to`); false if it was already
    /// seen.
    pub(super) fn insert(&mut self, id: RequestId, valid_to: u64, now: u64) -> bool {
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

impl LoopState {
    /// Send a decline in the background (best effort: only requesters
    /// listening now hear it).
    pub(super) fn decline(
        self: &Arc<Self>,
        request_id: RequestId,
        seq: GrantSeq,
        reason: DeclineReason,
    ) {
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

    pub(super) async fn on_grant(self: Arc<Self>, grant: ComputeGrant) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_coalition::envelope;
    use compute_bridge_contract::backend::TdxRequirement;
    use compute_bridge_contract::protocol::Manifest;

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
}
