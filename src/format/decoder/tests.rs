use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan, Status, TracesData};
use proptest::prelude::*;
use prost::Message;

use super::super::{draft, schemas};
use super::*;
use crate::model::{AttrValue, Outcome, SpanKind, StatusCode};

fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<ProtoSpan>) -> TracesData {
    TracesData {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service), kv_str("deployment.environment.name", "prod")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "lib".into(), version: "1.2".into(), ..Default::default() }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn server_span(trace: u8, span: u8, parent: Option<u8>, status_code: i64) -> ProtoSpan {
    ProtoSpan {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: "handler".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: vec![
            kv_str("http.request.method", "GET"),
            kv_str("http.route", "/owners/{id}"),
            kv_int("http.response.status_code", status_code),
        ],
        ..Default::default()
    }
}

fn decode_all(input: InputEncoding, payload: &[u8]) -> Result<(Vec<crate::model::Span>, DecodeStats), DecodeError> {
    let mut decoder = Decoder::new(input);
    let mut out = Vec::new();
    let stats = decoder.decode(&Bytes::copy_from_slice(payload), &mut out)?;
    Ok((out, stats))
}

/// A buffered span keeps its own encoding alive, not its message: the spans of one message share
/// one buffer of exactly their bytes, apart from the payload (resources and scopes live in shared
/// origins), so the payload is freed once decoded.
#[test]
fn spans_keep_their_own_bytes_not_the_message() {
    let data = traces("customers", vec![server_span(1, 2, None, 200), server_span(1, 3, Some(2), 200)]);
    let payload = Bytes::from(data.encode_to_vec());
    let mut out = Vec::new();
    Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)).decode(&payload, &mut out).unwrap();
    let in_payload = payload.as_ptr_range();
    for span in &out {
        assert!(!in_payload.contains(&span.raw.as_ptr()), "span bytes outside the payload");
    }
    let (first, second) = (&out[0].raw, &out[1].raw);
    assert_eq!(first.as_ptr_range().end, second.as_ptr(), "one buffer, in order, nothing between");
    assert_eq!(&first[..], &data.resource_spans[0].scope_spans[0].spans[0].encode_to_vec()[..]);
    assert_eq!(&second[..], &data.resource_spans[0].scope_spans[0].spans[1].encode_to_vec()[..]);
}

#[test]
fn official_otlp_json_example_decodes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/otlp-trace-example.json");
    let text = std::fs::read(path).expect("../shared/fixtures/otlp-trace-example.json beside the project");
    let (spans, stats) = decode_all(InputEncoding::Auto, &text).unwrap();
    assert_eq!(stats.encoding, Some(Encoding::OTLP_JSON));
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(hex::encode(span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    assert_eq!(span.parent_span_id, Some([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]));
    assert_eq!(&**span.service(), "my.service");
    assert_eq!(&**span.environment(), "default");
    assert_eq!(span.kind, SpanKind::Server);
    assert!(span.is_entry());
    assert_eq!(&*span.operation, "I'm a server span");
    assert_eq!(span.duration_nanos(), 1_000_000_000);
    assert_eq!(span.attribute("my.span.attr"), Some(AttrValue::Str("some value".into())));
    assert_eq!(span.attribute("service.name"), Some(AttrValue::Str("my.service".into())));
    let scope = std::str::from_utf8(&span.origin.scope_header).unwrap();
    assert!(scope.contains("my.scope.attribute"), "scope kept for forwarding: {scope}");
}

#[test]
fn protobuf_fields_and_outcomes() {
    let mut client = server_span(1, 3, Some(2), 0);
    client.kind = 3;
    client.attributes = vec![kv_str("db.system", "postgresql"), kv_str("db.operation.name", "SELECT")];
    let data = traces(
        "customers",
        vec![server_span(1, 2, None, 503), client, {
            let mut s = server_span(1, 4, Some(3), 429);
            s.status = Some(Status { code: 2, message: "x".into() });
            s
        }],
    );
    let (spans, stats) = decode_all(InputEncoding::Auto, &data.encode_to_vec()).unwrap();
    assert_eq!(
        stats,
        DecodeStats { encoding: Some(Encoding::OTLP_PROTO), accepted: 3, invalid_id: 0, invalid_time: 0 }
    );
    assert_eq!(&*spans[0].operation, "GET /owners/{id}");
    assert_eq!(&**spans[0].environment(), "prod");
    assert_eq!(Outcome::of(&spans[0]), Outcome::Fault);
    assert!(spans[0].is_root() && spans[0].is_entry());
    assert_eq!(spans[1].remote_service.as_deref(), Some("postgresql"));
    assert_eq!(spans[1].remote_operation.as_deref(), Some("SELECT"));
    assert!(spans[1].is_dependency());
    // HTTP status decides before span status: 429 is a throttle, not a fault.
    assert_eq!(spans[2].status, StatusCode::Error);
    assert_eq!(Outcome::of(&spans[2]), Outcome::Throttle);
}

#[test]
fn invalid_ids_and_times_are_rejected_and_counted() {
    let mut zero_trace = server_span(0, 1, None, 200);
    zero_trace.trace_id = vec![0; 16];
    let mut short_span = server_span(1, 1, None, 200);
    short_span.span_id = vec![1; 4];
    let mut bad_parent = server_span(1, 2, None, 200);
    bad_parent.parent_span_id = vec![7; 3];
    let mut backwards = server_span(1, 3, None, 200);
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let mut too_long = server_span(1, 4, None, 200);
    too_long.end_time_unix_nano = too_long.start_time_unix_nano + 25 * 3600 * 1_000_000_000;
    let mut no_start = server_span(1, 5, None, 200);
    no_start.start_time_unix_nano = 0;
    let good = server_span(1, 6, None, 200);
    let data = traces("svc", vec![zero_trace, short_span, bad_parent, backwards, too_long, no_start, good]);
    let (spans, stats) = decode_all(InputEncoding::Fixed(Encoding::OTLP_PROTO), &data.encode_to_vec()).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(stats.invalid_id, 3);
    assert_eq!(stats.invalid_time, 3);
}

#[test]
fn zipkin_json_maps_to_the_span_model() {
    let payload = br#"[
      {"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"get /api","kind":"SERVER",
       "timestamp":1700000000000000,"duration":207000,"localEndpoint":{"serviceName":"frontend"},
       "tags":{"http.method":"GET","http.route":"/api","http.status_code":"502"}},
      {"traceId":"463ac35c9f6413ad","id":"b2fb4a1d1a96d312","parentId":"a2fb4a1d1a96d312","name":"query",
       "kind":"CLIENT","timestamp":1700000000001000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},
       "remoteEndpoint":{"serviceName":"mysql"},"tags":{"error":"boom"}}
    ]"#;
    let (spans, stats) = decode_all(InputEncoding::Auto, payload).unwrap();
    assert_eq!(stats.encoding, Some(Encoding::ZIPKIN_JSON));
    assert_eq!(spans.len(), 2);
    assert_eq!(hex::encode(spans[0].trace_id), "0000000000000000463ac35c9f6413ad", "64-bit ids widened");
    assert_eq!(&**spans[0].service(), "frontend");
    assert_eq!(&*spans[0].operation, "GET /api");
    assert_eq!(spans[0].duration_nanos(), 207_000_000);
    assert_eq!(Outcome::of(&spans[0]), Outcome::Fault);
    assert_eq!(spans[1].status, StatusCode::Error);
    assert_eq!(spans[1].remote_service.as_deref(), Some("mysql"));
    assert_eq!(spans[1].attribute("error"), Some(AttrValue::Str("boom".into())));
}

/// signals.md: Zipkin spans carry no resource; their tags stand in for its attributes, as the
/// OpenTelemetry Zipkin exporter writes them.
#[test]
fn zipkin_tags_stand_in_for_the_resource() {
    let span = |id: u8, endpoint: &str, tags: &str| {
        format!(
            r#"{{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d3{id:02x}","timestamp":1700000000000000,"duration":1,{endpoint}"tags":{{{tags}}}}}"#
        )
    };
    let frontend = r#""localEndpoint":{"serviceName":"frontend"},"#;
    let payload = format!(
        "[{}]",
        [
            span(1, frontend, r#""deployment.environment.name":"prod""#),
            span(2, frontend, r#""deployment.environment":"staging""#),
            span(3, frontend, ""),
            span(4, frontend, r#""deployment.environment":"old","deployment.environment.name":"prod""#),
            span(5, "", r#""service.name":"billing","deployment.environment.name":"prod""#),
        ]
        .join(",")
    );
    let (spans, _) = decode_all(InputEncoding::Fixed(Encoding::ZIPKIN_JSON), payload.as_bytes()).unwrap();
    let identity: Vec<(&str, &str)> = spans.iter().map(|s| (&**s.service(), &**s.environment())).collect();
    assert_eq!(
        identity,
        [
            ("frontend", "prod"),
            ("frontend", "staging"),
            ("frontend", "default"),
            ("frontend", "prod"),
            ("billing", "prod")
        ]
    );
    assert_eq!(spans[4].attribute("service.name"), Some(AttrValue::Str("billing".into())));
}

#[test]
fn otlp_json_accepts_numbers_strings_and_enum_names() {
    let payload = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}},
      {"key":"deployment.environment","value":{"stringValue":"staging"}}]},
      "scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
      "name":"op","kind":"SPAN_KIND_CONSUMER","startTimeUnixNano":1700000000000000000,"endTimeUnixNano":"1700000000100000000",
      "attributes":[{"key":"rpc.grpc.status_code","value":{"intValue":"14"}}],"status":{"code":2},"unknownField":{"x":1}}]}]}]}"#;
    let (spans, _) = decode_all(InputEncoding::Fixed(Encoding::OTLP_JSON), payload).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, SpanKind::Consumer);
    assert_eq!(&**spans[0].environment(), "staging");
    assert_eq!(spans[0].grpc_status, Some(14));
    assert_eq!(Outcome::of(&spans[0]), Outcome::Fault);
}

#[test]
fn whole_message_errors() {
    assert!(matches!(decode_all(InputEncoding::Auto, b""), Err(DecodeError::Empty)));
    assert!(matches!(decode_all(InputEncoding::Auto, b"  \n"), Err(DecodeError::Empty)));
    let e = decode_all(InputEncoding::Auto, b"{\"resourceSpans\": [").unwrap_err();
    assert_eq!(e.reason(), "malformed_otlp_json");
    let e = decode_all(InputEncoding::Auto, b"[{\"traceId\": 5}]").unwrap_err();
    assert_eq!(e.reason(), "malformed_zipkin_json");
    let valid = traces("svc", vec![server_span(1, 2, None, 200)]).encode_to_vec();
    let e = decode_all(InputEncoding::Auto, &valid[..valid.len() - 3]).unwrap_err();
    assert_eq!(e.reason(), "malformed_protobuf");
}

#[test]
fn auto_detection_by_first_byte() {
    assert_eq!(InputEncoding::Auto.resolve(b"  {"), Encoding::OTLP_JSON);
    assert_eq!(InputEncoding::Auto.resolve(b"\n["), Encoding::ZIPKIN_JSON);
    assert_eq!(InputEncoding::Auto.resolve(b"\x0a\x05"), Encoding::OTLP_PROTO);
    assert_eq!(InputEncoding::Fixed(Encoding::ZIPKIN_JSON).resolve(b"{"), Encoding::ZIPKIN_JSON);
}

/// Checks the spans decoded from a fixture written by a real client (`tests/fixtures/*.py`) against
/// what the fixture script says they are. The test script regenerates the fixtures with the
/// clients it installs (`TRACEWARDEN_PYTHON_FIXTURE_DIR`); the committed copies are the fallback.
fn check_client_fixture(name: &str, input: InputEncoding, encoding: Encoding) -> Vec<Span> {
    let dir = std::env::var("TRACEWARDEN_PYTHON_FIXTURE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").to_string());
    let payload = std::fs::read(format!("{dir}/{name}.pb")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/{name}.json")).unwrap()).unwrap();
    let (spans, stats) = decode_all(input, &payload).unwrap();
    assert_eq!(stats.encoding, Some(encoding));
    let expected_spans = expected["spans"].as_array().unwrap();
    assert_eq!(spans.len(), expected_spans.len());
    for want in expected_spans {
        let got = spans.iter().find(|s| hex::encode(s.span_id) == want["span_id"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(got.trace_id), want["trace_id"].as_str().unwrap());
        assert_eq!(&**got.service(), want["service"].as_str().unwrap());
        assert_eq!(&*got.operation, want["operation"].as_str().unwrap());
        assert_eq!(got.kind as u8 as u64, want["kind"].as_u64().unwrap());
        assert_eq!(got.duration_nanos(), want["duration_ns"].as_u64().unwrap());
        assert_eq!(got.http_status as u64, want["http_status"].as_u64().unwrap_or(0));
        assert_eq!(got.parent_span_id.map(hex::encode), want["parent_span_id"].as_str().map(String::from));
    }
    spans
}

#[test]
fn python_sdk_protobuf_fixture_decodes() {
    // Written by the OpenTelemetry Python SDK's own OTLP encoder (tests/fixtures/python_sdk.py).
    check_client_fixture("python-sdk-traces", InputEncoding::Auto, Encoding::OTLP_PROTO);
}

#[test]
fn python_zipkin_protobuf_fixture_decodes() {
    // Written by the OpenTelemetry Python Zipkin exporter's protobuf encoder
    // (tests/fixtures/python_zipkin_proto.py).
    let spans = check_client_fixture(
        "python-zipkin-traces",
        InputEncoding::Fixed(Encoding::ZIPKIN_PROTO),
        Encoding::ZIPKIN_PROTO,
    );
    let query = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(query.status, StatusCode::Error, "the exporter's error tag sets status ERROR");
    assert_eq!(query.facts.outcome, Outcome::Fault);
    assert_eq!(query.remote_service.as_deref(), Some("postgresql"));
    assert_eq!(query.remote_operation.as_deref(), Some("SELECT"));
    assert_eq!(query.attribute("db.system"), Some(AttrValue::Str("postgresql".into())));
}

/// Jaeger's own JSON fixture (`tests/fixtures/jaeger-domain-01.json`): each span of its trace is
/// one `jaeger_json` message.
fn jaeger_fixture_spans() -> Vec<Vec<u8>> {
    let trace: serde_json::Value = serde_json::from_slice(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jaeger-domain-01.json"
    )))
    .unwrap();
    trace["spans"].as_array().unwrap().iter().map(|span| serde_json::to_vec(span).unwrap()).collect()
}

#[test]
fn jaeger_json_published_example_maps_to_the_span_model() {
    let spans: Vec<Span> = jaeger_fixture_spans()
        .iter()
        .flat_map(|message| decode_all(InputEncoding::Fixed(Encoding::JAEGER_JSON), message).unwrap().0)
        .collect();
    assert_eq!(spans.len(), 5);
    let trace_id = {
        let mut id = [0u8; 16];
        id[15] = 1;
        id
    };
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "hex ids without leading zeros are widened");
    // 2017-01-26T16:46:31.639875139-05:00
    assert!(spans.iter().all(|s| s.start_unix_nano == 1_485_467_191_639_875_139));
    assert_eq!(spans.iter().map(|s| s.duration_nanos()).collect::<Vec<_>>(), [5000, 5000, 5000, 5000, 4000]);
    let tagged = &spans[1];
    assert_eq!((tagged.span_id, &*tagged.operation), ([0, 0, 0, 0, 0, 0, 0, 2], "some-operation"));
    assert_eq!(&**tagged.service(), "service-x");
    assert_eq!(tagged.status, StatusCode::Error, "a true error tag sets status ERROR");
    assert_eq!(tagged.attribute("peer.ipv4"), Some(AttrValue::Int(23456)));
    assert_eq!(tagged.attribute("temperature"), Some(AttrValue::Double(72.5)));
    assert_eq!(tagged.attribute("peer.service"), Some(AttrValue::Str("service-y".into())));
    assert_eq!(tagged.attribute("service.name"), Some(AttrValue::Str("service-x".into())));
    assert_eq!(spans[0].status, StatusCode::Unset);
    let parent_of = |i: usize| spans[i].parent_span_id.map(|p| p[7]);
    assert_eq!([parent_of(0), parent_of(2), parent_of(3), parent_of(4)], [None, Some(2), Some(2), Some(4)]);
    assert_eq!(&**spans[2].service(), "service-y");
}

#[test]
fn jaeger_proto_from_its_own_schema_maps_to_the_span_model() {
    use schemas::jaeger;
    let tag = |key: &str, value: &str| jaeger::KeyValue { key: key.into(), v_str: value.into(), ..Default::default() };
    let span = jaeger::Span {
        trace_id: (1..=16).collect(),
        span_id: vec![7; 8],
        operation_name: "HTTP GET".into(),
        references: vec![jaeger::SpanRef { trace_id: (1..=16).collect(), span_id: vec![3; 8], ref_type: 0 }],
        start_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }),
        duration: Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }),
        tags: vec![
            tag("span.kind", "client"),
            tag("http.request.method", "GET"),
            tag("url.template", "/owners/{id}"),
            tag("peer.service", "customers"),
            jaeger::KeyValue {
                key: "http.response.status_code".into(),
                v_type: jaeger::ValueType::Int64 as i32,
                v_int64: 503,
                ..Default::default()
            },
            tag("otel.status_code", "ERROR"),
        ],
        process: Some(jaeger::Process {
            service_name: "frontend".into(),
            tags: vec![tag("deployment.environment.name", "prod"), tag("k8s.pod.name", "frontend-1")],
        }),
        ..Default::default()
    };
    let (spans, stats) = decode_all(InputEncoding::Fixed(Encoding::JAEGER_PROTO), &span.encode_to_vec()).unwrap();
    assert_eq!((stats.encoding, stats.accepted), (Some(Encoding::JAEGER_PROTO), 1));
    let got = &spans[0];
    assert_eq!(got.trace_id.to_vec(), (1..=16).collect::<Vec<u8>>());
    assert_eq!((got.span_id, got.parent_span_id), ([7; 8], Some([3; 8])));
    assert_eq!((got.kind, got.status, got.http_status), (SpanKind::Client, StatusCode::Error, 503));
    assert_eq!(got.start_unix_nano, 1_700_000_000_000_000_005);
    assert_eq!(got.duration_nanos(), 1_500_000_000);
    assert_eq!((&**got.service(), &**got.environment()), ("frontend", "prod"));
    assert_eq!(got.remote_service.as_deref(), Some("customers"));
    assert_eq!(got.remote_operation.as_deref(), Some("GET /owners/{id}"));
    assert_eq!(got.facts.outcome, Outcome::Fault);
    assert_eq!(
        got.attribute("k8s.pod.name"),
        Some(AttrValue::Str("frontend-1".into())),
        "process tags are the resource"
    );
    // The same span in Jaeger's JSON form reads the same.
    let json = serde_json::json!({
        "traceId": hex::encode((1..=16).collect::<Vec<u8>>()), "spanId": "0707070707070707",
        "operationName": "HTTP GET",
        "references": [{"traceId": hex::encode((1..=16).collect::<Vec<u8>>()), "spanId": "303030303030303"}],
        "startTime": "2023-11-14T22:13:20.000000005Z", "duration": "1.5s",
        "tags": [{"key": "span.kind", "vStr": "client"}, {"key": "http.request.method", "vStr": "GET"},
                 {"key": "url.template", "vStr": "/owners/{id}"}, {"key": "peer.service", "vStr": "customers"},
                 {"key": "http.response.status_code", "vType": "INT64", "vInt64": "503"},
                 {"key": "otel.status_code", "vStr": "ERROR"}],
        "process": {"serviceName": "frontend", "tags": [{"key": "deployment.environment.name", "vStr": "prod"}]}
    });
    let (from_json, _) = decode_all(InputEncoding::Fixed(Encoding::JAEGER_JSON), json.to_string().as_bytes()).unwrap();
    let key =
        |s: &Span| (s.trace_id, s.span_id, s.parent_span_id, s.kind, s.status, s.start_unix_nano, s.end_unix_nano);
    assert_eq!(key(&from_json[0]), key(got));
    assert_eq!((&*from_json[0].operation, from_json[0].http_status), (&*got.operation, 503));
}

#[test]
fn malformed_jaeger_and_zipkin_messages_are_rejected_whole() {
    for (input, payload, reason) in [
        (
            InputEncoding::Fixed(Encoding::JAEGER_JSON),
            &br#"{"traceId":"xyz","spanId":"1"}"#[..],
            "malformed_jaeger_json",
        ),
        (
            InputEncoding::Fixed(Encoding::JAEGER_JSON),
            br#"{"traceId":"1","spanId":"1","duration":"soon"}"#,
            "malformed_jaeger_json",
        ),
        (InputEncoding::Fixed(Encoding::JAEGER_PROTO), b"\x0a\xff", "malformed_jaeger_proto"),
        (InputEncoding::Fixed(Encoding::ZIPKIN_PROTO), b"\x0a\x02\x0a\x09", "malformed_zipkin_proto"),
        (InputEncoding::Fixed(Encoding::ZIPKIN_PROTO), b"\x08\x01", "malformed_zipkin_proto"),
    ] {
        let error = decode_all(input, payload).unwrap_err();
        assert_eq!(error.reason(), reason, "{input:?} {payload:?}: {error}");
    }
}

fn arb_span() -> impl Strategy<Value = ProtoSpan> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
        proptest::option::of(any::<[u8; 8]>()),
        "[a-zA-Z /{}]{0,20}",
        0i32..6,
        1u64..u64::MAX / 4,
        0u64..90_000_000_000_000,
        proptest::option::of(prop_oneof![Just("GET"), Just("POST")]),
        proptest::option::of("/[a-z{}]{1,10}"),
        proptest::option::of(100i64..600),
        0i32..3,
    )
        .prop_map(|(t, s, p, name, kind, start, dur, method, route, status, code)| ProtoSpan {
            trace_id: t.to_vec(),
            span_id: s.to_vec(),
            parent_span_id: p.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: method
                .map(|m| kv_str("http.request.method", m))
                .into_iter()
                .chain(route.map(|r| kv_str("http.route", &r)))
                .chain(status.map(|s| kv_int("http.response.status_code", s)))
                .chain(std::iter::once(kv_str("other", "x")))
                .collect(),
            status: Some(Status { code, message: String::new() }),
            ..Default::default()
        })
}

proptest! {
    /// Every field the pipeline relies on survives prost's encoder → this decoder; invalid
    /// spans are counted, never kept.
    #[test]
    fn protobuf_round_trip(spans in proptest::collection::vec(arb_span(), 0..12), service in "[a-z]{1,8}") {
        let data = traces(&service, spans.clone());
        let (decoded, stats) = decode_all(InputEncoding::Fixed(Encoding::OTLP_PROTO), &data.encode_to_vec()).unwrap();
        let valid: Vec<&ProtoSpan> = spans.iter().filter(|s| {
            s.trace_id != [0; 16] && s.span_id != [0; 8] && s.start_time_unix_nano >= draft::EARLIEST_START
                && s.end_time_unix_nano - s.start_time_unix_nano <= 24 * 3600 * 1_000_000_000
        }).collect();
        prop_assert_eq!(decoded.len(), valid.len());
        prop_assert_eq!((stats.invalid_id + stats.invalid_time) as usize, spans.len() - valid.len());
        for (got, want) in decoded.iter().zip(valid) {
            prop_assert_eq!(&got.trace_id[..], &want.trace_id[..]);
            prop_assert_eq!(&got.span_id[..], &want.span_id[..]);
            let parent = (want.parent_span_id.len() == 8 && want.parent_span_id != [0; 8]).then(|| want.parent_span_id.clone());
            prop_assert_eq!(got.parent_span_id.map(|p| p.to_vec()), parent);
            prop_assert_eq!(got.kind as i32, want.kind);
            prop_assert_eq!(got.status as i32, want.status.as_ref().unwrap().code);
            prop_assert_eq!(got.start_unix_nano, want.start_time_unix_nano);
            prop_assert_eq!(got.end_unix_nano, want.end_time_unix_nano);
            prop_assert_eq!(&**got.service(), service.as_str());
            let attr = |k: &str| want.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value);
            let method = match attr("http.request.method") { Some(any_value::Value::StringValue(s)) => Some(s), _ => None };
            let route = match attr("http.route") { Some(any_value::Value::StringValue(s)) => Some(s), _ => None };
            let operation = match (method, route) { (Some(m), Some(r)) => format!("{m} {r}"), _ => want.name.clone() };
            prop_assert_eq!(&*got.operation, operation.as_str());
            let status = match attr("http.response.status_code") { Some(any_value::Value::IntValue(i)) => i as u16, _ => 0 };
            prop_assert_eq!(got.http_status, status);
            // The raw bytes are the span exactly as prost encoded it.
            prop_assert_eq!(&got.raw[..], &want.encode_to_vec()[..]);
        }
    }

    /// Arbitrary bytes never panic, in any encoding; errors leave the output untouched.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for input in [InputEncoding::Auto, InputEncoding::Fixed(Encoding::OTLP_PROTO), InputEncoding::Fixed(Encoding::OTLP_JSON), InputEncoding::Fixed(Encoding::ZIPKIN_JSON)] {
            let mut decoder = Decoder::new(input);
            let mut out = Vec::new();
            if decoder.decode(&Bytes::from(bytes.clone()), &mut out).is_err() {
                prop_assert!(out.is_empty());
            }
        }
    }

    /// Truncating or corrupting a valid protobuf message never panics.
    #[test]
    fn corrupted_protobuf_never_panics(spans in proptest::collection::vec(arb_span(), 1..4), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let mut bytes = traces("svc", spans).encode_to_vec();
        let i = flip.0.index(bytes.len());
        bytes[i] ^= flip.1;
        let n = cut.index(bytes.len() + 1);
        let _ = decode_all(InputEncoding::Fixed(Encoding::OTLP_PROTO), &bytes[..n]);
    }
}

#[test]
fn origins_are_shared_across_messages_and_keep_their_identity() {
    let mut decoder = Decoder::new(InputEncoding::Auto);
    let mut out = Vec::new();
    for t in 1..=3 {
        let payload = Bytes::from(traces("customers", vec![server_span(t, 1, None, 200)]).encode_to_vec());
        decoder.decode(&payload, &mut out).unwrap();
    }
    let other = Bytes::from(traces("billing", vec![server_span(9, 1, None, 200)]).encode_to_vec());
    decoder.decode(&other, &mut out).unwrap();
    assert!(std::sync::Arc::ptr_eq(&out[0].origin, &out[2].origin), "same resource and scope: one origin");
    assert!(!std::sync::Arc::ptr_eq(&out[0].origin, &out[3].origin));
    assert_eq!(&**out[3].service(), "billing");
    assert_eq!(&**out[0].environment(), "prod");
    assert_eq!(out[0].attribute("deployment.environment.name"), Some(AttrValue::Str("prod".into())));
    // Zipkin: one origin per local service.
    let zipkin = br#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","timestamp":1700000000000000,"duration":1,"localEndpoint":{"serviceName":"a"}},
                      {"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d313","timestamp":1700000000000000,"duration":1,"localEndpoint":{"serviceName":"b"}}]"#;
    out.clear();
    decoder.decode(&Bytes::from_static(zipkin), &mut out).unwrap();
    assert_eq!((&**out[0].service(), &**out[1].service()), ("a", "b"));
}

#[test]
fn timestamps_far_in_the_past_or_future_are_invalid() {
    let arrival = crate::clock::Nanos(1_700_000_000_000_000_000);
    let mut ancient = server_span(1, 1, None, 200);
    ancient.start_time_unix_nano = 1_000_000_000; // 1970
    ancient.end_time_unix_nano = 2_000_000_000;
    let mut future = server_span(1, 2, None, 200);
    future.start_time_unix_nano = arrival.0 + 25 * 3600 * 1_000_000_000;
    future.end_time_unix_nano = future.start_time_unix_nano + 1;
    let mut skewed = server_span(1, 3, None, 200);
    skewed.start_time_unix_nano = arrival.0 + 3600 * 1_000_000_000; // an hour ahead: tolerated
    skewed.end_time_unix_nano = skewed.start_time_unix_nano + 1;
    let payload = Bytes::from(traces("svc", vec![ancient, future, skewed]).encode_to_vec());
    let mut out = Vec::new();
    let stats = Decoder::new(InputEncoding::Auto).decode_at("spans", None, &payload, &mut out, arrival).unwrap();
    assert_eq!((stats.accepted, stats.invalid_time), (1, 2));
    assert_eq!(out[0].span_id, [3; 8]);
}

#[test]
fn fuzz_property_holds_on_the_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    crate::testing::fuzz_decode(
        InputEncoding::Fixed(Encoding::OTLP_PROTO),
        &std::fs::read(format!("{dir}/python-sdk-traces.pb")).unwrap(),
    );
    crate::testing::fuzz_decode(
        InputEncoding::Fixed(Encoding::ZIPKIN_PROTO),
        &std::fs::read(format!("{dir}/python-zipkin-traces.pb")).unwrap(),
    );
    for message in jaeger_fixture_spans() {
        crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::JAEGER_JSON), &message);
    }
    // Found by the fuzzer: invalid UTF-8 in a member the reader skips; the message is forwarded
    // as it came, so it is rejected whole.
    let regression =
        std::fs::read(format!("{dir}/fuzz-regressions/jaeger-json-invalid-utf8-in-skipped-member.json")).unwrap();
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::JAEGER_JSON), &regression);
    assert!(decode_all(InputEncoding::Fixed(Encoding::JAEGER_JSON), &regression).is_err());
    // Found by the fuzzer (the receivers' target): an attribute whose value is `null`, as the
    // proto3 JSON mapping allows for any default (and as the receiver writes an attribute sent
    // without a value), was a malformed message.
    let null_value = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":null}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"n","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000000001","attributes":[{"key":"k","value":null}]}]}]}]}"#;
    let (spans, _) = decode_all(InputEncoding::Fixed(Encoding::OTLP_JSON), null_value).unwrap();
    assert_eq!((spans.len(), &**spans[0].service()), (1, "unknown_service"));
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::OTLP_JSON), null_value);
    // Found by the fuzzer: a segment without a start time holding valid subsegments. They travel
    // inside it, so they are rejected with it.
    let regression =
        std::fs::read(format!("{dir}/fuzz-regressions/xray-segment-without-start-holding-a-valid-subsegment.txt"))
            .unwrap();
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::XRAY_JSON), &regression);
    let (spans, stats) = decode_all(InputEncoding::Fixed(Encoding::XRAY_JSON), &regression).unwrap();
    assert_eq!((spans.len(), stats.invalid_time), (0, 3));
    let official =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/otlp-trace-example.json")).unwrap();
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::OTLP_JSON), &official);
    // Found by the fuzzer: an unknown member with a number serde_json's Value cannot hold.
    let regression = std::fs::read(format!("{dir}/fuzz-regressions/zipkin-out-of-range-number.json")).unwrap();
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::ZIPKIN_JSON), &regression);
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::ZIPKIN_JSON), br#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","timestamp":1700000000000000,"duration":5,"kind":"CLIENT","localEndpoint":{"serviceName":"a"},"remoteEndpoint":{"serviceName":"db"},"tags":{"http.status_code":"503"}}]"#);
}

proptest! {
    #[test]
    fn fuzz_property_holds_on_generated_protobuf(spans in proptest::collection::vec(arb_span(), 0..8)) {
        crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::OTLP_PROTO), &traces("svc", spans).encode_to_vec());
    }
}

/// The datagrams the AWS X-Ray SDK for Python sent for a Flask service
/// (`tests/fixtures/python_xray.py`), each a message as the X-Ray receiver writes it.
fn xray_sdk_spans() -> Vec<Span> {
    let dir = std::env::var("TRACEWARDEN_PYTHON_FIXTURE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").to_string());
    let datagrams: Vec<String> =
        serde_json::from_slice(&std::fs::read(format!("{dir}/python-xray-datagrams.json")).unwrap()).unwrap();
    assert_eq!(datagrams.len(), 3, "one segment document per request");
    let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::XRAY_JSON));
    let mut spans = Vec::new();
    for datagram in &datagrams {
        let stats = decoder.decode(&Bytes::from(datagram.clone()), &mut spans).unwrap();
        assert_eq!((stats.invalid_id, stats.invalid_time), (0, 0), "{datagram}");
    }
    spans
}

#[test]
fn xray_sdk_segments_map_to_requests_and_dependencies() {
    let spans = xray_sdk_spans();
    let entries: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Server).collect();
    let summary: Vec<(&str, &str, u16, Outcome)> =
        entries.iter().map(|s| (&**s.service(), &*s.operation, s.http_status, s.facts.outcome)).collect();
    assert_eq!(
        summary,
        [
            ("owners-api", "GET /owners/{id}", 200, Outcome::Ok),
            ("owners-api", "GET /owners/{id}", 503, Outcome::Fault),
            ("owners-api", "GET /crash", 500, Outcome::Fault),
        ]
    );
    assert!(entries.iter().all(|s| s.is_root() && &**s.environment() == "default"));
    let calls: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Client).collect();
    assert_eq!(calls.len(), 4, "an SQL call and an HTTP call in each of the first two requests");
    for (i, call) in calls.iter().enumerate() {
        let segment = entries[i / 2];
        assert_eq!((call.trace_id, call.parent_span_id), (segment.trace_id, Some(segment.span_id)));
        assert_eq!(&**call.service(), "owners-api", "a subsegment belongs to its segment's service");
    }
    let sql = calls[0];
    assert_eq!(sql.remote_service.as_deref(), Some(":memory:"));
    assert_eq!(sql.remote_kind, crate::model::RemoteKind::Database);
    assert_eq!(sql.attribute("sql.database_type"), Some(AttrValue::Str("sqlite3".into())));
    let http = calls[1];
    assert_eq!(
        (http.remote_service.as_deref(), http.remote_operation.as_deref()),
        (Some("127.0.0.1"), Some("GET /vets/{id}"))
    );
    assert_eq!((http.http_status, http.facts.outcome), (200, Outcome::Ok));
    assert_eq!((calls[3].http_status, calls[3].facts.outcome), (429, Outcome::Throttle));
    assert_eq!(entries[0].attribute("telemetry.sdk.name"), Some(AttrValue::Str("X-Ray for Python".into())));
    // 1-6b115b56-…: the trace id is the hex of its epoch and unique parts.
    assert_eq!(hex::encode(entries[0].trace_id)[..8], format!("{:08x}", entries[0].start_unix_nano / 1_000_000_000));
}

#[test]
fn xray_flags_routes_namespaces_and_placement() {
    let document = serde_json::json!({
        "name": "orders", "id": "70de5b6f19ff9a0a", "trace_id": "1-581cf771-a006649127e371903a2de979",
        "parent_id": "53995c3f42cd8ad8", "start_time": 1700000000.5, "end_time": 1700000001.25,
        "origin": "AWS::EC2::Instance",
        "aws": {"account_id": "123456789012", "ec2": {"instance_id": "i-0abc", "availability_zone": "eu-west-1a"}},
        "http": {"request": {"method": "POST", "url": "https://orders.example.com/orders/1234?x=1"}},
        "fault": true,
        "annotations": {"http_route": "/orders/{order_id}", "tenant": "acme"},
        "metadata": {"default": {"deployment.environment.name": "prod"}},
        "subsegments": [
            {"name": "DynamoDB", "id": "1111111111111111", "namespace": "aws", "start_time": 1700000000.6,
             "end_time": 1700000000.7, "throttle": true, "error": true, "aws": {"operation": "PutItem", "table_name": "orders"}},
            {"name": "render", "id": "2222222222222222", "start_time": 1700000000.8, "end_time": 1700000000.9,
             "error": true,
             "subsegments": [{"name": "payments", "id": "3333333333333333", "namespace": "remote",
                              "start_time": 1700000000.81, "end_time": 1700000000.85, "fault": true,
                              "http": {"request": {"method": "GET", "url": "http://payments/cards/42"},
                                       "response": {"status": 200}}}]},
            {"name": "slow", "id": "4444444444444444", "start_time": 1700000000.9, "in_progress": true}
        ]
    });
    let message = format!("{{\"format\":\"json\",\"version\":1}}\n{document}");
    let (spans, _) = decode_all(InputEncoding::Fixed(Encoding::XRAY_JSON), message.as_bytes()).unwrap();
    assert_eq!(spans.len(), 4, "the in-progress subsegment is not a span yet");
    let segment = &spans[0];
    assert_eq!(hex::encode(segment.trace_id), "581cf771a006649127e371903a2de979");
    assert_eq!(segment.parent_span_id, Some([0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8]));
    assert_eq!((segment.kind, &*segment.operation), (SpanKind::Server, "POST /orders/{order_id}"));
    assert_eq!((segment.start_unix_nano, segment.duration_nanos()), (1_700_000_000_500_000_000, 750_000_000));
    assert_eq!(
        (segment.facts.outcome, &**segment.environment()),
        (Outcome::Fault, "prod"),
        "a fault flag without status"
    );
    assert_eq!(segment.attribute("cloud.platform"), Some(AttrValue::Str("aws_ec2".into())));
    assert_eq!(segment.attribute("host.id"), Some(AttrValue::Str("i-0abc".into())));
    assert_eq!(segment.attribute("tenant"), Some(AttrValue::Str("acme".into())));
    let dynamo = &spans[1];
    assert_eq!(
        (dynamo.kind, dynamo.remote_service.as_deref(), dynamo.remote_operation.as_deref()),
        (SpanKind::Client, Some("DynamoDB"), Some("PutItem"))
    );
    assert_eq!((dynamo.remote_kind, dynamo.facts.outcome), (crate::model::RemoteKind::Aws, Outcome::Throttle));
    let render = &spans[2];
    assert_eq!(
        (render.kind, render.facts.outcome, render.parent_span_id),
        (SpanKind::Internal, Outcome::Error, Some(segment.span_id))
    );
    let payments = &spans[3];
    assert_eq!(payments.parent_span_id, Some(render.span_id), "nested subsegments keep their place");
    assert_eq!(payments.remote_operation.as_deref(), Some("GET /cards/{id}"));
    assert_eq!(payments.facts.outcome, Outcome::Ok, "the status decides: 200 with a fault flag is ok");
    assert!(spans.iter().all(|s| &**s.service() == "orders"));

    // Forwarded as a list of documents: the segment once, its subsegments inside it.
    let decision = crate::decision::Decision::keep(std::sync::Arc::from("errors"), 1.0);
    let parts = crate::format::encode_trace(&spans, &decision, usize::MAX);
    let forwarded: Vec<serde_json::Value> = serde_json::from_slice(&parts[0].payload).unwrap();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0]["annotations"]["sampling_rule"], "errors");
    assert_eq!(forwarded[0]["annotations"]["tenant"], "acme");
    assert_eq!(forwarded[0]["subsegments"].as_array().map(Vec::len), Some(3));
    crate::testing::fuzz_decode(InputEncoding::Fixed(Encoding::XRAY_JSON), message.as_bytes());
}

/// The AWS X-Ray SDKs' subsegments of SQS `SendMessage` and SNS `Publish` calls (their `aws`
/// fields as the SDKs write them: `queue_url`, `topic_arn`) publish to a queue, named as
/// OpenTelemetry's AWS conventions name it; other AWS calls publish to nothing.
#[test]
fn xray_sqs_and_sns_subsegments_publish_to_their_queue() {
    let subsegment = |id: &str, name: &str, aws: serde_json::Value| {
        serde_json::json!({"name": name, "id": id, "namespace": "aws", "start_time": 1700000000.6,
                           "end_time": 1700000000.7, "aws": aws})
    };
    let document = serde_json::json!({
        "name": "orders", "id": "70de5b6f19ff9a0a", "trace_id": "1-581cf771-a006649127e371903a2de979",
        "start_time": 1700000000.5, "end_time": 1700000001.25,
        "subsegments": [
            subsegment("1111111111111111", "SQS", serde_json::json!({"operation": "SendMessage", "region": "us-east-1",
                "request_id": "b4b1c1e0-6a5e-5b8a-9d6e-3f1c2a7e8d90", "retries": 0,
                "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/order-events"})),
            subsegment("2222222222222222", "SNS", serde_json::json!({"operation": "Publish", "region": "us-east-1",
                "topic_arn": "arn:aws:sns:us-east-1:123456789012:order-shipped"})),
            subsegment("3333333333333333", "SQS", serde_json::json!({"operation": "ReceiveMessage",
                "queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/order-events"})),
        ]
    });
    let message = format!("{{\"format\":\"json\",\"version\":1}}\n{document}");
    let (spans, _) = decode_all(InputEncoding::Fixed(Encoding::XRAY_JSON), message.as_bytes()).unwrap();
    let queue = |i: usize| {
        let mut scratch = crate::format::QueueScratch::default();
        let span = &spans[i];
        let publishes = span.origin.encoding.format().queue(&span.raw, span.kind, &mut scratch)?;
        Some((scratch.name().to_string(), publishes))
    };
    assert_eq!(queue(1), Some(("aws_sqs:order-events".to_string(), true)));
    assert_eq!(queue(2), Some(("aws_sns:order-shipped".to_string(), true)));
    assert_eq!(queue(3), None, "receiving is no publish (and X-Ray links no consumer to its producer)");
    assert_eq!(queue(0), None, "the segment calls no queue");
    assert_eq!(spans[1].remote_kind, crate::model::RemoteKind::Queue);
    // The dependency still names the service the SDK called, as before.
    assert_eq!(
        (spans[1].remote_service.as_deref(), spans[1].remote_operation.as_deref()),
        (Some("SQS"), Some("SendMessage"))
    );
}
