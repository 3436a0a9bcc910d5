//! Injected time.
//!
//! Every time-driven decision (assembly window, metric windows, SLO buckets, sampling reservoirs)
//! reads time through a [`Clock`], so tests drive it deterministically with [`ManualClock`].
//! [`SystemClock`] is monotonic: it measures elapsed time with `Instant` from a wall-clock start, so
//! wall-clock steps never move decisions backwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    pub fn saturating_add(self, d: Duration) -> Self {
        Nanos(self.0.saturating_add(d.as_nanos() as u64))
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Nanos(self.0.saturating_sub(d.as_nanos() as u64))
    }

    pub fn since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole Unix seconds.
    pub fn unix_seconds(self) -> i64 {
        (self.0 / 1_000_000_000) as i64
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Nanos;
}

pub type SharedClock = Arc<dyn Clock>;

/// Real time: wall clock at start, advanced monotonically.
pub struct SystemClock {
    start_wall: u64,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        let start_wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Self { start_wall, start: Instant::now() }
    }

    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        Nanos(self.start_wall + self.start.elapsed().as_nanos() as u64)
    }
}

/// A clock that only moves when told to.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: Nanos) -> Self {
        Self(AtomicU64::new(start.0))
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Nanos) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos(self.0.load(Ordering::SeqCst))
    }
}
