//! Settlements: what the coalition says it paid this provider, credited to
//! the journal's counters and told to the dashboard.
//!
//! Invariants:
//! - a settlement for another provider is skipped; one of another protocol
//!   version, or whose window ends before it starts, is ignored with a log
//!   line;
//! - no amount is logged: an amount at a moment can be matched to a grant;
//!   the dashboard shows the sums (window, lifetime).
//!
//! What it never keeps: a settlement per grant; only the sum, in the
//! journal's counters.

use std::sync::Arc;

use super::LoopState;
use compute_bridge_contract::events::Event;
use compute_bridge_contract::protocol::{PROTOCOL_VERSION, Settlement};

impl LoopState {
    pub(super) async fn take_settlements(
        self: Arc<Self>,
        mut settlements: mosaik::streams::Consumer<Settlement>,
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
