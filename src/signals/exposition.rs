//! Prometheus exposition of the signal store, and the per-service summary of `/api/services`.
//!
//! [`SignalCollector`] is a `prometheus::core::Collector`: at each scrape it takes the store's lock
//! once and renders every series of signals.md with the exact names and labels there.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use super::{DependencyKey, Family, SeriesKey, ServiceKey, SignalStore};
use crate::clock::SharedClock;
use crate::telemetry::families::{self, FamilySpec};

/// Renders the store at scrape time.
pub struct SignalCollector {
    store: Arc<Mutex<SignalStore>>,
    clock: SharedClock,
    descs: Vec<Desc>,
}

/// The descriptor of a family, from its declaration.
pub(crate) fn desc(spec: &FamilySpec) -> Desc {
    Desc::new(
        spec.name.into(),
        spec.help.into(),
        spec.labels.iter().map(|s| s.to_string()).collect(),
        Default::default(),
    )
    .expect("valid metric descriptor")
}

/// The counters and histogram of a service series, in the order [`render_basic`] writes them.
const SERVICE_FAMILIES: [FamilySpec; 5] =
    [families::REQUESTS, families::FAULTS, families::ERRORS, families::THROTTLES, families::LATENCY];

const DEPENDENCY_FAMILIES: [FamilySpec; 5] = [
    families::DEPENDENCY_REQUESTS,
    families::DEPENDENCY_FAULTS,
    families::DEPENDENCY_ERRORS,
    families::DEPENDENCY_THROTTLES,
    families::DEPENDENCY_LATENCY,
];

impl SignalCollector {
    pub fn new(store: Arc<Mutex<SignalStore>>, clock: SharedClock) -> Self {
        let descs = SERVICE_FAMILIES
            .iter()
            .chain(&DEPENDENCY_FAMILIES)
            .chain([
                &families::LATENCY_QUANTILE,
                &families::AVAILABILITY,
                &families::SERIES_OVERFLOW,
                &families::SPANS_EXCLUDED,
            ])
            .map(desc)
            .collect();
        Self { store, clock, descs }
    }
}

pub(crate) fn family(spec: &FamilySpec, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(spec.name.to_string());
    f.set_help(spec.help.to_string());
    f.set_field_type(spec.kind.metric_type());
    f.set_metric(metrics);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(n, v)| {
            let mut l = LabelPair::default();
            l.set_name(n.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn counter(label_pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(labels(label_pairs));
    m.set_counter(c);
    m
}

pub(crate) fn gauge(label_pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::from_gauge({
        let mut g = Gauge::default();
        g.set_value(value);
        g
    });
    m.set_label(labels(label_pairs));
    m
}

fn histogram(label_pairs: &[(&str, &str)], bounds: &[f64], counts: &[u64], sum: f64) -> Metric {
    let mut cumulative = 0;
    let buckets = bounds
        .iter()
        .zip(counts)
        .map(|(&le, &n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(counts.iter().sum());
    h.set_sample_sum(sum);
    let mut m = Metric::from_label(labels(label_pairs));
    m.set_histogram(h);
    m
}

pub(crate) trait LabelSet {
    fn pairs(&self) -> Vec<(&'static str, &str)>;
}

impl LabelSet for ServiceKey {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![("service", &self.service), ("operation", &self.operation), ("environment", &self.environment)]
    }
}

impl LabelSet for DependencyKey {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("service", &self.service),
            ("operation", &self.operation),
            ("remote_service", &self.remote_service),
            ("remote_operation", &self.remote_operation),
            ("environment", &self.environment),
        ]
    }
}

/// Counters and histograms of a family, in the order of `specs` (the first five of each table).
fn render_basic<K: SeriesKey + LabelSet>(
    family_data: &Family<K>,
    bounds: &[f64],
    specs: &[FamilySpec],
) -> Vec<MetricFamily> {
    let mut keys: Vec<&K> = family_data.series.keys().collect();
    keys.sort();
    let mut out: Vec<Vec<Metric>> = vec![Vec::new(); 5];
    for key in keys {
        let s = &family_data.series[key];
        let pairs = key.pairs();
        out[0].push(counter(&pairs, s.requests));
        out[1].push(counter(&pairs, s.faults));
        out[2].push(counter(&pairs, s.errors));
        out[3].push(counter(&pairs, s.throttles));
        out[4].push(histogram(&pairs, bounds, &s.bucket_counts, s.latency_sum_seconds));
    }
    specs.iter().zip(out).map(|(spec, metrics)| family(spec, metrics)).collect()
}

impl Collector for SignalCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = self.clock.now();
        let mut store = self.store.lock().expect("signal store lock");
        // The encoder adds the `+Inf` bucket (= the sample count) itself.
        let bounds = store.settings.latency_buckets.clone();
        let mut rendered = render_basic(&store.services, &bounds, &SERVICE_FAMILIES);
        rendered.extend(render_basic(&store.dependencies, &bounds, &DEPENDENCY_FAMILIES));

        let mut quantiles = Vec::new();
        let mut availability = Vec::new();
        let mut keys: Vec<ServiceKey> = store.services.series.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let snapshot = store.services.series.get_mut(&key).expect("key listed").window.snapshot(now);
            let pairs = key.pairs();
            for (q, seconds) in &snapshot.quantiles {
                let q_text = q.to_string();
                let mut with_q = pairs.clone();
                with_q.push(("quantile", &q_text));
                quantiles.push(gauge(&with_q, *seconds));
            }
            if let Some(a) = snapshot.availability() {
                availability.push(gauge(&pairs, a));
            }
        }
        rendered.push(family(&families::LATENCY_QUANTILE, quantiles));
        rendered.push(family(&families::AVAILABILITY, availability));
        rendered.push(family(&families::SERIES_OVERFLOW, vec![counter(&[], store.overflowed)]));
        let excluded = store.excluded.iter().map(|(rule, n)| counter(&[("rule", rule)], *n)).collect();
        rendered.push(family(&families::SPANS_EXCLUDED, excluded));
        rendered.retain(|f| !f.get_metric().is_empty());
        drop(store);
        rendered
    }
}

/// The content type of [`render_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

fn label_text(labels: &[LabelPair], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|l| format!("{}=\"{}\"", l.name(), escape(l.value()))).collect();
    if let Some((name, value)) = extra {
        parts.push(format!("{name}=\"{}\"", escape(value)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Exemplars of one histogram series, found by its label values.
type ExemplarIndex<'a> = std::collections::HashMap<Vec<&'a str>, &'a [Option<super::Exemplar>]>;

fn exemplar_index<'a, K: SeriesKey + LabelSet>(family: &'a Family<K>) -> ExemplarIndex<'a> {
    family
        .series
        .iter()
        .map(|(key, series)| (key.pairs().into_iter().map(|(_, v)| v).collect(), series.exemplars.as_slice()))
        .collect()
}

/// Renders gathered families in the OpenMetrics text format, with the trace id of the latest
/// request of each latency bucket as its exemplar.
pub fn render_openmetrics(families: &[MetricFamily], store: &SignalStore) -> String {
    use std::fmt::Write;
    let services = exemplar_index(&store.services);
    let dependencies = exemplar_index(&store.dependencies);
    let mut out = String::new();
    for family in families {
        let name = family.name();
        let kind = family.get_field_type();
        let base = match kind {
            MetricType::COUNTER => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            _ => "unknown",
        };
        let _ = writeln!(out, "# TYPE {base} {type_name}");
        let _ = writeln!(out, "# HELP {base} {}", escape(family.help()));
        let exemplars = match name {
            "tracewarden_latency_seconds" => Some(&services),
            "tracewarden_dependency_latency_seconds" => Some(&dependencies),
            _ => None,
        };
        for metric in family.get_metric() {
            let labels = metric.get_label();
            match kind {
                MetricType::COUNTER => {
                    let _ = writeln!(
                        out,
                        "{base}_total{} {}",
                        label_text(labels, None),
                        number(metric.get_counter().get_value())
                    );
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let values: Vec<&str> = labels.iter().map(|l| l.value()).collect();
                    let series_exemplars = exemplars.and_then(|index| index.get(&values));
                    let mut buckets: Vec<(f64, u64)> =
                        h.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
                    if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                        buckets.push((f64::INFINITY, h.get_sample_count()));
                    }
                    for (i, (le, count)) in buckets.iter().enumerate() {
                        let le_text = number(*le);
                        let _ = write!(out, "{base}_bucket{} {count}", label_text(labels, Some(("le", &le_text))));
                        if let Some(Some(e)) = series_exemplars.and_then(|ex| ex.get(i)) {
                            let _ = write!(
                                out,
                                " # {{trace_id=\"{}\"}} {} {:.3}",
                                hex::encode(e.trace_id),
                                number(e.seconds),
                                e.at.0 as f64 / 1e9
                            );
                        }
                        out.push('\n');
                    }
                    let _ = writeln!(out, "{base}_count{} {}", label_text(labels, None), h.get_sample_count());
                    let _ = writeln!(out, "{base}_sum{} {}", label_text(labels, None), number(h.get_sample_sum()));
                }
                _ => {
                    let _ =
                        writeln!(out, "{base}{} {}", label_text(labels, None), number(metric.get_gauge().get_value()));
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}
