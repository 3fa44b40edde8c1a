//! The provider card and who hears it: the card republished every
//! `capacity_refresh` (and at once when a live swap measured a component),
//! with the fleet's capabilities and capacity asked afresh and, in `tdx`
//! mode, a fresh quote over the measurement log; and the subscribers
//! counted as they come and go.
//!
//! Invariants:
//! - the measurement log and the quote over it change together: the log
//!   is read and the quote taken under the measurer's lock, so no extend
//!   falls between them;
//! - a quote that cannot be taken leaves the card with the last good pair;
//! - what the card says of each backend is bounded (`BackendOffer::bounded`);
//! - subscribers are requesters: the log and the dashboard get their
//!   count, never a peer id.
//!
//! What it keeps: the card's current attestation and measurement log (on
//! `LoopState`), and the set of subscribers seen last (in memory, never
//! logged).

use std::sync::Arc;
use std::time::Duration;

use super::LoopState;
use compute_bridge_coalition::attest::CardIdentity;
use compute_bridge_contract::clock::now_unix;
use compute_bridge_contract::events::Event;
use compute_bridge_contract::protocol::{
    Attestation, BackendOffer, PROTOCOL_VERSION, ProviderCard,
};

impl LoopState {
    fn card(&self) -> ProviderCard {
        let (attestation, measurements) = self.attestation.lock().unwrap().clone();
        ProviderCard {
            version: PROTOCOL_VERSION,
            provider_id: self.provider_id,
            coalition: self.settings.coalition.clone(),
            // The workspace's version, which every package of it (the
            // `compute-bridge` binaries' among them) inherits.
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
                        m.offer.unwrap_or_default(),
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

    pub(super) async fn refresh_card_forever(self: Arc<Self>) {
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
    pub(super) async fn watch_subscribers(self: Arc<Self>) {
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
}
