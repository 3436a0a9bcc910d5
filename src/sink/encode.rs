//! Re-encoding a kept trace in the encoding its spans arrived in (sampling.md "What is forwarded").
//!
//! Spans are written back from their wire bytes, grouped under their original resource and scope
//! headers (one record per trace, split only past the producer's message size limit), with the two
//! sampling attributes appended:
//! - protobuf: the attributes are appended as two more `attributes` (field 9) entries of each
//!   `Span`; protobuf concatenation semantics make that exactly "the span plus two attributes";
//! - OTLP/JSON and Zipkin JSON: each span object is parsed and the attributes (tags) added.

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use serde_json::{json, Map, Value};

use crate::model::{Encoding, Span};
use crate::sampling::Decision;

pub const RULE_ATTRIBUTE: &str = "sampling.rule";
pub const SAMPLE_RATE_ATTRIBUTE: &str = "sampling.sample_rate";

/// One record of a forwarded trace.
#[derive(Debug)]
pub struct TracePayload {
    pub encoding: Encoding,
    /// Spans in this record.
    pub spans: usize,
    pub payload: Bytes,
}

/// Encodes the spans of one trace: one record per encoding present (almost always exactly one),
/// split further only when a record would exceed `max_bytes` (the producer's `message.max.bytes`),
/// so a very large trace is forwarded in several records with the same key rather than rejected.
pub fn encode_trace(spans: &[Span], decision: &Decision, max_bytes: usize) -> Vec<TracePayload> {
    encode_spans(spans, Some(decision), max_bytes)
}

/// As [`encode_trace`], with the sampling attributes only when a decision is given (the
/// repartition step re-keys spans before any decision and writes them unchanged).
pub fn encode_spans(spans: &[Span], decision: Option<&Decision>, max_bytes: usize) -> Vec<TracePayload> {
    let mut encodings: Vec<Encoding> = Vec::with_capacity(1);
    for span in spans {
        if !encodings.contains(&span.origin.encoding) {
            encodings.push(span.origin.encoding);
        }
    }
    // Room for headers, the sampling attributes and JSON re-serialisation.
    let budget = max_bytes / 2;
    let mut out = Vec::with_capacity(encodings.len());
    for encoding in encodings {
        let mut chunk: Vec<&Span> = Vec::new();
        let mut size = 0;
        let of_encoding = spans.iter().filter(|s| s.origin.encoding == encoding);
        for span in of_encoding {
            let span_size = span.raw.len() + span.origin.resource_header.len() + span.origin.scope_header.len();
            if !chunk.is_empty() && size + span_size > budget {
                out.push(encode_chunk(encoding, &chunk, decision));
                chunk.clear();
                size = 0;
            }
            chunk.push(span);
            size += span_size;
        }
        if !chunk.is_empty() {
            out.push(encode_chunk(encoding, &chunk, decision));
        }
    }
    out
}

fn encode_chunk(encoding: Encoding, spans: &[&Span], decision: Option<&Decision>) -> TracePayload {
    let payload = match encoding {
        Encoding::OtlpProto => encode_proto(spans, decision),
        Encoding::OtlpJson => encode_otlp_json(spans, decision),
        Encoding::ZipkinJson => encode_zipkin(spans, decision),
    };
    TracePayload { encoding, spans: spans.len(), payload }
}

/// Spans under one scope header.
type ScopeGroup<'a> = (&'a Bytes, Vec<&'a Span>);
/// Scope groups under one resource header.
type ResourceGroup<'a> = (&'a Bytes, Vec<ScopeGroup<'a>>);

/// Spans grouped by resource header, then scope header, in first-seen order.
fn group<'a>(spans: &[&'a Span]) -> Vec<ResourceGroup<'a>> {
    let mut groups: Vec<ResourceGroup<'a>> = Vec::new();
    for span in spans {
        let origin = &span.origin;
        let resource = match groups.iter_mut().position(|(h, _)| **h == origin.resource_header) {
            Some(i) => &mut groups[i],
            None => {
                groups.push((&origin.resource_header, Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        match resource.1.iter_mut().position(|(h, _)| **h == origin.scope_header) {
            Some(i) => resource.1[i].1.push(span),
            None => resource.1.push((&origin.scope_header, vec![span])),
        }
    }
    groups
}

fn sampling_attributes_proto(decision: Option<&Decision>) -> Bytes {
    let Some(decision) = decision else { return Bytes::new() };
    let attributes = [
        KeyValue {
            key: RULE_ATTRIBUTE.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(decision.rule.to_string())) }),
            ..Default::default()
        },
        KeyValue {
            key: SAMPLE_RATE_ATTRIBUTE.into(),
            value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(decision.sample_rate)) }),
            ..Default::default()
        },
    ];
    let mut out = BytesMut::new();
    for kv in &attributes {
        prost::encoding::message::encode(9, kv, &mut out);
    }
    out.freeze()
}

fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_len_field(out: &mut BytesMut, field: u32, len: usize) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn encode_proto(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let suffix = sampling_attributes_proto(decision);
    let groups = group(spans);
    let span_len = |s: &Span| s.raw.len() + suffix.len();
    let scope_len =
        |header: &Bytes, spans: &[&Span]| header.len() + spans.iter().map(|s| field_len(span_len(s))).sum::<usize>();
    let resource_len = |header: &Bytes, scopes: &[(&Bytes, Vec<&Span>)]| {
        header.len() + scopes.iter().map(|(h, s)| field_len(scope_len(h, s))).sum::<usize>()
    };
    let total: usize = groups.iter().map(|(h, scopes)| field_len(resource_len(h, scopes))).sum();
    let mut out = BytesMut::with_capacity(total);
    for (resource_header, scopes) in &groups {
        put_len_field(&mut out, 1, resource_len(resource_header, scopes));
        out.put_slice(resource_header);
        for (scope_header, spans) in scopes {
            put_len_field(&mut out, 2, scope_len(scope_header, spans));
            out.put_slice(scope_header);
            for span in spans {
                put_len_field(&mut out, 2, span_len(span));
                out.put_slice(&span.raw);
                out.put_slice(&suffix);
            }
        }
    }
    debug_assert_eq!(out.len(), total);
    out.freeze()
}

/// Parses a span object kept as raw JSON. The decoder accepted it, so it is an object.
fn span_object(raw: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice(raw) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Opens the `index`-th object of a JSON list with its header members, then its `list` member.
fn open_member_list(out: &mut String, index: usize, header: &[u8], list: &str) {
    if index > 0 {
        out.push(',');
    }
    out.push('{');
    let header = std::str::from_utf8(header).unwrap_or("");
    out.push_str(header);
    if !header.is_empty() {
        out.push(',');
    }
    out.push('"');
    out.push_str(list);
    out.push_str("\":[");
}

fn encode_otlp_json(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let mut out = String::from("{\"resourceSpans\":[");
    for (ri, (resource_header, scopes)) in group(spans).iter().enumerate() {
        open_member_list(&mut out, ri, resource_header, "scopeSpans");
        for (si, (scope_header, spans)) in scopes.iter().enumerate() {
            open_member_list(&mut out, si, scope_header, "spans");
            for (i, span) in spans.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let Some(decision) = decision else {
                    out.push_str(std::str::from_utf8(&span.raw).unwrap_or("{}"));
                    continue;
                };
                let mut object = span_object(&span.raw);
                let attributes = object.entry("attributes").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = attributes {
                    list.push(json!({"key": RULE_ATTRIBUTE, "value": {"stringValue": &*decision.rule}}));
                    list.push(json!({"key": SAMPLE_RATE_ATTRIBUTE, "value": {"doubleValue": decision.sample_rate}}));
                }
                out.push_str(&Value::Object(object).to_string());
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    Bytes::from(out)
}

fn encode_zipkin(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let Some(decision) = decision else {
        let raw: Vec<&str> = spans.iter().map(|s| std::str::from_utf8(&s.raw).unwrap_or("{}")).collect();
        return Bytes::from(format!("[{}]", raw.join(",")));
    };
    let list: Vec<Value> = spans
        .iter()
        .map(|span| {
            let mut object = span_object(&span.raw);
            let tags = object.entry("tags").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(tags) = tags {
                tags.insert(RULE_ATTRIBUTE.into(), Value::String(decision.rule.to_string()));
                tags.insert(SAMPLE_RATE_ATTRIBUTE.into(), Value::String(decision.sample_rate.to_string()));
            }
            Value::Object(object)
        })
        .collect();
    Bytes::from(Value::Array(list).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;

    use super::*;
    use crate::testing::{spans, SpanSpec, SERVER};

    #[test]
    fn large_traces_are_split_under_the_message_limit() {
        let specs: Vec<SpanSpec> = (1..=200u8).map(|i| SpanSpec::new("api", 1, i, Some(0), SERVER, "op")).collect();
        let spans = spans(&specs);
        let decision = Decision::keep(Arc::from("r"), 1.0);
        let whole = encode_trace(&spans, &decision, 1_000_000);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].spans, 200);
        let limit = whole[0].payload.len() / 3;
        let parts = encode_trace(&spans, &decision, limit);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        assert_eq!(parts.iter().map(|p| p.spans).sum::<usize>(), 200);
        let mut decoded = 0;
        for part in &parts {
            assert!(part.payload.len() <= limit, "{} > {limit}", part.payload.len());
            let data = TracesData::decode(&part.payload[..]).unwrap();
            decoded += data.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>();
        }
        assert_eq!(decoded, 200);
    }
}
