//! Pipeline health metrics (signals.md "Pipeline health") and the registry `/metrics` renders;
//! every family `/metrics` shows is declared once, in [`families`].
//!
//! Counters are atomics: stages add their local counts once per message or batch, never per span.
//! What both logs and counts is a typed [`events::PipelineEvent`], emitted in one place.

pub mod events;
pub mod families;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use families::*;

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

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn opts(family: &FamilySpec) -> Opts {
    Opts::new(family.name, family.help)
}

pub(crate) fn counter_vec(registry: &Registry, family: &FamilySpec) -> IntCounterVec {
    debug_assert_eq!(family.kind, Kind::Counter, "{}", family.name);
    register(registry, IntCounterVec::new(opts(family), family.labels).expect("valid metric"))
}

fn counter(registry: &Registry, family: &FamilySpec) -> IntCounter {
    debug_assert!(family.kind == Kind::Counter && family.labels.is_empty(), "{}", family.name);
    register(registry, IntCounter::with_opts(opts(family)).expect("valid metric"))
}

fn gauge(registry: &Registry, family: &FamilySpec) -> IntGauge {
    debug_assert!(family.kind == Kind::Gauge && family.labels.is_empty(), "{}", family.name);
    register(registry, IntGauge::with_opts(opts(family)).expect("valid metric"))
}

fn gauge_vec(registry: &Registry, family: &FamilySpec) -> IntGaugeVec {
    debug_assert_eq!(family.kind, Kind::Gauge, "{}", family.name);
    register(registry, IntGaugeVec::new(opts(family), family.labels).expect("valid metric"))
}

impl PipelineMetrics {
    /// Spans received in every encoding.
    pub fn spans_received_total(&self) -> u64 {
        crate::model::Encoding::ALL.iter().map(|e| self.spans_received.with_label_values(&[e.as_str()]).get()).sum()
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self {
            spans_received: counter_vec(r, &SPANS_RECEIVED),
            spans_rejected: counter_vec(r, &SPANS_REJECTED),
            messages_rejected: counter_vec(r, &MESSAGES_REJECTED),
            messages_dead_lettered: counter(r, &MESSAGES_DEAD_LETTERED),
            buffered_traces: gauge(r, &BUFFERED_TRACES),
            buffered_spans: gauge(r, &BUFFERED_SPANS),
            buffered_bytes: gauge(r, &BUFFERED_BYTES),
            traces_decided: counter_vec(r, &TRACES_DECIDED),
            traces_closed: counter_vec(r, &TRACES_CLOSED),
            late_spans: counter_vec(r, &LATE_SPANS),
            group_view_bytes: counter_vec(r, &GROUP_VIEW_BYTES),
            series_partitions_owned: gauge(r, &SERIES_PARTITIONS_OWNED),
            series_points_restored: counter(r, &SERIES_POINTS_RESTORED),
            slo_counts_merged: counter_vec(r, &SLO_COUNTS_MERGED),
            traces_handed_over: counter(r, &TRACES_HANDED_OVER),
            spans_forwarded: counter(r, &SPANS_FORWARDED),
            spans_repartitioned: counter(r, &SPANS_REPARTITIONED),
            traces_forwarded: counter(r, &TRACES_FORWARDED),
            forward_retries: counter(r, &FORWARD_RETRIES),
            forward_failures: counter_vec(r, &FORWARD_FAILURES),
            transactions: counter_vec(r, &TRANSACTIONS),
            consumer_lag: gauge_vec(r, &CONSUMER_LAG),
            pending_messages: gauge(r, &PENDING_MESSAGES),
            consumption_paused: gauge(r, &CONSUMPTION_PAUSED),
            partitions_waiting: gauge(r, &PARTITIONS_WAITING),
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
