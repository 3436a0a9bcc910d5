//! Investigation (investigation.md): what lets a person go from a bad figure to its cause — the
//! trace index ([`traces`]) and the spans of kept traces ([`held`]); the service map ([`map`]),
//! top contributors ([`contributors`]) and history ([`history`]); and how every instance of a
//! group answers for the whole group ([`group`]).
//!
//! The [`OwnedTimeline`] holds the 10 s points of the series whose points partitions this
//! instance owns, merged from every instance's partials; history and contributors are answered
//! from it (by the owner), the map and the series tables from the group's rollups.

pub mod compare;
pub(crate) mod config;
pub mod contributors;
pub mod deployments;
pub mod exceptions;
pub mod group;
pub mod held;
pub mod history;
pub mod map;
pub mod overview;
pub mod query;
pub mod series;
pub mod timeline;
pub mod traces;
pub mod versions;

pub use config::InvestigationConfig;

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use crate::clock::Nanos;
use crate::model::TraceId;
use crate::signals::point::TableKeys;
use timeline::Timeline;

/// The timeline of the series owned here, shared by the group member (which merges into it) and
/// the HTTP answers (module docs).
pub struct OwnedTimeline {
    timeline: Mutex<Timeline>,
    /// The names of the values in the points' tables (contributor dimensions, compared span
    /// attributes), in the order of every profile's values.
    pub keys: TableKeys,
}

impl OwnedTimeline {
    pub fn new(timeline: Timeline, keys: TableKeys) -> Self {
        Self { timeline: Mutex::new(timeline), keys }
    }

    pub fn lock(&self) -> MutexGuard<'_, Timeline> {
        self.timeline.lock().expect("timeline lock")
    }

    /// The timeline, with what aged out at `now` dropped, locked for an answer.
    pub fn at(&self, now: Nanos) -> MutexGuard<'_, Timeline> {
        let mut timeline = self.lock();
        timeline.expire(now);
        timeline
    }
}

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

/// The series the views' unit tests answer about.
#[cfg(test)]
mod tests {
    pub mod fixture;
}
