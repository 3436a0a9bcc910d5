use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::signals::SignalStore;
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT, SERVER};

const T: u64 = 1_700_000_000_000_000_000;

fn at(seconds: u64) -> Nanos {
    Nanos(T + seconds * 1_000_000_000)
}

/// A frontend request calling the customers service, recorded at `seconds`.
fn record(store: &mut SignalStore, trace: u8, seconds: u64, status: i64) {
    let trace_spans = spans(&[
        SpanSpec::new("frontend", trace, 1, None, SERVER, "GET").http("GET", "/owners", status).micros(30_000),
        SpanSpec::new("frontend", trace, 2, Some(1), CLIENT, "GET")
            .attr("server.address", AttrSpec::Str("customers"))
            .attr("http.response.status_code", AttrSpec::Int(status))
            .micros(20_000),
    ]);
    store.record_trace(&trace_spans, at(seconds));
}

fn timeline_of(requests: &[(u8, u64, i64)], history: Duration) -> Timeline {
    let mut store = SignalStore::new(Config::default().signal_settings());
    for &(trace, seconds, status) in requests {
        record(&mut store, trace, seconds, status);
    }
    let mut timeline = Timeline::new(history, Duration::from_secs(60), 100);
    timeline.merge(&store.flush_points(), at(requests.iter().map(|r| r.1).max().unwrap_or(0)));
    timeline
}

fn parse(pairs: &[(&str, &str)]) -> HistoryQuery {
    HistoryQuery::parse(pairs.iter().copied()).expect("valid query")
}

#[test]
fn every_step_is_answered_with_the_points_measured() {
    let timeline = timeline_of(&[(1, 0, 200), (2, 5, 500), (3, 25, 200)], Duration::from_secs(60));
    let answer = history(&timeline, &parse(&[("service", "frontend")]), at(25));
    assert_eq!(answer.step_seconds, 10);
    // 60 s of history at step T+20 s: six steps, the first three before any request.
    let counts: Vec<(u64, u64)> = answer.points.iter().map(|p| (p.requests, p.faults)).collect();
    assert_eq!(counts, vec![(0, 0), (0, 0), (0, 0), (2, 1), (0, 0), (1, 0)]);
    let first = &answer.points[3];
    assert_eq!(
        first.time,
        chrono::DateTime::from_timestamp((T / 1_000_000_000) as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    assert_eq!(first.trace_ids[0], format!("{:032x}", u128::from_be_bytes([2; 16])), "the fault first");
    assert!(answer.points[4].p99_seconds.is_none(), "a gap has no latency");
    let p90 = first.p90_seconds.expect("latency");
    assert!((p90 - 0.03).abs() <= 0.03 * 0.01, "{p90}");
}

#[test]
fn an_edge_and_a_dependency_answer_the_calls() {
    let timeline = timeline_of(&[(1, 0, 200), (2, 1, 503)], Duration::from_secs(3600));
    let now = at(1);
    let edge = history(&timeline, &parse(&[("edge", "frontend:default->customers:default")]), now);
    let dependency = history(&timeline, &parse(&[("service", "frontend"), ("remote_service", "customers")]), now);
    assert_eq!(edge, dependency);
    let last = edge.points.last().expect("points");
    assert_eq!((last.requests, last.faults), (2, 1));
    let p50 = last.p50_seconds.expect("latency");
    assert!((p50 - 0.02).abs() <= 0.02 * 0.01, "client-side latency: {p50}");
    let client = history(&timeline, &parse(&[("edge", "client:default->frontend:default")]), now);
    assert_eq!(client.points.last().map(|p| p.requests), Some(2));
    assert_eq!(edge.points.len(), 360, "an hour of 10 s steps");
}

#[test]
fn from_and_to_narrow_the_range_within_the_history() {
    let timeline = timeline_of(&[(1, 0, 200), (2, 30, 200)], Duration::from_secs(3600));
    let from = (T / 1_000_000_000).to_string();
    let to = (T / 1_000_000_000 + 15).to_string();
    let answer = history(&timeline, &parse(&[("service", "frontend"), ("from", &from), ("to", &to)]), at(30));
    assert_eq!(answer.points.iter().map(|p| p.requests).collect::<Vec<_>>(), vec![1, 0]);
    let long_ago = history(&timeline, &parse(&[("service", "frontend"), ("from", "0"), ("to", "10")]), at(30));
    assert!(long_ago.points.is_empty(), "before the history kept");
}

#[test]
fn bad_parameters_are_named() {
    let error = |pairs: &[(&str, &str)]| HistoryQuery::parse(pairs.iter().copied()).unwrap_err().parameter;
    assert_eq!(error(&[]), "service");
    assert_eq!(error(&[("service", "a"), ("from", "yesterday")]), "from");
    assert_eq!(error(&[("service", "a"), ("from", "20"), ("to", "10")]), "from");
    assert_eq!(error(&[("service", "a"), ("step", "60")]), "step");
    assert_eq!(error(&[("service", "a"), ("edge", "a:x->b:x")]), "edge");
}
