//! How long the PetClinic's work takes: long-tailed (log-normal) durations.

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
