use super::*;
use crate::investigate::tests::fixture::{customers_timeline, NOW};

/// The fixture's series, with room for every value.
fn timeline() -> (crate::investigate::timeline::Timeline, std::sync::Arc<[std::sync::Arc<str>]>) {
    customers_timeline(100)
}

fn query(pairs: &[(&str, &str)]) -> CompareQuery {
    CompareQuery::parse(pairs.iter().copied()).expect("valid query")
}

/// (value, selected, baseline, selection share, baseline share, lift) of one value.
type Row<'a> = (&'a str, u64, u64, f64, f64, Option<f64>);

/// The rows of a key's values.
fn values<'a>(answer: &'a Comparison, key: &str) -> Vec<Row<'a>> {
    let key = answer.keys.iter().find(|k| k.key == key).expect("the key is answered");
    key.values
        .iter()
        .map(|v| (v.value.as_str(), v.selection, v.baseline, v.selection_share, v.baseline_share, v.lift))
        .collect()
}

#[test]
fn the_faulting_pod_and_version_come_first_with_their_shares_and_lift() {
    let (timeline, dimensions) = timeline();
    let answer = compare(&timeline, &dimensions, &query(&[("service", "customers"), ("outcome", "fault")]), NOW);
    assert_eq!((answer.selection.requests, answer.baseline.requests), (6, 14), "6 faults, 14 other requests");
    assert!(!answer.estimated);
    // pod-2: 5 of the 6 faults, 1 of the 14 others; pod-3: none of the faults, 4 of the others;
    // pod-1: 1 fault, 7 others. Ranked by the difference of the shares.
    assert_eq!(
        values(&answer, "k8s.pod.name"),
        vec![
            ("pod-2", 5, 1, 5.0 / 6.0, 1.0 / 14.0, Some((5.0 / 6.0) / (1.0 / 14.0))),
            ("pod-3", 0, 4, 0.0, 4.0 / 14.0, Some(0.0)),
            ("pod-1", 1, 7, 1.0 / 6.0, 7.0 / 14.0, Some((1.0 / 6.0) / (7.0 / 14.0))),
        ]
    );
    assert_eq!(
        values(&answer, "service.version"),
        vec![
            ("1.4.0-rc1", 5, 1, 5.0 / 6.0, 1.0 / 14.0, Some((5.0 / 6.0) / (1.0 / 14.0))),
            ("1.3.2", 1, 13, 1.0 / 6.0, 13.0 / 14.0, Some((1.0 / 6.0) / (13.0 / 14.0))),
        ]
    );
    // Both keys' first values differ by the same; ties go by name. Dimensions no resource had
    // are left out.
    let keys: Vec<&str> = answer.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, vec!["k8s.pod.name", "service.version"]);
    assert_eq!(answer.keys[0].values[0].trace_ids.len(), 3, "example traces, the faults first");
}

#[test]
fn slow_requests_are_compared_with_the_fast_ones() {
    let (timeline, dimensions) = timeline();
    let answer = compare(&timeline, &dimensions, &query(&[("service", "customers"), ("minLatency", "100ms")]), NOW);
    assert_eq!((answer.selection.requests, answer.baseline.requests), (6, 14));
    // Every slow request is pod-2's, and none of the fast ones: no lift without a baseline share.
    assert_eq!(values(&answer, "k8s.pod.name")[0], ("pod-2", 6, 0, 1.0, 0.0, None));
    let errors = compare(&timeline, &dimensions, &query(&[("service", "customers"), ("outcome", "error")]), NOW);
    assert_eq!((errors.selection.requests, errors.baseline.requests), (1, 19), "the one 404");
    assert!(errors.keys.iter().find(|k| k.key == "k8s.pod.name").unwrap().values.iter().all(|v| v.selection == 0));
}

#[test]
fn a_range_without_requests_compares_nothing() {
    let (timeline, dimensions) = timeline();
    let seconds = (NOW.0 / 1_000_000_000) as i64;
    let before = [("service", "customers"), ("outcome", "fault")];
    let earlier = format!("{}", seconds - 30);
    let mut pairs = before.to_vec();
    pairs.push(("from", &earlier));
    pairs.push(("to", &earlier));
    let answer = compare(&timeline, &dimensions, &query(&pairs), NOW);
    assert_eq!((answer.selection.requests, answer.baseline.requests), (0, 0));
    assert!(answer.keys.is_empty());
    // The step holding NOW is the point a chart shows.
    let now = format!("{seconds}");
    let point = [("service", "customers"), ("outcome", "fault"), ("from", now.as_str()), ("to", now.as_str())];
    assert_eq!(compare(&timeline, &dimensions, &query(&point), NOW).selection.requests, 6);
}

#[test]
fn a_bad_query_names_its_parameter() {
    let parameter = |pairs: &[(&str, &str)]| CompareQuery::parse(pairs.iter().copied()).unwrap_err().parameter;
    assert_eq!(parameter(&[("service", "a")]), "outcome", "a mark is required");
    assert_eq!(parameter(&[("service", "a"), ("outcome", "slow")]), "outcome");
    assert_eq!(parameter(&[("service", "a"), ("outcome", "fault"), ("minLatency", "1s")]), "minLatency");
    assert_eq!(parameter(&[("service", "a"), ("minLatency", "fast")]), "minLatency");
    assert_eq!(parameter(&[("service", "a"), ("outcome", "fault"), ("from", "20"), ("to", "10")]), "from");
    assert_eq!(parameter(&[("outcome", "fault")]), "service");
    assert_eq!(parameter(&[("service", "a"), ("outcome", "fault"), ("by", "x")]), "by");
}
