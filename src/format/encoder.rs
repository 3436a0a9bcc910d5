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

use bytes::{Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::decision::Decision;
use crate::model::{Encoding, Span};

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
            let one_span_each = encoding.format().one_span_per_message();
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
    TracePayload { encoding, spans: spans.len(), payload: encoding.format().encode(spans, decision) }
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
pub(super) fn raised_threshold(existing: &str, threshold: u64) -> Option<u64> {
    tracestate_threshold(existing).filter(|&arriving| arriving > threshold)
}

pub(super) fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

pub(super) fn put_len_field(out: &mut BytesMut, field: u32, len: usize) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// The members of a JSON object, in order, values untouched (never re-parsed: a value serde_json
/// could not represent, such as an out-of-range number in an unknown member, passes through).
pub(super) struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

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

pub(super) fn push_member(out: &mut String, first: &mut bool, name: &str, value: &str) {
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
pub(super) fn with_member(object: &str, name: &str, update: impl FnOnce(Option<&RawValue>) -> String) -> String {
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

/// A JSON list (`old`, absent or not a list: empty) with `items` appended; its own items are
/// copied byte for byte.
pub(super) fn appended(old: Option<&RawValue>, items: [Value; 2]) -> String {
    let mut list: Vec<String> = old
        .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|item| item.get().to_string())
        .collect();
    list.extend(items.iter().map(Value::to_string));
    format!("[{}]", list.join(","))
}

/// `object` with its member `name` (an object; absent: empty) given the members `set` (encoded
/// JSON values), replacing any of the same keys; every other member is copied byte for byte.
pub(super) fn with_object_members(object: &str, name: &str, set: &[(&str, String)]) -> String {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::trace::v1::TracesData;

    use super::super::otlp_json::annotate_otlp_json;
    use super::super::zipkin_json::annotate_zipkin;
    use super::*;
    use crate::format::schemas::{jaeger, zipkin};
    use crate::testing::{spans, SpanSpec, SERVER};
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message;

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

    fn decoded(input: crate::format::InputEncoding, payloads: &[Vec<u8>]) -> Vec<Span> {
        let mut decoder = crate::format::Decoder::new(input);
        let mut out = Vec::new();
        for payload in payloads {
            decoder.decode(&Bytes::copy_from_slice(payload), &mut out).expect("valid");
        }
        out
    }

    #[test]
    fn zipkin_and_jaeger_traces_leave_in_their_encoding_with_the_sampling_tags() {
        use crate::format::InputEncoding;
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
        let parts = encode_trace(&decoded(InputEncoding::Fixed(Encoding::ZIPKIN_PROTO), &[list]), &decision, 1_000_000);
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
        let parts =
            encode_trace(&decoded(InputEncoding::Fixed(Encoding::JAEGER_PROTO), &messages), &decision, 1_000_000);
        assert_eq!(parts.len(), 2, "one Jaeger message per span");
        for part in &parts {
            let span = jaeger::Span::decode(&part.payload[..]).unwrap();
            assert_eq!(span.process.as_ref().unwrap().service_name, "api");
            let tags: Vec<(&str, &str, f64)> =
                span.tags.iter().map(|t| (t.key.as_str(), t.v_str.as_str(), t.v_float64)).collect();
            assert_eq!(tags, [("sampling.rule", "slow", 0.0), ("sampling.sample_rate", "", 4.0)]);
        }

        let json = r#"{"traceId":"9","spanId":"1","operationName":"get","odd":1E888,"startTime":"2023-11-14T22:13:20Z","duration":"5us","tags":[{"key":"a","vStr":"b"}],"process":{"serviceName":"api"}}"#;
        let parts = encode_trace(
            &decoded(InputEncoding::Fixed(Encoding::JAEGER_JSON), &[json.as_bytes().to_vec()]),
            &decision,
            1_000_000,
        );
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
