use std::time::Duration;

use super::*;
use crate::clock::Nanos;
use crate::config::Config;
use crate::investigate::timeline::Timeline;
use crate::signals::SignalStore;
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT as CLIENT_KIND, CONSUMER, PRODUCER, SERVER};

const T: u64 = 1_700_000_000_000_000_000;
const NOW: Nanos = Nanos(T + 1_000_000_000);

/// Trace `t`: frontend GET /owners → customers GET /owners/{id} → postgresql SELECT (no server
/// span: a database). Trace 1 fails with 500 in both services.
fn owners(t: u8) -> Vec<crate::model::Span> {
    let status = if t == 1 { 500 } else { 200 };
    spans(&[
        SpanSpec::new("frontend", t, 1, None, SERVER, "GET").http("GET", "/owners", status).micros(30_000).starting(T),
        SpanSpec::new("frontend", t, 2, Some(1), CLIENT_KIND, "GET")
            .attr("server.address", AttrSpec::Str("customers"))
            .attr("http.response.status_code", AttrSpec::Int(status))
            .micros(20_000)
            .starting(T),
        SpanSpec::new("customers", t, 3, Some(2), SERVER, "GET")
            .http("GET", "/owners/{id}", status)
            .micros(15_000)
            .starting(T),
        SpanSpec::new("customers", t, 4, Some(3), CLIENT_KIND, "SELECT")
            .attr("db.system", AttrSpec::Str("postgresql"))
            .micros(5_000)
            .starting(T),
    ])
}

/// The timeline of traces 1 to 4, recorded at `NOW`.
fn timeline() -> Timeline {
    let mut store = SignalStore::new(Config::default().signal_settings());
    for t in 1..=4 {
        store.record_trace(&owners(t), NOW);
    }
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 1_000);
    timeline.merge(&store.flush_points(), NOW);
    timeline
}

fn counts(node: &MapNode) -> (&str, u64, u64) {
    (node.kind, node.figures.requests, node.figures.faults)
}

#[test]
fn nodes_and_edges_of_a_known_trace_set() {
    let timeline = timeline();
    let slos = vec![("front*".to_string(), "BREACHED"), ("frontend".to_string(), "OK")];
    let map = service_map(&timeline.window_rollup(NOW), &slos, &MapQuery::default());
    let nodes: BTreeMap<&str, &MapNode> = map.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    assert_eq!(
        nodes.keys().copied().collect::<Vec<_>>(),
        vec!["client:default", "customers:default", "frontend:default", "postgresql:default"]
    );
    assert_eq!(counts(nodes["client:default"]), ("client", 4, 1));
    assert_eq!(counts(nodes["frontend:default"]), ("service", 4, 1));
    assert_eq!(counts(nodes["customers:default"]), ("service", 4, 1));
    assert_eq!(counts(nodes["postgresql:default"]), ("database", 4, 0), "typed by db.system");
    assert_eq!(nodes["frontend:default"].figures.availability, Some(0.75));
    assert_eq!(nodes["frontend:default"].slo_status, Some("BREACHED"), "the worst SLO selecting it");
    assert_eq!(nodes["customers:default"].slo_status, None);
    // Sketch quantiles (within 1 %) of 4 requests of 30 ms.
    let p99 = nodes["frontend:default"].figures.p99_seconds.unwrap();
    assert!((p99 - 0.030).abs() <= 0.030 * 0.01, "{p99}");
    let p50 = nodes["postgresql:default"].figures.p50_seconds.unwrap();
    assert!((p50 - 0.005).abs() <= 0.005 * 0.01, "client-side latency of the calls into it: {p50}");

    let edges: BTreeMap<&str, (u64, u64)> =
        map.edges.iter().map(|e| (e.id.as_str(), (e.figures.requests, e.figures.faults))).collect();
    assert_eq!(
        edges,
        BTreeMap::from([
            ("client:default->frontend:default", (4, 1)),
            ("customers:default->postgresql:default", (4, 0)),
            ("frontend:default->customers:default", (4, 1)),
        ])
    );
    let json = serde_json::to_value(&map).unwrap();
    assert_eq!(json["nodes"][0]["p50Seconds"].as_f64().map(|v| v > 0.0), Some(true), "camelCase fields");
    assert_eq!(json["edges"][0]["source"], "client:default");
}

#[test]
fn focus_keeps_the_nodes_within_depth_hops() {
    let timeline = timeline();
    let query = MapQuery { environment: None, focus: Some(("customers".into(), 1)) };
    let map = service_map(&timeline.window_rollup(NOW), &[], &query);
    let ids: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["customers:default", "frontend:default", "postgresql:default"]);
    assert_eq!(map.edges.len(), 2, "the client edge is two hops away");
    let query = MapQuery { environment: None, focus: Some(("customers".into(), 2)) };
    assert_eq!(service_map(&timeline.window_rollup(NOW), &[], &query).nodes.len(), 4);
    let query = MapQuery { environment: Some("production".into()), focus: None };
    assert_eq!(
        service_map(&timeline.window_rollup(NOW), &[], &query),
        ServiceMap::default(),
        "no span in that environment"
    );
}

#[test]
fn the_window_ages_out() {
    let timeline = timeline();
    let later = NOW.saturating_add(Duration::from_secs(120));
    let map = service_map(&timeline.window_rollup(later), &[], &MapQuery::default());
    assert_eq!(map, ServiceMap::default(), "metrics.window (60 s) has passed");
}

#[test]
fn query_parameters_are_checked() {
    let parse = |pairs: &[(&str, &str)]| MapQuery::parse(pairs.iter().copied());
    assert_eq!(
        parse(&[("service", "customers"), ("environment", "demo")]),
        Ok(MapQuery { environment: Some("demo".into()), focus: Some(("customers".into(), DEFAULT_DEPTH)) })
    );
    assert_eq!(parse(&[("depth", "2")]).unwrap_err().parameter, "depth");
    assert_eq!(parse(&[("service", "a"), ("depth", "0")]).unwrap_err().parameter, "depth");
    assert_eq!(parse(&[("colour", "red")]).unwrap_err().parameter, "colour");
}

/// Trace `t`: visits POST /visits publishes to Kafka topic billing-events; billing's consumer
/// span is the publish's child and starts `delay_ms` after the publish started. Trace 1's
/// consumer fails.
fn billing_event(t: u8, delay_ms: u64) -> Vec<crate::model::Span> {
    let kafka = |span: SpanSpec, operation: &'static str| {
        span.attr("messaging.system", AttrSpec::Str("kafka"))
            .attr("messaging.destination.name", AttrSpec::Str("billing-events"))
            .attr("messaging.operation.type", AttrSpec::Str(operation))
    };
    let consumer = kafka(SpanSpec::new("billing", t, 3, Some(2), CONSUMER, "billing-events process"), "process")
        .micros(4_000)
        .starting(T + delay_ms * 1_000_000);
    spans(&[
        SpanSpec::new("visits", t, 1, None, SERVER, "POST").http("POST", "/visits", 200).micros(30_000).starting(T),
        kafka(SpanSpec::new("visits", t, 2, Some(1), PRODUCER, "billing-events publish"), "publish")
            .micros(2_000)
            .starting(T),
        if t == 1 { consumer.error() } else { consumer },
    ])
}

#[test]
fn a_queue_stands_between_its_producer_and_its_consumer() {
    let mut store = SignalStore::new(Config::default().signal_settings());
    // Delays of 10, 20, 30 and 40 ms.
    for t in 1..=4 {
        store.record_trace(&billing_event(t, 10 * t as u64), NOW);
    }
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 1_000);
    timeline.merge(&store.flush_points(), NOW);
    let map = service_map(&timeline.window_rollup(NOW), &[], &MapQuery::default());
    let nodes: BTreeMap<&str, &MapNode> = map.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    assert_eq!(
        nodes.keys().copied().collect::<Vec<_>>(),
        vec!["billing:default", "client:default", "kafka:billing-events:default", "visits:default"]
    );
    // The queue node counts what was published to it.
    assert_eq!(counts(nodes["kafka:billing-events:default"]), ("queue", 4, 0));
    let edges: BTreeMap<&str, &MapEdge> = map.edges.iter().map(|e| (e.id.as_str(), e)).collect();
    assert_eq!(
        edges.keys().copied().collect::<Vec<_>>(),
        vec![
            "client:default->visits:default",
            "kafka:billing-events:default->billing:default",
            "visits:default->kafka:billing-events:default",
        ],
        "no direct edge from the producer to its consumer"
    );
    let publish = edges["visits:default->kafka:billing-events:default"];
    assert_eq!((publish.kind, publish.figures.requests, publish.figures.faults), ("publish", 4, 0));
    // The publishes took 2 ms each.
    assert!((publish.figures.p50_seconds.unwrap() - 0.002).abs() < 0.0002, "{:?}", publish.figures);
    let delivery = edges["kafka:billing-events:default->billing:default"];
    assert_eq!((delivery.kind, delivery.figures.requests, delivery.figures.faults), ("delivery", 4, 1));
    // Its latency is the delay: 10 to 40 ms, so a median of 20 ms (the sketch's nearest rank of
    // four) and a p99 of 40 ms, within the sketch's 1 % error.
    let (p50, p99) = (delivery.figures.p50_seconds.unwrap(), delivery.figures.p99_seconds.unwrap());
    assert!((p50 - 0.020).abs() < 0.0005, "p50 {p50}");
    assert!((p99 - 0.040).abs() < 0.0008, "p99 {p99}");
}

/// An X-Ray SDK's SQS consumer continues the producer's trace (SQS carries the trace header):
/// the consumer's segment is a child of the `SendMessage` subsegment, so the queue stands
/// between them as it does for OpenTelemetry's spans. The consumer starts 250 ms after the
/// send began.
#[test]
fn an_xray_sqs_consumer_follows_its_send_message_subsegment() {
    let send = serde_json::json!({
        "name": "orders", "id": "70de5b6f19ff9a0a", "trace_id": "1-6553f100-a006649127e371903a2de979",
        "start_time": 1700000000.0, "end_time": 1700000000.4,
        "http": {"request": {"method": "POST", "url": "https://orders.example.com/orders"}, "response": {"status": 200}},
        "subsegments": [{"name": "SQS", "id": "1111111111111111", "namespace": "aws",
            "start_time": 1700000000.1, "end_time": 1700000000.15,
            "aws": {"operation": "SendMessage", "region": "us-east-1",
                    "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/order-events"}}]
    });
    let receive = serde_json::json!({
        "name": "fulfilment", "id": "2222222222222222", "trace_id": "1-6553f100-a006649127e371903a2de979",
        "parent_id": "1111111111111111", "origin": "AWS::Lambda::Function",
        "start_time": 1700000000.35, "end_time": 1700000000.5
    });
    let payload = format!("[{send},{receive}]");
    let mut spans = Vec::new();
    crate::format::Decoder::new(crate::format::InputEncoding::Fixed(crate::model::Encoding::XRAY_JSON))
        .decode(&bytes::Bytes::from(payload), &mut spans)
        .expect("valid X-Ray documents");
    assert_eq!(spans.len(), 3, "two segments and the subsegment");
    let mut store = SignalStore::new(Config::default().signal_settings());
    store.record_trace(&spans, NOW);
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 1_000);
    timeline.merge(&store.flush_points(), NOW);
    let map = service_map(&timeline.window_rollup(NOW), &[], &MapQuery::default());
    let edges: BTreeMap<&str, &MapEdge> = map.edges.iter().map(|e| (e.id.as_str(), e)).collect();
    let publish = edges["orders:default->aws_sqs:order-events:default"];
    assert_eq!((publish.kind, publish.figures.requests), ("publish", 1));
    let delivery = edges["aws_sqs:order-events:default->fulfilment:default"];
    assert_eq!((delivery.kind, delivery.figures.requests, delivery.figures.faults), ("delivery", 1, 0));
    let delay = delivery.figures.p50_seconds.unwrap();
    assert!((delay - 0.25).abs() < 0.0025, "the delay from the send's start: {delay}");
    assert!(!edges.contains_key("orders:default->fulfilment:default"), "no direct edge: {:?}", edges.keys());
}
