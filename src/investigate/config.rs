//! `[investigation]`: the bounds of what is kept for investigation (investigation.md), each
//! default next to its field.

use serde::Deserialize;

use crate::settings::Problem;

/// `[investigation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvestigationConfig {
    /// Decided traces whose summaries `/api/traces` searches, newest kept (a summary of a trace
    /// through two services takes about 300 bytes, by its layout; not yet measured).
    /// Default 100 000; at least 1.
    #[serde(default = "default_max_trace_summaries")]
    pub max_trace_summaries: usize,
}

fn default_max_trace_summaries() -> usize {
    100_000
}

impl Default for InvestigationConfig {
    fn default() -> Self {
        Self { max_trace_summaries: default_max_trace_summaries() }
    }
}

impl InvestigationConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        check(self.max_trace_summaries >= 1, "investigation.max_trace_summaries", "must be at least 1".into());
    }
}
