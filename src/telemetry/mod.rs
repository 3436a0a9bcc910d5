//! Pipeline health metrics (signals.md "Pipeline health") and the registry `/metrics` renders.
//!
//! Counters are atomics: stages add their local counts once per message or batch, never per span.
//! What both logs and counts is a typed [`events::PipelineEvent`], emitted in one place.

pub mod events;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct PipelineMetrics {
    pub registry: Registry,
    pub spans_received: IntCounterVec,
    pub spans_rejected: IntCounterVec,
    pub messages_rejected: IntCounterVec,
    pub messages_dead_lettered: IntCounter,
    pub buffered_traces: IntGauge,
    pub buffered_spans: IntGauge,
    pub buffered_bytes: IntGauge,
    pub traces_decided: IntCounterVec,
    pub traces_closed: IntCounterVec,
    pub late_spans: IntCounterVec,
    pub traces_handed_over: IntCounter,
    pub slo_counts_merged: IntCounterVec,
    pub spans_forwarded: IntCounter,
    pub spans_repartitioned: IntCounter,
    pub traces_forwarded: IntCounter,
    pub forward_retries: IntCounter,
    pub forward_failures: IntCounterVec,
    pub transactions: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub pending_messages: IntGauge,
    pub consumption_paused: IntGauge,
    pub partitions_waiting: IntGauge,
    pub group_view_bytes: IntCounterVec,
    pub series_partitions_owned: IntGauge,
    pub series_points_restored: IntCounter,
    /// The rate limiters of repeated warnings.
    events: events::EventLog,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl PipelineMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self {
            spans_received: counter_vec(
                r,
                "tracewarden_spans_received_total",
                "Spans decoded from input messages.",
                &["encoding"],
            ),
            spans_rejected: counter_vec(
                r,
                "tracewarden_spans_rejected_total",
                "Spans rejected by validation.",
                &["reason"],
            ),
            messages_rejected: counter_vec(
                r,
                "tracewarden_messages_rejected_total",
                "Input messages that could not be decoded (sent to the dead-letter topic).",
                &["reason"],
            ),
            messages_dead_lettered: counter(
                r,
                "tracewarden_messages_dead_lettered_total",
                "Messages written to the dead-letter topic (acknowledged).",
            ),
            buffered_traces: gauge(r, "tracewarden_buffered_traces", "Traces in the assembly window."),
            buffered_spans: gauge(r, "tracewarden_buffered_spans", "Spans in the assembly window."),
            buffered_bytes: gauge(
                r,
                "tracewarden_buffered_bytes",
                "Bytes of span encodings held in the assembly window (window.max_buffered_bytes).",
            ),
            traces_decided: counter_vec(
                r,
                "tracewarden_traces_decided_total",
                "Sampling decisions, by decision and deciding rule.",
                &["decision", "rule"],
            ),
            traces_closed: counter_vec(
                r,
                "tracewarden_traces_closed_total",
                "Traces leaving the assembly window, by trigger.",
                &["reason"],
            ),
            late_spans: counter_vec(
                r,
                "tracewarden_late_spans_total",
                "Spans whose trace was already decided.",
                &["decision"],
            ),
            group_view_bytes: counter_vec(
                r,
                "tracewarden_group_view_bytes_total",
                "Bytes of the group view's internal points, rollups and changelog records this instance read or published.",
                &["direction"],
            ),
            series_partitions_owned: gauge(
                r,
                "tracewarden_series_partitions_owned",
                "Partitions of kafka.points_topic whose series this instance owns (history and contributors).",
            ),
            series_points_restored: counter(
                r,
                "tracewarden_series_points_restored_total",
                "10 s points restored from kafka.timeline_topic when this instance took partitions over.",
            ),
            slo_counts_merged: counter_vec(
                r,
                "tracewarden_slo_counts_merged_total",
                "Source messages' SLO counts received by the SLOs' owner: new, or duplicate (a replay, ignored).",
                &["result"],
            ),
            traces_handed_over: counter(
                r,
                "tracewarden_traces_handed_over_total",
                "Root-less traces of revoked partitions left undecided for the partition's next owner.",
            ),
            spans_forwarded: counter(
                r,
                "tracewarden_spans_forwarded_total",
                "Spans written to the output topic (acknowledged).",
            ),
            spans_repartitioned: counter(
                r,
                "tracewarden_spans_repartitioned_total",
                "Spans re-keyed by trace id to the repartition topic (input not keyed by trace id).",
            ),
            traces_forwarded: counter(
                r,
                "tracewarden_traces_forwarded_total",
                "Trace messages written to the output topic (acknowledged).",
            ),
            forward_retries: counter(
                r,
                "tracewarden_forward_retries_total",
                "Records sent again after a retriable Kafka error (the group view's points are retried alike, not counted here).",
            ),
            forward_failures: counter_vec(
                r,
                "tracewarden_forward_failures_total",
                "Records abandoned after a permanent Kafka error.",
                &["destination"],
            ),
            transactions: counter_vec(
                r,
                "tracewarden_transactions_total",
                "Kafka transactions (kafka.exactly_once) by result: committed or aborted.",
                &["result"],
            ),
            consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new("tracewarden_consumer_lag", "Messages behind the partition end."),
                    &["topic", "partition"],
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            pending_messages: gauge(r, "tracewarden_pending_messages", "Input messages read and not yet committable."),
            consumption_paused: gauge(
                r,
                "tracewarden_consumption_paused",
                "Workers whose consumption is paused because forwarding is not keeping up (0: none).",
            ),
            partitions_waiting: gauge(
                r,
                "tracewarden_partitions_waiting_for_retry",
                "Partitions paused while a write holding their messages waits for its retry.",
            ),
            registry,
            events: events::EventLog::default(),
        }
    }
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The one rate limiter of repeated warnings: the first occurrence is logged, later ones at most
/// once per `every` (of the injected clock), each saying how many were not logged in between.
#[derive(Clone, Debug)]
pub struct RateLimitedWarning {
    every: std::time::Duration,
    last: Option<crate::clock::Nanos>,
    suppressed: u64,
}

impl RateLimitedWarning {
    pub fn new(every: std::time::Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    /// `Some(occurrences not logged since the last logged one)` when this occurrence is to be
    /// logged, else `None` (and it is counted as suppressed).
    pub fn admit(&mut self, now: crate::clock::Nanos) -> Option<u64> {
        match self.last {
            Some(last) if now.since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
