//! Generated spans as an OpenTelemetry pipeline delivers them: one message per service of a trace
//! (each SDK exports its own spans), in OTLP protobuf, OTLP/JSON or Zipkin JSON.
//!
//! In OTLP the message holds one `ResourceSpans` whose resource is the pod that served the
//! service's part of the trace (`service.name`, `deployment.environment.name = demo`, and the pod's
//! placement: version, instance, Kubernetes, host and cloud attributes). Zipkin has no resource:
//! the pod's placement goes into every span's tags, as an exporter writes resource attributes
//! there; the environment stays out of them, as before. Zipkin protobuf carries the same spans as
//! Zipkin JSON, in a `ListOfSpans`. Jaeger writes one message per span, its process (the service
//! and, as tags, the resource attributes of OTLP) embedded, as the Collector's Jaeger translation
//! does.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;
use serde_json::{json, Value};

use super::deployment::Pod;
use crate::format::schemas::{jaeger, zipkin};
use crate::model::Encoding;

/// An attribute value.
#[derive(Clone, Debug)]
pub enum Val {
    Str(String),
    Int(i64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
        }
    }
}

/// A span placed in time, ready to encode.
pub struct GenSpan {
    /// The pod that ran it (and so its service).
    pub pod: &'static Pod,
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: &'static str,
    pub kind: span::SpanKind,
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<(&'static str, Val)>,
    /// The status message of a span with status ERROR.
    pub error: Option<&'static str>,
    /// The exception it recorded (an `exception` span event in OTLP).
    pub exception: Option<Thrown>,
}

/// An exception a span records: `exception.type`, `exception.message`, `exception.stacktrace`.
#[derive(Clone, Debug, PartialEq)]
pub struct Thrown {
    pub type_name: &'static str,
    pub message: String,
    pub stacktrace: &'static str,
}

/// Writes one pod's spans of a trace as the messages of one encoding.
type Writer = fn(&[u8; 16], &Pod, &[&GenSpan]) -> Vec<Bytes>;

/// The writer of `encoding`; `None` for the encodings the generator does not write (X-Ray).
fn writer(encoding: Encoding) -> Option<Writer> {
    let writer: Writer = match encoding {
        Encoding::OTLP_PROTO => {
            |trace_id, pod, spans| vec![Bytes::from(proto_data(trace_id, pod, spans).encode_to_vec())]
        }
        Encoding::OTLP_JSON => |trace_id, pod, spans| {
            vec![Bytes::from(serde_json::to_vec(&proto_data(trace_id, pod, spans)).expect("serialisable"))]
        },
        Encoding::ZIPKIN_JSON => |trace_id, _, spans| {
            let list: Vec<Value> = spans.iter().map(|s| zipkin_span(trace_id, s)).collect();
            vec![Bytes::from(Value::Array(list).to_string())]
        },
        Encoding::ZIPKIN_PROTO => |trace_id, _, spans| {
            let spans = spans.iter().map(|s| zipkin_proto_span(trace_id, s)).collect();
            vec![Bytes::from(zipkin::ListOfSpans { spans }.encode_to_vec())]
        },
        Encoding::JAEGER_PROTO => {
            |trace_id, _, spans| spans.iter().map(|s| Bytes::from(jaeger_span(trace_id, s).encode_to_vec())).collect()
        }
        Encoding::JAEGER_JSON => |trace_id, _, spans| {
            spans.iter().map(|s| Bytes::from(jaeger_json(&jaeger_span(trace_id, s)).to_string())).collect()
        },
        _ => return None,
    };
    Some(writer)
}

/// Whether the generator writes `encoding`.
pub fn writes(encoding: Encoding) -> bool {
    writer(encoding).is_some()
}

/// The trace's messages: one per pod (per span for Jaeger), in the order the pods first appear in
/// `spans` (a trace has one pod per service).
///
/// # Panics
/// For an encoding the generator does not write ([`writes`]); settings are checked before.
pub fn encode(trace_id: &[u8; 16], spans: &[GenSpan], encoding: Encoding) -> Vec<Bytes> {
    let write = writer(encoding).unwrap_or_else(|| panic!("the generator writes no {encoding} messages"));
    let mut pods: Vec<&'static Pod> = Vec::new();
    for s in spans {
        if !pods.iter().any(|p| std::ptr::eq(*p, s.pod)) {
            pods.push(s.pod);
        }
    }
    pods.into_iter()
        .flat_map(|pod| {
            let of_pod: Vec<&GenSpan> = spans.iter().filter(|s| std::ptr::eq(s.pod, pod)).collect();
            write(trace_id, pod, &of_pod)
        })
        .collect()
}

/// The Zipkin span of [`zipkin_span`], in protobuf.
fn zipkin_proto_span(trace_id: &[u8; 16], s: &GenSpan) -> zipkin::Span {
    let mut tags: std::collections::BTreeMap<String, String> =
        s.attributes.iter().map(|(k, v)| (k.to_string(), v.text())).collect();
    tags.extend(s.pod.placement().into_iter().map(|(k, v)| (k.to_string(), v)));
    if let Some(message) = s.error {
        tags.insert("error".into(), message.into());
    }
    let kind = match s.kind {
        span::SpanKind::Server => zipkin::span::Kind::Server,
        span::SpanKind::Client => zipkin::span::Kind::Client,
        span::SpanKind::Producer => zipkin::span::Kind::Producer,
        span::SpanKind::Consumer => zipkin::span::Kind::Consumer,
        _ => zipkin::span::Kind::SpanKindUnspecified,
    };
    zipkin::Span {
        trace_id: trace_id.to_vec(),
        parent_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        id: s.span_id.to_vec(),
        kind: kind as i32,
        name: s.name.into(),
        timestamp: s.start / 1000,
        duration: (s.end - s.start) / 1000,
        local_endpoint: Some(zipkin::Endpoint { service_name: s.pod.service.name().into(), ..Default::default() }),
        tags,
        ..Default::default()
    }
}

/// A Jaeger span in the JSON gogo `jsonpb` writes (hex ids, RFC 3339 start, duration in seconds,
/// enums by name, 64-bit integers as strings).
fn jaeger_json(span: &jaeger::Span) -> Value {
    let tags = |tags: &[jaeger::KeyValue]| -> Vec<Value> {
        tags.iter()
            .map(|t| match t.v_type() {
                jaeger::ValueType::Int64 => {
                    json!({"key": t.key, "vType": "INT64", "vInt64": t.v_int64.to_string()})
                }
                _ => json!({"key": t.key, "vStr": t.v_str}),
            })
            .collect()
    };
    let start = span.start_time.as_ref().expect("a start");
    let start = chrono::DateTime::from_timestamp(start.seconds, start.nanos as u32).expect("a valid time");
    let duration = span.duration.as_ref().expect("a duration");
    let process = span.process.as_ref().expect("a process");
    json!({
        "traceId": hex::encode(&span.trace_id),
        "spanId": hex::encode(&span.span_id),
        "operationName": span.operation_name,
        "references": span.references.iter().map(|r| json!({"traceId": hex::encode(&r.trace_id), "spanId": hex::encode(&r.span_id)})).collect::<Vec<_>>(),
        "flags": span.flags,
        "startTime": start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "duration": format!("{}.{:09}s", duration.seconds, duration.nanos),
        "tags": tags(&span.tags),
        "process": {"serviceName": process.service_name, "tags": tags(&process.tags)},
    })
}

/// A Jaeger span with its process, as the Collector's Jaeger translation writes it.
fn jaeger_span(trace_id: &[u8; 16], s: &GenSpan) -> jaeger::Span {
    let tag = |key: &str, value: &Val| match value {
        Val::Str(text) => jaeger::KeyValue { key: key.into(), v_str: text.clone(), ..Default::default() },
        Val::Int(i) => jaeger::KeyValue {
            key: key.into(),
            v_type: jaeger::ValueType::Int64 as i32,
            v_int64: *i,
            ..Default::default()
        },
    };
    let kind = match s.kind {
        span::SpanKind::Server => "server",
        span::SpanKind::Client => "client",
        span::SpanKind::Producer => "producer",
        span::SpanKind::Consumer => "consumer",
        _ => "internal",
    };
    let mut tags: Vec<jaeger::KeyValue> = s.attributes.iter().map(|(k, v)| tag(k, v)).collect();
    tags.push(tag("span.kind", &Val::Str(kind.into())));
    if let Some(message) = s.error {
        tags.push(tag("otel.status_code", &Val::Str("ERROR".into())));
        tags.push(tag("otel.status_description", &Val::Str(message.into())));
    }
    let process_tags = std::iter::once(("deployment.environment.name", "demo".to_string()))
        .chain(s.pod.placement())
        .map(|(k, v)| tag(k, &Val::Str(v)))
        .collect();
    let nanos = |n: u64| (n / 1_000_000_000, (n % 1_000_000_000) as i32);
    let (start_seconds, start_nanos) = nanos(s.start);
    let (duration_seconds, duration_nanos) = nanos(s.end - s.start);
    jaeger::Span {
        trace_id: trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        operation_name: s.name.into(),
        references: s
            .parent
            .map(|p| jaeger::SpanRef { trace_id: trace_id.to_vec(), span_id: p.to_vec(), ref_type: 0 })
            .into_iter()
            .collect(),
        flags: 1,
        start_time: Some(prost_types::Timestamp { seconds: start_seconds as i64, nanos: start_nanos }),
        duration: Some(prost_types::Duration { seconds: duration_seconds as i64, nanos: duration_nanos }),
        tags,
        process: Some(jaeger::Process { service_name: s.pod.service.name().into(), tags: process_tags }),
        ..Default::default()
    }
}

fn kv(key: &str, value: &Val) -> KeyValue {
    let value = match value {
        Val::Str(s) => any_value::Value::StringValue(s.clone()),
        Val::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn proto_data(trace_id: &[u8; 16], pod: &Pod, spans: &[&GenSpan]) -> TracesData {
    let identity = [
        ("service.name", Val::Str(pod.service.name().into())),
        ("deployment.environment.name", Val::Str("demo".into())),
        ("telemetry.sdk.language", Val::Str("java".into())),
    ];
    let placement = pod.placement().into_iter().map(|(k, v)| (k, Val::Str(v)));
    let attributes = identity.into_iter().chain(placement).map(|(k, v)| kv(k, &v)).collect();
    let resource = Resource { attributes, ..Default::default() };
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.into(),
            kind: s.kind as i32,
            start_time_unix_nano: s.start,
            end_time_unix_nano: s.end,
            attributes: s.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
            status: Some(Status {
                code: if s.error.is_some() { 2 } else { 0 },
                message: s.error.unwrap_or_default().into(),
            }),
            events: s
                .exception
                .iter()
                .map(|thrown| span::Event {
                    time_unix_nano: s.end,
                    name: "exception".into(),
                    attributes: vec![
                        kv("exception.type", &Val::Str(thrown.type_name.into())),
                        kv("exception.message", &Val::Str(thrown.message.clone())),
                        kv("exception.stacktrace", &Val::Str(thrown.stacktrace.into())),
                    ],
                    dropped_attributes_count: 0,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    TracesData {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.spring-webmvc-6.0".into(),
                    version: "2.10.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
    }
}

fn zipkin_span(trace_id: &[u8; 16], s: &GenSpan) -> Value {
    let kind = match s.kind {
        span::SpanKind::Server => Some("SERVER"),
        span::SpanKind::Client => Some("CLIENT"),
        span::SpanKind::Producer => Some("PRODUCER"),
        span::SpanKind::Consumer => Some("CONSUMER"),
        _ => None,
    };
    let mut tags = serde_json::Map::new();
    for (k, v) in &s.attributes {
        tags.insert(k.to_string(), Value::String(v.text()));
    }
    for (k, v) in s.pod.placement() {
        tags.insert(k.to_string(), Value::String(v));
    }
    if let Some(message) = s.error {
        tags.insert("error".into(), Value::String(message.into()));
    }
    let mut span = json!({
        "traceId": hex::encode(trace_id),
        "id": hex::encode(s.span_id),
        "name": s.name,
        "timestamp": s.start / 1000,
        "duration": (s.end - s.start) / 1000,
        "localEndpoint": {"serviceName": s.pod.service.name()},
        "tags": tags,
    });
    if let Some(parent) = s.parent {
        span["parentId"] = Value::String(hex::encode(parent));
    }
    if let Some(kind) = kind {
        span["kind"] = Value::String(kind.into());
    }
    span
}
