//! Jaeger front end: one `jaeger.api_v2.Span` per message, its process embedded — in protobuf
//! (`jaeger_proto`) or in Jaeger's JSON form (`jaeger_json`, read by [`super::jaeger_json`]).
//!
//! Mapping (ingest.md): tags → span attributes and process tags → resource attributes (with
//! `process.service_name` as `service.name`); the `span.kind` tag sets the kind; an `error` tag
//! that is true, or `otel.status_code = ERROR`, sets status ERROR (`OK` sets OK); the first
//! `CHILD_OF` reference within the trace is the parent. 64-bit trace ids are widened with leading zeros.
//!
//! A span keeps the whole message as its wire bytes; its origin is keyed by its process, encoded
//! as a protobuf `Process` whatever the encoding, so resource look-ups read one form.
//!
//! Exceptions are span logs, read on demand ([`exception_in`]): the log of an OpenTelemetry
//! `exception` event, or an OpenTracing error log.

use bytes::Bytes;
use prost::Message;

use super::draft::binary_id;
use super::draft::{AttrRef, ResourceIdentity, SpanBuilder, SpanDraft};
use super::schemas::jaeger;
use super::schemas::jaeger::{KeyValue, Log, Process, Span as JaegerSpan, SpanRefType, ValueType};
use super::zipkin_json::widened_trace_id as trace_id;
use super::{DecodeStats, Format, Malformed};
use super::{WireField, WireReader, RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception, Span, SpanKind, StatusCode};
use bytes::{BufMut, BytesMut};

/// Why a Jaeger message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JaegerError {
    #[error("{0}")]
    Proto(#[from] prost::DecodeError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Reads one message in `encoding` (`JaegerProto` or `JaegerJson`).
fn parse(encoding: Encoding, payload: &[u8]) -> Result<JaegerSpan, JaegerError> {
    Ok(match encoding {
        Encoding::JAEGER_JSON => super::jaeger_json::parse(payload)?,
        _ => JaegerSpan::decode(payload)?,
    })
}

pub(super) fn decode(
    encoding: Encoding,
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), JaegerError> {
    let span = parse(encoding, payload)?;
    let mut header = std::mem::take(&mut builder.resource_scratch);
    header.clear();
    if let Some(process) = &span.process {
        process.encode(&mut header).expect("a Vec grows as needed");
    }
    let origin = builder.origin(encoding, &header, b"", identify);
    builder.resource_scratch = header;

    let nanos = |seconds: i64, nanos: i32| {
        u64::try_from(seconds).unwrap_or(0).saturating_mul(1_000_000_000).saturating_add(nanos.max(0) as u64)
    };
    let start = span.start_time.as_ref().map_or(0, |t| nanos(t.seconds, t.nanos));
    let duration = span.duration.as_ref().map_or(0, |d| nanos(d.seconds, d.nanos));
    // As Jaeger's own `Span.ParentSpanID()`: the first CHILD_OF reference within the same trace.
    let parent = span.references.iter().find(|r| r.ref_type() == SpanRefType::ChildOf && r.trace_id == span.trace_id);
    let mut draft = SpanDraft {
        trace_id: trace_id(&span.trace_id),
        span_id: binary_id(&span.span_id),
        parent_span_id: match parent {
            None => Ok(None),
            Some(r) if r.span_id.len() == 8 => Ok(binary_id(&r.span_id)),
            Some(_) => Err(()),
        },
        start_unix_nano: start,
        end_unix_nano: start.saturating_add(duration),
        name: &span.operation_name,
        ..Default::default()
    };
    for tag in &span.tags {
        match (tag.key.as_str(), value(tag)) {
            ("span.kind", AttrRef::Str(kind)) => {
                draft.kind = match kind {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    "internal" => SpanKind::Internal,
                    _ => SpanKind::Unspecified,
                }
            }
            ("error", _) if is_true(tag) => draft.status = StatusCode::Error,
            ("otel.status_code", AttrRef::Str("ERROR")) => draft.status = StatusCode::Error,
            ("otel.status_code", AttrRef::Str("OK")) if draft.status != StatusCode::Error => {
                draft.status = StatusCode::Ok
            }
            (key, value) => draft.attrs.observe(key, value),
        }
    }
    builder.finish(draft, &origin, payload.clone(), out, stats);
    Ok(())
}

/// A tag's value as the hot path reads it.
fn value(tag: &KeyValue) -> AttrRef<'_> {
    match tag.v_type() {
        ValueType::String => AttrRef::Str(&tag.v_str),
        ValueType::Int64 => AttrRef::Int(tag.v_int64),
        _ => AttrRef::Other,
    }
}

fn is_true(tag: &KeyValue) -> bool {
    match tag.v_type() {
        ValueType::Bool => tag.v_bool,
        ValueType::String => tag.v_str.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn attr_value(tag: KeyValue) -> AttrValue {
    match tag.v_type() {
        ValueType::String => AttrValue::Str(tag.v_str),
        ValueType::Bool => AttrValue::Bool(tag.v_bool),
        ValueType::Int64 => AttrValue::Int(tag.v_int64),
        ValueType::Float64 => AttrValue::Double(tag.v_float64),
        ValueType::Binary => AttrValue::Other,
    }
}

/// [`super::draft::Identify`] for Jaeger: the header is an encoded `Process`, kept as the resource.
fn identify(header: &Bytes) -> (Bytes, ResourceIdentity) {
    let mut identity = ResourceIdentity::default();
    if let Ok(process) = Process::decode(&header[..]) {
        for tag in &process.tags {
            identity.observe(&tag.key, value(tag));
        }
        identity.service = Some(process.service_name).filter(|s| !s.is_empty()).or(identity.service.take());
    }
    (header.clone(), identity)
}

/// Every tag of a span (for the trace view).
pub(super) fn span_attributes(encoding: Encoding, raw: &[u8]) -> Vec<(String, AttrValue)> {
    let Ok(span) = parse(encoding, raw) else { return Vec::new() };
    span.tags.into_iter().map(|tag| (tag.key.clone(), attr_value(tag))).collect()
}

pub(super) fn find_span_attribute(encoding: Encoding, raw: &[u8], key: &str) -> Option<AttrValue> {
    let span = parse(encoding, raw).ok()?;
    span.tags.into_iter().find(|tag| tag.key == key).map(attr_value)
}

/// A process tag (or `service.name`: the process's service name), from an encoded `Process`.
pub(super) fn find_resource_attribute(resource: &[u8], key: &str) -> Option<AttrValue> {
    let process = Process::decode(resource).ok()?;
    if key == "service.name" && !process.service_name.is_empty() {
        return Some(AttrValue::Str(process.service_name));
    }
    process.tags.into_iter().find(|tag| tag.key == key).map(attr_value)
}

/// The first exception among a span's logs. An OpenTelemetry `exception` event is a log of its
/// attributes as fields (`exception.type`, `exception.message`, `exception.stacktrace`), its name
/// as `event` (the Collector's translator, the Java exporter) or as `message` (the Python
/// exporter: such a log has no `event`). OpenTracing clients log an error as `event` = `error`
/// with `error.kind` (the type), `message` or else `error.object` (the message) and `stack`.
pub(super) fn exception_in(logs: &[Log]) -> Option<Exception> {
    logs.iter().find_map(|log| {
        let field = |key: &str| log.fields.iter().find(|f| f.key == key).and_then(|f| attr_value(f.clone()).as_text());
        match field("event").as_deref() {
            None | Some("exception") => super::exception_from(field),
            Some("error") => super::exception_from(|key| match key {
                "exception.type" => field("error.kind"),
                "exception.message" => field("message").or_else(|| field("error.object")),
                "exception.stacktrace" => field("stack"),
                _ => None,
            }),
            Some(_) => None,
        }
    })
}

/// One `jaeger.api_v2.Span` per message, its process embedded.
pub struct JaegerProto;

impl Format for JaegerProto {
    fn name(&self) -> &'static str {
        "jaeger_proto"
    }

    fn title(&self) -> &'static str {
        "Jaeger protobuf"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_jaeger_proto"
    }

    fn decode(
        &self,
        payload: &Bytes,
        builder: &mut SpanBuilder,
        out: &mut Vec<Span>,
        stats: &mut DecodeStats,
    ) -> Result<(), Malformed> {
        Ok(decode(Encoding::JAEGER_PROTO, payload, builder, out, stats)?)
    }

    fn encode(&self, spans: &[&Span], decision: Option<&Decision>) -> Bytes {
        encode_jaeger_proto(spans, decision)
    }

    fn one_span_per_message(&self) -> bool {
        true
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        span_attributes(Encoding::JAEGER_PROTO, raw)
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        find_span_attribute(Encoding::JAEGER_PROTO, raw, key)
    }

    fn find_resource_attribute(&self, resource: &[u8], key: &str) -> Option<AttrValue> {
        find_resource_attribute(resource, key)
    }

    /// From the span's logs (field 9) alone: its tags and process are not decoded.
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let mut logs = Vec::new();
        let mut reader = WireReader::new(raw);
        while let Ok(Some((field, value, _))) = reader.next_field() {
            if let (9, WireField::Len(log)) = (field, value) {
                logs.push(Log::decode(log).ok()?);
            }
        }
        exception_in(&logs)
    }
}

// Writing kept spans back.

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::format::{Decoder, InputEncoding};
    use crate::signals::exception::ExceptionKey;
    use base64::Engine;

    /// The exception of the span in `message`, read as the pipeline reads it: from the bytes the
    /// decoder keeps.
    fn exception_of(encoding: Encoding, message: &[u8]) -> Option<Exception> {
        let mut spans = Vec::new();
        Decoder::new(InputEncoding::Fixed(encoding)).decode(&Bytes::copy_from_slice(message), &mut spans).unwrap();
        assert_eq!(spans.len(), 1);
        crate::format::exception(encoding, &spans[0].raw)
    }

    /// The messages of `tests/fixtures/python_jaeger.py` written by `client` (`otel`, `opentracing`)
    /// in `encoding`, each with its operation, and what the script says their exception is.
    fn python_fixture(client: &str, encoding: Encoding) -> (Vec<(String, Vec<u8>)>, serde_json::Value) {
        let fixture: serde_json::Value = serde_json::from_slice(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/python-jaeger-spans.json"
        )))
        .unwrap();
        let messages = fixture[client]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| {
                let operation = span["operation"].as_str().unwrap_or_default().to_string();
                let message = match encoding {
                    Encoding::JAEGER_PROTO => {
                        base64::engine::general_purpose::STANDARD.decode(span["proto"].as_str().unwrap()).unwrap()
                    }
                    _ => span["json"].as_str().unwrap().as_bytes().to_vec(),
                };
                (operation, message)
            })
            .collect();
        (messages, fixture[client]["exception"].clone())
    }

    /// The OpenTelemetry Python Jaeger exporter's spans: the server span's exception event is a
    /// log of its attributes and `message` = `exception`; the other spans recorded none.
    pub(in crate::format) fn python_exporters_exception_is_read(encoding: Encoding) {
        let (messages, expected) = python_fixture("otel", encoding);
        assert_eq!(messages.len(), 3);
        for (operation, message) in &messages {
            let found = exception_of(encoding, message);
            if operation != "GET /owners/{id}" {
                assert_eq!(found, None, "{operation}");
                continue;
            }
            let exception = found.expect("the server span's exception log");
            crate::format::tests::assert_python_sdks_exception(&exception, &expected);
        }
    }

    /// The Jaeger Python client's (OpenTracing) error log: `error.kind` as the client writes a
    /// type, the message, the traceback's frames as `stack`.
    pub(in crate::format) fn opentracing_clients_error_is_read(encoding: Encoding) {
        let (messages, expected) = python_fixture("opentracing", encoding);
        let exception = exception_of(encoding, &messages[0].1).expect("the error log");
        assert_eq!(exception.type_name, "<class 'ValueError'>");
        assert_eq!(exception.message, "visit 90210 has no pet (batch 0x5f2e)");
        assert!(exception.stacktrace.contains("raise ValueError("), "{}", exception.stacktrace);
        let key = ExceptionKey::of(&exception);
        assert_eq!(key.message, "visit {n} has no pet (batch {id})");
        assert_eq!(key.frame, expected["frame"].as_str().unwrap());
        assert!(key.frame.ends_with("python_jaeger.py\", line 78, in <module>"), "{}", key.frame);
    }

    #[test]
    fn the_python_exporters_exception_log_is_read() {
        python_exporters_exception_is_read(Encoding::JAEGER_PROTO);
    }

    #[test]
    fn the_jaeger_clients_opentracing_error_log_is_read() {
        opentracing_clients_error_is_read(Encoding::JAEGER_PROTO);
    }

    const STACK: &str = "java.lang.IllegalStateException: owner 7 missing\n\tat com.acme.Owners.find(Owners.java:12)";

    fn log(fields: &[(&str, &str)]) -> Log {
        let fields = fields
            .iter()
            .map(|(key, value)| KeyValue { key: key.to_string(), v_str: value.to_string(), ..Default::default() })
            .collect();
        Log { timestamp: None, fields }
    }

    fn exception_in_span(logs: Vec<Log>) -> Option<Exception> {
        JaegerProto.exception(&JaegerSpan { logs, ..Default::default() }.encode_to_vec())
    }

    #[test]
    fn the_collectors_exception_log_is_read() {
        // As the Collector's translator writes span events: `event` first, then the attributes.
        let found = exception_in_span(vec![
            log(&[("event", "cache-miss"), ("cache", "owners")]),
            log(&[
                ("event", "exception"),
                ("exception.message", "owner 7 missing"),
                ("exception.stacktrace", STACK),
                ("exception.type", "java.lang.IllegalStateException"),
            ]),
        ]);
        assert_eq!(
            found,
            Some(Exception {
                type_name: "java.lang.IllegalStateException".into(),
                message: "owner 7 missing".into(),
                stacktrace: STACK.into(),
            })
        );
    }

    #[test]
    fn an_opentracing_error_log_without_a_message_reads_its_error_object() {
        // A Java OpenTracing instrumentation logs the Throwable, which the client writes as text.
        let found = exception_in_span(vec![log(&[
            ("event", "error"),
            ("error.object", "java.lang.IllegalStateException: owner 7 missing"),
        ])]);
        assert_eq!(
            found,
            Some(Exception {
                type_name: String::new(),
                message: "java.lang.IllegalStateException: owner 7 missing".into(),
                stacktrace: String::new()
            })
        );
    }

    #[test]
    fn other_logs_are_no_exception() {
        assert_eq!(exception_in_span(Vec::new()), None);
        assert_eq!(exception_in_span(vec![log(&[("event", "error")])]), None, "neither a kind nor a message");
        assert_eq!(exception_in_span(vec![log(&[("message", "exception")])]), None, "no attributes");
        assert_eq!(
            exception_in_span(vec![log(&[("event", "retry"), ("exception.type", "TimeoutError")])]),
            None,
            "another event's attributes"
        );
    }
}
