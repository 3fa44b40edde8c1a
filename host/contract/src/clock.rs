//! Wall-clock time in Unix seconds: [`now_unix`] for the fleet and the
//! grant checks, and the [`Clock`] the dashboard reads, injectable so tests
//! can roll its 24 h window without waiting a day. Keeps nothing but the
//! manual clock's reading.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix seconds now (0 if the system clock is before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A source of wall-clock time in Unix seconds.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        now_unix()
    }
}

/// A clock that moves only when told to (tests and benchmarks).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start)))
    }

    /// Move forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Jump to `unix`.
    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
