use super::*;
use crate::config::Config;
use crate::decision::Decision;
use crate::signals::SignalStore;
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT, SERVER};

const NOW: crate::clock::Nanos = crate::clock::Nanos(1_700_000_000_000_000_000);

fn trace() -> Vec<crate::model::Span> {
    spans(&[
        SpanSpec::new("frontend", 7, 1, None, SERVER, "GET")
            .http("GET", "/owners", 503)
            .resource("k8s.pod.name", "frontend-1")
            .resource("service.version", "2.0"),
        SpanSpec::new("frontend", 7, 2, Some(1), CLIENT, "SELECT")
            .attr("db.system", AttrSpec::Str("postgresql"))
            .resource("k8s.pod.name", "frontend-1")
            .resource("service.version", "2.0"),
    ])
}

/// Published and read back, points are the same points, whatever the order of dimensions.
#[test]
fn points_survive_the_wire() {
    let mut store = SignalStore::new(Config::default().signal_settings());
    store.record_trace(&trace(), NOW);
    let flushed = store.flush_points();
    assert_eq!(flushed.len(), 3, "service, client and dependency series");
    let dimensions: Vec<String> = store.dimensions().iter().map(|d| d.to_string()).collect();
    for point in &flushed {
        let json = serde_json::to_string(&point_wire(point)).expect("serialises");
        let wire: PointWire = serde_json::from_str(&json).expect("parses");
        let back = point_of(wire, &dimensions, store.dimensions());
        assert_eq!(back.series, point.series);
        assert_eq!(back.remote_kind, point.remote_kind);
        assert_eq!((back.step, &back.point), (point.step, &point.point));
    }
    // An instance with other dimensions keeps the values of the ones it has, in its own order.
    let theirs = vec!["service.version".to_string(), "k8s.pod.name".to_string()];
    let ours: Vec<Arc<str>> = vec![Arc::from("k8s.pod.name"), Arc::from("cloud.region")];
    let mut wire = point_wire(&flushed[0]);
    wire.contributors[0].values = vec![Some("2.0".into()), Some("frontend-1".into())];
    let back = point_of(wire, &theirs, &ours);
    let values: Vec<Option<&str>> =
        back.point.contributors.rows()[0].profile.values.iter().map(|v| v.as_deref()).collect();
    assert_eq!(values, vec![Some("frontend-1"), None]);
}

#[test]
fn summaries_survive_the_wire() {
    let spans = trace();
    let summary = TraceSummary::of(&spans, &Decision::keep(Arc::from("keep-faults"), 1.0));
    let json = serde_json::to_string(&summary_wire(&summary)).expect("serialises");
    let back = summary_of(serde_json::from_str(&json).expect("parses"), Some(Arc::from("http://b:9464")))
        .expect("well formed");
    assert_eq!(TraceSummary { held_by: None, ..back.clone() }, summary);
    assert_eq!(back.json(Some("http://a:9464")).held_by.as_deref(), Some("http://b:9464"));
    assert_eq!(summary.json(Some("http://a:9464")).held_by.as_deref(), Some("http://a:9464"));
    let mut wire = summary_wire(&summary);
    wire.outcome = "meh".into();
    assert!(summary_of(wire, None).is_none(), "a malformed summary is skipped");
}

/// A snapshot larger than Kafka takes is published in parts that each fit, and together they
/// carry every point, every summary and the SLOs once.
#[test]
fn a_large_snapshot_is_split_into_messages_kafka_accepts() {
    let mut store = SignalStore::new(Config::default().signal_settings());
    store.record_trace(&trace(), NOW);
    let point = store.flush_points().remove(0);
    let summary = TraceSummary::of(&trace(), &Decision::keep(Arc::from("keep-faults"), 1.0));
    let message = || SnapshotMessage {
        version: VERSION,
        instance: "a".into(),
        url: None,
        dimensions: vec!["k8s.pod.name".into()],
        points: (0..3_000).map(|_| point_wire(&point)).collect(),
        traces: (0..5_000).map(|_| summary_wire(&summary)).collect(),
        slos: Vec::new(),
    };
    let whole = serde_json::to_vec(&message()).unwrap().len();
    assert!(whole > 2 * MAX_MESSAGE_BYTES, "the test needs a snapshot of a few MB: {whole} bytes");
    let parts = message().encode_within(MAX_MESSAGE_BYTES);
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let (mut points, mut traces) = (0, 0);
    for part in &parts {
        assert!(part.len() <= MAX_MESSAGE_BYTES, "a part of {} bytes", part.len());
        let read: SnapshotMessage = serde_json::from_slice(part).expect("each part parses on its own");
        assert_eq!(read.instance, "a");
        points += read.points.len();
        traces += read.traces.len();
    }
    assert_eq!((points, traces), (3_000, 5_000));
    // A small snapshot stays one message.
    let small = SnapshotMessage { points: Vec::new(), traces: vec![summary_wire(&summary)], ..message() };
    assert_eq!(small.encode_within(MAX_MESSAGE_BYTES).len(), 1);
}
