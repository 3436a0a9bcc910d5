//! Signals: service and dependency metrics computed from every span of every decided trace.
//!
//! [`SignalStore::record_trace`] is the one entry point; it runs before the sampling decision, so
//! sampling never changes a metric. Semantics are those of signals.md:
//! - entry spans → service series `(service, operation, environment)`;
//! - CLIENT/PRODUCER spans → dependency series, with the remote side resolved through the
//!   assembled trace when it holds the callee's SERVER/CONSUMER span;
//! - counters are exact; latency goes to classic buckets (aggregatable) and to an HDR window
//!   ([`LatencyWindow`]) for quantiles over `metrics.window`;
//! - each family holds at most `max_series` series plus one overflow series whose every label is
//!   `__overflow__`: spans that would need a series past the cap are counted there, never
//!   dropped; series idle for `series_ttl` are removed.
//!
//! The store is owned by the pipeline worker and shared behind a mutex locked once per batch of
//! traces; exposition ([`exposition`]) and the JSON API read it under the same lock.

mod config;
pub mod contributors;
pub mod exception;
pub mod exposition;
pub mod point;
pub mod sketch;
mod window;

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use config::MetricsConfig;
pub use window::{LatencyWindow, WindowSnapshot, WindowTotals, QUANTILES};

use contributors::{AttributeProfiler, Profile, ProfileCache};
pub use point::Lane;
use point::{step_of, OpenPoints, Point};
use sketch::Bucket;

use crate::clock::Nanos;
use crate::format::{Interner, QueueScratch};
use crate::matcher::{AttributeCondition, Wildcard};
use crate::model::{Outcome, RemoteKind, Role, Span, SpanId};
use crate::position::Hold;

/// The maps looked up on every span: keyed by labels and ids from the input, so seeded per map
/// (foldhash: a fraction of SipHash's cost; every such map is bounded, by `max_series` or by a
/// trace's spans, so a flood of colliding keys can only slow, not grow, it).
type SpanMap<K, V> = crate::model::FastMap<K, V>;

/// Every label of a family's overflow series.
pub const OVERFLOW_LABEL: &str = "__overflow__";
pub const UNKNOWN_OPERATION: &str = "unknown_operation";
pub const UNKNOWN_REMOTE: &str = "unknown_remote";

/// One `[[metrics.exclude]]` rule: spans it matches are counted only in
/// `tracewarden_spans_excluded_total{rule}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeRule {
    /// The rule's name (label `rule`). Required.
    pub name: String,
    /// Service name wildcard (`*`, `?`); absent = any service.
    pub service: Option<Wildcard>,
    /// Operation wildcard; absent = any operation.
    pub operation: Option<Wildcard>,
    /// Attribute condition, for example `{ key = "user_agent.original", matches = "ELB-HealthChecker*" }`.
    pub attribute: Option<AttributeCondition>,
}

impl ExcludeRule {
    pub(crate) fn matches(&self, span: &Span) -> bool {
        self.service.as_ref().is_none_or(|w| w.matches(span.service()))
            && self.operation.as_ref().is_none_or(|w| w.matches(&span.operation))
            && self.attribute.as_ref().is_none_or(|a| a.holds(span))
    }
}

/// The `[[metrics.exclude]]` rules: each span's verdict is worked out once, by [`Exclusions::judge`]
/// on the span path, and read from [`SpanFacts::excluded`](crate::model::SpanFacts) by the
/// metrics and the SLO counts.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    rules: Vec<ExcludeRule>,
}

impl Exclusions {
    pub fn new(rules: &[ExcludeRule]) -> Self {
        Self { rules: rules.to_vec() }
    }

    /// Marks the measured spans (entry and dependency) that a rule excludes.
    pub fn judge(&self, spans: &mut [Span]) {
        if self.rules.is_empty() {
            return;
        }
        for span in spans.iter_mut().filter(|s| s.facts.role != Role::Internal) {
            span.facts.excluded = self.rules.iter().position(|rule| rule.matches(span)).map(|i| i as u16);
        }
    }
}

/// The resource attributes that name an instance, the first present winning: what exceptions
/// and deployments list as `instances`.
pub const INSTANCE_ATTRIBUTES: [&str; 3] = ["service.instance.id", "k8s.pod.name", "host.name"];

/// Settings of the store (`[metrics]`).
#[derive(Clone, Debug)]
pub struct SignalSettings {
    pub window: Duration,
    pub latency_buckets: Vec<f64>,
    pub max_series: usize,
    pub series_ttl: Duration,
    pub exclude: Vec<ExcludeRule>,
    /// Resource attributes whose values each series' contributors are kept by
    /// (`investigation.dimensions`); none keeps no contributors.
    pub dimensions: Vec<String>,
    /// Span attributes whose values compare sets selection against baseline by
    /// (`investigation.compare_attributes`); none keeps no attribute tables.
    pub compare_attributes: Vec<String>,
    /// Resource profiles (and attribute profiles) tracked exactly per series and point
    /// (`investigation.max_values_per_dimension`).
    pub max_values_per_dimension: usize,
}

/// Labels of a service series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub service: Arc<str>,
    pub operation: Arc<str>,
    pub environment: Arc<str>,
}

/// Labels of a dependency series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DependencyKey {
    pub service: Arc<str>,
    pub operation: Arc<str>,
    pub remote_service: Arc<str>,
    pub remote_operation: Arc<str>,
    pub environment: Arc<str>,
}

/// A service's messages through a queue (investigation.md "Queues on the map"): those it
/// publishes to the queue (its PRODUCER spans: their outcome and duration), or those the queue
/// delivers to it (its CONSUMER spans that follow a producer span of the trace: their outcome,
/// and the delay from the start of the publish to the start of the consumption).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub service: Arc<str>,
    /// `{messaging.system}:{messaging.destination.name}`.
    pub queue: Arc<str>,
    pub environment: Arc<str>,
    /// Deliveries to `service` (else publishes by it).
    pub deliveries: bool,
}

/// Which series a point belongs to: a service's operation, a dependency, the requests entering
/// a service from outside (the map's client edge), or a service's messages through a queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesId {
    Service(ServiceKey),
    Dependency(DependencyKey),
    Queue(QueueKey),
    Client { service: Arc<str>, environment: Arc<str> },
}

/// A point handed over by [`SignalStore::flush_points`].
#[derive(Debug)]
pub struct FlushedPoint {
    pub series: SeriesId,
    /// For dependency series: what the remote side is.
    pub remote_kind: RemoteKind,
    /// The 10 s step ([`point::step_of`]).
    pub step: u64,
    pub point: Point,
}

/// Keys of a family that has an overflow series.
pub trait SeriesKey: Clone + Eq + Hash + Ord {
    /// The key of the family's overflow series: every label `overflow`.
    fn overflow(overflow: &Arc<str>) -> Self;
}

impl SeriesKey for ServiceKey {
    fn overflow(overflow: &Arc<str>) -> Self {
        Self { service: overflow.clone(), operation: overflow.clone(), environment: overflow.clone() }
    }
}

impl SeriesKey for DependencyKey {
    fn overflow(overflow: &Arc<str>) -> Self {
        Self {
            service: overflow.clone(),
            operation: overflow.clone(),
            remote_service: overflow.clone(),
            remote_operation: overflow.clone(),
            environment: overflow.clone(),
        }
    }
}

/// Everything measured for one series.
pub struct Series {
    pub requests: u64,
    pub faults: u64,
    pub errors: u64,
    pub throttles: u64,
    /// Per-bucket (not cumulative) counts of the classic histogram; last = +Inf.
    pub bucket_counts: Vec<u64>,
    pub latency_sum_seconds: f64,
    /// The latest request of each bucket, for OpenMetrics exemplars.
    pub exemplars: Vec<Option<Exemplar>>,
    pub window: LatencyWindow,
    pub last_seen: Nanos,
    /// For dependency series: what the remote side is (the service map's node kind).
    pub remote_kind: RemoteKind,
    /// The 10 s points measured since the last [`SignalStore::flush_points`].
    pub open: OpenPoints,
}

/// What is worked out once per measured span and recorded in its series.
struct Measure<'a> {
    outcome: Outcome,
    latency_nanos: u64,
    /// The classic histogram bucket.
    bucket: usize,
    /// The sketch bucket of the points.
    sketch: Bucket,
    step: u64,
    /// Whose publication the point goes out with.
    lane: Lane,
    /// The span's resource profile, when dimensions are configured.
    profile: Option<&'a Profile>,
    /// The hash of the span's attribute profile, when attributes are compared, and what builds
    /// the profile.
    attributes: Option<(u64, &'a AttributeProfiler)>,
    max_values: usize,
    now: Nanos,
}

impl Measure<'_> {
    /// The same measure of another latency (a delivery's delay).
    fn with_latency(self, latency_buckets: &[f64], latency_nanos: u64) -> Self {
        Self {
            latency_nanos,
            bucket: bucket_of(latency_buckets, latency_nanos),
            sketch: Bucket::of_nanos(latency_nanos),
            ..self
        }
    }
}

/// A request that fell in a histogram bucket: links a latency bucket to a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    pub trace_id: crate::model::TraceId,
    pub seconds: f64,
    pub at: Nanos,
}

impl Series {
    fn new(buckets: usize, window: Duration) -> Self {
        Self {
            requests: 0,
            faults: 0,
            errors: 0,
            throttles: 0,
            bucket_counts: vec![0; buckets + 1],
            latency_sum_seconds: 0.0,
            exemplars: vec![None; buckets + 1],
            window: LatencyWindow::new(window),
            last_seen: Nanos(0),
            remote_kind: RemoteKind::Remote,
            open: OpenPoints::default(),
        }
    }

    /// Counts the exception `source` recorded, if any, in the point's exception groups for the
    /// fault entry span `entry` (its example, its time); whether there was one.
    fn record_exception(&mut self, source: &Span, entry: &Span, measure: &Measure<'_>) -> bool {
        let format = source.origin.encoding.format();
        // The same exception from the same resource as before: counted without reading it.
        let fingerprint = format
            .exception_fingerprint(&source.raw)
            .map(|hash| hash ^ (Arc::as_ptr(&source.origin) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let table = &mut self.open.at(measure.lane, measure.step).exceptions;
        if fingerprint.is_some_and(|f| table.count_again(f, entry)) {
            return true;
        }
        let Some(exception) = format.exception(&source.raw) else { return false };
        let resource = |key: &str| {
            crate::format::find_resource_attribute(source.origin.encoding, &source.origin.resource, key)
                .and_then(|v| v.as_text())
        };
        let version = resource("service.version");
        let instance = INSTANCE_ATTRIBUTES.into_iter().find_map(resource);
        table.record(&exception, entry, version, instance, fingerprint);
        true
    }

    fn record(&mut self, span: &Span, measure: &Measure<'_>) {
        let Measure { outcome, latency_nanos, bucket, now, .. } = *measure;
        let point = self.open.at(measure.lane, measure.step);
        point.record(outcome, measure.sketch, &span.trace_id);
        if let Some(profile) = measure.profile {
            point.contributors.record(profile, measure.max_values, outcome, measure.sketch, &span.trace_id);
        }
        if let Some((hash, profiler)) = measure.attributes {
            let profile = || profiler.profile_of(span);
            point.attributes.record_hashed(hash, profile, measure.max_values, outcome, measure.sketch, &span.trace_id);
        }
        self.requests += 1;
        self.faults += outcome.is_fault() as u64;
        self.errors += outcome.is_error() as u64;
        self.throttles += outcome.is_throttle() as u64;
        self.bucket_counts[bucket] += 1;
        let seconds = latency_nanos as f64 / 1e9;
        self.latency_sum_seconds += seconds;
        self.exemplars[bucket] = Some(Exemplar { trace_id: span.trace_id, seconds, at: now });
        self.window.record(now, latency_nanos, outcome);
        self.last_seen = now;
        self.remote_kind = span.remote_kind;
    }
}

/// One metric family's series: at most `max_series`, plus the overflow series (signals.md
/// "Precision and cardinality": never more than `max_series + 1`).
pub struct Family<K> {
    pub series: SpanMap<K, Series>,
    /// The key of the overflow series, whose every label is `__overflow__`.
    overflow: K,
    /// Whether the overflow series is among `series`.
    overflow_present: bool,
}

impl<K: SeriesKey> Family<K> {
    fn new(overflow: &Arc<str>) -> Self {
        Self { series: SpanMap::default(), overflow: K::overflow(overflow), overflow_present: false }
    }

    /// The series for `key`, or the overflow series when `key` would be a series past the cap.
    /// (A service's own `operation="__overflow__"` series would need room under the cap too,
    /// which a full family lacks: past the cap there is only the one overflow series.)
    fn series_for(&mut self, key: K, settings: &SignalSettings, overflowed: &mut u64) -> &mut Series {
        // The overflow series takes no place under the cap. Under the cap a key is its own series
        // with no look-up beyond the entry's (the common case: one hash per span).
        let capped = self.series.len() - self.overflow_present as usize;
        let key = if capped < settings.max_series || self.series.contains_key(&key) {
            key
        } else {
            *overflowed += 1;
            self.overflow_present = true;
            self.overflow.clone()
        };
        self.series.entry(key).or_insert_with(|| Series::new(settings.latency_buckets.len(), settings.window))
    }

    fn evict_idle(&mut self, now: Nanos, ttl: Duration) -> usize {
        let before = self.series.len();
        self.series.retain(|_, s| s.last_seen.saturating_add(ttl) > now);
        self.overflow_present = self.series.contains_key(&self.overflow);
        before - self.series.len()
    }
}

/// Per-trace lookup tables, reused across traces so recording allocates nothing in steady state.
#[derive(Default)]
struct TraceIndex {
    by_span_id: SpanMap<SpanId, usize>,
    /// SERVER/CONSUMER spans by their parent id: the callee side of a dependency call.
    callee_by_parent: SpanMap<SpanId, usize>,
}

/// The metric store.
pub struct SignalStore {
    settings: SignalSettings,
    pub services: Family<ServiceKey>,
    pub dependencies: Family<DependencyKey>,
    /// Root entry spans per (service, environment): requests entering from outside, the service
    /// map's client edges. At most `max_series` entries.
    pub clients: SpanMap<(Arc<str>, Arc<str>), Series>,
    /// Publishes and deliveries per service and queue: the map's queue edges. At most
    /// `max_series` entries.
    pub queues: SpanMap<QueueKey, Series>,
    /// Spans routed to an overflow series (`tracewarden_series_overflow_total`).
    pub overflowed: u64,
    /// Spans excluded, by rule name (`tracewarden_spans_excluded_total{rule}`).
    pub excluded: Vec<(Arc<str>, u64)>,
    unknown_operation: Arc<str>,
    unknown_remote: Arc<str>,
    index: TraceIndex,
    profiles: ProfileCache,
    attribute_profiler: AttributeProfiler,
    queue_names: QueueNames,
    /// Holds on the messages whose spans are in the open points, per lane, while someone
    /// publishes them ([`SignalStore::hold_measured`]): released with the points by
    /// [`SignalStore::flush_points_held`].
    measured: Option<Vec<Vec<Hold>>>,
}

impl SignalStore {
    pub fn new(settings: SignalSettings) -> Self {
        let excluded = settings.exclude.iter().map(|r| (Arc::from(r.name.as_str()), 0)).collect();
        let overflow = Arc::from(OVERFLOW_LABEL);
        Self {
            services: Family::new(&overflow),
            dependencies: Family::new(&overflow),
            clients: SpanMap::default(),
            queues: SpanMap::default(),
            overflowed: 0,
            excluded,
            unknown_operation: Arc::from(UNKNOWN_OPERATION),
            unknown_remote: Arc::from(UNKNOWN_REMOTE),
            index: TraceIndex::default(),
            profiles: ProfileCache::new(&settings.dimensions),
            attribute_profiler: AttributeProfiler::new(&settings.compare_attributes),
            queue_names: QueueNames { names: Interner::new(), scratch: QueueScratch::default() },
            measured: None,
            settings,
        }
    }

    /// The configured contributor dimensions, in the order of every profile's values.
    pub fn dimensions(&self) -> &Arc<[Arc<str>]> {
        self.profiles.dimensions()
    }

    /// The names of the values in the points' tables.
    pub fn table_keys(&self) -> point::TableKeys {
        point::TableKeys {
            dimensions: self.profiles.dimensions().clone(),
            attributes: self.attribute_profiler.keys().clone(),
        }
    }

    /// From now on, keeps a hold on every message measured until its points are flushed with
    /// [`SignalStore::flush_points_held`]: the points become part of the at-least-once path (a
    /// message is committed only once the points it added to are published).
    pub fn keep_holds(&mut self) {
        self.measured.get_or_insert_with(Vec::new);
    }

    /// Keeps `holds` (on the messages of a trace just recorded in `lane`) with that lane's open
    /// points, when [`SignalStore::keep_holds`] was called.
    pub fn hold_measured<'a>(&mut self, lane: Lane, holds: impl IntoIterator<Item = &'a Hold>) {
        if let Some(measured) = self.measured.as_mut() {
            let lane = lane as usize;
            if measured.len() <= lane {
                measured.resize_with(lane + 1, Vec::new);
            }
            measured[lane].extend(holds.into_iter().map(Hold::share));
        }
    }

    /// Hands over every point `lane` measured since its last flush, with the holds on the
    /// messages they came from (release them once the points are published).
    pub fn flush_points_held(&mut self, lane: Lane) -> (Vec<FlushedPoint>, Vec<Hold>) {
        let mut holds =
            self.measured.as_mut().and_then(|m| m.get_mut(lane as usize)).map(std::mem::take).unwrap_or_default();
        // One hold per message is enough (a message carries many traces).
        holds.sort_unstable_by_key(Hold::message_key);
        holds.dedup_by_key(|h| h.message_key());
        (self.flush_lane(Some(lane)), holds)
    }

    /// Hands over every point measured since the last call, in every lane (what the owner of
    /// each series merges into its timeline).
    pub fn flush_points(&mut self) -> Vec<FlushedPoint> {
        self.flush_lane(None)
    }

    fn flush_lane(&mut self, lane: Option<Lane>) -> Vec<FlushedPoint> {
        let mut flushed = Vec::new();
        let mut hand_over = |series: SeriesId, s: &mut Series| {
            for (step, point) in s.open.take(lane) {
                flushed.push(FlushedPoint { series: series.clone(), remote_kind: s.remote_kind, step, point });
            }
        };
        for (key, series) in self.services.series.iter_mut().filter(|(_, s)| s.open.has(lane)) {
            hand_over(SeriesId::Service(key.clone()), series);
        }
        for (key, series) in self.dependencies.series.iter_mut().filter(|(_, s)| s.open.has(lane)) {
            hand_over(SeriesId::Dependency(key.clone()), series);
        }
        for ((service, environment), series) in self.clients.iter_mut().filter(|(_, s)| s.open.has(lane)) {
            hand_over(SeriesId::Client { service: service.clone(), environment: environment.clone() }, series);
        }
        for (key, series) in self.queues.iter_mut().filter(|(_, s)| s.open.has(lane)) {
            hand_over(SeriesId::Queue(key.clone()), series);
        }
        flushed
    }

    pub fn settings(&self) -> &SignalSettings {
        &self.settings
    }

    /// Records every span of one assembled trace (or of a group of late spans) at time `now`.
    pub fn record_trace(&mut self, spans: &[Span], now: Nanos) {
        self.record_trace_in(0, spans, now);
    }

    /// [`SignalStore::record_trace`], its points opened in `lane` (the worker that publishes them).
    pub fn record_trace_in(&mut self, lane: Lane, spans: &[Span], now: Nanos) {
        // Dependencies find their callee and caller through it, and a fault entry span without
        // an exception of its own the spans under it.
        let needs_index = spans.len() > 1
            && spans.iter().any(|s| s.facts.role == Role::Dependency || (s.is_entry() && s.facts.outcome.is_fault()));
        if needs_index {
            self.index.by_span_id.clear();
            self.index.callee_by_parent.clear();
            for (i, span) in spans.iter().enumerate() {
                self.index.by_span_id.insert(span.span_id, i);
                if let (Role::Entry, Some(parent)) = (span.facts.role, span.parent_span_id) {
                    self.index.callee_by_parent.insert(parent, i);
                }
            }
        }
        for span in spans {
            let facts = span.facts;
            if facts.role == Role::Internal {
                continue;
            }
            if let Some(rule) = facts.excluded {
                self.excluded[rule as usize].1 += 1;
                continue;
            }
            let latency_nanos = span.duration_nanos();
            let profile = if self.profiles.is_active() { Some(self.profiles.of(&span.origin)) } else { None };
            let profiler = &self.attribute_profiler;
            let attributes = profiler.is_active().then(|| (profiler.hash_of(span), profiler));
            let measure = Measure {
                outcome: facts.outcome,
                latency_nanos,
                bucket: bucket_of(&self.settings.latency_buckets, latency_nanos),
                sketch: Bucket::of_nanos(latency_nanos),
                step: step_of(now.0),
                lane,
                profile,
                attributes,
                max_values: self.settings.max_values_per_dimension,
                now,
            };
            if facts.role == Role::Entry {
                let key = ServiceKey {
                    service: span.service().clone(),
                    operation: span.operation.clone(),
                    environment: span.environment().clone(),
                };
                let series = self.services.series_for(key, &self.settings, &mut self.overflowed);
                series.record(span, &measure);
                if facts.outcome.is_fault() && !series.record_exception(span, span, &measure) && needs_index {
                    // None of its own: the first recorded under it in its service (a client
                    // span's driver error, an internal span's failed step).
                    let under = spans.iter().filter(|s| {
                        s.facts.role != Role::Entry
                            && s.service() == span.service()
                            && entry_ancestor(&self.index, s, spans).is_some_and(|e| e.span_id == span.span_id)
                    });
                    for source in under {
                        if series.record_exception(source, span, &measure) {
                            break;
                        }
                    }
                }
                if span.is_root() {
                    let key = (span.service().clone(), span.environment().clone());
                    let room = self.clients.len() < self.settings.max_series;
                    let (buckets, window) = (self.settings.latency_buckets.len(), self.settings.window);
                    if room || self.clients.contains_key(&key) {
                        let client = self.clients.entry(key).or_insert_with(|| Series::new(buckets, window));
                        client.record(span, &measure);
                    }
                }
                // A delivery: a consumer span that follows a producer span of the trace.
                let publish = span
                    .parent_span_id
                    .filter(|_| needs_index)
                    .and_then(|parent| self.index.by_span_id.get(&parent))
                    .map(|&i| &spans[i])
                    .and_then(|producer| Some((producer, self.queue_names.published_by(producer)?)))
                    .filter(|_| self.queue_names.published_by(span).is_none());
                if let Some((producer, queue)) = publish {
                    let delay = span.start_unix_nano.saturating_sub(producer.start_unix_nano);
                    let measure = Measure {
                        profile: None,
                        attributes: None,
                        ..measure.with_latency(&self.settings.latency_buckets, delay)
                    };
                    let key = QueueKey {
                        service: span.service().clone(),
                        queue,
                        environment: span.environment().clone(),
                        deliveries: true,
                    };
                    record_queue(&mut self.queues, &self.settings, key, span, &measure);
                }
            } else {
                let key = dependency_key(&self.index, &self.unknown_remote, &self.unknown_operation, span, spans);
                self.dependencies.series_for(key, &self.settings, &mut self.overflowed).record(span, &measure);
                if let Some(queue) = self.queue_names.published_by(span) {
                    let key = QueueKey {
                        service: span.service().clone(),
                        queue,
                        environment: span.environment().clone(),
                        deliveries: false,
                    };
                    record_queue(
                        &mut self.queues,
                        &self.settings,
                        key,
                        span,
                        &Measure { profile: None, attributes: None, ..measure },
                    );
                }
            }
        }
    }

    /// Removes series idle for `series_ttl`; returns how many were removed.
    pub fn evict_idle(&mut self, now: Nanos) -> usize {
        let ttl = self.settings.series_ttl;
        self.clients.retain(|_, s| s.last_seen.saturating_add(ttl) > now);
        self.queues.retain(|_, s| s.last_seen.saturating_add(ttl) > now);
        self.services.evict_idle(now, ttl) + self.dependencies.evict_idle(now, ttl)
    }
}

/// The queues messaging spans publish to, read from their bytes when the map needs them
/// ([`crate::format::Format::queue`]: only spans naming a messaging system are read), their
/// names interned.
struct QueueNames {
    names: Interner,
    scratch: QueueScratch,
}

impl QueueNames {
    /// The queue `span` publishes to, if it does.
    fn published_by(&mut self, span: &Span) -> Option<Arc<str>> {
        if span.remote_kind != RemoteKind::Queue {
            return None;
        }
        let publishes = span.origin.encoding.format().queue(&span.raw, span.kind, &mut self.scratch)?;
        if !publishes {
            return None;
        }
        Some(self.names.intern(self.scratch.name()))
    }
}

/// Counts a publish or a delivery of `span` in `queues`' series of `key` (while there is room:
/// at most `max_series`).
fn record_queue(
    queues: &mut SpanMap<QueueKey, Series>,
    settings: &SignalSettings,
    key: QueueKey,
    span: &Span,
    measure: &Measure<'_>,
) {
    let room = queues.len() < settings.max_series;
    if room || queues.contains_key(&key) {
        let series = queues.entry(key).or_insert_with(|| Series::new(settings.latency_buckets.len(), settings.window));
        series.record(span, measure);
        series.remote_kind = RemoteKind::Queue;
    }
}

/// The classic histogram bucket of a latency (the last one is +Inf).
fn bucket_of(latency_buckets: &[f64], latency_nanos: u64) -> usize {
    let seconds = latency_nanos as f64 / 1e9;
    latency_buckets.partition_point(|&le| le < seconds)
}

/// The dependency series of a CLIENT/PRODUCER span: the remote side is the callee's service and
/// operation when the trace holds its SERVER/CONSUMER span, else what the span's attributes name.
fn dependency_key(
    index: &TraceIndex,
    unknown_remote: &Arc<str>,
    unknown_operation: &Arc<str>,
    span: &Span,
    spans: &[Span],
) -> DependencyKey {
    let callee = index
        .callee_by_parent
        .get(&span.span_id)
        .map(|&i| &spans[i])
        .filter(|callee| callee.service() != span.service());
    let (remote_service, remote_operation) = match callee {
        Some(callee) => (callee.service().clone(), callee.operation.clone()),
        None => (
            span.remote_service.clone().unwrap_or_else(|| unknown_remote.clone()),
            span.remote_operation.clone().unwrap_or_else(|| span.operation.clone()),
        ),
    };
    DependencyKey {
        service: span.service().clone(),
        operation: caller_operation(index, span, spans).unwrap_or_else(|| unknown_operation.clone()),
        remote_service,
        remote_operation,
        environment: span.environment().clone(),
    }
}

/// The operation of the nearest entry ancestor in the same service.
fn caller_operation(index: &TraceIndex, span: &Span, spans: &[Span]) -> Option<Arc<str>> {
    entry_ancestor(index, span, spans).map(|entry| entry.operation.clone())
}

/// The nearest entry ancestor of `span` in its service (none past a span of another service).
fn entry_ancestor<'a>(index: &TraceIndex, span: &Span, spans: &'a [Span]) -> Option<&'a Span> {
    let mut current = span.parent_span_id;
    for _ in 0..spans.len() {
        let parent = current.and_then(|p| index.by_span_id.get(&p)).map(|&i| &spans[i])?;
        if parent.service() != span.service() {
            return None;
        }
        if parent.facts.role == Role::Entry {
            return Some(parent);
        }
        current = parent.parent_span_id;
    }
    None
}

#[cfg(test)]
mod tests;
