//! The receivers against librdkafka's mock cluster: what an SDK sees for each kind of request
//! (ingest.md "Receivers"), and what lands on Kafka.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tracewarden::ingest::{BindHints, IngestConfig, OtlpIngestConfig, XrayIngestConfig};
use tracewarden::settings::HumanDuration;

/// A receiver pair on `harness`'s cluster, writing to its input topic and `xray_segments`.
struct Receivers {
    grpc: SocketAddr,
    otlp: SocketAddr,
    xray: SocketAddr,
    registry: prometheus::Registry,
    _runtime: tokio::runtime::Runtime,
}

fn start(harness: &Harness, ack_timeout: Duration) -> Receivers {
    start_bounded(harness, ack_timeout, 64 << 20)
}

/// The same, at most `max_in_flight_bytes` waiting for Kafka.
fn start_bounded(harness: &Harness, ack_timeout: Duration, max_in_flight_bytes: usize) -> Receivers {
    let otlp = OtlpIngestConfig { ack_timeout: HumanDuration(ack_timeout), max_in_flight_bytes, ..Default::default() };
    start_with(harness, otlp)
}

/// The receivers with `otlp`'s settings (the addresses and request limit are the test's).
fn start_with(harness: &Harness, otlp: OtlpIngestConfig) -> Receivers {
    harness.cluster().create_topic("xray_segments", 2, 1).unwrap();
    harness.cluster().create_topic("tracewarden_dead_letters", 1, 1).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ingest = IngestConfig {
        otlp: Some(OtlpIngestConfig {
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            max_request_bytes: 4096,
            ..otlp
        }),
        xray: Some(XrayIngestConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() }),
    };
    let registry = prometheus::Registry::new();
    let running = runtime.block_on(async {
        let bound = tracewarden::ingest::bind(&ingest, BindHints::default()).await.unwrap();
        let session = tracewarden::kafka_client::KafkaSession::for_kafka(&harness.config.kafka).unwrap();
        bound.start(&ingest, &harness.config.kafka, &session, &registry, Arc::new(tokio::sync::Notify::new())).unwrap()
    });
    Receivers {
        grpc: running.otlp_grpc.unwrap(),
        otlp: running.otlp_http.unwrap(),
        xray: running.xray.unwrap(),
        registry,
        _runtime: runtime,
    }
}

/// POSTs `body` to `/v1/traces`; the status, the headers and the body of the answer.
fn post(addr: SocketAddr, content_type: &str, extra_headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let content_type = format!("Content-Type: {content_type}");
    let mut headers = vec![content_type.as_str()];
    headers.extend(extra_headers.split("\r\n").filter(|l| !l.is_empty()));
    let answer = common::http::request(&addr.to_string(), "POST", "/v1/traces", &headers, body).expect("an answer");
    (answer.status, answer.head, answer.body)
}

fn span(trace: u8, id: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: "GET /x".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .find(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map_or(0.0, |m| m.get_counter().get_value())
}

fn gauge(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_gauge().get_value())
        .sum()
}

#[test]
fn otlp_http_splits_by_trace_and_answers_after_the_acknowledgement() {
    let harness = Harness::new("ingest-otlp");
    let receivers = start(&harness, Duration::from_secs(10));
    let bad_id = Span { trace_id: vec![7; 3], ..span(7, 7) };
    let body = request(vec![span(1, 1), span(2, 2), span(1, 3), bad_id]).encode_to_vec();
    let (status, _, answer) = post(receivers.otlp, "application/x-protobuf", "", &body);
    assert_eq!(status, 200);
    let answer = ExportTraceServiceResponse::decode(&answer[..]).unwrap();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1, "{}", partial.error_message);

    // Gzip-compressed JSON, answered in JSON.
    let json = serde_json::to_vec(&request(vec![span(3, 4)])).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&json).unwrap();
    let (status, head, answer) =
        post(receivers.otlp, "application/json", "Content-Encoding: gzip\r\n", &gzip.finish().unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");

    let records = harness.read_all(common::INPUT, 3);
    let mut keys: Vec<String> = records.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["01".repeat(16), "02".repeat(16), "03".repeat(16)], "one message per trace, keyed by its id");
    let first = records.iter().find(|r| r.key.as_deref() == Some("01".repeat(16).as_bytes())).unwrap();
    let trace = ExportTraceServiceRequest::decode(&first.payload[..]).unwrap();
    assert_eq!(trace.resource_spans[0].scope_spans[0].spans.len(), 2, "both spans of trace 1 together");
    let json_record = records.iter().find(|r| r.key.as_deref() == Some("03".repeat(16).as_bytes())).unwrap();
    assert_eq!(json_record.payload.first(), Some(&b'{'), "kept in the encoding received");
    assert_eq!(counter(&receivers.registry, "tracewarden_ingest_spans_total", &[("receiver", "otlp_http")]), 4.0);
    assert_eq!(
        counter(
            &receivers.registry,
            "tracewarden_ingest_requests_total",
            &[("receiver", "otlp_http"), ("result", "partial")]
        ),
        1.0
    );

    // What the client is told for what it cannot send.
    assert_eq!(post(receivers.otlp, "application/x-protobuf", "", b"\xff\xff\xff").0, 400);
    assert_eq!(post(receivers.otlp, "application/x-protobuf", "", &vec![0u8; 5000]).0, 413);
    assert_eq!(post(receivers.otlp, "text/plain", "", b"hello").0, 415);
}

/// When Kafka does not acknowledge in time the answer is 503 with Retry-After (the SDK retries);
/// once it acknowledges again, the same request succeeds.
#[test]
fn otlp_http_answers_503_while_kafka_refuses() {
    let harness = Harness::new("ingest-unavailable");
    let receivers = start(&harness, Duration::from_secs(2));
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 200];
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &refused);
    let body = request(vec![span(9, 9)]).encode_to_vec();
    let (status, head, _) = post(receivers.otlp, "application/x-protobuf", "", &body);
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
    harness.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let (status, _, _) = post(receivers.otlp, "application/x-protobuf", "", &body);
    assert_eq!(status, 200);
    assert_eq!(
        counter(
            &receivers.registry,
            "tracewarden_ingest_requests_total",
            &[("receiver", "otlp_http"), ("result", "unavailable")]
        ),
        1.0
    );
}

/// OTLP/gRPC: the same split and answers, in gRPC terms (partial success; `UNAVAILABLE`, which
/// SDKs retry, while Kafka refuses).
#[test]
fn otlp_grpc_splits_by_trace_and_answers_unavailable_while_kafka_refuses() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let harness = Harness::new("ingest-grpc");
    let receivers = start(&harness, Duration::from_secs(2));
    let client_runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = format!("http://{}", receivers.grpc);
    let bad_id = Span { span_id: vec![1; 3], ..span(5, 5) };
    let answer = client_runtime.block_on(async {
        let mut client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
        client.export(request(vec![span(4, 1), span(4, 2), bad_id.clone()])).await
    });
    let partial = answer.unwrap().into_inner().partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1);
    let records = harness.read_all(common::INPUT, 1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some("04".repeat(16).as_bytes()));

    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 200];
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &refused);
    let answer = client_runtime.block_on(async {
        let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
        client.export(request(vec![span(6, 1)])).await
    });
    assert_eq!(answer.unwrap_err().code(), tonic::Code::Unavailable);
}

#[test]
fn xray_datagrams_are_keyed_by_trace_and_bad_ones_dead_lettered() {
    let harness = Harness::new("ingest-xray");
    let receivers = start(&harness, Duration::from_secs(10));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = "{\"format\":\"json\",\"version\":1}\n{\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\",\"id\":\"53995c3f42cd8ad8\",\"name\":\"a\",\"start_time\":1700000000,\"end_time\":1700000001}";
    socket.send_to(good.as_bytes(), receivers.xray).unwrap();
    socket.send_to(b"{\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\"}", receivers.xray).unwrap();
    let records = harness.read_all("xray_segments", 1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some(&b"5759e988bd862e3fe1be46a994272793"[..]));
    assert_eq!(records[0].payload, good.as_bytes(), "written unchanged");
    let dead = harness.read_all("tracewarden_dead_letters", 1);
    assert_eq!(dead.len(), 1);
    let source = dead[0].headers.iter().find(|(k, _)| k == "tracewarden.source").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(source, format!("xray-udp/{}", socket.local_addr().unwrap()));
    assert_eq!(
        counter(
            &receivers.registry,
            "tracewarden_ingest_rejected_total",
            &[("receiver", "xray"), ("reason", "bad_header")]
        ),
        1.0
    );
}

/// While Kafka is slow, the requests waiting for it hold at most `max_in_flight_bytes`: one more
/// is answered 503 at once (memory stays bounded), and taken once the others are answered.
#[test]
fn otlp_requests_past_the_in_flight_bound_are_refused_at_once() {
    let harness = Harness::new("ingest-in-flight");
    let receivers = start_bounded(&harness, Duration::from_secs(10), 4096);
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500];
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &refused);
    // Fourteen traces: fourteen messages, each repeating the resource and scope, near the bound.
    let large = request((1..=14).map(|t| Span { name: "x".repeat(200), ..span(t, 1) }).collect()).encode_to_vec();
    assert!(large.len() < 4096, "within max_request_bytes: {}", large.len());
    let addr = receivers.otlp;
    let waiting = std::thread::spawn(move || post(addr, "application/x-protobuf", "", &large).0);
    common::wait_for("the first request to wait for Kafka", common::WAIT, || {
        gauge(&receivers.registry, "tracewarden_ingest_in_flight_bytes") > 0.0
    });
    let in_flight = gauge(&receivers.registry, "tracewarden_ingest_in_flight_bytes");
    let small = request(vec![span(15, 1)]).encode_to_vec();
    assert!(in_flight as usize + small.len() > 4096, "the first request leaves no room: {in_flight}");
    let (status, head, body) = post(receivers.otlp, "application/x-protobuf", "", &small);
    assert_eq!(status, 503, "refused at once, not queued");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    // The body is a google.rpc.Status; its message is plain UTF-8 inside it.
    let message = String::from_utf8_lossy(&body);
    assert!(message.contains("ingest.otlp.max_in_flight_bytes"), "{message}");
    assert_eq!(waiting.join().unwrap(), 503, "Kafka never acknowledged the first");
    assert_eq!(gauge(&receivers.registry, "tracewarden_ingest_in_flight_bytes"), 0.0, "its bytes are given back");
    harness.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let (status, _, _) = post(receivers.otlp, "application/x-protobuf", "", &small);
    assert_eq!(status, 200);
}

/// The receivers as the Collector's secured ones: TLS, and a bearer token (`bearertokenauth`).
/// The OpenTelemetry Python SDK's OTLP/HTTP and OTLP/gRPC exporters, trusting the certificate and
/// sending the token, get every span on Kafka; with another token both are refused and nothing
/// is written.
#[test]
fn sdks_send_over_tls_with_the_token_and_are_refused_without_it() {
    let harness = Harness::new("ingest-tls");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ingest-tls");
    let (cert, key) = common::self_signed_certificate(&dir);
    let otlp = OtlpIngestConfig {
        bearer_token: Some(tracewarden::settings::Secret::new("receiver-token")),
        tls_cert_file: Some(cert.clone()),
        tls_key_file: Some(key),
        ack_timeout: HumanDuration(Duration::from_secs(10)),
        ..Default::default()
    };
    let receivers = start_with(&harness, otlp);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/send_otlp_tls.py");
    let send = |token: &str| {
        std::process::Command::new("python3")
            .arg(script)
            .arg(format!("https://{}", receivers.otlp))
            .arg(receivers.grpc.to_string())
            .arg(&cert)
            .arg(token)
            // requests lets these override the exporter's own trust (its certificate_file).
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .expect("python3 with the OpenTelemetry SDK (scripts/test.sh installs it)")
    };
    let spans =
        |receiver: &str| counter(&receivers.registry, "tracewarden_ingest_spans_total", &[("receiver", receiver)]);
    let refused = send("another-token");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a wrong token is refused: {said}");
    assert!(said.contains("OTLP/HTTP") && said.contains("OTLP/gRPC"), "both exporters failed: {said}");
    assert!(!said.contains("CERTIFICATE_VERIFY_FAILED"), "for the token, not the certificate: {said}");
    assert_eq!((spans("otlp_http"), spans("otlp_grpc")), (0.0, 0.0), "nothing written for it");
    let sent = send("receiver-token");
    assert!(sent.status.success(), "the SDK exported over TLS: {}", String::from_utf8_lossy(&sent.stderr));
    assert_eq!((spans("otlp_http"), spans("otlp_grpc")), (3.0, 2.0), "every span on Kafka");
    // A plain-text client cannot talk to a TLS receiver.
    let plain = std::panic::catch_unwind(|| post(receivers.otlp, "application/x-protobuf", "", b""));
    assert!(plain.is_err() || plain.is_ok_and(|(status, _, _)| status != 200), "plain HTTP is not served");
}
