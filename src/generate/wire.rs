//! Generated spans as an OpenTelemetry pipeline delivers them: one message per service of a trace
//! (each SDK exports its own spans), in OTLP protobuf, OTLP/JSON or Zipkin JSON.
//!
//! In OTLP the message holds one `ResourceSpans` whose resource is the pod that served the
//! service's part of the trace (`service.name`, `deployment.environment.name = demo`, and the pod's
//! placement: version, instance, Kubernetes, host and cloud attributes). Zipkin has no resource:
//! the pod's placement goes into every span's tags, as an exporter writes resource attributes
//! there; the environment stays out of them, as before.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;
use serde_json::{json, Value};

use super::deployment::Pod;
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
}

/// The trace's messages: one per pod, in the order the pods first appear in `spans` (a trace has
/// one pod per service).
pub fn encode(trace_id: &[u8; 16], spans: &[GenSpan], encoding: Encoding) -> Vec<Bytes> {
    let mut pods: Vec<&'static Pod> = Vec::new();
    for s in spans {
        if !pods.iter().any(|p| std::ptr::eq(*p, s.pod)) {
            pods.push(s.pod);
        }
    }
    pods.into_iter()
        .map(|pod| {
            let of_pod: Vec<&GenSpan> = spans.iter().filter(|s| std::ptr::eq(s.pod, pod)).collect();
            match encoding {
                Encoding::OtlpProto => Bytes::from(proto_data(trace_id, pod, &of_pod).encode_to_vec()),
                Encoding::OtlpJson => {
                    Bytes::from(serde_json::to_vec(&proto_data(trace_id, pod, &of_pod)).expect("serialisable"))
                }
                Encoding::ZipkinJson => {
                    let list: Vec<Value> = of_pod.iter().map(|s| zipkin_span(trace_id, s)).collect();
                    Bytes::from(Value::Array(list).to_string())
                }
            }
        })
        .collect()
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
