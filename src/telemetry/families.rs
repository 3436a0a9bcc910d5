//! Every metric family tracewarden exports on `/metrics`, declared once (signals.md, slo.md,
//! ingest.md, investigation.md): name, kind, labels, help, and whether `/api/pipeline` shows it.
//!
//! Registration (`PipelineMetrics`, `IngestMetrics`), the scrape-time collectors (signals, SLOs,
//! group quantiles), `/api/pipeline` and `tracewarden metrics` (which the dashboard check reads)
//! all take their facts from here; nothing else spells a metric's name or help.

use prometheus::proto::MetricType;

/// What a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    pub(crate) fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
            Kind::Histogram => MetricType::HISTOGRAM,
        }
    }
}

/// How `/api/pipeline` shows a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineField {
    /// Not shown.
    None,
    /// The sum over its series, under this key.
    Total(&'static str),
    /// One row per series (its labels and `value`), under this key.
    ByLabels(&'static str),
}

/// One metric family.
#[derive(Clone, Copy, Debug)]
pub struct FamilySpec {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    pub pipeline: PipelineField,
}

impl FamilySpec {
    /// The series names a scrape shows: a histogram's `_bucket`, `_sum` and `_count`, else its name.
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{}{s}", self.name)).collect(),
            _ => vec![self.name.to_string()],
        }
    }
}

/// The table: each family's constant and its facts; [`ALL`] lists them in this order.
macro_rules! families {
    ($( $(#[$doc:meta])* $id:ident: $kind:ident $name:literal [$($label:literal),*] $(pipeline $field:ident($key:literal))? = $help:literal; )+) => {
        $( $(#[$doc])* pub const $id: FamilySpec = FamilySpec {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($label),*],
            help: $help,
            pipeline: families!(@pipeline $($field($key))?),
        }; )+

        /// Every family, in table order.
        pub const ALL: &[FamilySpec] = &[$($id),+];
    };
    (@pipeline) => { PipelineField::None };
    (@pipeline $field:ident($key:literal)) => { PipelineField::$field($key) };
}

families! {
    // Pipeline health (signals.md "Pipeline health").
    SPANS_RECEIVED: Counter "tracewarden_spans_received_total" ["encoding"] pipeline Total("spansReceived")
        = "Spans decoded from input messages.";
    SPANS_REJECTED: Counter "tracewarden_spans_rejected_total" ["reason"] pipeline Total("spansRejected")
        = "Spans rejected by validation.";
    MESSAGES_REJECTED: Counter "tracewarden_messages_rejected_total" ["reason"]
        = "Input messages that could not be decoded (sent to the dead-letter topic).";
    MESSAGES_DEAD_LETTERED: Counter "tracewarden_messages_dead_lettered_total" [] pipeline Total("deadLetters")
        = "Messages written to the dead-letter topic (acknowledged).";
    BUFFERED_TRACES: Gauge "tracewarden_buffered_traces" [] pipeline Total("bufferedTraces")
        = "Traces in the assembly window.";
    BUFFERED_SPANS: Gauge "tracewarden_buffered_spans" [] pipeline Total("bufferedSpans")
        = "Spans in the assembly window.";
    BUFFERED_BYTES: Gauge "tracewarden_buffered_bytes" []
        = "Bytes of span encodings held in the assembly window (window.max_buffered_bytes).";
    TRACES_DECIDED: Counter "tracewarden_traces_decided_total" ["decision", "rule"] pipeline ByLabels("decisions")
        = "Sampling decisions, by decision and deciding rule.";
    TRACES_CLOSED: Counter "tracewarden_traces_closed_total" ["reason"]
        = "Traces leaving the assembly window, by trigger.";
    LATE_SPANS: Counter "tracewarden_late_spans_total" ["decision"]
        = "Spans whose trace was already decided.";
    GROUP_VIEW_BYTES: Counter "tracewarden_group_view_bytes_total" ["direction"]
        = "Bytes of the group view's internal points, rollups and changelog records this instance read or published.";
    SERIES_PARTITIONS_OWNED: Gauge "tracewarden_series_partitions_owned" []
        = "Partitions of kafka.points_topic whose series this instance owns (history and contributors).";
    SERIES_POINTS_RESTORED: Counter "tracewarden_series_points_restored_total" []
        = "10 s points restored from kafka.timeline_topic when this instance took partitions over.";
    SLO_COUNTS_MERGED: Counter "tracewarden_slo_counts_merged_total" ["result"]
        = "Source messages' SLO counts received by the SLOs' owner: new, or duplicate (a replay, ignored).";
    TRACES_HANDED_OVER: Counter "tracewarden_traces_handed_over_total" []
        = "Root-less traces of revoked partitions left undecided for the partition's next owner.";
    SPANS_FORWARDED: Counter "tracewarden_spans_forwarded_total" [] pipeline Total("spansForwarded")
        = "Spans written to the output topic (acknowledged).";
    SPANS_REPARTITIONED: Counter "tracewarden_spans_repartitioned_total" []
        = "Spans re-keyed by trace id to the repartition topic (input not keyed by trace id).";
    TRACES_FORWARDED: Counter "tracewarden_traces_forwarded_total" [] pipeline Total("tracesForwarded")
        = "Trace messages written to the output topic (acknowledged).";
    FORWARD_RETRIES: Counter "tracewarden_forward_retries_total" [] pipeline Total("forwardRetries")
        = "Records sent again after a retriable Kafka error (the group view's points are retried alike, not counted here).";
    FORWARD_FAILURES: Counter "tracewarden_forward_failures_total" ["destination"]
        = "Records abandoned after a permanent Kafka error.";
    TRANSACTIONS: Counter "tracewarden_transactions_total" ["result"]
        = "Kafka transactions (kafka.exactly_once) by result: committed or aborted.";
    CONSUMER_LAG: Gauge "tracewarden_consumer_lag" ["topic", "partition"] pipeline ByLabels("consumerLag")
        = "Messages behind the partition end.";
    PENDING_MESSAGES: Gauge "tracewarden_pending_messages" []
        = "Input messages read and not yet committable.";
    CONSUMPTION_PAUSED: Gauge "tracewarden_consumption_paused" []
        = "Workers whose consumption is paused because forwarding is not keeping up (0: none).";
    PARTITIONS_WAITING: Gauge "tracewarden_partitions_waiting_for_retry" []
        = "Partitions paused while a write holding their messages waits for its retry.";

    // The receivers (ingest.md).
    INGEST_SPANS: Counter "tracewarden_ingest_spans_total" ["receiver"]
        = "Spans the receivers wrote to Kafka.";
    INGEST_REQUESTS: Counter "tracewarden_ingest_requests_total" ["receiver", "result"]
        = "Receiver requests (datagrams for X-Ray) by result: ok, partial, rejected, unavailable.";
    INGEST_REJECTED: Counter "tracewarden_ingest_rejected_total" ["receiver", "reason"]
        = "Spans and datagrams the receivers refused, by reason.";
    INGEST_IN_FLIGHT_BYTES: Gauge "tracewarden_ingest_in_flight_bytes" []
        = "Bytes of received spans waiting for Kafka's acknowledgement (ingest.otlp.max_in_flight_bytes).";

    // Services (signals.md "Metrics").
    REQUESTS: Counter "tracewarden_requests_total" ["service", "operation", "environment"]
        = "Entry spans (requests served).";
    FAULTS: Counter "tracewarden_faults_total" ["service", "operation", "environment"]
        = "Entry spans with outcome fault (5xx, span status ERROR).";
    ERRORS: Counter "tracewarden_errors_total" ["service", "operation", "environment"]
        = "Entry spans with outcome error (4xx, throttles included).";
    THROTTLES: Counter "tracewarden_throttles_total" ["service", "operation", "environment"]
        = "Entry spans with outcome throttle (429, RESOURCE_EXHAUSTED).";
    LATENCY: Histogram "tracewarden_latency_seconds" ["service", "operation", "environment"]
        = "Latency of entry spans.";
    LATENCY_QUANTILE: Gauge "tracewarden_latency_quantile_seconds" ["service", "operation", "environment", "quantile"]
        = "HDR latency quantiles of entry spans over metrics.window, of the traces this instance measured (group-wide: tracewarden_group_latency_quantile_seconds).";
    AVAILABILITY: Gauge "tracewarden_availability_ratio" ["service", "operation", "environment"]
        = "1 - faults/requests of entry spans over metrics.window.";

    // Dependencies (signals.md "Metrics").
    DEPENDENCY_REQUESTS: Counter "tracewarden_dependency_requests_total"
        ["service", "operation", "remote_service", "remote_operation", "environment"]
        = "Dependency (CLIENT/PRODUCER) spans.";
    DEPENDENCY_FAULTS: Counter "tracewarden_dependency_faults_total"
        ["service", "operation", "remote_service", "remote_operation", "environment"]
        = "Dependency spans with outcome fault.";
    DEPENDENCY_ERRORS: Counter "tracewarden_dependency_errors_total"
        ["service", "operation", "remote_service", "remote_operation", "environment"]
        = "Dependency spans with outcome error (throttles included).";
    DEPENDENCY_THROTTLES: Counter "tracewarden_dependency_throttles_total"
        ["service", "operation", "remote_service", "remote_operation", "environment"]
        = "Dependency spans with outcome throttle.";
    DEPENDENCY_LATENCY: Histogram "tracewarden_dependency_latency_seconds"
        ["service", "operation", "remote_service", "remote_operation", "environment"]
        = "Latency of dependency spans.";
    SERIES_OVERFLOW: Counter "tracewarden_series_overflow_total" []
        = "Spans counted in a family's __overflow__ series because the family reached metrics.max_series.";
    SPANS_EXCLUDED: Counter "tracewarden_spans_excluded_total" ["rule"]
        = "Spans excluded from metrics by a [[metrics.exclude]] rule.";

    // Group-wide quantiles, from each series' owner (investigation.md "Group-wide quantiles").
    GROUP_LATENCY_QUANTILE: Gauge "tracewarden_group_latency_quantile_seconds"
        ["service", "operation", "environment", "quantile"]
        = "Latency quantiles of entry spans over metrics.window across the whole group, exposed by the series' owner only.";
    GROUP_DEPENDENCY_LATENCY_QUANTILE: Gauge "tracewarden_group_dependency_latency_quantile_seconds"
        ["service", "operation", "remote_service", "remote_operation", "environment", "quantile"]
        = "Latency quantiles of dependency calls over metrics.window across the whole group, exposed by the series' owner only.";

    // SLOs (slo.md "Metrics").
    SLO_ATTAINMENT: Gauge "tracewarden_slo_attainment_ratio" ["slo"]
        = "Attainment over the SLO window.";
    SLO_GOAL: Gauge "tracewarden_slo_goal_ratio" ["slo"]
        = "The SLO's goal.";
    SLO_ERROR_BUDGET: Gauge "tracewarden_slo_error_budget_total" ["slo", "unit"]
        = "The error budget (requests, or seconds for period budgeting).";
    SLO_ERROR_BUDGET_REMAINING: Gauge "tracewarden_slo_error_budget_remaining" ["slo", "unit"]
        = "The error budget left (may be negative).";
    SLO_ERROR_BUDGET_REMAINING_RATIO: Gauge "tracewarden_slo_error_budget_remaining_ratio" ["slo"]
        = "The share of the error budget left.";
    SLO_BURN_RATE: Gauge "tracewarden_slo_burn_rate" ["slo", "window"]
        = "Burn rate over each alert window.";
    SLO_STATUS: Gauge "tracewarden_slo_status" ["slo", "status"]
        = "1 for the SLO's current status, 0 for the others.";
    SLO_ALERT_FIRING: Gauge "tracewarden_slo_alert_firing" ["slo", "tier"]
        = "1 while the tier's burn-rate alert fires.";
}

/// The family of a name, for look-ups by what a scrape shows.
pub fn named(name: &str) -> Option<&'static FamilySpec> {
    ALL.iter().find(|f| f.name == name)
}

/// The table as JSON (`tracewarden metrics --json`): one object per family.
pub fn to_json() -> serde_json::Value {
    ALL.iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "type": f.kind.as_str(),
                "labels": f.labels,
                "help": f.help,
                "series": f.series_names(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        for f in ALL {
            assert_eq!(ALL.iter().filter(|g| g.name == f.name).count(), 1, "{} twice", f.name);
            assert!(f.name.starts_with("tracewarden_"), "{}", f.name);
            // Not the converse: slo.md names a gauge `tracewarden_slo_error_budget_total`.
            assert!(f.kind != Kind::Counter || f.name.ends_with("_total"), "{}: a counter ends in _total", f.name);
            assert!(f.help.ends_with('.'), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Histogram,
                f.name.ends_with("_seconds") && !f.name.contains("quantile"),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn pipeline_keys_are_unique() {
        let keys: Vec<&str> = ALL
            .iter()
            .filter_map(|f| match f.pipeline {
                PipelineField::None => None,
                PipelineField::Total(key) | PipelineField::ByLabels(key) => Some(key),
            })
            .collect();
        for key in &keys {
            assert_eq!(keys.iter().filter(|k| *k == key).count(), 1, "{key}");
        }
        assert_eq!(keys.len(), 10, "the fields /api/pipeline has answered since it exists");
    }

    #[test]
    fn a_histogram_shows_bucket_sum_and_count() {
        assert_eq!(
            LATENCY.series_names(),
            [
                "tracewarden_latency_seconds_bucket",
                "tracewarden_latency_seconds_sum",
                "tracewarden_latency_seconds_count"
            ]
        );
        assert_eq!(REQUESTS.series_names(), ["tracewarden_requests_total"]);
    }
}
