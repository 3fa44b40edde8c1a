//! Money: what the window's usage cost at the operator's rates, what it
//! earned, and the margin.
//!
//! Revenue is kept in integer micro-USD so sums over the window are exact;
//! costs are derived from integer usage at display time.

use crate::config::Rate;

/// Core-hours in `core_seconds`.
pub fn core_hours(core_seconds: u64) -> f64 {
    core_seconds as f64 / 3600.0
}

/// GiB-hours in `mib_seconds`.
pub fn gib_hours(mib_seconds: u64) -> f64 {
    mib_seconds as f64 / 1024.0 / 3600.0
}

/// What `cpu_core_seconds` and `ram_mib_seconds` cost at `rate`:
/// core-hours × $/core-hour + GiB-hours × $/GiB-hour.
pub fn cost_usd(rate: &Rate, cpu_core_seconds: u64, ram_mib_seconds: u64) -> f64 {
    core_hours(cpu_core_seconds) * rate.core_hour_usd
        + gib_hours(ram_mib_seconds) * rate.ram_gib_hour_usd
}

/// A settled amount in micro-USD; `None` for amounts that are not a finite,
/// non-negative number of dollars.
pub fn micros_from_usd(usd: f64) -> Option<u64> {
    (usd.is_finite() && usd >= 0.0 && usd < (u64::MAX / 2) as f64 / 1e6)
        .then(|| (usd * 1e6).round() as u64)
}

/// Micro-USD as dollars.
pub fn usd_from_micros(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Cost, revenue, net and margin over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Economics {
    /// Estimated cost, USD.
    pub cost_usd: f64,
    /// Settled revenue, USD.
    pub revenue_usd: f64,
    /// Revenue minus cost, USD.
    pub net_usd: f64,
    /// Net as a fraction of revenue (`None` without revenue).
    pub margin_ratio: Option<f64>,
}

impl Economics {
    /// Net and margin from a cost and a revenue.
    pub fn new(cost_usd: f64, revenue_micros: u64) -> Self {
        let revenue_usd = usd_from_micros(revenue_micros);
        let net_usd = revenue_usd - cost_usd;
        Self {
            cost_usd,
            revenue_usd,
            net_usd,
            margin_ratio: (revenue_micros > 0).then(|| net_usd / revenue_usd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn cost_is_core_hours_and_gib_hours_at_the_rate() {
        let aws = Rate {
            core_hour_usd: 0.05,
            ram_gib_hour_usd: 0.01,
        };
        // 10 core-hours and 20 GiB-hours.
        let c = cost_usd(&aws, 10 * 3600, 20 * 1024 * 3600);
        assert!(close(c, 0.5 + 0.2), "{c}");
        // A backend without a rate costs nothing.
        assert_eq!(cost_usd(&Rate::default(), 10 * 3600, 20 * 1024 * 3600), 0.0);
    }

    #[test]
    fn net_and_margin_follow_revenue() {
        let e = Economics::new(0.70, micros_from_usd(1.00).unwrap());
        assert!(close(e.net_usd, 0.30));
        assert!(close(e.margin_ratio.unwrap(), 0.30));
        let loss = Economics::new(0.70, micros_from_usd(0.50).unwrap());
        assert!(close(loss.net_usd, -0.20));
        assert!(close(loss.margin_ratio.unwrap(), -0.40));
        let none = Economics::new(0.70, 0);
        assert!(close(none.net_usd, -0.70));
        assert_eq!(none.margin_ratio, None);
    }

    #[test]
    fn settled_amounts_are_exact_micros_and_nonsense_is_refused() {
        assert_eq!(micros_from_usd(228.71), Some(228_710_000));
        assert_eq!(micros_from_usd(0.000_000_4), Some(0));
        assert_eq!(micros_from_usd(-1.0), None);
        assert_eq!(micros_from_usd(f64::NAN), None);
        assert_eq!(micros_from_usd(f64::INFINITY), None);
        let sum: u64 = (0..1000).map(|_| micros_from_usd(0.1).unwrap()).sum();
        assert_eq!(usd_from_micros(sum), 100.0);
    }
}
