use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::Outcome;
use crate::signals::sketch::Bucket;

fn keys() -> TableKeys {
    TableKeys {
        dimensions: vec![Arc::from("k8s.pod.name"), Arc::from("service.version")].into(),
        attributes: vec![Arc::from("http.route"), Arc::from("user_agent.original")].into(),
    }
}

fn attribute_profile(route: &str, agent: Option<&str>) -> Profile {
    Profile::new(vec![Some(Arc::from(route)), agent.map(Arc::from)].into())
}

fn profile(pod: &str, version: &str) -> Profile {
    Profile::new(vec![Some(Arc::from(pod)), Some(Arc::from(version))].into())
}

/// A point of `requests` requests spread over `pods` pods, one in `fault_every` a fault, and
/// over three routes and two user agents (and none).
fn point(requests: u32, pods: u32, fault_every: u32) -> FlushedPoint {
    let mut point = Point::default();
    for r in 0..requests {
        let outcome = if fault_every > 0 && r % fault_every == 0 { Outcome::Fault } else { Outcome::Ok };
        let trace_id = [(r % 251) as u8; 16];
        let bucket = Bucket::of_nanos(1_000_000 * (1 + r as u64 % 97));
        point.record(outcome, bucket, &trace_id);
        let pod = format!("customers-{}", r % pods.max(1));
        point.contributors.record(&profile(&pod, "1.4.0"), 1_000, outcome, bucket, &trace_id);
        let route = format!("/owners/{}", r % 3);
        let agent = [Some("Mozilla/5.0"), Some("curl/8.5"), None][(r as usize + r as usize / 3) % 3];
        point.attributes.record(&attribute_profile(&route, agent), 1_000, outcome, bucket, &trace_id);
    }
    // An exception group (points of entry series carry them; the wire does not mind which).
    let mut examples = Examples::default();
    examples.record(&[7; 16], Outcome::Fault);
    let group = ExceptionGroup {
        key: ExceptionKey {
            type_name: "LookupError".into(),
            message: "owner {n} missing".into(),
            frame: "File \"/app/owners.py\", line 9, in find".into(),
        },
        count: 3,
        first_seen: 1_700_000_000_000_000_000,
        last_seen: 1_700_000_009_000_000_000,
        versions: vec!["1.4.0".into()],
        instances: vec!["customers-1".into(), "customers-2".into()],
        examples,
        example_message: "owner 4711 missing".into(),
        example_stack: "Traceback (most recent call last):".into(),
    };
    point.exceptions = ExceptionTable::from_groups(vec![group], false);
    let series = SeriesId::Dependency(DependencyKey {
        service: Arc::from("customers"),
        operation: Arc::from("GET /owners/{id}"),
        remote_service: Arc::from("postgresql"),
        remote_operation: Arc::from("SELECT"),
        environment: Arc::from("production"),
    });
    FlushedPoint { series, remote_kind: RemoteKind::Database, step: 180_000_123, point }
}

fn merged(parts: &[Vec<u8>]) -> FlushedPoint {
    let mut decoded = parts.iter().map(|p| decode_point(p).expect("every part reads back").point(&keys()));
    let mut total = decoded.next().expect("at least one part");
    for part in decoded {
        assert_eq!((&part.series, part.step), (&total.series, total.step), "every part is of the same point");
        total.point.merge(&part.point);
    }
    total
}

#[test]
fn a_point_reads_back_as_it_was_written() {
    let original = point(500, 7, 9);
    let payloads = split_point(PointWire::of(&original, &keys()), MAX_MESSAGE_BYTES);
    assert_eq!(payloads.len(), 1, "a point this small is one record");
    let back = merged(&payloads);
    assert_eq!(back.series, original.series);
    assert_eq!(back.remote_kind, RemoteKind::Database);
    assert_eq!(back.point, original.point);
    assert_eq!(back.point.counts.requests, 500);
    assert_eq!(back.point.counts.faults, 56, "r = 0, 9, …, 495");
}

#[test]
fn a_point_too_large_for_one_record_is_split_and_merges_back_whole() {
    let original = point(3_000, 600, 7);
    let whole = split_point(PointWire::of(&original, &keys()), usize::MAX);
    let limit = whole[0].len() / 5;
    let parts = split_point(PointWire::of(&original, &keys()), limit);
    assert!(parts.len() >= 5, "{} parts", parts.len());
    assert!(parts.iter().all(|p| p.len() <= limit), "every part within the limit");
    let back = merged(&parts);
    assert_eq!(back.point.counts, original.point.counts);
    assert_eq!(back.point.latency, original.point.latency);
    let mut rows: Vec<_> = back.point.contributors.rows().iter().map(|r| (r.profile.clone(), r.counts)).collect();
    let mut expected: Vec<_> =
        original.point.contributors.rows().iter().map(|r| (r.profile.clone(), r.counts)).collect();
    rows.sort_by_key(|(p, _)| p.values.clone());
    expected.sort_by_key(|(p, _)| p.values.clone());
    assert_eq!(rows, expected, "every contributor row, once");
    let mut rows: Vec<_> = back.point.attributes.rows().iter().map(|r| (r.profile.clone(), r.counts)).collect();
    let mut expected: Vec<_> = original.point.attributes.rows().iter().map(|r| (r.profile.clone(), r.counts)).collect();
    rows.sort_by_key(|(p, _)| p.values.clone());
    expected.sort_by_key(|(p, _)| p.values.clone());
    assert_eq!(rows.len(), 9, "three routes, each with two agents and none");
    assert_eq!(rows, expected, "every attribute row, once");
    assert_eq!(back.point.exceptions, original.point.exceptions, "the exception groups, once");
}

#[test]
fn contributor_values_follow_the_dimension_names_of_the_reader() {
    let original = point(10, 2, 0);
    let payloads = split_point(PointWire::of(&original, &keys()), MAX_MESSAGE_BYTES);
    let reader = TableKeys {
        dimensions: vec![Arc::from("service.version"), Arc::from("cloud.region")].into(),
        attributes: vec![Arc::from("url.scheme"), Arc::from("http.route")].into(),
    };
    let back = decode_point(&payloads[0]).unwrap().point(&reader);
    let values: Vec<_> = back.point.contributors.rows().iter().map(|r| r.profile.values.to_vec()).collect();
    assert_eq!(values, vec![vec![Some(Arc::from("1.4.0")), None]; 2], "version kept, the unknown dimension empty");
    let routes: Vec<_> = back.point.attributes.rows().iter().map(|r| r.profile.values.to_vec()).collect();
    assert!(routes.iter().all(|v| v[0].is_none() && v[1].as_deref().is_some_and(|r| r.starts_with("/owners/"))));
    // Rows that now have the same values are still apart (each merges where it came from).
    assert_eq!(routes.len(), 9);
}

#[test]
fn a_checkpoint_too_large_keeps_the_busiest_rows_and_says_so() {
    let original = point(3_000, 600, 7);
    let wire = PointWire::of(&original, &keys());
    let whole = checkpoint_value(wire.clone(), usize::MAX);
    let capped = checkpoint_value(wire, whole.len() / 3);
    assert!(capped.len() <= whole.len() / 3);
    let back = decode_point(&capped).unwrap();
    assert!(back.estimated, "a capped table is flagged estimated");
    assert_eq!(back.counts, [3_000, 429, 0, 0], "the point's own figures are whole");
    assert!(!back.contributors.is_empty() && back.contributors.len() < 600);
}

#[test]
fn keys_tell_points_from_markers_and_markers_hold_offsets() {
    let series = SeriesWire::of(&point(1, 1, 0).series);
    assert_eq!(decode_checkpoint_key(&checkpoint_key(&series, 42)), Some(CheckpointKey::Point { series, step: 42 }));
    assert_eq!(decode_checkpoint_key(&marker_key(7)), Some(CheckpointKey::Marker { partition: 7 }));
    assert_eq!(decode_marker(&marker_value(123_456_789)), Some(123_456_789));
    assert_eq!(
        decode_checkpoint_key(&alerted_key("a1b2")),
        Some(CheckpointKey::Alerted { fingerprint: "a1b2".into() })
    );
}

/// Version 3 only added kinds, version 4 the attribute rows at a point's end: a version 2 or 3
/// point (this one's without its last three fields) reads without attribute rows, and a
/// changelog key is the same in all (led by 2), so compaction keeps one value per point across
/// an upgrade.
#[test]
fn version_2_and_3_payloads_read_and_changelog_keys_stay_as_they_were() {
    let mut original = point(3, 1, 0);
    original.point.attributes = Default::default();
    let mut payload = split_point(PointWire::of(&original, &keys()), MAX_MESSAGE_BYTES).remove(0);
    assert_eq!(&payload[payload.len() - 3..], [0, 0, 0], "no attribute keys, no rows, not estimated");
    payload.truncate(payload.len() - 3);
    for version in [2, 3] {
        payload[0] = version;
        let back = decode_point(&payload).expect("an older point reads").point(&keys());
        assert_eq!(back.point, original.point);
        let mut points = vec![version];
        postcard::to_io(&vec![PointWire::of(&original, &keys())], &mut points).unwrap();
        points.truncate(points.len() - 3);
        assert_eq!(decode_points(&points).map(|p| p[0].counts[0]), Some(3), "a points record of version {version}");
    }
    let series = SeriesWire::of(&point(1, 1, 0).series);
    assert_eq!(checkpoint_key(&series, 42)[0], 2);
    assert_eq!(marker_key(7)[0], 2);
}

#[test]
fn a_queue_series_reads_back_and_is_owned_by_its_edge_source() {
    let queue = |deliveries| {
        SeriesId::Queue(QueueKey {
            service: Arc::from("billing"),
            queue: Arc::from("kafka:billing-events"),
            environment: Arc::from("prod"),
            deliveries,
        })
    };
    for deliveries in [false, true] {
        assert_eq!(SeriesWire::of(&queue(deliveries)).series(), queue(deliveries));
    }
    // Publishes belong with the producer's series, deliveries with the queue.
    assert_eq!(service_of(&queue(false)), "billing");
    assert_eq!(service_of(&queue(true)), "kafka:billing-events");
}

#[test]
fn payloads_of_another_version_or_garbage_are_skipped() {
    let mut payload = split_point(PointWire::of(&point(3, 1, 0), &keys()), MAX_MESSAGE_BYTES).remove(0);
    assert!(decode_point(&payload).is_some());
    payload[0] = VERSION + 1;
    assert!(decode_point(&payload).is_none());
    assert!(decode_point(b"").is_none());
    assert!(decode_point(&[VERSION, 0xff, 0xff, 0xff]).is_none());
    assert!(decode_rollup(b"{\"json\": true}").is_none());
}

fn announcement() -> Announcement {
    Announcement {
        instance: 7,
        url: Some("http://10.0.0.7:9464".into()),
        sent: 1_800_000_000_000_000_000,
        partitions: vec![1, 5],
        partition_count: 64,
        slos: vec!["checkout".into()],
        slo_reports: Vec::new(),
    }
}

#[test]
fn a_large_rollup_is_split_and_every_part_carries_the_announcement() {
    let original = point(2_000, 1, 3);
    let rollups: Vec<RollupSeries> = (0..2_000)
        .map(|i| {
            let series = SeriesId::Service(ServiceKey {
                service: Arc::from("frontend"),
                operation: Arc::from(format!("GET /route/{i}")),
                environment: Arc::from("production"),
            });
            RollupSeries::of(&series, RemoteKind::Remote, &original.point.counts, &original.point.latency)
        })
        .collect();
    let whole = rollup_payloads(announcement(), rollups.clone(), usize::MAX);
    assert_eq!(whole.len(), 1);
    let parts = rollup_payloads(announcement(), rollups.clone(), whole[0].len() / 4);
    assert!(parts.len() >= 4);
    let mut back = Vec::new();
    for part in &parts {
        assert!(part.len() <= whole[0].len() / 4);
        let message = decode_rollup(part).unwrap();
        assert_eq!(message.from, announcement());
        back.extend(message.series);
    }
    assert_eq!(back, rollups, "every series once, in order");
    let empty = rollup_payloads(announcement(), Vec::new(), 100);
    assert_eq!(empty.len(), 1, "an owner of nothing still announces itself");
}

#[test]
fn slo_reports_larger_than_a_message_are_spread_over_the_parts() {
    let names: Vec<String> = (0..1_000).map(|i| format!("slo-{i}")).collect();
    let reports: Vec<String> =
        names.iter().map(|n| format!("{{\"name\":\"{n}\",\"pad\":\"{}\"}}", "x".repeat(1_000))).collect();
    let from = Announcement { slos: names.clone(), slo_reports: reports.clone(), ..announcement() };
    let parts = rollup_payloads(from, Vec::new(), MAX_MESSAGE_BYTES);
    assert!(parts.len() >= 2, "a megabyte of reports in {} parts", parts.len());
    let mut back = Vec::new();
    for part in &parts {
        assert!(part.len() <= MAX_MESSAGE_BYTES, "{} bytes", part.len());
        let message = decode_rollup(part).unwrap();
        assert_eq!(message.from.slos, names, "every part names every SLO evaluated");
        back.extend(message.from.slo_reports);
    }
    assert_eq!(back, reports, "every report once, in order");
}

#[test]
fn a_series_and_its_dependencies_share_a_partition() {
    let service = SeriesId::Service(ServiceKey {
        service: Arc::from("customers"),
        operation: Arc::from("GET"),
        environment: Arc::from("production"),
    });
    let dependency = point(1, 1, 0).series;
    let client = SeriesId::Client { service: Arc::from("customers"), environment: Arc::from("staging") };
    let p = series_partition(&service, 64);
    assert!((0..64).contains(&p));
    assert_eq!(series_partition(&dependency, 64), p);
    assert_eq!(series_partition(&client, 64), p);
    assert_eq!(service_partition("customers", 64), p);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the point and the limit, the parts merge back into the point.
    #[test]
    fn split_parts_merge_back_into_the_point(requests in 1u32..1_500, pods in 1u32..300, fault_every in 0u32..10, divisor in 1usize..12) {
        let original = point(requests, pods, fault_every);
        let whole = split_point(PointWire::of(&original, &keys()), usize::MAX);
        let parts = split_point(PointWire::of(&original, &keys()), (whole[0].len() / divisor).max(1));
        let back = merged(&parts);
        prop_assert_eq!(back.point.counts, original.point.counts);
        prop_assert_eq!(&back.point.latency, &original.point.latency);
        prop_assert_eq!(&back.point.examples, &original.point.examples);
        let total = |p: &Point| p.contributors.rows().iter().map(|r| r.counts.requests).sum::<u64>();
        prop_assert_eq!(total(&back.point), total(&original.point));
        prop_assert_eq!(back.point.contributors.rows().len(), original.point.contributors.rows().len());
        let attributes = |p: &Point| p.attributes.rows().iter().map(|r| r.counts.requests).sum::<u64>();
        prop_assert_eq!(attributes(&back.point), attributes(&original.point));
        prop_assert_eq!(back.point.attributes.rows().len(), original.point.attributes.rows().len());
    }
}
