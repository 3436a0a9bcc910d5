//! Zipkin protobuf front end: a `zipkin.proto3.ListOfSpans` (the Collector's `zipkin_proto`
//! encoding, Zipkin reporters' Kafka sender), mapped exactly as Zipkin JSON ([`super::zipkin`]):
//! `local_endpoint.service_name` → `service.name`; `kind` → span kind; `timestamp`/`duration`
//! (µs) → start/end; an `error` tag → status ERROR; tags → attributes;
//! `remote_endpoint.service_name` → `peer.service`; 64-bit trace ids widened with leading zeros.
//!
//! Each span keeps its own `Span` message bytes (field 1 of the list), so a kept trace is written
//! back as a `ListOfSpans` of those bytes with the sampling tags appended. Its annotations hold
//! its events, read as Zipkin JSON's ([`super::zipkin_json::annotation_exception`]).

use bytes::Bytes;
use prost::Message;

use super::draft::binary_id;
use super::draft::{AttrRef, SpanBuilder, SpanDraft};
use super::encoder::put_len_field;
use super::schemas::zipkin;
use super::schemas::zipkin::{span::Kind, Span as ZipkinSpan};
use super::zipkin_json::{annotation_exception, identify, widened_trace_id, write_identity_of};
use super::{DecodeStats, Format, Malformed};
use super::{WireField, WireReader, RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception, Span, SpanKind, StatusCode};
use bytes::{BufMut, BytesMut};

/// Why a `ListOfSpans` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipkinProtoError {
    #[error("{0}")]
    Wire(#[from] super::ProtoError),
    #[error("field 1 (spans) of a ListOfSpans is not length-delimited")]
    NotASpan,
    #[error("span {index}: {source}")]
    Span {
        index: usize,
        #[source]
        source: prost::DecodeError,
    },
}

pub(super) fn decode(
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), ZipkinProtoError> {
    // Every span is read before any is kept: a malformed one rejects the whole message.
    let mut spans: Vec<(&[u8], ZipkinSpan)> = Vec::new();
    let mut reader = WireReader::new(payload);
    while let Some((field, value, _)) = reader.next_field()? {
        match (field, value) {
            (1, WireField::Len(bytes)) => {
                let span = ZipkinSpan::decode(bytes)
                    .map_err(|source| ZipkinProtoError::Span { index: spans.len(), source })?;
                spans.push((bytes, span));
            }
            (1, _) => return Err(ZipkinProtoError::NotASpan),
            _ => {}
        }
    }
    let mut header = std::mem::take(&mut builder.resource_scratch);
    for (raw, span) in &spans {
        let local = span.local_endpoint.as_ref().map(|e| e.service_name.as_str());
        write_identity_of(local, span.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut header);
        let origin = builder.origin(Encoding::ZIPKIN_PROTO, &header, b"", identify);
        let start = span.timestamp.saturating_mul(1000);
        let mut draft = SpanDraft {
            trace_id: widened_trace_id(&span.trace_id),
            span_id: binary_id(&span.id),
            parent_span_id: match span.parent_id.len() {
                0 => Ok(None),
                8 => Ok(binary_id(&span.parent_id)),
                _ => Err(()),
            },
            kind: match span.kind() {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
                Kind::Producer => SpanKind::Producer,
                Kind::Consumer => SpanKind::Consumer,
                Kind::SpanKindUnspecified => SpanKind::Unspecified,
            },
            start_unix_nano: start,
            end_unix_nano: start.saturating_add(span.duration.saturating_mul(1000)),
            name: &span.name,
            ..Default::default()
        };
        if let Some(remote) = span.remote_endpoint.as_ref().map(|e| e.service_name.as_str()) {
            draft.attrs.observe("peer.service", AttrRef::Str(remote));
        }
        for (key, value) in &span.tags {
            if key == "error" {
                draft.status = StatusCode::Error;
            }
            draft.attrs.observe(key, AttrRef::Str(value));
        }
        builder.finish(draft, &origin, payload.slice_ref(raw), out, stats);
    }
    builder.resource_scratch = header;
    Ok(())
}

/// Zipkin v2 protobuf: a `zipkin.proto3.ListOfSpans`.
pub struct ZipkinProto;

impl Format for ZipkinProto {
    fn name(&self) -> &'static str {
        "zipkin_proto"
    }

    fn title(&self) -> &'static str {
        "Zipkin protobuf"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_zipkin_proto"
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
        encode_zipkin_proto(spans, decision)
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        let Ok(span) = ZipkinSpan::decode(raw) else { return Vec::new() };
        span.tags.into_iter().map(|(k, v)| (k, AttrValue::Str(v))).collect()
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        let mut span = ZipkinSpan::decode(raw).ok()?;
        let local = span.local_endpoint.take().map(|e| e.service_name).filter(|s| !s.is_empty());
        if let (Some(service), "service.name") = (local, key) {
            return Some(AttrValue::Str(service));
        }
        span.tags.remove(key).map(AttrValue::Str)
    }

    /// The first annotation (field 10) holding an `exception` event; the rest of the span is not
    /// decoded.
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let mut reader = WireReader::new(raw);
        while let Ok(Some((field, value, _))) = reader.next_field() {
            let (10, WireField::Len(annotation)) = (field, value) else { continue };
            let found = zipkin::Annotation::decode(annotation).ok().and_then(|a| annotation_exception(&a.value));
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

// Writing kept spans back.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_exporters_exception_annotation_is_read() {
        // tests/fixtures/python_zipkin_proto.py: the OpenTelemetry Python Zipkin protobuf exporter
        // (regenerated by the test script with the client it installs).
        let dir = std::env::var("TRACEWARDEN_PYTHON_FIXTURE_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").to_string());
        super::super::zipkin_json::tests::python_exporters_exception_is_read(
            Encoding::ZIPKIN_PROTO,
            std::fs::read(format!("{dir}/python-zipkin-traces.pb")).unwrap(),
            &std::fs::read(format!("{dir}/python-zipkin-traces.json")).unwrap(),
        );
    }

    #[test]
    fn the_collectors_exception_annotation_is_read() {
        let annotation = |value: &str| zipkin::Annotation { timestamp: 1_796_672_448_193_944, value: value.into() };
        let span = |annotations| ZipkinSpan { annotations, ..Default::default() }.encode_to_vec();
        let raw = span(vec![
            annotation("cache-miss"),
            annotation(r#"exception|{"exception.message":"shard 4 is read-only","exception.type":"ReadOnlyError"}|1"#),
            annotation(r#"exception|{"exception.message":"a second one","exception.type":"LookupError"}|0"#),
        ]);
        assert_eq!(
            ZipkinProto.exception(&raw),
            Some(Exception {
                type_name: "ReadOnlyError".into(),
                message: "shard 4 is read-only".into(),
                stacktrace: String::new()
            })
        );
        assert_eq!(ZipkinProto.exception(&span(vec![annotation("cache-miss")])), None);
        assert_eq!(ZipkinProto.exception(&span(Vec::new())), None);
    }
}
