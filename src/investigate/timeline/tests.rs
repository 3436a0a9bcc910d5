use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::signals::{ServiceKey, SignalStore};
use crate::testing::{spans, SpanSpec, SERVER};

const T: u64 = 1_700_000_000_000_000_000;
const STEP: Duration = Duration::from_secs(10);

fn at(steps: u32) -> Nanos {
    Nanos(T).saturating_add(STEP * steps)
}

fn api() -> SeriesId {
    SeriesId::Service(ServiceKey {
        service: Arc::from("api"),
        operation: Arc::from("GET /a"),
        environment: Arc::from("default"),
    })
}

/// Points of `api GET /a`: one request per (step, status, pod) recorded at that step.
fn flushed(requests: &[(u32, i64, &'static str)]) -> Vec<FlushedPoint> {
    let mut store = SignalStore::new(Config::default().signal_settings());
    for (i, &(step, status, pod)) in requests.iter().enumerate() {
        let span = SpanSpec::new("api", (i % 250) as u8 + 1, 1, None, SERVER, "x")
            .http("GET", "/a", status)
            .resource("k8s.pod.name", pod);
        store.record_trace(&spans(&[span]), at(step));
    }
    store.flush_points()
}

fn timeline() -> Timeline {
    Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100)
}

fn requests_by_step(timeline: &Timeline) -> Vec<(u64, u64, u64)> {
    timeline
        .points(|s| *s == api(), 0, u64::MAX)
        .into_iter()
        .map(|(s, a)| (s, a.counts.requests, a.counts.faults))
        .collect()
}

proptest! {
    /// Two instances' points merged, in any order and however they were flushed, equal one
    /// instance's points of all the requests.
    #[test]
    fn merging_instances_equals_one_instance(
        requests in proptest::collection::vec((0u32..20, prop_oneof![Just(200i64), Just(503)], prop_oneof![Just("a"), Just("b"), Just("c")]), 1..60),
        split in 0usize..60,
        reversed in any::<bool>(),
    ) {
        let split = split.min(requests.len());
        let now = at(20);
        let mut whole = timeline();
        whole.merge(&flushed(&requests), now);
        let mut parts = timeline();
        let (mut first, mut second) = (flushed(&requests[..split]), flushed(&requests[split..]));
        if reversed {
            std::mem::swap(&mut first, &mut second);
        }
        parts.merge(&second, now);
        parts.merge(&first, now);
        prop_assert_eq!(requests_by_step(&parts), requests_by_step(&whole));
        for (step, aggregate) in whole.points(|s| *s == api(), 0, u64::MAX) {
            let other = parts.points(|s| *s == api(), step, step);
            prop_assert_eq!(&other[0].1.latency, &aggregate.latency);
        }
        let rows = |t: &Timeline| {
            let mut rows: Vec<(String, u64)> = t
                .contributors(|s| *s == api(), now)
                .rows()
                .iter()
                .map(|r| (r.profile.values[3].as_deref().unwrap_or("").to_string(), r.counts.requests))
                .collect();
            rows.sort();
            rows
        };
        prop_assert_eq!(rows(&parts), rows(&whole));
    }
}

#[test]
fn points_age_out_of_the_history_and_contributors_out_of_the_window() {
    let mut timeline = Timeline::new(Duration::from_secs(60), Duration::from_secs(20), 100);
    timeline.merge(&flushed(&[(0, 200, "a"), (3, 503, "a"), (5, 200, "b")]), at(5));
    let step0 = at(0).0 / STEP.as_nanos() as u64;
    assert_eq!(requests_by_step(&timeline), vec![(step0, 1, 0), (step0 + 3, 1, 1), (step0 + 5, 1, 0)]);
    // At step 6 the history (6 steps) starts at step 1; the window (2 steps) at step 5.
    timeline.expire(at(6));
    assert_eq!(requests_by_step(&timeline), vec![(step0 + 3, 1, 1), (step0 + 5, 1, 0)]);
    let (_, series) = timeline.series().next().expect("one series");
    let tables: Vec<usize> = series.between(0, u64::MAX).map(|(_, p)| p.contributors.rows().len()).collect();
    assert_eq!(tables, vec![0, 1], "the table of step 3 is dropped: it is outside the window");
    assert_eq!(timeline.contributors(|_| true, at(6)).rows().len(), 1);
    // Points older than the history are not taken in.
    timeline.merge(&flushed(&[(0, 200, "a")]), at(6));
    assert_eq!(requests_by_step(&timeline).len(), 2);
    timeline.expire(at(20));
    assert_eq!(timeline.series_count(), 0, "a series without points goes");
}

#[test]
fn the_window_is_the_current_step_and_the_ones_before() {
    let timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    let (from, to) = timeline.window(at(10));
    assert_eq!(to - from + 1, 6, "60 s: six steps, the current one partial");
    let mut with_points = timeline;
    with_points.merge(&flushed(&[(4, 200, "a"), (5, 200, "a"), (10, 503, "a")]), at(10));
    let window = with_points.over_window(at(10));
    assert_eq!(window.len(), 2, "the service series and its client series");
    let (_, _, aggregate) = window.iter().find(|(s, _, _)| **s == api()).expect("api");
    assert_eq!((aggregate.counts.requests, aggregate.counts.faults), (2, 1), "step 4 is outside");
}

#[test]
fn series_beyond_the_cap_are_refused() {
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 1);
    timeline.merge(&flushed(&[(0, 200, "a")]), at(1));
    assert_eq!(timeline.series_count(), 1);
    assert_eq!(timeline.refused, 1, "the client series found no room");
}
