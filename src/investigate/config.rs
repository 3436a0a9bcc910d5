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
    /// Bytes of kept traces' records held for `/api/traces/{id}` (the most recent kept first).
    /// Default 64 MiB (`67108864`); 0 holds none.
    #[serde(default = "default_max_trace_bytes")]
    pub max_trace_bytes: usize,
}

fn default_max_trace_bytes() -> usize {
    64 << 20
}

fn default_max_trace_summaries() -> usize {
    100_000
}

impl Default for InvestigationConfig {
    fn default() -> Self {
        Self { max_trace_summaries: default_max_trace_summaries(), max_trace_bytes: default_max_trace_bytes() }
    }
}

impl InvestigationConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        check(self.max_trace_summaries >= 1, "investigation.max_trace_summaries", "must be at least 1".into());
    }
}
