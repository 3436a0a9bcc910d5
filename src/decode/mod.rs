//! Decoding: Kafka message payloads into validated [`Span`]s.
//!
//! One entry point, [`Decoder::decode`], reads a payload in `otlp_proto`, `otlp_json`,
//! `zipkin_json`, `zipkin_proto`, `jaeger_proto`, `jaeger_json` or `xray_json` (or detects one of the first three
//! per message with `auto`, ingest.md "Kafka input encodings") and appends the valid spans to a
//! caller-owned vector. Invariants:
//! - a payload that is not well-formed in its encoding is rejected whole ([`DecodeError`]) and appends
//!   nothing: the caller dead-letters it;
//! - a well-formed payload keeps its valid spans and counts the invalid ones by reason
//!   ([`DecodeStats`]), never keeping a span with a broken id or time (signals.md);
//! - every span keeps its wire bytes (`Span::raw`) so that kept traces are forwarded in the
//!   encoding they arrived in; the spans of one message share one allocation of exactly their
//!   bytes (no per-span allocation), so a buffered span pins its own encoding, not the whole
//!   message with its resources and the spans already decided;
//! - names are interned: decoding a span allocates nothing once its names have been seen.

mod draft;
mod jaeger;
mod jaeger_json;
mod otlp_json;
mod otlp_proto;
pub mod schemas;
mod xray;
mod zipkin;
mod zipkin_proto;

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::model::{AttrValue, Encoding, FastSet, Span};

pub use jaeger::JaegerError;
pub use otlp_proto::{ProtoError, WireField, WireReader};
pub(crate) use xray::{adopt_segment_resources, trace_id as xray_trace_id, EMBEDDED as XRAY_EMBEDDED};
pub use zipkin_proto::ZipkinProtoError;

/// What `kafka.encoding` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputEncoding {
    /// Per message: first non-blank byte `{` → OTLP/JSON, `[` → Zipkin JSON, else OTLP protobuf.
    #[default]
    Auto,
    OtlpProto,
    OtlpJson,
    ZipkinJson,
    /// A `zipkin.proto3.ListOfSpans`.
    ZipkinProto,
    /// One `jaeger.api_v2.Span`, its process embedded.
    JaegerProto,
    /// The same in Jaeger's JSON (`jsonpb`) form.
    JaegerJson,
    /// One X-Ray segment document (optionally after the daemon header line), or a list of them.
    XrayJson,
}

impl InputEncoding {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            fixed => fixed.resolve(b"").as_str(),
        }
    }

    /// The encoding of a configuration name (`jaeger_proto`); `None` for unknown names and `auto`.
    pub fn named(name: &[u8]) -> Option<Self> {
        const FIXED: [InputEncoding; 7] = [
            InputEncoding::OtlpProto,
            InputEncoding::OtlpJson,
            InputEncoding::ZipkinJson,
            InputEncoding::ZipkinProto,
            InputEncoding::JaegerProto,
            InputEncoding::JaegerJson,
            InputEncoding::XrayJson,
        ];
        FIXED.into_iter().find(|e| e.as_str().as_bytes() == name)
    }

    /// The encoding of one payload.
    pub fn resolve(self, payload: &[u8]) -> Encoding {
        match self {
            Self::OtlpProto => Encoding::OtlpProto,
            Self::OtlpJson => Encoding::OtlpJson,
            Self::ZipkinJson => Encoding::ZipkinJson,
            Self::ZipkinProto => Encoding::ZipkinProto,
            Self::JaegerProto => Encoding::JaegerProto,
            Self::JaegerJson => Encoding::JaegerJson,
            Self::XrayJson => Encoding::XrayJson,
            Self::Auto => match payload.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => Encoding::OtlpJson,
                Some(b'[') => Encoding::ZipkinJson,
                _ => Encoding::OtlpProto,
            },
        }
    }
}

impl From<Encoding> for InputEncoding {
    /// The setting that reads exactly this encoding.
    fn from(encoding: Encoding) -> Self {
        match encoding {
            Encoding::OtlpProto => Self::OtlpProto,
            Encoding::OtlpJson => Self::OtlpJson,
            Encoding::ZipkinJson => Self::ZipkinJson,
            Encoding::ZipkinProto => Self::ZipkinProto,
            Encoding::JaegerProto => Self::JaegerProto,
            Encoding::JaegerJson => Self::JaegerJson,
            Encoding::XrayJson => Self::XrayJson,
        }
    }
}

/// Why a whole message was rejected; the `reason` label of `tracewarden_messages_rejected_total`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(#[from] ProtoError),
    #[error("malformed {encoding} JSON: {source}")]
    Json {
        encoding: Encoding,
        #[source]
        source: serde_json::Error,
    },
    #[error("malformed Zipkin protobuf: {0}")]
    ZipkinProto(#[from] ZipkinProtoError),
    #[error("malformed {encoding}: {source}")]
    Jaeger {
        encoding: Encoding,
        #[source]
        source: JaegerError,
    },
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Protobuf(_) => "malformed_protobuf",
            Self::Json { encoding: Encoding::ZipkinJson, .. } => "malformed_zipkin_json",
            Self::Json { encoding: Encoding::XrayJson, .. } => "malformed_xray_json",
            Self::Json { .. } => "malformed_otlp_json",
            Self::ZipkinProto(_) => "malformed_zipkin_proto",
            Self::Jaeger { encoding: Encoding::JaegerJson, .. } => "malformed_jaeger_json",
            Self::Jaeger { .. } => "malformed_jaeger_proto",
        }
    }
}

/// Why a single span was rejected; the `reason` label of `tracewarden_spans_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanReject {
    InvalidId,
    InvalidTime,
}

impl SpanReject {
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidId => "invalid_id",
            Self::InvalidTime => "invalid_time",
        }
    }
}

/// Counts of one decoded message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub encoding: Option<Encoding>,
    pub accepted: u32,
    pub invalid_id: u32,
    pub invalid_time: u32,
}

impl DecodeStats {
    pub(crate) fn reject(&mut self, why: SpanReject) {
        match why {
            SpanReject::InvalidId => self.invalid_id += 1,
            SpanReject::InvalidTime => self.invalid_time += 1,
        }
    }
}

/// Interned names: service, operation and remote names repeat endlessly, so each distinct string
/// is allocated once. Bounded: past `MAX_INTERNED` distinct strings the table starts over (handed-out
/// `Arc`s stay valid), so a high-cardinality attribute cannot grow it without limit.
pub(crate) struct Interner {
    strings: FastSet<Arc<str>>,
}

const MAX_INTERNED: usize = 200_000;

impl Interner {
    fn new() -> Self {
        Self { strings: FastSet::default() }
    }

    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        if self.strings.len() >= MAX_INTERNED {
            self.strings.clear();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }
}

/// How far in the future of its arrival a span may end (producers' clocks are skewed; more than
/// this is a corrupt timestamp).
pub const MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Decodes payloads; holds the interner and scratch space reused across messages.
pub struct Decoder {
    input: InputEncoding,
    /// Topics with an encoding of their own (`[[kafka.inputs]]`); few, so a list.
    per_topic: Vec<(Box<str>, InputEncoding)>,
    names: draft::Names,
}

impl Decoder {
    pub fn new(input: InputEncoding) -> Self {
        Self::for_topics(input, Vec::new())
    }

    /// A decoder reading `input`, except on the listed topics, each read in its own encoding.
    pub fn for_topics(input: InputEncoding, per_topic: Vec<(String, InputEncoding)>) -> Self {
        let per_topic = per_topic.into_iter().map(|(topic, encoding)| (topic.into_boxed_str(), encoding)).collect();
        Self { input, per_topic, names: draft::Names::new() }
    }

    /// Decodes one payload read from `topic` that arrived at `arrival`: as [`Decoder::decode`], in
    /// the topic's encoding (on a topic read as `auto`, in the `declared` one when the message
    /// names it: re-keyed spans), and spans ending more than [`MAX_FUTURE_SKEW`] after their
    /// arrival are rejected as `invalid_time`.
    pub fn decode_at(
        &mut self,
        topic: &str,
        declared: Option<InputEncoding>,
        payload: &Bytes,
        out: &mut Vec<Span>,
        arrival: crate::clock::Nanos,
    ) -> Result<DecodeStats, DecodeError> {
        let input = match self.per_topic.iter().find(|(t, _)| &**t == topic).map_or(self.input, |(_, e)| *e) {
            InputEncoding::Auto => declared.unwrap_or(InputEncoding::Auto),
            fixed => fixed,
        };
        self.names.latest_end = arrival.saturating_add(MAX_FUTURE_SKEW).0;
        let result = self.decode_as(input, payload, out);
        self.names.latest_end = u64::MAX;
        result
    }

    /// Decodes one payload, appending its valid spans to `out`. On error nothing is appended.
    /// Spans starting before 2000 are rejected as `invalid_time`.
    pub fn decode(&mut self, payload: &Bytes, out: &mut Vec<Span>) -> Result<DecodeStats, DecodeError> {
        self.decode_as(self.input, payload, out)
    }

    fn decode_as(
        &mut self,
        input: InputEncoding,
        payload: &Bytes,
        out: &mut Vec<Span>,
    ) -> Result<DecodeStats, DecodeError> {
        if payload.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DecodeError::Empty);
        }
        let encoding = input.resolve(payload);
        let start_len = out.len();
        let mut stats = DecodeStats { encoding: Some(encoding), ..Default::default() };
        let result = match encoding {
            Encoding::OtlpProto => {
                otlp_proto::decode(payload, &mut self.names, out, &mut stats).map_err(DecodeError::from)
            }
            Encoding::OtlpJson => otlp_json::decode(payload, &mut self.names, out, &mut stats)
                .map_err(|source| DecodeError::Json { encoding, source }),
            Encoding::ZipkinJson => zipkin::decode(payload, &mut self.names, out, &mut stats)
                .map_err(|source| DecodeError::Json { encoding, source }),
            Encoding::ZipkinProto => {
                zipkin_proto::decode(payload, &mut self.names, out, &mut stats).map_err(DecodeError::from)
            }
            Encoding::JaegerProto | Encoding::JaegerJson => {
                jaeger::decode(encoding, payload, &mut self.names, out, &mut stats)
                    .map_err(|source| DecodeError::Jaeger { encoding, source })
            }
            Encoding::XrayJson => xray::decode(payload, &mut self.names, out, &mut stats)
                .map_err(|source| DecodeError::Json { encoding, source }),
        };
        match result {
            Ok(()) => {
                stats.accepted = (out.len() - start_len) as u32;
                compact(&mut out[start_len..]);
                Ok(stats)
            }
            Err(e) => {
                out.truncate(start_len);
                Err(e)
            }
        }
    }
}

/// Moves the wire bytes of `spans` into one buffer of exactly their size, in order. The payload
/// they were sliced from is released as soon as the caller drops it: resources and scopes live on
/// in shared [`crate::model::Origin`]s, so what a buffered span keeps is its own encoding.
fn compact(spans: &mut [Span]) {
    let total = spans.iter().map(|s| s.raw.len()).sum();
    if total == 0 {
        return;
    }
    let mut buffer = Vec::with_capacity(total);
    for span in spans.iter() {
        buffer.extend_from_slice(&span.raw);
    }
    let buffer = Bytes::from(buffer);
    let mut at = 0;
    for span in spans {
        let len = span.raw.len();
        span.raw = buffer.slice(at..at + len);
        at += len;
    }
}

/// Looks an attribute up in a span's wire bytes.
pub fn find_attribute(encoding: Encoding, raw: &[u8], key: &str) -> Option<AttrValue> {
    match encoding {
        Encoding::OtlpProto => otlp_proto::find_span_attribute(raw, key),
        Encoding::OtlpJson => otlp_json::find_span_attribute(raw, key),
        Encoding::ZipkinJson => zipkin::find_span_attribute(raw, key),
        Encoding::ZipkinProto => zipkin_proto::find_span_attribute(raw, key),
        Encoding::JaegerProto | Encoding::JaegerJson => jaeger::find_span_attribute(encoding, raw, key),
        Encoding::XrayJson => xray::find_span_attribute(raw, key),
    }
}

/// Attribute look-ups on a decoded span, by decoding its wire bytes on demand. Used off the hot
/// path (exclusion and sampling rules); the hot fields are extracted once by the decoders.
pub trait AttributeLookup {
    /// The attribute on the span, else on its resource.
    fn attribute(&self, key: &str) -> Option<AttrValue>;
    /// Every attribute of the span itself (tags for Zipkin), in wire order.
    fn attributes(&self) -> Vec<(String, AttrValue)>;
}

impl AttributeLookup for Span {
    fn attributes(&self) -> Vec<(String, AttrValue)> {
        match self.origin.encoding {
            Encoding::OtlpProto => otlp_proto::span_attributes(&self.raw),
            Encoding::OtlpJson => otlp_json::span_attributes(&self.raw),
            Encoding::ZipkinJson => zipkin::span_attributes(&self.raw),
            Encoding::ZipkinProto => zipkin_proto::span_attributes(&self.raw),
            encoding @ (Encoding::JaegerProto | Encoding::JaegerJson) => jaeger::span_attributes(encoding, &self.raw),
            Encoding::XrayJson => xray::span_attributes(&self.raw),
        }
    }

    fn attribute(&self, key: &str) -> Option<AttrValue> {
        find_attribute(self.origin.encoding, &self.raw, key)
            .or_else(|| find_resource_attribute(self.origin.encoding, &self.origin.resource, key))
    }
}

/// Looks an attribute up in a resource's wire bytes (empty for Zipkin, which has no resource; an
/// encoded `Process` for Jaeger).
pub fn find_resource_attribute(encoding: Encoding, resource: &[u8], key: &str) -> Option<AttrValue> {
    if resource.is_empty() {
        return None;
    }
    match encoding {
        Encoding::OtlpProto => otlp_proto::find_resource_attribute(resource, key),
        Encoding::OtlpJson => otlp_json::find_resource_attribute(resource, key),
        Encoding::ZipkinJson | Encoding::ZipkinProto => None,
        Encoding::JaegerProto | Encoding::JaegerJson => jaeger::find_resource_attribute(resource, key),
        Encoding::XrayJson => xray::find_resource_attribute(resource, key),
    }
}

/// Parses a lowercase or uppercase hex id of exactly `N` bytes; `None` when malformed or all zero.
pub(crate) fn parse_hex_id<const N: usize>(hex_str: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_str, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

/// Parses a hex parent span id: empty or all zero means no parent; malformed is `Err`.
pub(crate) fn parse_parent_id(hex_str: &str) -> Result<Option<crate::model::SpanId>, ()> {
    if hex_str.is_empty() {
        return Ok(None);
    }
    let mut out = [0u8; 8];
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| ())?;
    Ok((out != [0u8; 8]).then_some(out))
}

/// Copies a binary id of exactly `N` bytes; `None` when the length is wrong or it is all zero.
pub(crate) fn binary_id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let out: [u8; N] = bytes.try_into().ok()?;
    (out != [0u8; N]).then_some(out)
}

#[cfg(test)]
mod tests;
