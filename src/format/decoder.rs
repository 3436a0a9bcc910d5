//! Decoding: Kafka message payloads into validated [`Span`]s, whatever their [`super::Format`].
//!
//! One entry point, [`Decoder::decode`], reads a payload in any encoding of the
//! table (or detects it per message with `auto`, ingest.md "Kafka input encodings") and appends the valid spans to a
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

use bytes::Bytes;
use serde::Deserialize;

use super::SpanBuilder;
use crate::model::{AttrValue, Encoding, Span};

/// What `kafka.encoding` (and an input topic's `encoding`) selects: one encoding, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InputEncoding {
    /// Per message, by its first non-blank byte ([`Encoding::detect`]).
    #[default]
    Auto,
    Fixed(Encoding),
}

impl InputEncoding {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fixed(encoding) => encoding.as_str(),
        }
    }

    /// The setting of a configuration name (`auto`, `jaeger_proto`); `None` for unknown names.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            name => Encoding::named(name).map(Self::Fixed),
        }
    }

    /// The encoding of one payload.
    pub fn resolve(self, payload: &[u8]) -> Encoding {
        match self {
            Self::Fixed(encoding) => encoding,
            Self::Auto => Encoding::detect(payload),
        }
    }
}

impl From<Encoding> for InputEncoding {
    /// The setting that reads exactly this encoding.
    fn from(encoding: Encoding) -> Self {
        Self::Fixed(encoding)
    }
}

impl<'de> Deserialize<'de> for InputEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::named(&name).ok_or_else(|| {
            let expected: Vec<&str> = std::iter::once("auto").chain(Encoding::ALL.iter().map(|e| e.as_str())).collect();
            serde::de::Error::custom(format_args!(
                "unknown encoding `{name}`, expected one of `{}`",
                expected.join("`, `")
            ))
        })
    }
}

/// Why a whole message was rejected; the `reason` label of `tracewarden_messages_rejected_total`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("malformed {} ({encoding}): {source}", encoding.format().title())]
    Malformed {
        encoding: Encoding,
        #[source]
        source: super::Malformed,
    },
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Malformed { encoding, .. } => encoding.format().malformed_reason(),
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

/// How far in the future of its arrival a span may end (producers' clocks are skewed; more than
/// this is a corrupt timestamp).
pub const MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Decodes payloads; holds the interner and scratch space reused across messages.
pub struct Decoder {
    input: InputEncoding,
    /// Topics with an encoding of their own (`[[kafka.inputs]]`); few, so a list.
    per_topic: Vec<(Box<str>, InputEncoding)>,
    builder: SpanBuilder,
}

impl Decoder {
    pub fn new(input: InputEncoding) -> Self {
        Self::for_topics(input, Vec::new())
    }

    /// A decoder reading `input`, except on the listed topics, each read in its own encoding.
    pub fn for_topics(input: InputEncoding, per_topic: Vec<(String, InputEncoding)>) -> Self {
        let per_topic = per_topic.into_iter().map(|(topic, encoding)| (topic.into_boxed_str(), encoding)).collect();
        Self { input, per_topic, builder: SpanBuilder::new() }
    }

    /// Decodes one payload read from `topic` that arrived at `arrival`: as [`Decoder::decode`], in
    /// the topic's encoding (on a topic read as `auto`, in the `declared` one when the message
    /// names it: re-keyed spans), and spans ending more than [`MAX_FUTURE_SKEW`] after their
    /// arrival are rejected as `invalid_time`.
    pub fn decode_at(
        &mut self,
        topic: &str,
        declared: Option<Encoding>,
        payload: &Bytes,
        out: &mut Vec<Span>,
        arrival: crate::clock::Nanos,
    ) -> Result<DecodeStats, DecodeError> {
        let input = match self.per_topic.iter().find(|(t, _)| &**t == topic).map_or(self.input, |(_, e)| *e) {
            InputEncoding::Auto => declared.map_or(InputEncoding::Auto, InputEncoding::Fixed),
            fixed => fixed,
        };
        self.builder.latest_end = arrival.saturating_add(MAX_FUTURE_SKEW).0;
        let result = self.decode_as(input, payload, out);
        self.builder.latest_end = u64::MAX;
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
        let result = encoding.format().decode(payload, &mut self.builder, out, &mut stats);
        match result {
            Ok(()) => {
                stats.accepted = (out.len() - start_len) as u32;
                compact(&mut out[start_len..]);
                Ok(stats)
            }
            Err(source) => {
                out.truncate(start_len);
                Err(DecodeError::Malformed { encoding, source })
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
        self.origin.encoding.format().span_attributes(&self.raw)
    }

    fn attribute(&self, key: &str) -> Option<AttrValue> {
        super::find_attribute(self.origin.encoding, &self.raw, key)
            .or_else(|| super::find_resource_attribute(self.origin.encoding, &self.origin.resource, key))
    }
}

#[cfg(test)]
mod tests;
