//! Sampling: the keep/drop decision for each assembled trace.
//!
//! The pipeline calls [`Sampler::decide`] once per trace after its metrics are recorded, so a
//! decision can never change a metric (signals.md). The rule engine of sampling.md "Rules" plugs in
//! behind this one entry point; with no rules configured every trace is kept under the rule name
//! `no_match`, as sampling.md prescribes when no rule matches.

use std::sync::Arc;

use crate::assemble::ReadyTrace;
use crate::clock::Nanos;

/// The rule name of traces no rule matched.
pub const NO_MATCH: &str = "no_match";

/// What happens to a trace, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub keep: bool,
    /// The deciding rule's name (`sampling.rule` on forwarded spans).
    pub rule: Arc<str>,
    /// The inverse of the keep probability (`sampling.sample_rate` on forwarded spans).
    pub sample_rate: f64,
}

impl Decision {
    pub fn keep(rule: Arc<str>, sample_rate: f64) -> Self {
        Self { keep: true, rule, sample_rate }
    }

    /// The decision the cache reports for a trace it remembers only as dropped.
    pub fn dropped_late() -> Self {
        Self { keep: false, rule: Arc::from("cached"), sample_rate: 0.0 }
    }

    pub fn label(&self) -> &'static str {
        if self.keep {
            "kept"
        } else {
            "dropped"
        }
    }
}

/// Decides traces.
pub struct Sampler {
    no_match: Arc<str>,
}

impl Sampler {
    pub fn new() -> Self {
        Self { no_match: Arc::from(NO_MATCH) }
    }

    /// Decides one trace at time `now`.
    pub fn decide(&mut self, trace: &ReadyTrace, now: Nanos) -> Decision {
        let _ = (trace, now);
        Decision::keep(self.no_match.clone(), 1.0)
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}
