//! How long the PetClinic's work takes: long-tailed (log-normal) durations, and the schedule on
//! which its database degrades.

use rand::Rng;

/// A log-normal distribution: half of its draws are below `median`, and p99 is
/// `median · e^(2.33 σ)` (σ = [`TYPICAL_SIGMA`]: four times the median). Draws further than four
/// standard deviations from the median are clamped to four, so that no draw runs away.
#[derive(Clone, Copy, Debug)]
pub struct LogNormal {
    pub median: f64,
    pub sigma: f64,
}

/// The spread of an ordinary step of work: p99 ≈ 4 × p50.
pub const TYPICAL_SIGMA: f64 = 0.6;

impl LogNormal {
    /// A step of work with the typical spread and this median, in milliseconds.
    pub const fn typical_ms(median: f64) -> Self {
        Self { median, sigma: TYPICAL_SIGMA }
    }

    pub fn draw(self, rng: &mut impl Rng) -> f64 {
        self.median * (self.sigma * standard_normal(rng)).exp()
    }
}

/// A standard normal draw (Box–Muller), clamped to ±4.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).clamp(-4.0, 4.0)
}

/// The load a request meets, as a factor on every duration of its trace: contention is shared by
/// the steps of one request, so the tail shows at every level of a trace (a root's p99 is several
/// times its p50, as its leaves' are), not only at the leaves.
pub const LOAD: LogNormal = LogNormal { median: 1.0, sigma: 0.45 };

/// The database degrades for this long at the start of every [`DATABASE_PERIOD_SECS`].
pub const DATABASE_DEGRADED_SECS: u64 = 90;
/// Period of the database's degradation: 5 minutes of Unix time, so the bad phases start at
/// hh:00:00, hh:05:00, hh:10:00 … UTC.
pub const DATABASE_PERIOD_SECS: u64 = 300;

/// Whether the database is degraded at `now` (Unix nanoseconds): in the first
/// [`DATABASE_DEGRADED_SECS`] of every [`DATABASE_PERIOD_SECS`] (a backup job saturating its
/// disk, scheduled that often for the demo's sake). A pure function of `now`: two generators agree,
/// and tests pick either phase with a fixed `now`.
pub fn database_degraded(now: u64) -> bool {
    (now / 1_000_000_000) % DATABASE_PERIOD_SECS < DATABASE_DEGRADED_SECS
}

/// How long a query takes, in milliseconds of the distribution: `median` when the database is
/// healthy; while degraded, 5 × the median at the median and, with its wider spread, about
/// 10 × the healthy p99 at p99.
pub fn database_query(median_ms: f64, degraded: bool) -> LogNormal {
    if degraded {
        LogNormal { median: 5.0 * median_ms, sigma: 0.9 }
    } else {
        LogNormal::typical_ms(median_ms)
    }
}
