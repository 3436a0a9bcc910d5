use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::clock::Nanos;
use crate::config::Config;
use crate::signals::{FlushedPoint, SeriesId, SignalStore};
use crate::testing::{spans, SpanSpec, SERVER};

const NOW: Nanos = Nanos(1_700_000_000_000_000_000);
const VERSIONS: [&str; 10] = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// One point of `api`'s entry series per request (version index, pod index, fault), as many
/// instances would publish.
fn points(requests: &[(usize, usize, bool)]) -> Vec<FlushedPoint> {
    let mut store = SignalStore::new(Config::default().signal_settings());
    let mut all = Vec::new();
    for (i, &(version, pod, fault)) in requests.iter().enumerate() {
        let span = SpanSpec::new("api", (i % 250) as u8 + 1, 1, None, SERVER, "x")
            .http("GET", "/a", if fault { 500 } else { 200 })
            .resource("service.version", VERSIONS[version])
            .resource("k8s.pod.name", PODS[pod]);
        store.record_trace(&spans(&[span]), NOW);
        all.extend(store.flush_points().into_iter().filter(|p| matches!(p.series, SeriesId::Service(_))));
    }
    all
}

/// Merges points into one as the timeline does: versions of the point so far, then the point.
fn merged(points: &[FlushedPoint], columns: &VersionColumns) -> (Point, StepVersions) {
    let (mut point, mut versions) = (Point::default(), StepVersions::default());
    for (i, flushed) in points.iter().enumerate() {
        let incoming = StepVersions::of(&flushed.point, columns);
        if i == 0 {
            versions = incoming;
        } else {
            versions.merge(&point, &incoming, &flushed.point);
        }
        point.merge(&flushed.point);
    }
    (point, versions)
}

proptest! {
    /// Whatever the order the points arrive in, each version's row holds exactly its requests
    /// and faults, the rows add up to the point, and the instances are the pods that ran it;
    /// beyond eight versions the step says it is estimated and still adds up.
    #[test]
    fn rows_add_up_to_the_point_in_any_order(
        requests in prop::collection::vec((0..10usize, 0..3usize, any::<bool>()), 1..60),
        order in any::<u64>(),
    ) {
        let columns = VersionColumns::of(Config::default().signal_settings().dimensions.iter()
            .map(|d| Arc::from(d.as_str())).collect::<Vec<_>>().as_slice());
        let mut points = points(&requests);
        // A deterministic shuffle from `order`.
        let mut state = order | 1;
        for i in (1..points.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            points.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let (point, versions) = merged(&points, &columns);
        let mut expected: BTreeMap<&str, (u64, u64, Vec<&str>)> = BTreeMap::new();
        for &(version, pod, fault) in &requests {
            let entry = expected.entry(VERSIONS[version]).or_default();
            entry.0 += 1;
            entry.1 += fault as u64;
            if !entry.2.contains(&PODS[pod]) { entry.2.push(PODS[pod]); }
        }
        let total: u64 = versions.rows().iter().map(|r| r.counts.requests).sum();
        let faults: u64 = versions.rows().iter().map(|r| r.counts.faults).sum();
        prop_assert_eq!(total, point.counts.requests);
        prop_assert_eq!(faults, point.counts.faults);
        let latency: u64 = versions.rows().iter().map(|r| r.latency(&point).count()).sum();
        prop_assert_eq!(latency, point.counts.requests);
        if expected.len() <= MAX_VERSIONS {
            prop_assert!(!versions.estimated);
            let mut actual: BTreeMap<&str, (u64, u64, Vec<&str>)> = BTreeMap::new();
            for row in versions.rows() {
                let mut instances: Vec<&str> = row.instances.iter().map(|i| &**i).collect();
                instances.sort();
                actual.insert(row.version.as_deref().unwrap(), (row.counts.requests, row.counts.faults, instances));
            }
            for entry in expected.values_mut() { entry.2.sort(); }
            prop_assert_eq!(actual, expected);
        } else {
            prop_assert!(versions.estimated);
            prop_assert_eq!(versions.rows().len(), MAX_VERSIONS);
        }
        // One version: the row shares the point's sketch.
        if let [only] = versions.rows() {
            prop_assert!(std::ptr::eq(only.latency(&point), &point.latency));
        }
    }
}
