//! Re-encoding a kept trace in the encoding its spans arrived in (sampling.md "What is forwarded").
//!
//! Spans are written back from their wire bytes, grouped under their original resource and scope
//! headers (one record per trace, split only past the producer's message size limit), with the two
//! sampling attributes appended:
//! - protobuf: the attributes are appended as two more `attributes` (field 9) entries of each
//!   `Span`; protobuf concatenation semantics make that exactly "the span plus two attributes";
//! - OTLP/JSON and Zipkin JSON: the attributes (tags) are added to each span object by rewriting
//!   that one member; every other member is copied byte for byte, never re-parsed.
//!
//! Probabilistic decisions also set the span's `tracestate` threshold (`ot=th:…`), never lowering
//! one it arrived with: a span head-sampled upstream at a higher threshold keeps it, and its
//! `sampling.sample_rate` is that threshold's adjusted count (sampling.md "What is forwarded").

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::decision::{adjusted_count, Decision};
use crate::decode::schemas::{jaeger, zipkin};
use crate::model::{Encoding, Span};
use prost::Message;

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
        let mut chunk: Vec<&Span> = Vec::with_capacity(spans.len());
        let mut size = 0;
        let of_encoding = spans.iter().filter(|s| s.origin.encoding == encoding);
        for span in of_encoding {
            let span_size = span.raw.len() + span.origin.resource_header.len() + span.origin.scope_header.len();
            // A Jaeger message holds one span (what Jaeger's ingester and tracewarden read).
            let one_span_each = matches!(encoding, Encoding::JaegerProto | Encoding::JaegerJson);
            if !chunk.is_empty() && (size + span_size > budget || one_span_each) {
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
        Encoding::ZipkinProto => encode_zipkin_proto(spans, decision),
        Encoding::JaegerProto => encode_jaeger_proto(spans, decision),
        Encoding::JaegerJson => encode_jaeger_json(spans, decision),
        Encoding::XrayJson => encode_xray(spans, decision),
    };
    TracePayload { encoding, spans: spans.len(), payload }
}

/// The W3C `tracestate` with the OpenTelemetry `ot=th:…` entry set for a rejection threshold
/// (sampling.md; the OpenTelemetry probability-sampling specification): the `th` sub-key of an
/// existing `ot` entry is replaced, its other sub-keys kept; the `ot` entry moves to the front; other
/// vendors' entries are kept in order.
pub fn tracestate_with_threshold(existing: &str, threshold: u64) -> String {
    let digits = format!("{threshold:014x}");
    let trimmed = digits.trim_end_matches('0');
    let th = format!("th:{}", if trimmed.is_empty() { "0" } else { trimmed });
    let mut ot_fields = vec![th];
    let mut others = Vec::new();
    for entry in existing.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.strip_prefix("ot=") {
            Some(fields) => {
                ot_fields.extend(fields.split(';').filter(|f| !f.starts_with("th:") && !f.is_empty()).map(String::from))
            }
            None => others.push(entry.to_string()),
        }
    }
    let mut out = format!("ot={}", ot_fields.join(";"));
    for other in others {
        out.push(',');
        out.push_str(&other);
    }
    out
}

/// The rejection threshold of the OpenTelemetry entry of a W3C `tracestate` (`ot=…;th:T;…`: 1 to
/// 14 hex digits, trailing zeros omitted); `None` when absent or malformed.
pub fn tracestate_threshold(tracestate: &str) -> Option<u64> {
    let ot = tracestate.split(',').map(str::trim).find_map(|entry| entry.strip_prefix("ot="))?;
    let digits = ot.split(';').find_map(|field| field.strip_prefix("th:"))?;
    if digits.is_empty() || digits.len() > 14 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u64::from_str_radix(digits, 16).ok()?;
    Some(value << (4 * (14 - digits.len())))
}

/// The threshold a span arrived with, when it is higher than `threshold`: a sampler downstream
/// may raise a threshold, never lower it (the OpenTelemetry probability-sampling specification),
/// so the span leaves with the arriving one.
fn raised_threshold(existing: &str, threshold: u64) -> Option<u64> {
    tracestate_threshold(existing).filter(|&arriving| arriving > threshold)
}

/// The `trace_state` (field 3) of an encoded protobuf span.
fn proto_tracestate(raw: &[u8]) -> &str {
    let mut state = "";
    let mut reader = crate::decode::WireReader::new(raw);
    while let Ok(Some((field, value, _))) = reader.next_field() {
        if let (3, crate::decode::WireField::Len(bytes)) = (field, value) {
            state = std::str::from_utf8(bytes).unwrap_or("");
        }
    }
    state
}

/// What is appended to an encoded protobuf span: the sampling attributes (with the adjusted count
/// of the span's own threshold when it arrived with a higher one), then (for probabilistic
/// decisions) a `trace_state` field, which overrides the original (the last value of a singular
/// protobuf field wins).
fn proto_suffix(existing: &str, attributes: &Bytes, decision: &Decision, threshold: u64) -> Bytes {
    let raised = raised_threshold(existing, threshold);
    let state = tracestate_with_threshold(existing, raised.unwrap_or(threshold));
    let raised_attributes = raised.map(|t| sampling_attributes_proto(&decision.rule, adjusted_count(t)));
    let attributes = raised_attributes.as_ref().unwrap_or(attributes);
    let mut out = BytesMut::with_capacity(attributes.len() + state.len() + 4);
    out.put_slice(attributes);
    prost::encoding::string::encode(3, &state, &mut out);
    out.freeze()
}

/// Every span's suffix ([`proto_suffix`]): the sampling attributes alone, or, for probabilistic
/// decisions, worked out once per distinct arriving trace state (a trace's spans almost always
/// share theirs), so a span allocates nothing of its own.
fn proto_suffixes(spans: &[&Span], attributes: &Bytes, decision: Option<&Decision>) -> Vec<Bytes> {
    let Some((decision, threshold)) = decision.and_then(|d| Some((d, d.threshold?))) else {
        return spans.iter().map(|_| attributes.clone()).collect();
    };
    let mut previous: Option<(&str, Bytes)> = None;
    spans
        .iter()
        .map(|span| {
            let existing = proto_tracestate(&span.raw);
            match &previous {
                Some((state, suffix)) if *state == existing => suffix.clone(),
                _ => {
                    let suffix = proto_suffix(existing, attributes, decision, threshold);
                    previous = Some((existing, suffix.clone()));
                    suffix
                }
            }
        })
        .collect()
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

fn sampling_attributes_proto(rule: &str, sample_rate: f64) -> Bytes {
    let attributes = [
        KeyValue {
            key: RULE_ATTRIBUTE.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(rule.to_string())) }),
            ..Default::default()
        },
        KeyValue {
            key: SAMPLE_RATE_ATTRIBUTE.into(),
            value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(sample_rate)) }),
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

/// The output order of a trace's spans: by resource header, then scope header, each in
/// first-seen order, spans in arrival order within. A few allocations per trace, none per span.
struct ProtoLayout<'a> {
    /// (resource rank, scope rank, index of the span), sorted.
    order: Vec<(u32, u32, u32)>,
    /// Resource headers by rank.
    resources: Vec<&'a Bytes>,
    /// (resource rank, scope header) by scope rank.
    scopes: Vec<(u32, &'a Bytes)>,
}

impl<'a> ProtoLayout<'a> {
    fn of(spans: &[&'a Span]) -> Self {
        let (mut resources, mut scopes): (Vec<&Bytes>, Vec<(u32, &Bytes)>) = (Vec::new(), Vec::new());
        let mut order = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            let origin = &span.origin;
            let resource = match resources.iter().position(|h| **h == origin.resource_header) {
                Some(r) => r,
                None => {
                    resources.push(&origin.resource_header);
                    resources.len() - 1
                }
            } as u32;
            let scope = match scopes.iter().position(|(r, h)| *r == resource && **h == origin.scope_header) {
                Some(s) => s,
                None => {
                    scopes.push((resource, &origin.scope_header));
                    scopes.len() - 1
                }
            } as u32;
            order.push((resource, scope, i as u32));
        }
        // Ranks follow first sight, and the span index keeps arrival order within a scope.
        order.sort_unstable();
        Self { order, resources, scopes }
    }
}

fn encode_proto(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let attributes = decision.map(|d| sampling_attributes_proto(&d.rule, d.sample_rate)).unwrap_or_default();
    let layout = ProtoLayout::of(spans);
    // One suffix per span (its trace state may differ), computed once.
    let suffixes = proto_suffixes(spans, &attributes, decision);
    let span_len = |i: usize| spans[i].raw.len() + suffixes[i].len();
    let mut scope_lens: Vec<usize> = layout.scopes.iter().map(|(_, header)| header.len()).collect();
    for &(_, scope, i) in &layout.order {
        scope_lens[scope as usize] += field_len(span_len(i as usize));
    }
    let mut resource_lens: Vec<usize> = layout.resources.iter().map(|header| header.len()).collect();
    for (scope, (resource, _)) in layout.scopes.iter().enumerate() {
        resource_lens[*resource as usize] += field_len(scope_lens[scope]);
    }
    let total: usize = resource_lens.iter().map(|&l| field_len(l)).sum();
    let mut out = BytesMut::with_capacity(total);
    let (mut open_resource, mut open_scope) = (None, None);
    for &(resource, scope, i) in &layout.order {
        if open_resource != Some(resource) {
            put_len_field(&mut out, 1, resource_lens[resource as usize]);
            out.put_slice(layout.resources[resource as usize]);
            (open_resource, open_scope) = (Some(resource), None);
        }
        if open_scope != Some(scope) {
            put_len_field(&mut out, 2, scope_lens[scope as usize]);
            out.put_slice(layout.scopes[scope as usize].1);
            open_scope = Some(scope);
        }
        let i = i as usize;
        put_len_field(&mut out, 2, span_len(i));
        out.put_slice(&spans[i].raw);
        out.put_slice(&suffixes[i]);
    }
    debug_assert_eq!(out.len(), total);
    out.freeze()
}

/// The members of a JSON object, in order, values untouched (never re-parsed: a value serde_json
/// could not represent, such as an out-of-range number in an unknown member, passes through).
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MemberVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MemberVisitor<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'a, str>, &'a RawValue>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MemberVisitor(std::marker::PhantomData))
    }
}

fn push_member(out: &mut String, first: &mut bool, name: &str, value: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(&serde_json::to_string(name).expect("a string serialises"));
    out.push(':');
    out.push_str(value);
}

/// Rewrites the member `name` of a JSON object with `update(old value)`, adding it when absent;
/// every other member is copied byte for byte.
fn with_member(object: &str, name: &str, update: impl FnOnce(Option<&RawValue>) -> String) -> String {
    let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(object) else { return object.to_string() };
    let mut update = Some(update);
    let mut out = String::with_capacity(object.len() + 128);
    out.push('{');
    let mut first = true;
    for (key, value) in &members {
        if key == name {
            if let Some(update) = update.take() {
                push_member(&mut out, &mut first, key, &update(Some(value)));
            }
        } else {
            push_member(&mut out, &mut first, key, value.get());
        }
    }
    if let Some(update) = update.take() {
        push_member(&mut out, &mut first, name, &update(None));
    }
    out.push('}');
    out
}

/// An OTLP/JSON span with the sampling attributes appended to its `attributes` (and, for
/// probabilistic decisions, `ot=th:…` in its `traceState`).
fn annotate_otlp_json(span: &str, decision: &Decision) -> String {
    let mut sample_rate = decision.sample_rate;
    let span = match decision.threshold {
        Some(threshold) => with_member(span, "traceState", |old| {
            let existing = old.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok()).unwrap_or_default();
            let raised = raised_threshold(&existing, threshold);
            if let Some(raised) = raised {
                sample_rate = adjusted_count(raised);
            }
            Value::String(tracestate_with_threshold(&existing, raised.unwrap_or(threshold))).to_string()
        }),
        None => span.to_string(),
    };
    with_member(&span, "attributes", |old| {
        appended(
            old,
            [
                json!({"key": RULE_ATTRIBUTE, "value": {"stringValue": &*decision.rule}}),
                json!({"key": SAMPLE_RATE_ATTRIBUTE, "value": {"doubleValue": sample_rate}}),
            ],
        )
    })
}

/// A JSON list (`old`, absent or not a list: empty) with `items` appended; its own items are
/// copied byte for byte.
fn appended(old: Option<&RawValue>, items: [Value; 2]) -> String {
    let mut list: Vec<String> = old
        .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|item| item.get().to_string())
        .collect();
    list.extend(items.iter().map(Value::to_string));
    format!("[{}]", list.join(","))
}

/// A Zipkin span with the sampling attributes set in its `tags`.
fn annotate_zipkin(span: &str, decision: &Decision) -> String {
    with_object_members(
        span,
        "tags",
        &[
            (RULE_ATTRIBUTE, Value::String(decision.rule.to_string()).to_string()),
            (SAMPLE_RATE_ATTRIBUTE, Value::String(decision.sample_rate.to_string()).to_string()),
        ],
    )
}

/// `object` with its member `name` (an object; absent: empty) given the members `set` (encoded
/// JSON values), replacing any of the same keys; every other member is copied byte for byte.
fn with_object_members(object: &str, name: &str, set: &[(&str, String)]) -> String {
    with_member(object, name, |old| {
        let members =
            old.and_then(|raw| serde_json::from_str::<Members<'_>>(raw.get()).ok()).map(|m| m.0).unwrap_or_default();
        let mut out = String::from("{");
        let mut first = true;
        for (key, value) in &members {
            if !set.iter().any(|(k, _)| k == key) {
                push_member(&mut out, &mut first, key, value.get());
            }
        }
        for (key, value) in set {
            push_member(&mut out, &mut first, key, value);
        }
        out.push('}');
        out
    })
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
                let raw = std::str::from_utf8(&span.raw).unwrap_or("{}");
                match decision {
                    Some(decision) => out.push_str(&annotate_otlp_json(raw, decision)),
                    None => out.push_str(raw),
                }
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    Bytes::from(out)
}

fn encode_zipkin(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let spans: Vec<String> = spans
        .iter()
        .map(|span| {
            let raw = std::str::from_utf8(&span.raw).unwrap_or("{}");
            match decision {
                Some(decision) => annotate_zipkin(raw, decision),
                None => raw.to_string(),
            }
        })
        .collect();
    Bytes::from(format!("[{}]", spans.join(",")))
}

/// A `zipkin.proto3.ListOfSpans` of the spans' own messages, each with the sampling tags
/// appended: map entries later on the wire override earlier ones of the same key.
fn encode_zipkin_proto(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let suffix = decision.map_or_else(Vec::new, |decision| {
        let tags = [
            (RULE_ATTRIBUTE.to_string(), decision.rule.to_string()),
            (SAMPLE_RATE_ATTRIBUTE.to_string(), decision.sample_rate.to_string()),
        ];
        zipkin::Span { tags: tags.into_iter().collect(), ..Default::default() }.encode_to_vec()
    });
    let mut list = BytesMut::new();
    for span in spans {
        put_len_field(&mut list, 1, span.raw.len() + suffix.len());
        list.put_slice(&span.raw);
        list.put_slice(&suffix);
    }
    list.freeze()
}

/// The sampling attributes as Jaeger tags.
fn jaeger_sampling_tags(decision: &Decision) -> [jaeger::KeyValue; 2] {
    [
        jaeger::KeyValue { key: RULE_ATTRIBUTE.into(), v_str: decision.rule.to_string(), ..Default::default() },
        jaeger::KeyValue {
            key: SAMPLE_RATE_ATTRIBUTE.into(),
            v_type: jaeger::ValueType::Float64 as i32,
            v_float64: decision.sample_rate,
            ..Default::default()
        },
    ]
}

/// One `jaeger.api_v2.Span` (a chunk of one span), with the sampling tags appended: repeated
/// fields concatenate.
fn encode_jaeger_proto(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let mut out = BytesMut::new();
    for span in spans {
        out.put_slice(&span.raw);
        if let Some(decision) = decision {
            let tags = jaeger::Span { tags: jaeger_sampling_tags(decision).into(), ..Default::default() };
            out.put_slice(&tags.encode_to_vec());
        }
    }
    out.freeze()
}

/// One Jaeger JSON span (a chunk of one span), with the sampling tags added to its `tags`; every
/// other member is copied byte for byte.
fn encode_jaeger_json(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let mut out = String::new();
    for span in spans {
        let raw = std::str::from_utf8(&span.raw).unwrap_or("{}");
        match decision {
            Some(decision) => out.push_str(&with_member(raw, "tags", |old| {
                appended(
                    old,
                    [
                        json!({"key": RULE_ATTRIBUTE, "vStr": &*decision.rule}),
                        json!({"key": SAMPLE_RATE_ATTRIBUTE, "vType": "FLOAT64", "vFloat64": decision.sample_rate}),
                    ],
                )
            })),
            None => out.push_str(raw),
        }
    }
    Bytes::from(out)
}

/// X-Ray documents as a JSON array (the shape of X-Ray's `PutTraceSegments`), each with the
/// sampling attributes as annotations (`sampling_rule`, `sampling_sample_rate`: annotation keys
/// cannot hold dots). Subsegments embedded in a document travel inside it, unchanged.
fn encode_xray(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let documents: Vec<String> = spans
        .iter()
        .filter(|span| span.origin.scope_header != crate::decode::XRAY_EMBEDDED)
        .map(|span| {
            let raw = std::str::from_utf8(&span.raw).unwrap_or("{}");
            match decision {
                Some(decision) => with_object_members(
                    raw,
                    "annotations",
                    &[
                        ("sampling_rule", Value::String(decision.rule.to_string()).to_string()),
                        ("sampling_sample_rate", json!(decision.sample_rate).to_string()),
                    ],
                ),
                None => raw.to_string(),
            }
        })
        .collect();
    Bytes::from(format!("[{}]", documents.join(",")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;

    use super::*;
    use crate::testing::{spans, SpanSpec, SERVER};

    #[test]
    fn json_spans_keep_every_member_they_arrived_with() {
        let decision = Decision::keep(Arc::from("slow"), 4.0);
        let span =
            r#"{"traceId":"ab","odd":1E888,"attributes":[{"key":"k","value":{"intValue":"1"}}],"name":"n\u00e9"}"#;
        let out = annotate_otlp_json(span, &decision);
        assert!(
            out.starts_with(r#"{"traceId":"ab","odd":1E888,"attributes":[{"key":"k","value":{"intValue":"1"}},"#),
            "{out}"
        );
        assert!(out.contains(r#"{"key":"sampling.rule","value":{"stringValue":"slow"}}"#), "{out}");
        assert!(out.ends_with(r#""name":"n\u00e9"}"#), "{out}");
        let zipkin = annotate_zipkin(r#"{"id":"1","tags":{"a":"b","sampling.rule":"old"},"big":9E999}"#, &decision);
        assert_eq!(
            zipkin,
            r#"{"id":"1","tags":{"a":"b","sampling.rule":"slow","sampling.sample_rate":"4"},"big":9E999}"#
        );
        assert_eq!(
            annotate_zipkin(r#"{"id":"1"}"#, &decision),
            r#"{"id":"1","tags":{"sampling.rule":"slow","sampling.sample_rate":"4"}}"#
        );
    }

    fn decoded(input: crate::decode::InputEncoding, payloads: &[Vec<u8>]) -> Vec<Span> {
        let mut decoder = crate::decode::Decoder::new(input);
        let mut out = Vec::new();
        for payload in payloads {
            decoder.decode(&Bytes::copy_from_slice(payload), &mut out).expect("valid");
        }
        out
    }

    #[test]
    fn zipkin_and_jaeger_traces_leave_in_their_encoding_with_the_sampling_tags() {
        use crate::decode::InputEncoding;
        let decision = Decision::keep(Arc::from("slow"), 4.0);
        let zipkin_span = |id: u8| zipkin::Span {
            trace_id: vec![9; 16],
            id: vec![id; 8],
            name: "get".into(),
            timestamp: 1_700_000_000_000_000,
            duration: 5,
            tags: [("sampling.rule".to_string(), "old".to_string()), ("a".into(), "b".into())].into(),
            ..Default::default()
        };
        let list = zipkin::ListOfSpans { spans: vec![zipkin_span(1), zipkin_span(2)] }.encode_to_vec();
        let parts = encode_trace(&decoded(InputEncoding::ZipkinProto, &[list]), &decision, 1_000_000);
        assert_eq!(parts.len(), 1, "one ListOfSpans for the trace");
        let forwarded = zipkin::ListOfSpans::decode(&parts[0].payload[..]).unwrap();
        assert_eq!(forwarded.spans.len(), 2);
        for span in &forwarded.spans {
            assert_eq!(span.tags["sampling.rule"], "slow", "the decision's rule overrides the old tag");
            assert_eq!((span.tags["sampling.sample_rate"].as_str(), span.tags["a"].as_str()), ("4", "b"));
        }

        let jaeger_span = |id: u8| jaeger::Span {
            trace_id: vec![9; 16],
            span_id: vec![id; 8],
            operation_name: "get".into(),
            start_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            duration: Some(prost_types::Duration { seconds: 0, nanos: 5000 }),
            process: Some(jaeger::Process { service_name: "api".into(), tags: Vec::new() }),
            ..Default::default()
        };
        let messages = vec![jaeger_span(1).encode_to_vec(), jaeger_span(2).encode_to_vec()];
        let parts = encode_trace(&decoded(InputEncoding::JaegerProto, &messages), &decision, 1_000_000);
        assert_eq!(parts.len(), 2, "one Jaeger message per span");
        for part in &parts {
            let span = jaeger::Span::decode(&part.payload[..]).unwrap();
            assert_eq!(span.process.as_ref().unwrap().service_name, "api");
            let tags: Vec<(&str, &str, f64)> =
                span.tags.iter().map(|t| (t.key.as_str(), t.v_str.as_str(), t.v_float64)).collect();
            assert_eq!(tags, [("sampling.rule", "slow", 0.0), ("sampling.sample_rate", "", 4.0)]);
        }

        let json = r#"{"traceId":"9","spanId":"1","operationName":"get","odd":1E888,"startTime":"2023-11-14T22:13:20Z","duration":"5us","tags":[{"key":"a","vStr":"b"}],"process":{"serviceName":"api"}}"#;
        let parts =
            encode_trace(&decoded(InputEncoding::JaegerJson, &[json.as_bytes().to_vec()]), &decision, 1_000_000);
        assert_eq!(
            std::str::from_utf8(&parts[0].payload).unwrap(),
            r#"{"traceId":"9","spanId":"1","operationName":"get","odd":1E888,"startTime":"2023-11-14T22:13:20Z","duration":"5us","tags":[{"key":"a","vStr":"b"},{"key":"sampling.rule","vStr":"slow"},{"key":"sampling.sample_rate","vFloat64":4.0,"vType":"FLOAT64"}],"process":{"serviceName":"api"}}"#
        );
    }

    #[test]
    fn probabilistic_decisions_set_the_tracestate_threshold() {
        let decision =
            Decision { threshold: Some(crate::sampling::threshold_for(0.25)), ..Decision::keep(Arc::from("r"), 4.0) };
        let json = annotate_otlp_json(r#"{"traceState":"vendor=1","name":"x"}"#, &decision);
        assert!(json.starts_with(r#"{"traceState":"ot=th:c,vendor=1","name":"x","attributes":["#), "{json}");
        let specs = [SpanSpec::new("api", 1, 1, None, SERVER, "op")];
        let parts = encode_trace(&spans(&specs), &decision, 1_000_000);
        let data = TracesData::decode(&parts[0].payload[..]).unwrap();
        assert_eq!(data.resource_spans[0].scope_spans[0].spans[0].trace_state, "ot=th:c");
    }

    /// The `sampling.sample_rate` attributes of every span of a protobuf record, with its tracestate.
    fn forwarded(payload: &[u8]) -> Vec<(String, f64)> {
        let data = TracesData::decode(payload).unwrap();
        let spans = data.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        spans
            .map(|span| {
                let rate = span.attributes.iter().find(|kv| kv.key == SAMPLE_RATE_ATTRIBUTE).unwrap();
                let Some(any_value::Value::DoubleValue(rate)) = rate.value.as_ref().unwrap().value else { panic!() };
                (span.trace_state.clone(), rate)
            })
            .collect()
    }

    #[test]
    fn arriving_thresholds_are_read_from_the_tracestate() {
        assert_eq!(tracestate_threshold("ot=th:f"), Some(0xf0_0000_0000_0000));
        assert_eq!(tracestate_threshold("vendor=1, ot=rv:abcdef01234567;th:c8 ,x=y"), Some(0xc8_0000_0000_0000));
        assert_eq!(tracestate_threshold("ot=th:0"), Some(0));
        assert_eq!(tracestate_threshold("ot=th:fffffffffffff1"), Some(0xff_ffff_ffff_fff1));
        for none in ["", "vendor=th:f", "ot=rv:abcdef01234567", "ot=th:", "ot=th:fffffffffffffff", "ot=th:g"] {
            assert_eq!(tracestate_threshold(none), None, "{none:?}");
        }
    }

    /// sampling.md "What is forwarded": a trace kept upstream at 1 in 16 (`th:f`) and kept here
    /// by a 10 % rule leaves with `th:f` and sample rate 16; a threshold is never lowered.
    #[test]
    fn a_head_sampled_trace_keeps_its_higher_threshold() {
        use crate::assemble::{DecisionReason, ReadyTrace};
        let config: crate::sampling::SamplingConfig =
            toml::from_str("[[rules]]\nname = \"ten\"\nkeep = \"rate\"\nrate = 0.1").unwrap();
        let mut sampler = crate::sampling::Sampler::new(&config);
        // Trace id 0xff…: randomness 0xffffffffffffff, kept at any threshold.
        let specs = [
            SpanSpec::new("api", 0xff, 1, None, SERVER, "op").trace_state("ot=th:f;rv:ffffffffffffff,vendor=1"),
            SpanSpec::new("api", 0xff, 2, Some(1), SERVER, "child").trace_state("ot=th:8"),
            SpanSpec::new("api", 0xff, 3, Some(1), SERVER, "plain"),
        ];
        let spans = spans(&specs);
        let trace = ReadyTrace {
            trace_id: spans[0].trace_id,
            root_present: true,
            spans,
            reason: DecisionReason::Complete,
            sources: Vec::new(),
            prior: None,
        };
        let decision = sampler.decide(&trace, crate::clock::Nanos(1_800_000_000_000_000_000));
        assert!(decision.keep);
        let parts = encode_trace(&trace.spans, &decision, 1_000_000);
        let out = forwarded(&parts[0].payload);
        let states: Vec<&str> = out.iter().map(|(state, _)| state.as_str()).collect();
        assert_eq!(states, ["ot=th:f;rv:ffffffffffffff,vendor=1", "ot=th:e6666666666666", "ot=th:e6666666666666"]);
        assert_eq!(out[0].1, 16.0, "2^56 / (2^56 - 0xf0000000000000)");
        for (_, rate) in &out[1..] {
            assert!((rate - 10.0).abs() < 1e-9, "the rule's own threshold is the higher one: {rate}");
        }
        let json = annotate_otlp_json(r#"{"traceState":"ot=th:f","name":"x"}"#, &decision);
        assert!(json.starts_with(r#"{"traceState":"ot=th:f","name":"x","attributes":["#), "{json}");
        assert!(json.contains(r#"{"key":"sampling.sample_rate","value":{"doubleValue":16.0}}"#), "{json}");
    }

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
