use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::format::{Decoder, InputEncoding};
use crate::investigate::group::wire::PointWire;
use crate::model::{Encoding, Span};
use crate::signals::SignalStore;

/// The OpenTelemetry Python SDK's spans (tests/fixtures/python_sdk.py): owners-api's server span
/// `GET /owners/{id}` answered 503 and recorded a LookupError.
fn sdk_spans() -> (Vec<Span>, serde_json::Value) {
    let dir = std::env::var("TRACEWARDEN_PYTHON_FIXTURE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").to_string());
    let payload = std::fs::read(format!("{dir}/python-sdk-traces.pb")).unwrap();
    let expected = serde_json::from_slice(&std::fs::read(format!("{dir}/python-sdk-traces.json")).unwrap()).unwrap();
    let mut spans = Vec::new();
    Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)).decode(&bytes::Bytes::from(payload), &mut spans).unwrap();
    (spans, expected)
}

/// The latest end of the spans, as `now`: they are inside the window.
fn now_of(spans: &[Span]) -> Nanos {
    Nanos(spans.iter().map(|s| s.end_unix_nano).max().unwrap())
}

#[test]
fn the_faults_of_two_instances_are_one_group_at_the_owner() {
    let (spans, expected) = sdk_spans();
    let now = now_of(&spans);
    let config = Config::default();
    // Two instances each saw the failing request once (or the same one twice, replayed: the
    // counts add up as the request counts do).
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    for _ in 0..2 {
        let mut store = SignalStore::new(config.signal_settings());
        store.record_trace(&spans, now);
        // Through the wire, as an owner reads other instances' points.
        let keys = store.table_keys();
        let points: Vec<_> = store.flush_points().iter().map(|p| PointWire::of(p, &keys).point(&keys)).collect();
        timeline.merge(&points, now);
    }
    let query = ExceptionsQuery::parse([("service", "owners-api")]).unwrap();
    let answer = exceptions(&timeline, &query, now);
    assert!(!answer.estimated);
    assert_eq!(answer.groups.len(), 1, "{answer:?}");
    let group = &answer.groups[0];
    let want = &expected["exception"];
    assert_eq!(
        (group.service.as_str(), group.operation.as_str(), group.environment.as_str()),
        ("owners-api", "GET /owners/{id}", "ci")
    );
    assert_eq!(group.type_name, want["type"].as_str().unwrap());
    assert_eq!(group.message, want["template"].as_str().unwrap());
    assert_eq!(group.frame, want["frame"].as_str().unwrap());
    assert_eq!(group.count, 2);
    let server = spans.iter().find(|s| s.http_status == 503).unwrap();
    assert_eq!(group.trace_ids, vec![crate::model::trace_id_hex(&server.trace_id)]);
    assert_eq!(group.first_seen, group.last_seen, "one request");
    assert!(group.example_message.starts_with("owner 4711 not found"), "{}", group.example_message);
    assert!(group.example_stack.contains("LookupError"), "{}", group.example_stack);
    assert_eq!(group.id.len(), 16);
    // Another service's exceptions: none; an unknown parameter is named.
    let other = ExceptionsQuery::parse([("service", "vets")]).unwrap();
    assert!(exceptions(&timeline, &other, now).groups.is_empty());
    assert_eq!(ExceptionsQuery::parse([("service", "a"), ("edge", "x")]).unwrap_err().parameter, "edge");
    assert_eq!(ExceptionsQuery::parse([("operation", "a")]).unwrap_err().parameter, "service");
}

#[test]
fn an_exception_seen_again_counts_in_its_group_without_being_read_again() {
    let (spans, expected) = sdk_spans();
    let now = now_of(&spans);
    let mut store = SignalStore::new(Config::default().signal_settings());
    // The second time, the exception's fingerprint finds its group.
    for _ in 0..3 {
        store.record_trace(&spans, now);
    }
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    timeline.merge(&store.flush_points(), now);
    let answer = exceptions(&timeline, &ExceptionsQuery::parse([("service", "owners-api")]).unwrap(), now);
    assert_eq!(answer.groups.len(), 1);
    assert_eq!(answer.groups[0].count, 3);
    assert_eq!(answer.groups[0].message, expected["exception"]["template"].as_str().unwrap());
}
