//! Investigation (investigation.md): what lets a person go from a bad figure to its cause. So far
//! the trace index ([`traces`]) and the spans of kept traces ([`held`]); the service map, top contributors, history and the group-wide
//! merge of snapshots come next (issue 10).

mod config;
pub mod held;
pub mod map;
pub mod traces;

pub use config::InvestigationConfig;

use bytes::Bytes;

use crate::model::TraceId;

/// What the span path leaves for `/api/traces`: summaries of every decided trace and the records
/// of the most recent kept ones; shared behind one lock, taken once per batch of decided traces.
pub struct TraceStore {
    pub index: traces::TraceIndex,
    pub held: held::HeldTraces,
}

impl TraceStore {
    pub fn new(config: &InvestigationConfig) -> Self {
        Self {
            index: traces::TraceIndex::new(config.max_trace_summaries),
            held: held::HeldTraces::new(config.max_trace_bytes),
        }
    }

    /// Records a batch of decided traces: their summaries, and the records of the kept ones.
    pub fn record(&mut self, summaries: &mut Vec<traces::TraceSummary>, kept: &mut Vec<(TraceId, Vec<Bytes>)>) {
        for summary in summaries.drain(..) {
            self.index.insert(summary);
        }
        for (trace_id, payloads) in kept.drain(..) {
            self.held.hold(trace_id, &payloads);
        }
    }
}
