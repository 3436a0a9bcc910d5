//! Investigation (investigation.md): what lets a person go from a bad figure to its cause — the
//! trace index ([`traces`]) and the spans of kept traces ([`held`]); the service map ([`map`]),
//! top contributors ([`contributors`]) and history ([`history`]), all answered from the
//! group-wide [`timeline`] of 10 s points.
//!
//! [`GroupTimeline`] is the one way points reach the timeline: [`GroupTimeline::refresh`] takes
//! what the signal store measured since the last refresh, merges it, and keeps a copy for the
//! snapshot exchange to publish, so every point is merged here once and published once.

mod config;
pub mod contributors;
pub mod exchange;
pub mod held;
pub mod history;
pub mod map;
pub mod query;
pub mod series;
pub mod snapshot;
pub mod timeline;
pub mod traces;

pub use config::InvestigationConfig;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::clock::Nanos;
use crate::model::TraceId;
use crate::signals::{FlushedPoint, SignalStore};
use timeline::Timeline;

/// Points flushed here and not yet published, at most: beyond, the oldest are not published
/// (the exchange is down or behind; they still count here).
const MAX_UNPUBLISHED_POINTS: usize = 200_000;

/// The timeline shared by the HTTP answers and the snapshot exchange (module docs).
pub struct GroupTimeline {
    timeline: Mutex<Timeline>,
    /// Local points waiting to be published; `None` when nothing publishes them.
    unpublished: Mutex<Option<Vec<FlushedPoint>>>,
    /// The configured contributor dimensions, in the order of every profile's values.
    pub dimensions: Arc<[Arc<str>]>,
}

impl GroupTimeline {
    pub fn new(timeline: Timeline, dimensions: Arc<[Arc<str>]>) -> Self {
        Self { timeline: Mutex::new(timeline), unpublished: Mutex::new(None), dimensions }
    }

    /// From now on, keeps the points flushed here for [`GroupTimeline::take_unpublished`].
    pub fn start_publishing(&self) {
        self.unpublished.lock().expect("unpublished lock").get_or_insert_with(Vec::new);
    }

    /// Merges what `signals` measured since the last refresh and drops what aged out at `now`;
    /// returns the timeline, locked, for an answer.
    pub fn refresh(&self, signals: &Mutex<SignalStore>, now: Nanos) -> MutexGuard<'_, Timeline> {
        let flushed = signals.lock().expect("signal store lock").flush_points();
        let mut timeline = self.timeline.lock().expect("timeline lock");
        timeline.merge(&flushed, now);
        timeline.expire(now);
        if let Some(unpublished) = self.unpublished.lock().expect("unpublished lock").as_mut() {
            unpublished.extend(flushed);
            let excess = unpublished.len().saturating_sub(MAX_UNPUBLISHED_POINTS);
            unpublished.drain(..excess);
        }
        timeline
    }

    /// The local points to publish.
    pub fn take_unpublished(&self) -> Vec<FlushedPoint> {
        self.unpublished.lock().expect("unpublished lock").as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Merges another instance's points.
    pub fn merge_remote(&self, points: &[FlushedPoint], now: Nanos) {
        self.timeline.lock().expect("timeline lock").merge(points, now);
    }
}

/// What the span path leaves for `/api/traces`: summaries of every decided trace and the records
/// of the most recent kept ones; shared behind one lock, taken once per batch of decided traces.
pub struct TraceStore {
    pub index: traces::TraceIndex,
    pub held: held::HeldTraces,
    /// Summaries decided here and not yet published; `None` when nothing publishes them.
    unpublished: Option<std::collections::VecDeque<traces::TraceSummary>>,
    max_unpublished: usize,
}

impl TraceStore {
    pub fn new(config: &InvestigationConfig) -> Self {
        Self {
            index: traces::TraceIndex::new(config.max_trace_summaries),
            held: held::HeldTraces::new(config.max_trace_bytes),
            unpublished: None,
            max_unpublished: config.max_trace_summaries,
        }
    }

    /// From now on, keeps the summaries recorded here for [`TraceStore::take_unpublished`].
    pub fn start_publishing(&mut self) {
        self.unpublished.get_or_insert_with(Default::default);
    }

    /// The summaries recorded here since the last call (at most `max_trace_summaries`, the
    /// newest).
    pub fn take_unpublished(&mut self) -> Vec<traces::TraceSummary> {
        self.unpublished.as_mut().map(|u| std::mem::take(u).into()).unwrap_or_default()
    }

    /// Records a batch of decided traces: their summaries, and the records of the kept ones.
    pub fn record(&mut self, summaries: &mut Vec<traces::TraceSummary>, kept: &mut Vec<(TraceId, Vec<Bytes>)>) {
        for summary in summaries.drain(..) {
            if let Some(unpublished) = self.unpublished.as_mut() {
                if unpublished.len() >= self.max_unpublished {
                    unpublished.pop_front();
                }
                unpublished.push_back(summary.clone());
            }
            self.index.insert(summary);
        }
        for (trace_id, payloads) in kept.drain(..) {
            self.held.hold(trace_id, &payloads);
        }
    }
}
