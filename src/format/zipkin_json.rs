//! Zipkin v2 JSON front end: a JSON array of spans.
//!
//! Mapping to the OpenTelemetry model (the OpenTelemetry Zipkin exporter's mapping, reversed):
//! `localEndpoint.serviceName` → `service.name`; `kind` → span kind (absent → UNSPECIFIED);
//! `timestamp`/`duration` (µs) → start/end; an `error` tag → status ERROR; tags → attributes;
//! `remoteEndpoint.serviceName` → `peer.service`. 64-bit trace ids are widened with leading zeros.
//!
//! A Zipkin span has no resource: its tags stand in for one (signals.md), as the exporter writes
//! resource attributes there. Its identity is `localEndpoint.serviceName` (else a `service.name`
//! tag) and the `deployment.environment.name` (else `deployment.environment`) tag; attribute
//! look-ups read the tags.
//!
//! A span event is an annotation whose value holds the event's name and attributes; the decoder
//! skips annotations, and [`annotation_exception`] reads an `exception` one when asked.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::draft::{binary_id, parse_hex_id, parse_parent_id};
use super::draft::{AttrRef, ResourceIdentity, SpanBuilder, SpanDraft};
use super::encoder::with_object_members;
use super::{DecodeStats, Format, Malformed};
use super::{RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception, Span, SpanKind, StatusCode, TraceId};
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpan<'a> {
    #[serde(borrow, default)]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    parent_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(borrow, default)]
    local_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    remote_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    tags: Tags<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint<'a> {
    #[serde(borrow, default)]
    service_name: Option<Cow<'a, str>>,
}

/// Zipkin tags (a JSON object of strings), kept in order without a map allocation per key.
#[derive(Default)]
struct Tags<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TagVisitor<'a> {
            type Value = Tags<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string tags")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Tags<'a>, M::Error> {
                let mut tags = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Cow<'a, str>, Cow<'a, str>>()? {
                    tags.push((k, v));
                }
                Ok(Tags(tags))
            }
        }
        d.deserialize_map(TagVisitor(std::marker::PhantomData))
    }
}

/// Widens a 64-bit (16 hex digits) Zipkin trace id to 128 bits; parses 128-bit ids as they are.
fn trace_id(hex_str: &str) -> Option<TraceId> {
    let mut bytes = [0u8; 16];
    let len = match hex_str.len() {
        16 => 8,
        32 => 16,
        _ => return None,
    };
    hex::decode_to_slice(hex_str, &mut bytes[..len]).ok()?;
    widened_trace_id(&bytes[..len])
}

/// A binary trace id of 8 bytes (widened with leading zeros, as Zipkin and Jaeger 64-bit ids are)
/// or 16; `None` for another length or all zero.
pub(super) fn widened_trace_id(bytes: &[u8]) -> Option<TraceId> {
    if bytes.len() == 8 {
        let low: [u8; 8] = binary_id(bytes)?;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&low);
        Some(id)
    } else {
        binary_id(bytes)
    }
}

pub(super) fn decode(
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), serde_json::Error> {
    let spans: Vec<&RawValue> = serde_json::from_slice(payload)?;
    let parsed: Vec<ZipkinSpan<'_>> =
        spans.iter().map(|raw| serde_json::from_str(raw.get())).collect::<Result<_, _>>()?;
    let mut header = std::mem::take(&mut builder.resource_scratch);
    for (raw, span) in spans.iter().zip(&parsed) {
        // The span's identity keys its origin (and is never written back: forwarding writes
        // Zipkin span objects only).
        write_identity(span, &mut header);
        let origin = builder.origin(Encoding::ZIPKIN_JSON, &header, b"", identify);
        let start = span.timestamp.unwrap_or(0).saturating_mul(1000);
        let mut draft = SpanDraft {
            trace_id: trace_id(&span.trace_id),
            span_id: parse_hex_id(&span.id),
            parent_span_id: parse_parent_id(span.parent_id.as_deref().unwrap_or("")),
            kind: match span.kind.as_deref() {
                Some("SERVER") => SpanKind::Server,
                Some("CLIENT") => SpanKind::Client,
                Some("PRODUCER") => SpanKind::Producer,
                Some("CONSUMER") => SpanKind::Consumer,
                _ => SpanKind::Unspecified,
            },
            start_unix_nano: start,
            end_unix_nano: start.saturating_add(span.duration.unwrap_or(0).saturating_mul(1000)),
            name: span.name.as_deref().unwrap_or(""),
            ..Default::default()
        };
        if let Some(remote) = span.remote_endpoint.as_ref().and_then(|e| e.service_name.as_deref()) {
            draft.attrs.observe("peer.service", AttrRef::Str(remote));
        }
        for (key, value) in &span.tags.0 {
            if key == "error" {
                draft.status = StatusCode::Error;
            }
            draft.attrs.observe(key, AttrRef::Str(value));
        }
        builder.finish(draft, &origin, payload.slice_ref(raw.get().as_bytes()), out, stats);
    }
    builder.resource_scratch = header;
    Ok(())
}

/// Writes a span's identity (`service.name`, `deployment.environment.name`,
/// `deployment.environment`, in the order of [`Identify`]'s answer; each a little-endian `u32`
/// length and its bytes, empty when absent) into `header`, the origin header [`identify`] reads.
fn write_identity(span: &ZipkinSpan<'_>, header: &mut Vec<u8>) {
    let local = span.local_endpoint.as_ref().and_then(|e| e.service_name.as_deref());
    write_identity_of(local, span.tags.0.iter().map(|(k, v)| (&**k, &**v)), header);
}

/// [`write_identity`] from a span's local service name and tags, whatever their encoding (JSON or
/// protobuf).
pub(super) fn write_identity_of<'t>(
    local: Option<&str>,
    tags: impl Iterator<Item = (&'t str, &'t str)>,
    header: &mut Vec<u8>,
) {
    let local = local.filter(|s| !s.is_empty());
    let (mut service, mut environment, mut environment_legacy) = (local.unwrap_or(""), "", "");
    for (key, value) in tags {
        match key {
            "service.name" if local.is_none() => service = value,
            "deployment.environment.name" => environment = value,
            "deployment.environment" => environment_legacy = value,
            _ => {}
        }
    }
    header.clear();
    // In the order `identify` reads them back (`ResourceIdentity::fields_mut`).
    for value in [service, environment, environment_legacy] {
        header.extend_from_slice(&(value.len() as u32).to_le_bytes());
        header.extend_from_slice(value.as_bytes());
    }
}

/// [`Identify`] for Zipkin: reads back what [`write_identity`] wrote. There is no resource to
/// keep: attribute look-ups read the span's tags.
pub(super) fn identify(header: &Bytes) -> (Bytes, ResourceIdentity) {
    let mut identity = ResourceIdentity::default();
    let mut rest = &header[..];
    for slot in identity.fields_mut() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { break };
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (value, tail) = tail.split_at(len);
        *slot = Some(String::from_utf8_lossy(value).into_owned());
        rest = tail;
    }
    (Bytes::new(), identity)
}

/// A span's annotations, all that [`ZipkinJson::exception`] reads of it.
#[derive(Deserialize)]
struct Annotations<'a> {
    #[serde(borrow, default)]
    annotations: Vec<Annotation<'a>>,
}

#[derive(Deserialize)]
struct Annotation<'a> {
    #[serde(borrow, default)]
    value: Cow<'a, str>,
}

/// The exception of an annotation's value, as OpenTelemetry's Zipkin exporters write an
/// `exception` event: `exception|{attributes}|{dropped count}` (the Collector),
/// `{"exception": {attributes}}` (Python) or `"exception":{attributes}` (Java, the
/// specification's form, its strings written without escaping), the attributes a JSON object
/// with OpenTelemetry's names. `None` for another annotation.
pub(super) fn annotation_exception(value: &str) -> Option<Exception> {
    let attributes = match value.strip_prefix("exception|") {
        Some(rest) => rest.rsplit_once('|')?.0,
        None => {
            let member = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')).unwrap_or(value).trim();
            member.strip_prefix("\"exception\"")?.trim_start().strip_prefix(':')?.trim()
        }
    };
    match serde_json::from_str::<serde_json::Map<String, Value>>(attributes) {
        Ok(object) => super::exception_from(|key| match object.get(key)? {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }),
        Err(_) => super::exception_from(|key| unescaped_member(attributes, key)),
    }
}

/// A string member of an object whose strings are written as they are, quotes and line breaks
/// unescaped (Java's Zipkin exporter): from `"key":"` to the quote that closes the object or is
/// followed by the next member's name.
fn unescaped_member(object: &str, key: &str) -> Option<String> {
    let opening = format!("\"{key}\":\"");
    let rest = &object[object.find(&opening)? + opening.len()..];
    let closing = rest.match_indices('"').map(|(at, _)| at).find(|&at| {
        let after = &rest[at + 1..];
        after.trim_end() == "}"
            || after
                .strip_prefix(",\"")
                .and_then(|next| next.split_once("\":"))
                .is_some_and(|(name, _)| !name.contains('"'))
    })?;
    Some(rest[..closing].to_string())
}

/// Zipkin v2 JSON: a list of spans.
pub struct ZipkinJson;

impl Format for ZipkinJson {
    fn name(&self) -> &'static str {
        "zipkin_json"
    }

    fn title(&self) -> &'static str {
        "Zipkin JSON"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_zipkin_json"
    }

    fn detects(&self, first: u8) -> bool {
        first == b'['
    }

    fn decode(
        &self,
        payload: &Bytes,
        builder: &mut SpanBuilder,
        out: &mut Vec<Span>,
        stats: &mut DecodeStats,
    ) -> Result<(), Malformed> {
        Ok(decode(payload, builder, out, stats)?)
    }

    fn encode(&self, spans: &[&Span], decision: Option<&Decision>) -> Bytes {
        encode_zipkin(spans, decision)
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        let Ok(span) = serde_json::from_slice::<ZipkinSpan<'_>>(raw) else { return Vec::new() };
        span.tags.0.into_iter().map(|(k, v)| (k.into_owned(), AttrValue::Str(v.into_owned()))).collect()
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        let span: ZipkinSpan<'_> = serde_json::from_slice(raw).ok()?;
        let local = span.local_endpoint.and_then(|e| e.service_name).filter(|s| !s.is_empty());
        if let (Some(service), "service.name") = (local, key) {
            return Some(AttrValue::Str(service.into_owned()));
        }
        span.tags.0.into_iter().find(|(k, _)| k == key).map(|(_, v)| AttrValue::Str(v.into_owned()))
    }

    /// The first annotation holding an `exception` event ([`annotation_exception`]).
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let span: Annotations<'_> = serde_json::from_slice(raw).ok()?;
        span.annotations.iter().find_map(|annotation| annotation_exception(&annotation.value))
    }
}

// Writing kept spans back.

/// A Zipkin span with the sampling attributes set in its `tags`.
pub(super) fn annotate_zipkin(span: &str, decision: &Decision) -> String {
    with_object_members(
        span,
        "tags",
        &[
            (RULE_ATTRIBUTE, Value::String(decision.rule.to_string()).to_string()),
            (SAMPLE_RATE_ATTRIBUTE, Value::String(decision.sample_rate.to_string()).to_string()),
        ],
    )
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::format::{Decoder, InputEncoding};

    /// The spans of python_sdk.py as an OpenTelemetry Python Zipkin exporter wrote them in
    /// `encoding` (`payload`), and what its script says must be read from them (`expected`): the
    /// server span's exception, in an annotation `{"exception": {attributes}}`; none elsewhere.
    pub(in crate::format) fn python_exporters_exception_is_read(encoding: Encoding, payload: Vec<u8>, expected: &[u8]) {
        let expected: Value = serde_json::from_slice(expected).unwrap();
        let mut spans = Vec::new();
        Decoder::new(InputEncoding::Fixed(encoding)).decode(&Bytes::from(payload), &mut spans).unwrap();
        assert_eq!(spans.len(), 3);
        let server = expected["spans"].as_array().unwrap().iter().find(|s| s["http_status"] == 503).unwrap();
        for span in &spans {
            let found = crate::format::exception(encoding, &span.raw);
            if hex::encode(span.span_id) != server["span_id"].as_str().unwrap() {
                assert_eq!(found, None, "{}", span.operation);
                continue;
            }
            let exception = found.expect("the server span's exception annotation");
            crate::format::tests::assert_python_sdks_exception(&exception, &expected["exception"]);
        }
    }

    #[test]
    fn the_python_exporters_exception_annotation_is_read() {
        // tests/fixtures/python_zipkin_json.py: the OpenTelemetry Python Zipkin JSON exporter.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        python_exporters_exception_is_read(
            Encoding::ZIPKIN_JSON,
            std::fs::read(format!("{dir}/python-zipkin-json-spans.json")).unwrap(),
            &std::fs::read(format!("{dir}/python-zipkin-json-expected.json")).unwrap(),
        );
    }

    const STACK: &str = "java.lang.IllegalStateException: owner 7 missing\n\tat com.acme.Owners.find(Owners.java:12)";

    fn owner_7_missing(message: &str) -> Option<Exception> {
        Some(Exception {
            type_name: "java.lang.IllegalStateException".into(),
            message: message.into(),
            stacktrace: STACK.replace("owner 7 missing", message),
        })
    }

    #[test]
    fn the_collectors_exception_annotation_is_read() {
        // `name|attributes|dropped count`, the attributes as Go's encoding/json writes a map:
        // keys sorted, `<`, `>` and `&` escaped.
        let value = r#"exception|{"exception.message":"owner 7 missing \u003cnil\u003e","exception.stacktrace":"java.lang.IllegalStateException: owner 7 missing \u003cnil\u003e\n\tat com.acme.Owners.find(Owners.java:12)","exception.type":"java.lang.IllegalStateException"}|0"#;
        assert_eq!(annotation_exception(value), owner_7_missing("owner 7 missing <nil>"));
        // In a span, after an event without attributes (its name alone).
        let span = serde_json::json!({
            "traceId": "5b8aa5a2d2c872e8321cf37308d69df2", "id": "051581bf3cb55c13", "name": "get /owners/{id}",
            "kind": "SERVER", "timestamp": 1_796_672_448_193_201_u64, "duration": 9000,
            "localEndpoint": {"serviceName": "owners-api"}, "tags": {"error": "true"},
            "annotations": [
                {"timestamp": 1_796_672_448_193_300_u64, "value": "cache-miss"},
                {"timestamp": 1_796_672_448_193_944_u64, "value": value},
            ],
        });
        assert_eq!(ZipkinJson.exception(span.to_string().as_bytes()), owner_7_missing("owner 7 missing <nil>"));
    }

    #[test]
    fn the_java_exporters_unescaped_annotation_is_read() {
        // `"name":{attributes}`, strings written as they are: quotes, a line break and a tab.
        let value = "\"exception\":{\"exception.message\":\"owner \"7\" missing\",\"exception.stacktrace\":\"java.lang.IllegalStateException: owner \"7\" missing\n\tat com.acme.Owners.find(Owners.java:12)\",\"exception.type\":\"java.lang.IllegalStateException\"}";
        assert_eq!(annotation_exception(value), owner_7_missing("owner \"7\" missing"));
        // Valid JSON when nothing needed escaping.
        let value =
            r#""exception":{"exception.message":"owner 7 missing","exception.type":"java.lang.IllegalStateException"}"#;
        assert_eq!(
            annotation_exception(value).map(|e| (e.type_name, e.message)),
            Some(("java.lang.IllegalStateException".into(), "owner 7 missing".into()))
        );
    }

    #[test]
    fn other_annotations_are_no_exception() {
        for value in [
            "cache-miss",
            "exception",
            r#"retry|{"attempt":2}|0"#,
            r#"{"retry": {"attempt": 2}}"#,
            r#""retry":{"attempt":2}"#,
            r#"exception|{}|3"#,
            r#"{"exception": {"exception.escaped": "False"}}"#,
            r#"{"exception.type": "LookupError"}"#,
        ] {
            assert_eq!(annotation_exception(value), None, "{value}");
        }
    }
}
