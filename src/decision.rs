//! A sampling decision: whether a trace is kept, by which rule, at which rate. A leaf module:
//! the sampler makes decisions, the assembly window's cache remembers them for late spans, and
//! the encoder writes them onto forwarded spans.

use std::sync::Arc;

/// What happens to a trace, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub keep: bool,
    /// The deciding rule's name (`sampling.rule` on forwarded spans).
    pub rule: Arc<str>,
    /// The inverse of the keep probability (`sampling.sample_rate` on forwarded spans, unless a
    /// span arrived with a higher threshold: then that threshold's adjusted count).
    pub sample_rate: f64,
    /// For probabilistic decisions: the OpenTelemetry rejection threshold (56 bits), written to
    /// the W3C `tracestate` as `ot=th:…` unless a span arrived with a higher one.
    pub threshold: Option<u64>,
}

impl Decision {
    pub fn keep(rule: Arc<str>, sample_rate: f64) -> Self {
        Self { keep: true, rule, sample_rate, threshold: None }
    }

    pub fn drop(rule: Arc<str>) -> Self {
        Self { keep: false, rule, sample_rate: 0.0, threshold: None }
    }

    /// The decision the cache reports for a trace it remembers only as dropped.
    pub fn dropped_late() -> Self {
        Self::drop(Arc::from("cached"))
    }

    pub fn label(&self) -> &'static str {
        if self.keep {
            "kept"
        } else {
            "dropped"
        }
    }
}

/// Rejection thresholds are 56-bit: 2^56 rejects everything.
const THRESHOLD_SCALE: u64 = 1 << 56;

/// The adjusted count of a rejection threshold below 2^56: 2^56 / (2^56 − threshold), the number of
/// traces a trace kept at that threshold stands for.
pub fn adjusted_count(threshold: u64) -> f64 {
    THRESHOLD_SCALE as f64 / THRESHOLD_SCALE.saturating_sub(threshold).max(1) as f64
}
