//! `[window]`: the assembly window's settings (sampling.md "The assembly window"), each default
//! next to its field.

use serde::Deserialize;

use super::WindowLimits;
use crate::settings::{secs, HumanDuration, Problem};

/// `[window]`: the assembly window (sampling.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// A trace whose root arrived is decided after this long without a new span. Default `5s`.
    #[serde(default = "default_decision_wait")]
    pub decision_wait: HumanDuration,
    /// A trace is decided this long after its first span at the latest. Default `30s`;
    /// must exceed `decision_wait`.
    #[serde(default = "default_max_trace_age")]
    pub max_trace_age: HumanDuration,
    /// A trace is decided when it holds this many spans. Default 10 000; at least 1.
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: usize,
    /// The store never holds more spans; the oldest traces are decided early. Default 2 000 000;
    /// at least `max_spans_per_trace`.
    #[serde(default = "default_max_buffered_spans")]
    pub max_buffered_spans: usize,
    /// The store never holds more bytes of span encodings (what a buffered span keeps of its
    /// message: its own wire bytes); the oldest traces are decided early. Bytes; default
    /// 1 073 741 824 (1 GiB: about 5 million spans of 200 bytes, so with typical spans
    /// `max_buffered_spans` binds first); at least 1 MiB. A span count alone does not bound
    /// memory when spans are large (long attribute values, many events).
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Kept trace ids remembered for late spans. Default 100 000.
    #[serde(default = "default_decision_cache_kept")]
    pub decision_cache_kept: usize,
    /// Dropped trace ids remembered for late spans (8 bytes each). Default 1 000 000.
    #[serde(default = "default_decision_cache_dropped")]
    pub decision_cache_dropped: usize,
}

fn default_decision_wait() -> HumanDuration {
    secs(5)
}

fn default_max_trace_age() -> HumanDuration {
    secs(30)
}

fn default_max_spans_per_trace() -> usize {
    10_000
}

fn default_max_buffered_spans() -> usize {
    2_000_000
}

/// The smallest `max_buffered_bytes`: one large message must fit.
const MIN_BUFFERED_BYTES: usize = 1 << 20;

fn default_max_buffered_bytes() -> usize {
    1 << 30
}

fn default_decision_cache_kept() -> usize {
    100_000
}

fn default_decision_cache_dropped() -> usize {
    1_000_000
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            decision_wait: default_decision_wait(),
            max_trace_age: default_max_trace_age(),
            max_spans_per_trace: default_max_spans_per_trace(),
            max_buffered_spans: default_max_buffered_spans(),
            max_buffered_bytes: default_max_buffered_bytes(),
            decision_cache_kept: default_decision_cache_kept(),
            decision_cache_dropped: default_decision_cache_dropped(),
        }
    }
}

impl WindowConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        let w = self;
        check(!w.decision_wait.0.is_zero(), "window.decision_wait", "must be greater than zero".into());
        check(
            w.max_trace_age > w.decision_wait,
            "window.max_trace_age",
            format!("{} must exceed window.decision_wait ({})", w.max_trace_age, w.decision_wait),
        );
        check(w.max_spans_per_trace >= 1, "window.max_spans_per_trace", "must be at least 1".into());
        check(
            w.max_buffered_spans >= w.max_spans_per_trace,
            "window.max_buffered_spans",
            format!("{} must be at least window.max_spans_per_trace ({})", w.max_buffered_spans, w.max_spans_per_trace),
        );
        check(
            w.max_buffered_bytes >= MIN_BUFFERED_BYTES,
            "window.max_buffered_bytes",
            format!("{} must be at least {MIN_BUFFERED_BYTES} (1 MiB)", w.max_buffered_bytes),
        );
    }

    pub fn limits(&self) -> WindowLimits {
        WindowLimits {
            decision_wait: self.decision_wait.0,
            max_trace_age: self.max_trace_age.0,
            max_spans_per_trace: self.max_spans_per_trace,
            max_buffered_spans: self.max_buffered_spans,
            max_buffered_bytes: self.max_buffered_bytes,
            decision_cache_kept: self.decision_cache_kept,
            decision_cache_dropped: self.decision_cache_dropped,
        }
    }
}
