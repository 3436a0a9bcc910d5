//! The span path: what happens to one input message, without Kafka.
//!
//! ```text
//! bytes ─▶ decode ─▶ per-span facts ─▶ SLO counts ─▶ assemble ─▶ metrics ─▶ sample ─▶ encode ─▶ records
//!            └─ undecodable: a dead-letter record with the bytes unchanged
//! ```
//! [`SpanPath::message`] takes a message's bytes, its position and a [`Hold`] on it, and returns
//! in [`Effects`] the records to write (kept traces, dead letters, re-keyed spans) and the SLO
//! counts of its entry spans; service and dependency metrics are recorded in the shared
//! [`SignalStore`] as traces are released, and every decided trace leaves a summary (kept ones
//! their records too) in the shared [`TraceStore`]. [`SpanPath::expire`] releases the traces whose time has
//! come; [`SpanPath::drain`] and [`SpanPath::hand_over`] settle revoked partitions. Time is always
//! the caller's `now` (the injected clock); nothing here knows of Kafka clients.
//!
//! Invariants:
//! - every span's metrics are recorded before its trace is decided, so a decision never changes a
//!   metric (signals.md);
//! - every record carries a share of the hold of each message its spans came from; a dropped
//!   trace drops its holds: the delivery ledger sees work done exactly when it is;
//! - per-span facts (outcome, role, exclusion) are computed once, right after decoding.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus::IntCounter;

use crate::assemble::{DecisionReason, ReadyTrace, TraceBuffer};
use crate::clock::Nanos;
use crate::decision::Decision;
use crate::format::{adopt_segment_resources, DecodeStats, Decoder, Encoding};
use crate::format::{encode_spans, encode_trace};
use crate::investigate::traces::TraceSummary;
use crate::investigate::TraceStore;
use crate::model::{trace_id_hex, FastMap, Span};
use crate::position::{Hold, SourceRef};
pub use crate::record::Message;
use crate::record::{Destination, Record};
use crate::sampling::Sampler;
use crate::signals::{Exclusions, Lane, SignalStore};
use crate::slo::budget::{Counts, Seconds};
use crate::slo::engine::SloCounter;
use crate::telemetry::events::PipelineEvent;
use crate::telemetry::PipelineMetrics;

/// What the span path asks of delivery and of the SLO exchange.
#[derive(Default)]
pub struct Effects {
    /// Records to write; each carries the holds its acknowledgement releases.
    pub records: Vec<Record>,
    /// The SLO counts of the message's entry spans: (SLO index, bucket start, counts).
    pub slo_counts: Vec<(usize, Seconds, Counts)>,
}

/// Settings of the span path, parsed once from the configuration.
pub struct SpanPathSettings {
    pub decoder: Decoder,
    pub buffer: TraceBuffer,
    /// The process's sampler, shared by its workers: rates and reservoirs are per process.
    pub sampler: Arc<Mutex<Sampler>>,
    pub exclusions: Exclusions,
    /// What counts for which SLO (none without `[[slo]]`).
    pub slo_counter: Option<SloCounter>,
    /// The producer's `message.max.bytes`: larger traces are forwarded in several records.
    pub max_message_bytes: usize,
    /// Input topics whose messages are re-keyed by trace id first (input not keyed by trace).
    pub repartition_from: Vec<String>,
    /// The lane of the signal store's open points this path measures into: its worker's.
    pub lane: Lane,
}

/// The span path of one instance (see the module header).
pub struct SpanPath {
    decoder: Decoder,
    buffer: TraceBuffer,
    sampler: Arc<Mutex<Sampler>>,
    exclusions: Exclusions,
    slo_counter: Option<SloCounter>,
    max_message_bytes: usize,
    repartition_from: Vec<String>,
    lane: Lane,
    signals: Arc<Mutex<SignalStore>>,
    traces: Arc<Mutex<TraceStore>>,
    telemetry: Arc<PipelineMetrics>,
    spans: Vec<Span>,
    ready: Vec<ReadyTrace>,
    summaries: Vec<TraceSummary>,
    /// Records of the kept traces of the batch, held for the trace view.
    kept: Vec<(crate::model::TraceId, Vec<Bytes>)>,
    counters: DecisionCounters,
}

/// The per-trace counters, each looked up once per label set instead of once per trace
/// (`with_label_values` hashes the labels with SipHash every time). Bounded: the reasons are
/// fixed and the rules come from the configuration.
#[derive(Default)]
struct DecisionCounters {
    closed: FastMap<DecisionReason, IntCounter>,
    decided: FastMap<(bool, Arc<str>), IntCounter>,
}

impl DecisionCounters {
    fn closed(&mut self, telemetry: &PipelineMetrics, reason: DecisionReason) -> &IntCounter {
        self.closed.entry(reason).or_insert_with(|| telemetry.traces_closed.with_label_values(&[reason.as_str()]))
    }

    fn decided(&mut self, telemetry: &PipelineMetrics, decision: &Decision) -> &IntCounter {
        self.decided
            .entry((decision.keep, decision.rule.clone()))
            .or_insert_with(|| telemetry.traces_decided.with_label_values(&[decision.label(), &decision.rule]))
    }
}

impl SpanPath {
    pub fn new(
        settings: SpanPathSettings,
        signals: Arc<Mutex<SignalStore>>,
        traces: Arc<Mutex<TraceStore>>,
        telemetry: Arc<PipelineMetrics>,
    ) -> Self {
        Self {
            decoder: settings.decoder,
            buffer: settings.buffer,
            sampler: settings.sampler,
            exclusions: settings.exclusions,
            slo_counter: settings.slo_counter.filter(|c| !c.is_empty()),
            max_message_bytes: settings.max_message_bytes,
            repartition_from: settings.repartition_from,
            lane: settings.lane,
            signals,
            traces,
            telemetry,
            spans: Vec::new(),
            ready: Vec::new(),
            summaries: Vec::new(),
            kept: Vec::new(),
            counters: DecisionCounters::default(),
        }
    }

    /// One input message at time `now`; `hold` keeps it uncommitted while any work on it is left.
    pub fn message(&mut self, message: Message<'_>, hold: &Hold, now: Nanos, effects: &mut Effects) {
        let payload = Bytes::copy_from_slice(message.payload);
        let declared = message.encoding.and_then(|name| std::str::from_utf8(name).ok()).and_then(Encoding::named);
        match self.decoder.decode_at(message.topic, declared, &payload, &mut self.spans, now) {
            Ok(stats) if self.repartition_from.iter().any(|t| t == message.topic) => {
                self.telemetry
                    .emit(PipelineEvent::MessageDecoded { stats: &DecodeStats { encoding: None, ..stats } }, now);
                self.repartition(hold, effects);
            }
            Ok(stats) => {
                self.telemetry.emit(PipelineEvent::MessageDecoded { stats: &stats }, now);
                self.exclusions.judge(&mut self.spans);
                if let Some(counter) = &mut self.slo_counter {
                    counter.count(&self.spans, &mut effects.slo_counts);
                }
                self.buffer.insert(&mut self.spans, hold, now, &mut self.ready);
                self.release_ready(now, effects);
            }
            Err(error) => {
                let (topic, partition, offset) = (message.topic, message.partition, message.offset);
                self.telemetry.emit(PipelineEvent::MessageUndecodable { topic, partition, offset, error: &error }, now);
                effects.records.push(Record {
                    destination: Destination::DeadLetter,
                    partition: None,
                    key: message.key.map(Bytes::copy_from_slice).unwrap_or_default(),
                    payload,
                    dead_letter: Some((error.to_string(), format!("{topic}/{partition}/{offset}"))),
                    encoding: None,
                    holds: vec![hold.share()],
                    spans: 0,
                });
            }
        }
    }

    /// Releases the traces whose time has come at `now` (complete, timed out).
    pub fn expire(&mut self, now: Nanos, effects: &mut Effects) {
        self.buffer.expire(now, &mut self.ready);
        self.release_ready(now, effects);
    }

    /// Decides at once every buffered trace for which `affected(sources, root_present)` holds.
    pub fn drain(
        &mut self,
        reason: DecisionReason,
        affected: impl Fn(&[Hold], bool) -> bool,
        now: Nanos,
        effects: &mut Effects,
    ) {
        self.buffer.drain(reason, affected, &mut self.ready);
        self.release_ready(now, effects);
    }

    /// Removes, undecided, the traces wholly from sources matching `revoked`, returning their
    /// holds: the caller keeps them until the revoked partitions are committed.
    pub fn hand_over(&mut self, revoked: impl Fn(SourceRef) -> bool, now: Nanos) -> Vec<Hold> {
        let (traces, holds) = self.buffer.hand_over(revoked);
        self.telemetry.emit(PipelineEvent::TracesHandedOver { traces }, now);
        holds
    }

    pub fn buffered_traces(&self) -> usize {
        self.buffer.buffered_traces()
    }

    pub fn buffered_spans(&self) -> usize {
        self.buffer.buffered_spans()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.buffered_bytes()
    }

    /// Re-keys the decoded spans of an input message by trace id (kafka.md "Scale-out"): one
    /// record per trace to the repartition topic, in the arrival encoding.
    fn repartition(&mut self, hold: &Hold, effects: &mut Effects) {
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_unstable_by_key(|s| s.trace_id);
        for trace in spans.chunk_by(|a, b| a.trace_id == b.trace_id) {
            let key = Bytes::from(trace_id_hex(&trace[0].trace_id));
            for part in encode_spans(trace, None, self.max_message_bytes) {
                self.telemetry.spans_repartitioned.inc_by(part.spans as u64);
                effects.records.push(Record {
                    destination: Destination::Repartition,
                    partition: None,
                    key: key.clone(),
                    payload: part.payload,
                    dead_letter: None,
                    encoding: Some(trace[0].origin.encoding),
                    holds: vec![hold.share()],
                    spans: part.spans,
                });
            }
        }
        spans.clear();
        self.spans = spans;
    }

    /// Metrics for every released trace (one lock for the batch), then decisions and records.
    fn release_ready(&mut self, now: Nanos, effects: &mut Effects) {
        if self.ready.is_empty() {
            return;
        }
        {
            let mut store = self.signals.lock().expect("signal store lock");
            for trace in &mut self.ready {
                // X-Ray subsegments sent alone learn their service from their segment here.
                if adopt_segment_resources(&mut trace.spans) {
                    self.exclusions.judge(&mut trace.spans);
                }
                store.record_trace_in(self.lane, &trace.spans, now);
                store.hold_measured(self.lane, &trace.sources);
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        let sampler = self.sampler.clone();
        let mut sampler = sampler.lock().expect("sampler lock");
        for trace in ready.drain(..) {
            let decision = match &trace.prior {
                Some(prior) => {
                    self.telemetry.late_spans.with_label_values(&[prior.label()]).inc_by(trace.spans.len() as u64);
                    prior.clone()
                }
                None => {
                    let decision = sampler.decide(&trace, now);
                    self.buffer.remember(trace.trace_id, &decision);
                    self.summaries.push(TraceSummary::of(&trace.spans, &decision));
                    self.counters.closed(&self.telemetry, trace.reason).inc();
                    self.counters.decided(&self.telemetry, &decision).inc();
                    decision
                }
            };
            if !decision.keep {
                // Dropping the trace drops its holds: its messages are done with.
                continue;
            }
            let key = Bytes::from(trace_id_hex(&trace.trace_id));
            let parts = encode_trace(&trace.spans, &decision, self.max_message_bytes);
            self.kept.push((trace.trace_id, parts.iter().map(|p| p.payload.clone()).collect()));
            for part in parts {
                effects.records.push(Record {
                    destination: Destination::Output,
                    partition: None,
                    key: key.clone(),
                    payload: part.payload,
                    dead_letter: None,
                    encoding: None,
                    holds: trace.sources.iter().map(Hold::share).collect(),
                    spans: part.spans,
                });
            }
        }
        drop(sampler);
        self.ready = ready;
        if !self.summaries.is_empty() || !self.kept.is_empty() {
            self.traces.lock().expect("trace store lock").record(&mut self.summaries, &mut self.kept);
        }
    }
}

#[cfg(test)]
mod tests;
