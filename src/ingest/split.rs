//! Splitting an OTLP export request by trace id: one Kafka message per trace, keyed by its 32-hex
//! id (the Collector's `partition_traces_by_id`), so any number of instances assemble complete
//! traces. Pure: bytes in, messages and rejections out.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

/// How a request body is encoded (its `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Protobuf,
    Json,
}

/// One message to produce.
#[derive(Debug)]
pub struct TraceMessage {
    /// The trace id in 32 lowercase hex digits.
    pub key: String,
    pub payload: Vec<u8>,
    pub spans: usize,
}

/// A request split by trace.
#[derive(Debug, Default)]
pub struct Split {
    pub messages: Vec<TraceMessage>,
    /// Spans dropped for an invalid trace or span id.
    pub rejected: usize,
}

/// Why a body could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Splits an export request into one request per trace, each holding that trace's spans under
/// their own resource and scope, written in the encoding the body came in.
pub fn split(body: &[u8], encoding: Body) -> Result<Split, SplitError> {
    let request: ExportTraceServiceRequest = match encoding {
        Body::Protobuf => ExportTraceServiceRequest::decode(body)?,
        Body::Json => serde_json::from_slice(body)?,
    };
    Ok(split_request(request, encoding))
}

/// As [`split`], for a request already decoded (OTLP/gRPC); the messages are written in `encoding`.
pub fn split_request(request: ExportTraceServiceRequest, encoding: Body) -> Split {
    let mut traces: Vec<([u8; 16], ExportTraceServiceRequest, usize)> = Vec::new();
    let mut rejected = 0;
    for resource_spans in request.resource_spans {
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                let trace_id: Option<[u8; 16]> = span.trace_id.as_slice().try_into().ok().filter(|id| *id != [0; 16]);
                let (Some(trace_id), 8) = (trace_id, span.span_id.len()) else {
                    rejected += 1;
                    continue;
                };
                let at = match traces.iter().position(|(id, _, _)| *id == trace_id) {
                    Some(at) => at,
                    None => {
                        traces.push((trace_id, ExportTraceServiceRequest::default(), 0));
                        traces.len() - 1
                    }
                };
                let (_, trace, spans) = &mut traces[at];
                *spans += 1;
                // Spans of one resource and scope stay together under one copy of them.
                let same = |r: &ResourceSpans| {
                    r.resource == resource_spans.resource && r.schema_url == resource_spans.schema_url
                };
                let resource = match trace.resource_spans.iter().position(same) {
                    Some(at) => &mut trace.resource_spans[at],
                    None => {
                        trace.resource_spans.push(ResourceSpans {
                            resource: resource_spans.resource.clone(),
                            scope_spans: Vec::new(),
                            schema_url: resource_spans.schema_url.clone(),
                        });
                        trace.resource_spans.last_mut().expect("just pushed")
                    }
                };
                let same = |s: &ScopeSpans| s.scope == scope_spans.scope && s.schema_url == scope_spans.schema_url;
                let scope = match resource.scope_spans.iter().position(same) {
                    Some(at) => &mut resource.scope_spans[at],
                    None => {
                        resource.scope_spans.push(ScopeSpans {
                            scope: scope_spans.scope.clone(),
                            spans: Vec::new(),
                            schema_url: scope_spans.schema_url.clone(),
                        });
                        resource.scope_spans.last_mut().expect("just pushed")
                    }
                };
                scope.spans.push(span.clone());
            }
        }
    }
    let messages = traces
        .into_iter()
        .map(|(trace_id, request, spans)| TraceMessage {
            key: hex::encode(trace_id),
            payload: match encoding {
                Body::Protobuf => request.encode_to_vec(),
                Body::Json => serde_json::to_vec(&request).expect("serialisable"),
            },
            spans,
        })
        .collect();
    Split { messages, rejected }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;

    fn span(trace: u8, id: u8) -> Span {
        Span { trace_id: vec![trace; 16], span_id: vec![id; 8], name: format!("s{id}"), ..Default::default() }
    }

    fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
        let name = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
            ..Default::default()
        };
        ResourceSpans {
            resource: Some(Resource { attributes: vec![name], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }
    }

    #[test]
    fn one_message_per_trace_with_its_resources() {
        let bad = Span { trace_id: vec![1; 15], span_id: vec![9; 8], ..Default::default() };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![resource("a", vec![span(1, 1), span(2, 2), bad]), resource("b", vec![span(1, 3)])],
        };
        for encoding in [Body::Protobuf, Body::Json] {
            let body = match encoding {
                Body::Protobuf => request.encode_to_vec(),
                Body::Json => serde_json::to_vec(&request).unwrap(),
            };
            let split = split(&body, encoding).unwrap();
            assert_eq!(split.rejected, 1, "a trace id of 15 bytes");
            let keys: Vec<(&str, usize)> = split.messages.iter().map(|m| (m.key.as_str(), m.spans)).collect();
            assert_eq!(keys, [("01".repeat(16).as_str(), 2), ("02".repeat(16).as_str(), 1)]);
            let first: ExportTraceServiceRequest = match encoding {
                Body::Protobuf => ExportTraceServiceRequest::decode(&split.messages[0].payload[..]).unwrap(),
                Body::Json => serde_json::from_slice(&split.messages[0].payload).unwrap(),
            };
            assert_eq!(first.resource_spans.len(), 2, "each span under its own resource");
            assert_eq!(first.resource_spans[1].scope_spans[0].spans[0].name, "s3");
        }
        assert!(split(b"\xff\xff", Body::Protobuf).is_err());
        // Found by the fuzzer: an attribute sent without a value is written back as `"value": null`,
        // which the pipeline must read.
        let regression = include_bytes!("../../tests/fixtures/fuzz-regressions/otlp-json-null-attribute-value.json");
        for message in split(regression, Body::Json).unwrap().messages {
            let mut spans = Vec::new();
            let decoded =
                crate::format::Decoder::new(crate::format::InputEncoding::Fixed(crate::model::Encoding::OTLP_JSON))
                    .decode(&bytes::Bytes::from(message.payload), &mut spans);
            assert!(decoded.is_ok(), "{decoded:?}");
        }
        assert!(split(b"[1]", Body::Json).is_err());
    }
}
