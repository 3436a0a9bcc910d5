use super::*;
use crate::config::Config;
use crate::investigate::tests::fixture::{customers_timeline, customers_timeline_of, NOW};

/// The fixture's series, with room for every value.
fn timeline() -> (crate::investigate::timeline::Timeline, TableKeys) {
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
    // Span attributes: the mobile app sent 4 of the 6 faults and 1 of the 14 others; the
    // browser 2 faults and 11 others; the two requests without a user agent are in neither.
    assert_eq!(
        values(&answer, "user_agent.original"),
        vec![
            ("petclinic-mobile/2.1", 4, 1, 4.0 / 6.0, 1.0 / 14.0, Some((4.0 / 6.0) / (1.0 / 14.0))),
            ("Mozilla/5.0", 2, 11, 2.0 / 6.0, 11.0 / 14.0, Some((2.0 / 6.0) / (11.0 / 14.0))),
        ]
    );
    // Every request is a GET of /owners: no difference, a lift of 1.
    assert_eq!(values(&answer, "http.request.method"), vec![("GET", 6, 14, 1.0, 1.0, Some(1.0))]);
    assert_eq!(values(&answer, "http.route"), vec![("/owners", 6, 14, 1.0, 1.0, Some(1.0))]);
    // The pod's and the version's first values differ by the same (5/6 − 1/14), ties by name;
    // then the user agent (4/6 − 1/14); then the method and route (0). Keys nothing had
    // (other dimensions, `url.scheme`, ...) are left out.
    let keys: Vec<&str> = answer.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["k8s.pod.name", "service.version", "user_agent.original", "http.request.method", "http.route"]
    );
    assert_eq!(answer.keys[0].values[0].trace_ids.len(), 3, "example traces, the faults first");
}

#[test]
fn span_attributes_are_compared_without_any_dimension_too() {
    // With no dimension configured (but the version, always tracked), the totals come from the
    // attribute table just the same.
    let mut config = Config::default();
    config.investigation.dimensions.clear();
    let (timeline, keys) = customers_timeline_of(&config);
    assert_eq!(&*keys.dimensions, &[std::sync::Arc::from("service.version")]);
    let answer = compare(&timeline, &keys, &query(&[("service", "customers"), ("minLatency", "100ms")]), NOW);
    assert_eq!((answer.selection.requests, answer.baseline.requests), (6, 14));
    // pod-2's six slow requests: four from the mobile app, two from the browser.
    assert_eq!(
        values(&answer, "user_agent.original")[0],
        ("petclinic-mobile/2.1", 4, 1, 4.0 / 6.0, 1.0 / 14.0, Some(28.0 / 3.0))
    );
    assert!(answer.keys.iter().all(|k| k.key != "k8s.pod.name"));
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
