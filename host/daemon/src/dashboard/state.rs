//! The dashboard's mutable state: the rolling window, the lifetime
//! counters, the subscriber count and the ring of recent events.
//!
//! Recording is split in two so the lock is held briefly: [`plan`] turns an
//! [`Event`] into a [`Delta`] and a redacted [`RecentKind`] without the
//! lock, and [`State::apply`] adds them under it (a few integer adds and a
//! ring push).
//!
//! The ring holds [`RECENT_EVENTS`] lines, and repeats share a line
//! ([`Recent::count`]): an event like the newest line joins it, and a card
//! refresh (a heartbeat every `capacity_refresh_sec`) joins the one card
//! line wherever it is and moves it to the top. So refreshes never push
//! grants, declines or failovers out, however long the bridge idles. Like
//! the rest of this state, the ring lives in memory only.

use std::collections::VecDeque;

use compute_bridge_contract::events::Event;

use super::cost::micros_from_usd;
use super::lifetime::Lifetime;
use super::snapshot::RecentKind;
use super::window::{Figures, Tally, Window};

/// Events kept for the page.
pub const RECENT_EVENTS: usize = 50;

/// The longest gap between two capacity samples that counts as observed
/// time; a longer one (a suspended process) is counted as this much.
pub const MAX_SAMPLE_GAP_SECS: u64 = 60;

/// One line of the recent-events ring: an event and its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    /// When it first happened, Unix seconds.
    pub first: u64,
    /// When it last happened.
    pub last: u64,
    /// How many times (at least 1).
    pub count: u64,
    /// What happened.
    pub kind: RecentKind,
}

/// What one event adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    /// Backend slot the tally belongs to.
    slot: usize,
    tally: Tally,
    decline: Option<usize>,
    revenue_micros: u64,
    subscribers: i8,
}

/// Turn `event` into what it adds and how it is listed. `slot_of` maps a
/// backend name to its slot. Returns `None` for an event that carries
/// nothing valid (a settlement that is not a finite non-negative amount).
pub fn plan(event: Event, slot_of: impl Fn(&str) -> usize) -> Option<(Delta, RecentKind)> {
    let mut d = Delta::default();
    let kind = match event {
        Event::SubscriberJoined => {
            d.subscribers = 1;
            RecentKind::SubscriberJoined
        }
        Event::SubscriberLeft => {
            d.subscribers = -1;
            RecentKind::SubscriberLeft
        }
        Event::GrantAccepted { backend, region } => {
            d.slot = slot_of(&backend);
            d.tally.grants_served = 1;
            RecentKind::GrantAccepted { backend, region }
        }
        Event::GrantCompleted { backend, usage } => {
            d.slot = slot_of(&backend);
            d.tally.grants_completed = 1;
            d.tally.cpu_core_seconds = usage.cpu_core_seconds;
            d.tally.ram_mib_seconds = usage.ram_mib_seconds;
            d.tally.net_bytes = usage.net_bytes;
            RecentKind::GrantCompleted {
                backend,
                cpu_core_seconds: usage.cpu_core_seconds,
                ram_mib_seconds: usage.ram_mib_seconds,
                net_bytes: usage.net_bytes,
            }
        }
        Event::GrantDeclined { reason } => {
            d.decline = Some(reason as usize);
            RecentKind::GrantDeclined { reason }
        }
        Event::Failover {
            from,
            from_region,
            to,
            to_region,
        } => {
            d.slot = slot_of(&from);
            d.tally.failovers_from = 1;
            RecentKind::Failover {
                from,
                from_region,
                to,
                to_region,
            }
        }
        Event::RevenueSettled { usd } => {
            d.revenue_micros = micros_from_usd(usd)?;
            RecentKind::RevenueSettled
        }
        Event::CardRefreshed => RecentKind::CardRefreshed,
        Event::ComponentSwap {
            backend,
            from,
            to,
            outcome,
        } => RecentKind::ComponentSwap {
            backend,
            from,
            to,
            outcome,
        },
    };
    Some((d, kind))
}

/// Everything the dashboard accumulates.
#[derive(Debug)]
pub struct State {
    /// The last 24 h.
    pub window: Window,
    /// Counters kept across restarts.
    pub lifetime: Lifetime,
    /// Coalition agents subscribed now.
    pub subscribers: u64,
    /// Newest last.
    pub recent: VecDeque<Recent>,
    /// The newest time seen; a clock stepping back does not move it.
    now: u64,
    last_sample: Option<u64>,
    /// Lifetime counters changed since the last save.
    pub dirty: bool,
}

impl State {
    /// Fresh state with `slots` backend slots and saved `lifetime`.
    pub fn new(slots: usize, lifetime: Lifetime, now: u64) -> Self {
        Self {
            window: Window::new(slots, now),
            lifetime,
            subscribers: 0,
            recent: VecDeque::with_capacity(RECENT_EVENTS),
            now,
            last_sample: None,
            dirty: false,
        }
    }

    /// `now`, never earlier than a time already seen.
    pub fn tick(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    /// Add one planned event at `now`.
    pub fn apply(&mut self, now: u64, d: Delta, kind: RecentKind) {
        let now = self.tick(now);
        // Every counter saturates rather than wraps (see `window`).
        self.window.record(now, |f: &mut Figures| {
            f.backends[d.slot].add(&d.tally);
            if let Some(r) = d.decline {
                f.declines[r] = f.declines[r].saturating_add(1);
            }
            f.revenue_micros = f.revenue_micros.saturating_add(d.revenue_micros);
        });
        let l = &mut self.lifetime;
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut l.grants_served, d.tally.grants_served);
        add(&mut l.grants_completed, d.tally.grants_completed);
        add(&mut l.grants_declined, u64::from(d.decline.is_some()));
        add(&mut l.failovers, d.tally.failovers_from);
        add(&mut l.cpu_core_seconds, d.tally.cpu_core_seconds);
        add(&mut l.ram_mib_seconds, d.tally.ram_mib_seconds);
        add(&mut l.net_bytes, d.tally.net_bytes);
        add(&mut l.revenue_micros, d.revenue_micros);
        self.dirty |= d.tally != Tally::default() || d.decline.is_some() || d.revenue_micros > 0;
        self.subscribers = match d.subscribers {
            1 => self.subscribers.saturating_add(1),
            -1 => self.subscribers.saturating_sub(1),
            _ => self.subscribers,
        };
        self.push_recent(now, kind);
    }

    /// Add `kind` at `now` to the ring, joining a line it repeats.
    fn push_recent(&mut self, now: u64, kind: RecentKind) {
        let joins = if kind == RecentKind::CardRefreshed {
            self.recent.iter().rposition(|r| r.kind == kind)
        } else {
            self.recent
                .back()
                .filter(|r| r.kind == kind)
                .map(|_| self.recent.len() - 1)
        };
        if let Some(mut line) = joins.and_then(|i| self.recent.remove(i)) {
            line.count = line.count.saturating_add(1);
            line.last = now;
            self.recent.push_back(line);
            return;
        }
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            first: now,
            last: now,
            count: 1,
            kind,
        });
    }

    /// Integrate each backend's declared and reserved CPU
    /// (`(declared, reserved)` millicores per slot) over the time since the
    /// last sample. The first sample only starts the clock.
    pub fn sample(&mut self, now: u64, cpu: &[(u64, u64)]) {
        let now = self.tick(now);
        let Some(last) = self.last_sample.replace(now) else {
            return;
        };
        let dt = now.saturating_sub(last).min(MAX_SAMPLE_GAP_SECS);
        if dt == 0 {
            return;
        }
        self.window.record(now, |f: &mut Figures| {
            for (t, (declared, reserved)) in f.backends.iter_mut().zip(cpu) {
                t.capacity_millicore_seconds = t
                    .capacity_millicore_seconds
                    .saturating_add(declared.saturating_mul(dt));
                t.reserved_millicore_seconds = t
                    .reserved_millicore_seconds
                    .saturating_add(reserved.saturating_mul(dt));
            }
            f.observed_seconds = f.observed_seconds.saturating_add(dt);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_bridge_contract::backend::Usage;
    use compute_bridge_contract::events::DeclineReason;

    fn slot(name: &str) -> usize {
        match name {
            "aws" => 0,
            "gcp" => 1,
            _ => 2,
        }
    }

    fn apply(s: &mut State, now: u64, e: Event) {
        if let Some((d, k)) = plan(e, slot) {
            s.apply(now, d, k);
        }
    }

    #[test]
    fn events_add_to_window_lifetime_and_ring() {
        let mut s = State::new(3, Lifetime::default(), 1000);
        apply(
            &mut s,
            1000,
            Event::GrantAccepted {
                backend: "gcp".into(),
                region: "europe-west1".into(),
            },
        );
        apply(
            &mut s,
            1001,
            Event::GrantCompleted {
                backend: "gcp".into(),
                usage: Usage {
                    cpu_core_seconds: 60,
                    ram_mib_seconds: 1024,
                    net_bytes: 5,
                },
            },
        );
        apply(
            &mut s,
            1002,
            Event::GrantDeclined {
                reason: DeclineReason::OverCapacity,
            },
        );
        apply(&mut s, 1003, Event::RevenueSettled { usd: 1.5 });
        apply(&mut s, 1003, Event::RevenueSettled { usd: f64::NAN });
        apply(&mut s, 1004, Event::SubscriberLeft);
        apply(&mut s, 1004, Event::SubscriberJoined);
        apply(
            &mut s,
            1005,
            Event::Failover {
                from: "retired".into(),
                from_region: None,
                to: Some("aws".into()),
                to_region: None,
            },
        );

        let w = s.window.totals(1005).clone();
        assert_eq!(w.backends[1].grants_served, 1);
        assert_eq!(w.backends[1].cpu_core_seconds, 60);
        assert_eq!(w.backends[2].failovers_from, 1, "unknown names count apart");
        assert_eq!(w.declines[DeclineReason::OverCapacity as usize], 1);
        assert_eq!(w.revenue_micros, 1_500_000);
        assert_eq!(s.lifetime.grants_served, 1);
        assert_eq!(s.lifetime.grants_declined, 1);
        assert_eq!(s.lifetime.failovers, 1);
        assert_eq!(s.lifetime.revenue_micros, 1_500_000);
        assert_eq!(s.subscribers, 1, "leaving at zero stays at zero");
        assert!(s.dirty);
        // The NaN settlement is not listed.
        assert_eq!(s.recent.len(), 7);
    }

    fn declined(reason: DeclineReason) -> Event {
        Event::GrantDeclined { reason }
    }

    #[test]
    fn the_ring_keeps_the_last_fifty_lines() {
        let mut s = State::new(1, Lifetime::default(), 0);
        // Alternating reasons: no two in a row are alike.
        for i in 0..120 {
            let reason = if i % 2 == 0 {
                DeclineReason::Expired
            } else {
                DeclineReason::Malformed
            };
            apply(&mut s, i, declined(reason));
        }
        assert_eq!(s.recent.len(), RECENT_EVENTS);
        assert_eq!(s.recent.front().unwrap().first, 70);
        assert_eq!(s.recent.back().unwrap().last, 119);
        assert!(s.recent.iter().all(|r| r.count == 1));
    }

    /// Ten grants an hour apart with a card refresh every 10 s between
    /// them (3,600 refreshes): before coalescing, the last 50 events were
    /// refreshes only and no grant was left on the page.
    #[test]
    fn card_refreshes_share_one_line_and_never_push_grants_out() {
        let mut s = State::new(3, Lifetime::default(), 0);
        let accepted = || Event::GrantAccepted {
            backend: "b".into(),
            region: "r".into(),
        };
        let mut t = 0;
        for _ in 0..10 {
            apply(&mut s, t, accepted());
            apply(&mut s, t, declined(DeclineReason::Duplicate));
            for _ in 0..360 {
                t += 10;
                apply(&mut s, t, Event::CardRefreshed);
            }
        }
        let grants = s
            .recent
            .iter()
            .filter(|r| matches!(r.kind, RecentKind::GrantAccepted { .. }))
            .count();
        assert_eq!(grants, 10, "{:?}", s.recent);
        assert_eq!(s.recent.len(), 21, "10 grants, 10 declines, 1 card line");
        let card = s.recent.back().unwrap();
        assert_eq!(
            card.kind,
            RecentKind::CardRefreshed,
            "the heartbeat is newest"
        );
        assert_eq!((card.count, card.first, card.last), (3600, 10, t));
        // A repeat of the newest line joins it; anything else starts a line.
        apply(&mut s, t + 1, declined(DeclineReason::Expired));
        apply(&mut s, t + 2, declined(DeclineReason::Expired));
        apply(&mut s, t + 3, declined(DeclineReason::Malformed));
        let n = s.recent.len();
        assert_eq!(n, 23);
        assert_eq!(s.recent[n - 2].count, 2);
        assert_eq!(
            (s.recent[n - 2].first, s.recent[n - 2].last),
            (t + 1, t + 2)
        );
        assert_eq!(s.recent[n - 1].count, 1);
    }

    #[test]
    fn sampling_integrates_capacity_and_caps_gaps() {
        let mut s = State::new(2, Lifetime::default(), 0);
        s.sample(100, &[(4000, 1000), (0, 0)]);
        s.sample(110, &[(4000, 1000), (0, 0)]);
        // A 1000 s gap (suspended process) counts as MAX_SAMPLE_GAP_SECS.
        s.sample(1110, &[(4000, 3000), (0, 0)]);
        let w = s.window.totals(1110);
        assert_eq!(w.observed_seconds, 10 + MAX_SAMPLE_GAP_SECS);
        assert_eq!(
            w.backends[0].capacity_millicore_seconds,
            4000 * (10 + MAX_SAMPLE_GAP_SECS)
        );
        assert_eq!(
            w.backends[0].reserved_millicore_seconds,
            1000 * 10 + 3000 * MAX_SAMPLE_GAP_SECS
        );
    }
}
