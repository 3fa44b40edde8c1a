//! The rolling 24 h window: 288 buckets of 5 minutes in a ring, plus running
//! totals so reading the window costs the same however busy it was.
//!
//! A bucket belongs to one 5-minute epoch (`unix / 300`). When time moves
//! into a new epoch, the buckets that fall out of the last 288 epochs are
//! subtracted from the totals and reused. So a figure leaves the window
//! between 23 h 55 min and 24 h after it was recorded. Everything is an
//! integer, so the running totals never drift from the buckets' sum.
//!
//! Every sum saturates at `u64::MAX` rather than wrapping (a backend that
//! reports absurd usage must not turn a total into a small number); a
//! saturated total reads low while a saturated bucket leaves the window,
//! and exact again once it has. Usage reaching here is already clamped to
//! what each grant could use, so this is a backstop.

use compute_bridge_contract::events::DeclineReason;

/// Length of one bucket, seconds.
pub const BUCKET_SECS: u64 = 300;
/// Buckets in the window.
pub const BUCKETS: usize = 288;
/// The window's span, seconds (24 h).
pub const WINDOW_SECS: u64 = BUCKET_SECS * BUCKETS as u64;

/// Number of decline reasons, for per-reason arrays.
pub const REASONS: usize = DeclineReason::ALL.len();

/// What one backend did in a stretch of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Grants placed on it.
    pub grants_served: u64,
    /// Grants whose workload ended.
    pub grants_completed: u64,
    /// Provisioning attempts that failed over away from it.
    pub failovers_from: u64,
    /// Core-seconds the finished workloads used.
    pub cpu_core_seconds: u64,
    /// MiB-seconds the finished workloads used.
    pub ram_mib_seconds: u64,
    /// Bytes the finished workloads moved.
    pub net_bytes: u64,
    /// Declared CPU capacity integrated over the sampled time
    /// (millicore-seconds).
    pub capacity_millicore_seconds: u64,
    /// CPU reserved by running grants integrated over the sampled time
    /// (millicore-seconds).
    pub reserved_millicore_seconds: u64,
}

impl Tally {
    /// Add `o`, field by field, saturating.
    pub(super) fn add(&mut self, o: &Tally) {
        self.combine(o, u64::saturating_add);
    }

    fn sub(&mut self, o: &Tally) {
        self.combine(o, u64::saturating_sub);
    }

    fn combine(&mut self, o: &Tally, f: fn(u64, u64) -> u64) {
        self.grants_served = f(self.grants_served, o.grants_served);
        self.grants_completed = f(self.grants_completed, o.grants_completed);
        self.failovers_from = f(self.failovers_from, o.failovers_from);
        self.cpu_core_seconds = f(self.cpu_core_seconds, o.cpu_core_seconds);
        self.ram_mib_seconds = f(self.ram_mib_seconds, o.ram_mib_seconds);
        self.net_bytes = f(self.net_bytes, o.net_bytes);
        self.capacity_millicore_seconds = f(
            self.capacity_millicore_seconds,
            o.capacity_millicore_seconds,
        );
        self.reserved_millicore_seconds = f(
            self.reserved_millicore_seconds,
            o.reserved_millicore_seconds,
        );
    }
}

/// The figures of one bucket, or of the whole window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// One tally per backend slot (the dashboard's backends in config
    /// order, then one for events naming a backend it does not know).
    pub backends: Vec<Tally>,
    /// Declines, indexed by `DeclineReason as usize`.
    pub declines: [u64; REASONS],
    /// Settled revenue, micro-USD.
    pub revenue_micros: u64,
    /// Seconds the capacity sampler covered.
    pub observed_seconds: u64,
}

impl Figures {
    fn zero(slots: usize) -> Self {
        Self {
            backends: vec![Tally::default(); slots],
            declines: [0; REASONS],
            revenue_micros: 0,
            observed_seconds: 0,
        }
    }

    fn clear(&mut self) {
        self.backends.fill(Tally::default());
        self.declines = [0; REASONS];
        self.revenue_micros = 0;
        self.observed_seconds = 0;
    }

    fn add(&mut self, o: &Figures) {
        for (a, b) in self.backends.iter_mut().zip(&o.backends) {
            a.add(b);
        }
        for (a, b) in self.declines.iter_mut().zip(&o.declines) {
            *a = a.saturating_add(*b);
        }
        self.revenue_micros = self.revenue_micros.saturating_add(o.revenue_micros);
        self.observed_seconds = self.observed_seconds.saturating_add(o.observed_seconds);
    }

    fn sub(&mut self, o: &Figures) {
        for (a, b) in self.backends.iter_mut().zip(&o.backends) {
            a.sub(b);
        }
        for (a, b) in self.declines.iter_mut().zip(&o.declines) {
            *a = a.saturating_sub(*b);
        }
        self.revenue_micros = self.revenue_micros.saturating_sub(o.revenue_micros);
        self.observed_seconds = self.observed_seconds.saturating_sub(o.observed_seconds);
    }

    /// The sum over every backend slot.
    pub fn all_backends(&self) -> Tally {
        let mut t = Tally::default();
        for b in &self.backends {
            t.add(b);
        }
        t
    }

    /// Declines over every reason.
    pub fn declines_total(&self) -> u64 {
        self.declines.iter().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// A 24 h window of [`Figures`] that rolls with the clock.
#[derive(Debug, Clone)]
pub struct Window {
    /// `buckets[e % BUCKETS]` holds epoch `e`'s figures, for the last
    /// `BUCKETS` epochs up to `current`.
    buckets: Vec<Figures>,
    /// Sum of every bucket.
    totals: Figures,
    /// The newest epoch seen.
    current: u64,
}

impl Window {
    /// An empty window with `slots` backend slots, starting at `now`.
    pub fn new(slots: usize, now: u64) -> Self {
        Self {
            buckets: vec![Figures::zero(slots); BUCKETS],
            totals: Figures::zero(slots),
            current: now / BUCKET_SECS,
        }
    }

    /// Move the window to `now`, dropping buckets older than 24 h. Time
    /// that goes backwards (a clock step) leaves the window where it is.
    pub fn advance(&mut self, now: u64) {
        let epoch = now / BUCKET_SECS;
        if epoch <= self.current {
            return;
        }
        if epoch - self.current >= BUCKETS as u64 {
            for b in &mut self.buckets {
                b.clear();
            }
            self.totals.clear();
        } else {
            for e in self.current + 1..=epoch {
                let b = &mut self.buckets[(e % BUCKETS as u64) as usize];
                self.totals.sub(b);
                b.clear();
            }
        }
        self.current = epoch;
    }

    /// Apply `f` to the bucket for `now` (after advancing to it) and to the
    /// totals. `f` must only add.
    pub fn record(&mut self, now: u64, f: impl Fn(&mut Figures)) {
        self.advance(now);
        f(&mut self.buckets[(self.current % BUCKETS as u64) as usize]);
        f(&mut self.totals);
    }

    /// The window's figures as of `now`.
    pub fn totals(&mut self, now: u64) -> &Figures {
        self.advance(now);
        &self.totals
    }

    /// The sum of the buckets, computed the slow way (tests check it
    /// against the running totals).
    pub fn recount(&self) -> Figures {
        let mut f = Figures::zero(self.totals.backends.len());
        for b in &self.buckets {
            f.add(b);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(n: u64) -> impl Fn(&mut Figures) {
        move |f: &mut Figures| f.backends[0].grants_served += n
    }

    #[test]
    fn decline_reasons_index_in_declaration_order() {
        for (i, r) in DeclineReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn figures_leave_the_window_after_24_hours() {
        // Start on a bucket boundary to make the edges exact.
        let t0 = 1_700_000_100 - 1_700_000_100 % BUCKET_SECS;
        let mut w = Window::new(2, t0);
        w.record(t0, served(1));
        w.record(t0 + 3600, served(10));
        assert_eq!(w.totals(t0 + 3600).backends[0].grants_served, 11);
        // One second before the first bucket's epoch is 24 h old: still in.
        assert_eq!(w.totals(t0 + WINDOW_SECS - 1).backends[0].grants_served, 11);
        // At 24 h the first bucket leaves; the later one stays.
        assert_eq!(w.totals(t0 + WINDOW_SECS).backends[0].grants_served, 10);
        assert_eq!(
            w.totals(t0 + 3600 + WINDOW_SECS).backends[0].grants_served,
            0
        );
        assert_eq!(w.recount(), *w.totals(t0 + 3600 + WINDOW_SECS));
    }

    #[test]
    fn a_long_gap_empties_the_window() {
        let mut w = Window::new(1, 1000);
        w.record(1000, |f| {
            f.revenue_micros += 5;
            f.declines[3] += 1;
        });
        assert_eq!(w.totals(1000 + 10 * WINDOW_SECS).revenue_micros, 0);
        assert_eq!(w.totals(1000 + 10 * WINDOW_SECS).declines_total(), 0);
        w.record(1000 + 10 * WINDOW_SECS, served(2));
        assert_eq!(
            w.totals(1000 + 10 * WINDOW_SECS).backends[0].grants_served,
            2
        );
    }

    #[test]
    fn a_clock_step_backwards_keeps_the_window() {
        let mut w = Window::new(1, 100_000);
        w.record(100_000, served(1));
        // The clock steps back an hour: the event lands in the newest bucket
        // instead of overwriting an older one.
        w.record(100_000 - 3600, served(1));
        assert_eq!(w.totals(100_000).backends[0].grants_served, 2);
        assert_eq!(w.recount(), *w.totals(100_000));
    }

    #[test]
    fn running_totals_match_the_buckets_under_random_traffic() {
        // A small deterministic generator: no dependency, same run each time.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut now = 1_650_000_000;
        let mut w = Window::new(3, now);
        for _ in 0..20_000 {
            now += next() % 120;
            let slot = (next() % 3) as usize;
            let amount = next() % 1000;
            w.record(now, |f| {
                f.backends[slot].cpu_core_seconds += amount;
                f.backends[slot].grants_served += 1;
                f.declines[(amount % REASONS as u64) as usize] += 1;
                f.revenue_micros += amount;
            });
            if next() % 500 == 0 {
                let totals = w.totals(now).clone();
                assert_eq!(totals, w.recount());
            }
        }
        let totals = w.totals(now).clone();
        assert_eq!(totals, w.recount());
        assert!(totals.all_backends().grants_served > 0);
    }
}
