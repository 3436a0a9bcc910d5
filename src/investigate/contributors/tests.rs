use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::signals::SignalStore;
use crate::testing::{spans, SpanSpec, SERVER};

const NOW: Nanos = Nanos(1_700_000_000_000_000_000);

/// 20 requests of customers `GET /owners`: pod-1 serves 8 (1 fault), pod-2 (the bad version) 6
/// (5 faults, 200 ms), pod-3 4 (0 faults), and 2 come from a resource without a pod name.
fn timeline(capacity: usize) -> (Timeline, Arc<[Arc<str>]>) {
    let mut config = Config::default();
    config.investigation.max_values_per_dimension = capacity;
    let mut store = SignalStore::new(config.signal_settings());
    let mut trace = 0u8;
    let mut request = |pod: Option<&'static str>, status: i64, micros: u64| {
        trace += 1;
        let mut span = SpanSpec::new("customers", trace, 1, None, SERVER, "x")
            .http("GET", "/owners", status)
            .micros(micros)
            .resource("service.version", if pod == Some("pod-2") { "1.4.0-rc1" } else { "1.3.2" });
        if let Some(pod) = pod {
            span = span.resource("k8s.pod.name", pod);
        }
        store.record_trace(&spans(&[span]), NOW);
    };
    for i in 0..8 {
        request(Some("pod-1"), if i == 0 { 500 } else { 200 }, 10_000);
    }
    for i in 0..6 {
        request(Some("pod-2"), if i < 5 { 503 } else { 200 }, 200_000);
    }
    for _ in 0..4 {
        request(Some("pod-3"), 200, 10_000);
    }
    request(None, 200, 10_000);
    request(None, 404, 10_000);
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    timeline.merge(&store.flush_points(), NOW);
    (timeline, store.dimensions().clone())
}

fn query(pairs: &[(&str, &str)], dimensions: &[Arc<str>]) -> ContributorQuery {
    ContributorQuery::parse(pairs.iter().copied(), dimensions).expect("valid query")
}

fn rows(answer: &Contributors) -> Vec<(&str, u64, u64)> {
    answer.contributors.iter().map(|c| (c.value.as_str(), c.requests, c.faults)).collect()
}

#[test]
fn the_bad_pod_comes_first_by_faults_and_the_rows_add_up() {
    let (timeline, dimensions) = timeline(100);
    let by_faults = query(&[("service", "customers"), ("dimension", "k8s.pod.name"), ("by", "faults")], &dimensions);
    let answer = top_contributors(&timeline, &dimensions, &by_faults, NOW);
    assert!(!answer.estimated);
    assert_eq!(rows(&answer), vec![("pod-2", 6, 5), ("pod-1", 8, 1), ("pod-3", 4, 0), (OTHER, 2, 0)]);
    assert_eq!(answer.contributors[0].trace_ids.len(), 3, "example traces of the faults");
    assert_eq!(answer.contributors[0].availability, Some(1.0 - 5.0 / 6.0));
    let p99 = answer.contributors[0].p99_seconds.expect("latency");
    assert!((p99 - 0.2).abs() <= 0.2 * 0.01, "{p99}");
    let total: u64 = answer.contributors.iter().map(|c| c.requests).sum();
    assert_eq!(total, 20, "the series' total");

    let by_version = query(&[("service", "customers"), ("dimension", "service.version"), ("limit", "1")], &dimensions);
    let answer = top_contributors(&timeline, &dimensions, &by_version, NOW);
    assert_eq!(rows(&answer), vec![("1.3.2", 14, 1), (OTHER, 6, 5)], "beyond the limit, one __other__ row");
    let by_latency =
        query(&[("service", "customers"), ("dimension", "service.version"), ("by", "latency")], &dimensions);
    assert_eq!(top_contributors(&timeline, &dimensions, &by_latency, NOW).contributors[0].value, "1.4.0-rc1");
}

#[test]
fn beyond_capacity_the_answer_is_estimated_but_keeps_the_totals() {
    let (timeline, dimensions) = timeline(2);
    let by_requests = query(&[("service", "customers"), ("dimension", "k8s.pod.name")], &dimensions);
    let answer = top_contributors(&timeline, &dimensions, &by_requests, NOW);
    assert!(answer.estimated);
    assert_eq!(answer.contributors.iter().map(|c| c.requests).sum::<u64>(), 20);
}

#[test]
fn dimensions_seen_are_those_with_a_value() {
    let (timeline, dimensions) = timeline(100);
    let selection = parse_selection([("service", "customers")]).expect("valid");
    assert_eq!(dimensions_seen(&timeline, &dimensions, &selection, NOW), vec!["service.version", "k8s.pod.name"]);
    let nobody = parse_selection([("service", "vets")]).expect("valid");
    assert!(dimensions_seen(&timeline, &dimensions, &nobody, NOW).is_empty());
}

#[test]
fn bad_parameters_are_named() {
    let dimensions: Vec<Arc<str>> = vec![Arc::from("k8s.pod.name")];
    let error =
        |pairs: &[(&str, &str)]| ContributorQuery::parse(pairs.iter().copied(), &dimensions).unwrap_err().parameter;
    assert_eq!(error(&[("service", "a"), ("dimension", "pod")]), "dimension");
    assert_eq!(error(&[("service", "a")]), "dimension");
    assert_eq!(error(&[("dimension", "k8s.pod.name")]), "service");
    assert_eq!(error(&[("service", "a"), ("dimension", "k8s.pod.name"), ("by", "p99")]), "by");
    assert_eq!(error(&[("service", "a"), ("dimension", "k8s.pod.name"), ("limit", "0")]), "limit");
    assert_eq!(error(&[("service", "a"), ("dimension", "k8s.pod.name"), ("colour", "red")]), "colour");
    assert_eq!(
        error(&[("service", "a"), ("dimension", "k8s.pod.name"), ("remote_operation", "x")]),
        "remote_operation"
    );
    assert_eq!(error(&[("edge", "a->b"), ("dimension", "k8s.pod.name")]), "edge");
}
