//! Assembly: spans grouped by trace id in a bounded window until each trace is decided.
//!
//! [`TraceBuffer`] implements sampling.md "The assembly window". A buffered trace becomes a
//! [`ReadyTrace`] at the first of: root present and quiet for `decision_wait` (`complete`),
//! `max_trace_age` since its first span (`timeout`), `max_spans_per_trace` spans (`too_large`), the
//! store at `max_buffered_spans` (oldest first, `memory_pressure`), or an explicit drain
//! (`rebalance`, `shutdown`); or it is handed over undecided to its partition's next owner
//! ([`TraceBuffer::hand_over`]). Invariants:
//! - time is arrival time read from the caller (`now`), never span timestamps;
//! - the store never holds more than `max_buffered_spans` spans;
//! - a span whose trace was already decided is handed back at once with the cached decision
//!   (`ReadyTrace::prior`) while the [`DecisionCache`] remembers the trace;
//! - every span is handed back exactly once, with a [`Hold`] on each source (Kafka message) it
//!   came from: a buffered trace keeps its messages uncommitted, and whoever finishes the trace
//!   (dropping it, or forwarding it until acknowledged) drops the holds.
//!
//! Expiry uses two FIFO queues with lazy deletion: arrival times only grow, so queue order is
//! deadline order and each check is O(1) amortised.

mod cache;
mod config;

use std::collections::VecDeque;
use std::time::Duration;

pub use cache::DecisionCache;
pub use config::WindowConfig;

use crate::clock::Nanos;
use crate::decision::Decision;
use crate::model::{FastMap, Span, TraceId};
pub use crate::position::{Hold, SourceRef};

/// Limits of the window (`[window]` in the configuration).
#[derive(Clone, Debug)]
pub struct WindowLimits {
    pub decision_wait: Duration,
    pub max_trace_age: Duration,
    pub max_spans_per_trace: usize,
    pub max_buffered_spans: usize,
    /// Bytes of span encodings the buffered spans pin (see [`TraceBuffer::insert`]).
    pub max_buffered_bytes: usize,
    pub decision_cache_kept: usize,
    pub decision_cache_dropped: usize,
}

/// Why a trace left the window; the `reason` of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionReason {
    Complete,
    Timeout,
    TooLarge,
    MemoryPressure,
    Rebalance,
    Shutdown,
    /// Late spans of a trace decided earlier.
    Late,
}

impl DecisionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::MemoryPressure => "memory_pressure",
            Self::Rebalance => "rebalance",
            Self::Shutdown => "shutdown",
            Self::Late => "late",
        }
    }
}

/// A trace (or late spans of one) ready for metrics and a sampling decision.
#[derive(Debug)]
pub struct ReadyTrace {
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
    pub reason: DecisionReason,
    /// One hold on each source message the spans came from.
    pub sources: Vec<Hold>,
    pub root_present: bool,
    /// The earlier decision when these are late spans.
    pub prior: Option<Decision>,
}

struct BufferedTrace {
    serial: u64,
    spans: Vec<Span>,
    last_arrival: Nanos,
    root_present: bool,
    sources: Vec<Hold>,
    /// The insert batch that last touched this trace (to queue one quiet check per batch).
    batch: u64,
    /// Its spans' encodings, in bytes.
    bytes: usize,
}

/// The bounded in-memory store of undecided traces.
pub struct TraceBuffer {
    limits: WindowLimits,
    traces: FastMap<TraceId, BufferedTrace>,
    /// (first arrival, trace, serial) in arrival order: timeouts and memory pressure.
    by_age: VecDeque<(Nanos, TraceId, u64)>,
    /// (quiet deadline, trace, serial) for traces with a root: completion.
    by_quiet: VecDeque<(Nanos, TraceId, u64)>,
    buffered_spans: usize,
    /// The buffered spans' encodings, in bytes.
    buffered_bytes: usize,
    next_serial: u64,
    batch: u64,
    touched: Vec<TraceId>,
    cache: DecisionCache,
}

impl TraceBuffer {
    pub fn new(limits: WindowLimits) -> Self {
        let cache = DecisionCache::new(limits.decision_cache_kept, limits.decision_cache_dropped);
        Self {
            limits,
            traces: FastMap::default(),
            by_age: VecDeque::new(),
            by_quiet: VecDeque::new(),
            buffered_spans: 0,
            buffered_bytes: 0,
            next_serial: 0,
            batch: 0,
            touched: Vec::new(),
            cache,
        }
    }

    pub fn buffered_traces(&self) -> usize {
        self.traces.len()
    }

    pub fn buffered_spans(&self) -> usize {
        self.buffered_spans
    }

    /// The bytes of span encodings the buffered spans pin.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Remembers a decision so that late spans of the trace follow it.
    pub fn remember(&mut self, trace_id: TraceId, decision: &Decision) {
        self.cache.remember(trace_id, decision);
    }

    /// Adds the spans of one source message at time `now`, draining `spans`. Every buffered or
    /// ready trace that takes spans from it keeps a share of `source`. Each span counts its own
    /// encoding (`Span::raw`) towards `max_buffered_bytes`: that is what it pins, the decoder
    /// having copied a message's spans out of it (exact while a message's spans are all
    /// buffered; low by the bytes of those already released otherwise, which share their
    /// buffer). Traces decided by this insert (late spans, `too_large`, `memory_pressure`) are
    /// appended to `ready`.
    pub fn insert(&mut self, spans: &mut Vec<Span>, source: &Hold, now: Nanos, ready: &mut Vec<ReadyTrace>) {
        self.batch += 1;
        let position = source.source();
        let late_start = ready.len();
        for span in spans.drain(..) {
            let trace_id = span.trace_id;
            let bytes = span.raw.len();
            if !self.traces.contains_key(&trace_id) {
                if let Some(prior) = self.cache.lookup(&trace_id) {
                    if let Some(late) =
                        ready[late_start..].iter_mut().find(|r| r.prior.is_some() && r.trace_id == trace_id)
                    {
                        late.spans.push(span);
                    } else {
                        ready.push(ReadyTrace {
                            trace_id,
                            spans: vec![span],
                            reason: DecisionReason::Late,
                            sources: vec![source.share()],
                            root_present: false,
                            prior: Some(prior),
                        });
                    }
                    continue;
                }
            }
            while (self.buffered_spans >= self.limits.max_buffered_spans
                || self.buffered_bytes + bytes > self.limits.max_buffered_bytes)
                && self.evict_oldest(ready)
            {}
            let trace = self.traces.entry(trace_id).or_insert_with(|| {
                self.next_serial += 1;
                self.by_age.push_back((now, trace_id, self.next_serial));
                BufferedTrace {
                    serial: self.next_serial,
                    spans: Vec::new(),
                    last_arrival: now,
                    root_present: false,
                    sources: Vec::new(),
                    batch: 0,
                    bytes: 0,
                }
            });
            trace.root_present |= span.is_root();
            trace.last_arrival = now;
            trace.spans.push(span);
            trace.bytes += bytes;
            self.buffered_spans += 1;
            self.buffered_bytes += bytes;
            if trace.sources.last().is_none_or(|last| last.source() != position) {
                trace.sources.push(source.share());
            }
            if trace.batch != self.batch {
                trace.batch = self.batch;
                self.touched.push(trace_id);
            }
            if trace.spans.len() >= self.limits.max_spans_per_trace {
                self.take(&trace_id, DecisionReason::TooLarge, ready);
            }
        }
        let deadline = now.saturating_add(self.limits.decision_wait);
        for trace_id in self.touched.drain(..) {
            if let Some(trace) = self.traces.get(&trace_id) {
                if trace.root_present {
                    self.by_quiet.push_back((deadline, trace_id, trace.serial));
                }
            }
        }
    }

    /// Decides every trace whose deadline has passed at `now`.
    pub fn expire(&mut self, now: Nanos, ready: &mut Vec<ReadyTrace>) {
        let wait = self.limits.decision_wait;
        while let Some(&(deadline, trace_id, serial)) = self.by_quiet.front() {
            if deadline > now {
                break;
            }
            self.by_quiet.pop_front();
            let quiet = self
                .traces
                .get(&trace_id)
                .is_some_and(|t| t.serial == serial && t.last_arrival.saturating_add(wait) <= now);
            if quiet {
                self.take(&trace_id, DecisionReason::Complete, ready);
            }
        }
        let max_age = self.limits.max_trace_age;
        while let Some(&(first, trace_id, serial)) = self.by_age.front() {
            if first.saturating_add(max_age) > now {
                break;
            }
            self.by_age.pop_front();
            if self.traces.get(&trace_id).is_some_and(|t| t.serial == serial) {
                self.take(&trace_id, DecisionReason::Timeout, ready);
            }
        }
    }

    /// Decides every buffered trace for which `affected(sources, root_present)` holds.
    pub fn drain(
        &mut self,
        reason: DecisionReason,
        affected: impl Fn(&[Hold], bool) -> bool,
        ready: &mut Vec<ReadyTrace>,
    ) {
        let ids: Vec<TraceId> =
            self.traces.iter().filter(|(_, t)| affected(&t.sources, t.root_present)).map(|(id, _)| *id).collect();
        for trace_id in ids {
            self.take(&trace_id, reason, ready);
        }
        self.forget_queues_when_empty();
    }

    /// Hands traces over to the partitions' next owner: removes, undecided, every buffered trace
    /// whose sources all match `revoked`. Returns how many, and their holds: the caller keeps
    /// those until it has committed the revoked partitions, so the committed offset stays before
    /// their first span and the next owner reads them whole.
    pub fn hand_over(&mut self, revoked: impl Fn(SourceRef) -> bool) -> (usize, Vec<Hold>) {
        let ids: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, t)| t.sources.iter().all(|h| revoked(h.source())))
            .map(|(id, _)| *id)
            .collect();
        let mut holds = Vec::new();
        for trace_id in &ids {
            if let Some(trace) = self.traces.remove(trace_id) {
                self.buffered_spans -= trace.spans.len();
                self.buffered_bytes -= trace.bytes;
                holds.extend(trace.sources);
            }
        }
        self.forget_queues_when_empty();
        (ids.len(), holds)
    }

    fn forget_queues_when_empty(&mut self) {
        if self.traces.is_empty() {
            self.by_age.clear();
            self.by_quiet.clear();
        }
    }

    fn evict_oldest(&mut self, ready: &mut Vec<ReadyTrace>) -> bool {
        while let Some((_, trace_id, serial)) = self.by_age.pop_front() {
            if self.traces.get(&trace_id).is_some_and(|t| t.serial == serial) {
                self.take(&trace_id, DecisionReason::MemoryPressure, ready);
                return true;
            }
        }
        false
    }

    fn take(&mut self, trace_id: &TraceId, reason: DecisionReason, ready: &mut Vec<ReadyTrace>) {
        if let Some(trace) = self.traces.remove(trace_id) {
            self.buffered_spans -= trace.spans.len();
            self.buffered_bytes -= trace.bytes;
            ready.push(ReadyTrace {
                trace_id: *trace_id,
                spans: trace.spans,
                reason,
                sources: trace.sources,
                root_present: trace.root_present,
                prior: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
