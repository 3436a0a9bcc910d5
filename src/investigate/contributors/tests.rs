use super::*;
use crate::investigate::tests::fixture::{customers_timeline as timeline, NOW};

fn query(pairs: &[(&str, &str)], dimensions: &[Arc<str>]) -> ContributorQuery {
    ContributorQuery::parse(pairs.iter().copied(), dimensions).expect("valid query")
}

fn rows(answer: &Contributors) -> Vec<(&str, u64, u64)> {
    answer.contributors.iter().map(|c| (c.value.as_str(), c.requests, c.faults)).collect()
}

#[test]
fn the_bad_pod_comes_first_by_faults_and_the_rows_add_up() {
    let (timeline, keys) = timeline(100);
    let dimensions = keys.dimensions;
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
    let (timeline, keys) = timeline(2);
    let dimensions = keys.dimensions;
    let by_requests = query(&[("service", "customers"), ("dimension", "k8s.pod.name")], &dimensions);
    let answer = top_contributors(&timeline, &dimensions, &by_requests, NOW);
    assert!(answer.estimated);
    assert_eq!(answer.contributors.iter().map(|c| c.requests).sum::<u64>(), 20);
}

#[test]
fn dimensions_seen_are_those_with_a_value() {
    let (timeline, keys) = timeline(100);
    let dimensions = keys.dimensions;
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
