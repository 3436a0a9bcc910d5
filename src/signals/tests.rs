use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::exposition::SignalCollector;
use super::*;
use crate::clock::{ManualClock, SharedClock};
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT, INTERNAL, SERVER};

fn settings() -> SignalSettings {
    SignalSettings {
        window: Duration::from_secs(60),
        latency_buckets: vec![0.005, 0.01, 0.1, 1.0],
        max_series: 100,
        series_ttl: Duration::from_secs(900),
        exclude: Vec::new(),
        dimensions: vec!["k8s.pod.name".into(), "service.version".into()],
        compare_attributes: vec!["user_agent.original".into(), "http.route".into()],
        max_values_per_dimension: 3,
    }
}

fn key(service: &str, operation: &str) -> ServiceKey {
    ServiceKey { service: Arc::from(service), operation: Arc::from(operation), environment: Arc::from("default") }
}

const T0: Nanos = Nanos(1_700_000_000_000_000_000);

#[test]
fn outcomes_are_counted_exactly() {
    let mut store = SignalStore::new(settings());
    let statuses = [200, 201, 404, 429, 500, 503, 302];
    let specs: Vec<SpanSpec> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| SpanSpec::new("api", i as u8 + 1, 1, None, SERVER, "x").http("GET", "/a", *s))
        .collect();
    for s in spans(&specs) {
        store.record_trace(&[s], T0);
    }
    let series = &store.services.series[&key("api", "GET /a")];
    assert_eq!((series.requests, series.faults, series.errors, series.throttles), (7, 2, 2, 1));
    let snapshot = store.services.series.get_mut(&key("api", "GET /a")).unwrap().window.snapshot(T0);
    assert_eq!(snapshot.availability(), Some(1.0 - 2.0 / 7.0));
    assert_eq!(snapshot.error_rate(), Some(2.0 / 7.0));
}

#[test]
fn entry_spans_only_and_internal_roots_count() {
    let mut store = SignalStore::new(settings());
    let trace = spans(&[
        SpanSpec::new("job", 1, 1, None, INTERNAL, "nightly"),
        SpanSpec::new("job", 1, 2, Some(1), INTERNAL, "step"),
        SpanSpec::new("job", 1, 3, Some(2), SERVER, "rpc").error(),
    ]);
    store.record_trace(&trace, T0);
    assert_eq!(store.services.series.len(), 2);
    assert_eq!(store.services.series[&key("job", "nightly")].requests, 1);
    assert_eq!(store.services.series[&key("job", "rpc")].faults, 1, "span status ERROR without HTTP status");
}

#[test]
fn dependencies_resolve_through_the_trace() {
    let mut store = SignalStore::new(settings());
    let trace = spans(&[
        SpanSpec::new("frontend", 1, 1, None, SERVER, "h").http("GET", "/owners", 200),
        SpanSpec::new("frontend", 1, 2, Some(1), INTERNAL, "render"),
        SpanSpec::new("frontend", 1, 3, Some(2), CLIENT, "GET").attr("server.address", AttrSpec::Str("10.0.0.7")),
        SpanSpec::new("customers", 1, 4, Some(3), SERVER, "h").http("GET", "/owners/{id}", 503),
        SpanSpec::new("customers", 1, 5, Some(4), CLIENT, "SELECT owners")
            .attr("db.system", AttrSpec::Str("postgresql"))
            .attr("db.operation.name", AttrSpec::Str("SELECT")),
        SpanSpec::new("customers", 1, 6, Some(4), CLIENT, "GET").attr("http.response.status_code", AttrSpec::Int(429)),
    ]);
    store.record_trace(&trace, T0);
    let dep = |s: &str, o: &str, rs: &str, ro: &str| DependencyKey {
        service: Arc::from(s),
        operation: Arc::from(o),
        remote_service: Arc::from(rs),
        remote_operation: Arc::from(ro),
        environment: Arc::from("default"),
    };
    let deps = &store.dependencies.series;
    assert_eq!(deps.len(), 3, "{:?}", deps.keys().collect::<Vec<_>>());
    let call = &deps[&dep("frontend", "GET /owners", "customers", "GET /owners/{id}")];
    assert_eq!((call.requests, call.faults), (1, 0), "the client span carries no status: ok");
    assert_eq!(deps[&dep("customers", "GET /owners/{id}", "postgresql", "SELECT")].requests, 1);
    let unknown = &deps[&dep("customers", "GET /owners/{id}", UNKNOWN_REMOTE, "GET")];
    assert_eq!(unknown.throttles, 1);

    // Without the caller's entry span the operation is unknown.
    let orphan = spans(&[
        SpanSpec::new("worker", 2, 9, Some(8), CLIENT, "publish").attr("messaging.system", AttrSpec::Str("kafka"))
    ]);
    store.record_trace(&orphan, T0);
    assert!(store.dependencies.series.contains_key(&dep("worker", UNKNOWN_OPERATION, "kafka", "publish")));
}

/// The series whose every label is `__overflow__`.
fn overflow_service() -> ServiceKey {
    ServiceKey {
        service: Arc::from("__overflow__"),
        operation: Arc::from("__overflow__"),
        environment: Arc::from("__overflow__"),
    }
}

#[test]
fn series_cap_overflows_without_losing_counts() {
    let mut store = SignalStore::new(SignalSettings { max_series: 2, ..settings() });
    let names = ["a", "b", "c", "d"];
    let specs: Vec<SpanSpec> =
        names.iter().enumerate().map(|(i, n)| SpanSpec::new("api", i as u8 + 1, 1, None, SERVER, n)).collect();
    for s in spans(&specs) {
        store.record_trace(&[s], T0);
    }
    assert_eq!(store.overflowed, 2);
    assert_eq!(store.services.series[&overflow_service()].requests, 2);
    let total: u64 = store.services.series.values().map(|s| s.requests).sum();
    assert_eq!(total, 4, "never dropped from the totals");
}

/// signals.md: a family never holds more than `max_series + 1` series, however many services
/// come past the cap.
#[test]
fn past_the_cap_each_family_has_one_overflow_series() {
    let mut store = SignalStore::new(SignalSettings { max_series: 2, ..settings() });
    for (i, service) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let trace = i as u8 + 1;
        store.record_trace(
            &spans(&[
                SpanSpec::new(service, trace, 1, None, SERVER, "op"),
                SpanSpec::new(service, trace, 2, Some(1), CLIENT, "q").attr("db.system", AttrSpec::Str("redis")),
            ]),
            T0,
        );
    }
    let services = &store.services.series;
    assert_eq!(services.len(), 3, "{:?}", services.keys().collect::<Vec<_>>());
    assert_eq!((services[&key("a", "op")].requests, services[&key("b", "op")].requests), (1, 1));
    assert_eq!(services[&overflow_service()].requests, 3, "c, d and e");
    let dependencies = &store.dependencies.series;
    assert_eq!(dependencies.len(), 3, "{:?}", dependencies.keys().collect::<Vec<_>>());
    let overflow = DependencyKey {
        service: Arc::from("__overflow__"),
        operation: Arc::from("__overflow__"),
        remote_service: Arc::from("__overflow__"),
        remote_operation: Arc::from("__overflow__"),
        environment: Arc::from("__overflow__"),
    };
    assert_eq!(dependencies[&overflow].requests, 3);
    assert_eq!(store.overflowed, 6, "3 entry and 3 dependency spans");

    // The overflow series takes no place under the cap: once an idle series is removed, a new one fits.
    let later = T0.saturating_add(Duration::from_secs(600));
    store.record_trace(&spans(&[SpanSpec::new("b", 9, 1, None, SERVER, "op")]), later);
    store.record_trace(&spans(&[SpanSpec::new("e", 10, 1, None, SERVER, "op")]), later);
    store.evict_idle(T0.saturating_add(Duration::from_secs(900)));
    assert_eq!(store.services.series.len(), 2, "a expired; b and the overflow series stay");
    store.record_trace(&spans(&[SpanSpec::new("f", 11, 1, None, SERVER, "op")]), later);
    assert_eq!(store.services.series[&key("f", "op")].requests, 1);
    assert_eq!(store.services.series.len(), 3);
}

#[test]
fn idle_series_expire() {
    let mut store = SignalStore::new(SignalSettings { series_ttl: Duration::from_secs(60), ..settings() });
    store.record_trace(&spans(&[SpanSpec::new("api", 1, 1, None, SERVER, "old")]), T0);
    store.record_trace(
        &spans(&[SpanSpec::new("api", 2, 1, None, SERVER, "new")]),
        T0.saturating_add(Duration::from_secs(50)),
    );
    assert_eq!(store.evict_idle(T0.saturating_add(Duration::from_secs(60))), 1);
    assert!(store.services.series.contains_key(&key("api", "new")));
    assert!(!store.services.series.contains_key(&key("api", "old")));
}

#[test]
fn exclusions_count_only_in_their_rule() {
    let rule: ExcludeRule = toml::from_str(
        "name = \"elb\"\nattribute = { key = \"user_agent.original\", matches = \"ELB-HealthChecker*\" }",
    )
    .unwrap();
    let mut store = SignalStore::new(SignalSettings { exclude: vec![rule.clone()], ..settings() });
    let mut trace = spans(&[
        SpanSpec::new("api", 1, 1, None, SERVER, "health")
            .attr("user_agent.original", AttrSpec::Str("ELB-HealthChecker/2.0")),
        SpanSpec::new("api", 1, 2, None, SERVER, "real").attr("user_agent.original", AttrSpec::Str("curl/8")),
    ]);
    super::Exclusions::new(&[rule]).judge(&mut trace);
    assert_eq!(trace[0].facts.excluded, Some(0), "judged once, on the span path");
    assert_eq!(trace[1].facts.excluded, None);
    store.record_trace(&trace, T0);
    assert_eq!(store.excluded, vec![(Arc::from("elb"), 1)]);
    assert!(!store.services.series.contains_key(&key("api", "health")));
    assert_eq!(store.services.series[&key("api", "real")].requests, 1);
}

#[test]
fn window_forgets_old_requests() {
    let mut window = LatencyWindow::new(Duration::from_secs(60));
    window.record(T0, 1_000_000, crate::model::Outcome::Fault);
    window.record(T0.saturating_add(Duration::from_secs(30)), 2_000_000, crate::model::Outcome::Ok);
    let s = window.snapshot(T0.saturating_add(Duration::from_secs(31)));
    assert_eq!((s.requests, s.faults), (2, 1));
    let s = window.snapshot(T0.saturating_add(Duration::from_secs(75)));
    assert_eq!((s.requests, s.faults), (1, 0), "the request at T0 is older than the window");
    let s = window.snapshot(T0.saturating_add(Duration::from_secs(200)));
    assert_eq!(s.requests, 0);
    assert!(s.quantiles.is_empty() && s.availability().is_none());
}

proptest! {
    /// Reported quantiles are within 0.1% of the true order statistic (signals.md).
    #[test]
    fn hdr_quantiles_within_a_tenth_of_a_percent(latencies in proptest::collection::vec(1u64..3_600_000_000, 1..2000)) {
        let mut window = LatencyWindow::new(Duration::from_secs(60));
        for micros in &latencies {
            window.record(T0, micros * 1000, crate::model::Outcome::Ok);
        }
        let snapshot = window.snapshot(T0);
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        for (q, seconds) in snapshot.quantiles {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let truth = sorted[rank - 1] as f64 / 1e6;
            prop_assert!((seconds - truth).abs() <= truth * 0.001 + 1e-6, "q{} = {} vs true {}", q, seconds, truth);
        }
    }
}

#[test]
fn exposition_uses_the_spec_names_and_labels() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(Mutex::new(SignalStore::new(settings())));
    store.lock().unwrap().record_trace(
        &spans(&[
            SpanSpec::new("api", 1, 1, None, SERVER, "x").http("GET", "/a", 500).micros(7_000),
            SpanSpec::new("api", 1, 2, Some(1), CLIENT, "q").attr("db.system", AttrSpec::Str("redis")),
        ]),
        T0,
    );
    let registry = prometheus::Registry::new();
    let shared: SharedClock = clock;
    registry.register(Box::new(SignalCollector::new(store.clone(), shared))).unwrap();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    let labels = r#"service="api",operation="GET /a",environment="default""#;
    for line in [
        format!("tracewarden_requests_total{{{labels}}} 1"),
        format!("tracewarden_faults_total{{{labels}}} 1"),
        format!("tracewarden_errors_total{{{labels}}} 0"),
        format!("tracewarden_throttles_total{{{labels}}} 0"),
        format!("tracewarden_latency_seconds_bucket{{{labels},le=\"0.005\"}} 0"),
        format!("tracewarden_latency_seconds_bucket{{{labels},le=\"0.01\"}} 1"),
        format!("tracewarden_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 1"),
        format!("tracewarden_latency_seconds_count{{{labels}}} 1"),
        format!("tracewarden_availability_ratio{{{labels}}} 0"),
        r#"tracewarden_dependency_requests_total{service="api",operation="GET /a",remote_service="redis",remote_operation="q",environment="default"} 1"#.to_string(),
    ] {
        assert!(text.contains(&line), "missing {line}\n{text}");
    }
    let quantile_line = text
        .lines()
        .find(|l| l.starts_with("tracewarden_latency_quantile_seconds") && l.contains("quantile=\"0.99\""))
        .unwrap();
    let p99: f64 = quantile_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((p99 - 0.007).abs() <= 0.007 * 0.001, "{quantile_line}");
}

#[test]
fn openmetrics_carries_trace_id_exemplars() {
    let clock: SharedClock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(Mutex::new(SignalStore::new(settings())));
    store.lock().unwrap().record_trace(
        &spans(&[
            SpanSpec::new("api", 7, 1, None, SERVER, "x").http("GET", "/a", 200).micros(7_000),
            SpanSpec::new("api", 7, 2, Some(1), CLIENT, "q")
                .attr("db.system", AttrSpec::Str("redis"))
                .micros(2_000_000),
        ]),
        T0,
    );
    let registry = prometheus::Registry::new();
    registry.register(Box::new(SignalCollector::new(store.clone(), clock))).unwrap();
    let text = super::exposition::render_openmetrics(&registry.gather(), &store.lock().unwrap());
    let trace = hex::encode([7u8; 16]);
    let labels = r#"service="api",operation="GET /a",environment="default""#;
    assert!(text.contains("# TYPE tracewarden_requests counter\n"), "{text}");
    assert!(text.contains(&format!("tracewarden_requests_total{{{labels}}} 1\n")), "{text}");
    let bucket =
        format!("tracewarden_latency_seconds_bucket{{{labels},le=\"0.01\"}} 1 # {{trace_id=\"{trace}\"}} 0.007 ");
    assert!(text.contains(&bucket), "exemplar on the bucket the request fell in:\n{text}");
    assert!(
        text.contains(&format!("le=\"+Inf\"}} 1 # {{trace_id=\"{trace}\"}} 2 ")),
        "dependency 2 s request in +Inf:\n{text}"
    );
    assert!(
        text.contains(&format!("tracewarden_latency_seconds_bucket{{{labels},le=\"0.005\"}} 0\n")),
        "no exemplar where nothing fell"
    );
    assert!(text.ends_with("# EOF\n"));
}

/// Each series' requests land in the 10 s point of the time they were recorded, with their
/// contributors by resource; a flush hands every point over once.
#[test]
fn points_and_contributors_are_flushed_once_per_step() {
    let mut store = SignalStore::new(settings());
    let request = |trace: u8, pod: &'static str, status: i64| {
        SpanSpec::new("api", trace, 1, None, SERVER, "x")
            .http("GET", "/a", status)
            .resource("k8s.pod.name", pod)
            .resource("service.version", if pod == "api-2" { "2.0" } else { "1.0" })
    };
    let t1 = Nanos(T0.0 + 10_000_000_000);
    store.record_trace(&spans(&[request(1, "api-1", 200)]), T0);
    store.record_trace(&spans(&[request(2, "api-2", 500)]), T0);
    store.record_trace(&spans(&[request(3, "api-2", 503)]), t1);
    let flushed = store.flush_points();
    assert!(store.flush_points().is_empty(), "a point is handed over once");
    let step = T0.0 / 10_000_000_000;
    for family in ["service", "client"] {
        let mut steps: Vec<(u64, u64, u64)> = flushed
            .iter()
            .filter(|f| matches!(f.series, SeriesId::Client { .. }) == (family == "client"))
            .map(|f| (f.step, f.point.counts.requests, f.point.counts.faults))
            .collect();
        steps.sort_unstable();
        assert_eq!(steps, vec![(step, 2, 1), (step + 1, 1, 1)], "{family}");
    }
    let first = flushed
        .iter()
        .find(|f| f.step == step && f.series == SeriesId::Service(key("api", "GET /a")))
        .expect("first step");
    let mut rows: Vec<(Vec<Option<String>>, u64, u64)> = first
        .point
        .contributors
        .rows()
        .iter()
        .map(|r| {
            (
                r.profile.values.iter().map(|v| v.as_deref().map(str::to_string)).collect(),
                r.counts.requests,
                r.counts.faults,
            )
        })
        .collect();
    rows.sort();
    let values = |pod: &str, version: &str| vec![Some(pod.to_string()), Some(version.to_string())];
    assert_eq!(rows, vec![(values("api-1", "1.0"), 1, 0), (values("api-2", "2.0"), 1, 1)]);
    assert_eq!(first.point.examples.trace_ids()[0], [2; 16], "the fault first");
}

/// Each request also lands in one row of its point's attribute table, by the values of the
/// compared span attributes it carries (in the configured order, whatever the span's); past the
/// table's capacity the rows are estimates and still sum to the point's requests.
#[test]
fn span_attributes_are_counted_by_their_combination() {
    let mut store = SignalStore::new(settings());
    let request = |trace: u8, agent: Option<&'static str>, status: i64| {
        let span = SpanSpec::new("api", trace, 1, None, SERVER, "x").http("GET", "/owners", status);
        match agent {
            Some(agent) => span.attr("user_agent.original", AttrSpec::Str(agent)),
            None => span,
        }
    };
    store.record_trace(&spans(&[request(1, Some("curl/8.5"), 500)]), T0);
    store.record_trace(&spans(&[request(2, Some("curl/8.5"), 200)]), T0);
    store.record_trace(&spans(&[request(3, Some("Mozilla/5.0"), 200)]), T0);
    store.record_trace(&spans(&[request(4, None, 503)]), T0);
    let rows_of = |flushed: &[FlushedPoint]| {
        let point = &flushed.iter().find(|f| f.series == SeriesId::Service(key("api", "GET /owners"))).unwrap().point;
        let mut rows: Vec<(Vec<Option<String>>, u64, u64)> = point
            .attributes
            .rows()
            .iter()
            .map(|r| {
                let values = r.profile.values.iter().map(|v| v.as_deref().map(str::to_string)).collect();
                (values, r.counts.requests, r.counts.faults)
            })
            .collect();
        rows.sort();
        (rows, point.attributes.estimated)
    };
    let values = |agent: Option<&str>| vec![agent.map(str::to_string), Some("/owners".to_string())];
    assert_eq!(
        rows_of(&store.flush_points()),
        (vec![(values(None), 1, 1), (values(Some("Mozilla/5.0")), 1, 0), (values(Some("curl/8.5")), 2, 1)], false)
    );
    // Four combinations in a table of three: estimated, every request still counted once.
    for (trace, agent) in [(5, Some("curl/8.5")), (6, Some("Mozilla/5.0")), (7, None), (8, Some("Go-http-client/2.0"))]
    {
        store.record_trace(&spans(&[request(trace, agent, 200)]), T0);
    }
    let (rows, estimated) = rows_of(&store.flush_points());
    assert!(estimated);
    assert_eq!((rows.len(), rows.iter().map(|r| r.1).sum::<u64>()), (3, 4));
}

/// With holds kept, a message whose trace was measured stays held (uncommitted) until the points
/// it added to are flushed for publication, and then only by the flush's holds (one a message).
#[test]
fn measured_messages_stay_held_until_their_points_are_flushed() {
    use crate::position::{PendingOffsets, SourceRef};
    let mut positions = PendingOffsets::new();
    let partition = positions.index("in", 0);
    let message = positions.begin(SourceRef { partition, offset: 7 });
    let mut store = SignalStore::new(settings());
    store.hold_measured(0, [&message]);
    assert_eq!(store.flush_points_held(0).1.len(), 0, "nothing kept before keep_holds");
    store.keep_holds();
    let request = |trace: u8| SpanSpec::new("api", trace, 1, None, SERVER, "x").http("GET", "/a", 200);
    store.record_trace_in(1, &spans(&[request(1)]), T0);
    store.hold_measured(1, [&message]);
    store.record_trace_in(1, &spans(&[request(2)]), T0);
    store.hold_measured(1, [&message]);
    // Another worker's lane: its points and holds are its own.
    let other = positions.begin(SourceRef { partition, offset: 8 });
    store.record_trace_in(0, &spans(&[request(3)]), T0);
    store.hold_measured(0, [&other]);
    drop((message, other));
    assert_eq!(positions.lowest_held(partition), Some(7), "held by the open points");
    let (points, holds) = store.flush_points_held(1);
    assert_eq!(points.iter().map(|p| p.point.counts.requests).max(), Some(2), "lane 1's points only");
    assert_eq!(holds.len(), 1, "one hold per message");
    assert_eq!(positions.lowest_held(partition), Some(7), "held until the publication is acknowledged");
    drop(holds);
    assert_eq!(positions.lowest_held(partition), Some(8), "lane 0's message waits for lane 0's publication");
    let (others, other_holds) = store.flush_points_held(0);
    assert_eq!(others.iter().map(|p| p.point.counts.requests).max(), Some(1));
    assert_eq!(other_holds.len(), 1);
    drop(other_holds);
    assert_eq!(positions.lowest_held(partition), None, "released with the published points");
}
