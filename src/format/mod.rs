//! Wire formats: every encoding tracewarden reads and writes (kafka.md "Encodings"), each one type
//! behind the [`Format`] trait, in one file, registered in the one table below ([`formats!`]).
//!
//! A format knows its name, how `auto` detects it, how to decode a payload into the span model,
//! how to write a kept trace back from its spans' own wire bytes, and how to look attributes up in
//! those bytes. Nothing outside this room lists the encodings: configuration, the CLI, metrics
//! labels, summaries and the `decode` fuzz target iterate [`Encoding::ALL`] or look a name up with
//! [`Encoding::named`]. Adding an encoding is one file here and one line in the table (plus, if
//! the traffic generator is to write it, a writer in `generate/wire.rs`, which says which it
//! writes).
//!
//! The shared machinery: [`Decoder`] (per-topic encodings, the interner, the invariants every
//! decoder keeps: see `decoder.rs`) and [`encode_trace`] (records of a kept trace, split by size;
//! see `encoder.rs`).
//!
//! [`Encoding`] itself is declared in `model` (a span's origin names its encoding, and the model
//! depends on nothing); its constants, names and behaviour are given here, by the table.

mod decoder;
mod draft;
mod encoder;
mod queue;
pub mod schemas;

mod jaeger_json;
mod jaeger_proto;
mod otlp_json;
mod otlp_proto;
mod xray_json;
mod zipkin_json;
mod zipkin_proto;

use bytes::Bytes;

use crate::decision::Decision;
use crate::model::{AttrValue, Exception, Span, SpanKind};

pub use crate::model::Encoding;
pub use decoder::{AttributeLookup, DecodeError, DecodeStats, Decoder, InputEncoding, SpanReject, MAX_FUTURE_SKEW};
pub(crate) use draft::Interner;
pub use draft::SpanBuilder;
pub use encoder::{
    encode_spans, encode_trace, tracestate_threshold, tracestate_with_threshold, TracePayload, RULE_ATTRIBUTE,
    SAMPLE_RATE_ATTRIBUTE,
};
pub use otlp_proto::{ProtoError, WireField, WireReader};
pub use queue::QueueScratch;
pub(crate) use xray_json::{adopt_segment_resources, trace_id as xray_trace_id};

/// Why a payload is not well-formed in its encoding (the format's own parser error).
pub type Malformed = Box<dyn std::error::Error + Send + Sync>;

/// One wire encoding: reading it into the span model and writing kept spans back.
pub trait Format: Sync {
    /// The name in configuration (`kafka.encoding`), the `encoding` metric label, record headers
    /// and the CLI (`otlp_proto`).
    fn name(&self) -> &'static str;

    /// What people call it (`OTLP protobuf`), in error messages.
    fn title(&self) -> &'static str;

    /// The `reason` label of `tracewarden_messages_rejected_total` for a payload malformed in it.
    fn malformed_reason(&self) -> &'static str;

    /// Whether `auto` reads a payload whose first non-blank byte is `first` in this encoding
    /// (ingest.md "Kafka input encodings"); a payload no format claims is read as
    /// [`Encoding::AUTO_FALLBACK`].
    fn detects(&self, _first: u8) -> bool {
        false
    }

    /// Appends the valid spans of `payload` to `out` and counts the invalid ones in `stats`; a
    /// payload that is not well-formed is an error (the caller truncates `out` and dead-letters it).
    fn decode(
        &self,
        payload: &Bytes,
        builder: &mut SpanBuilder,
        out: &mut Vec<Span>,
        stats: &mut DecodeStats,
    ) -> Result<(), Malformed>;

    /// One record of `spans` (all read in this encoding), from their wire bytes, with the
    /// sampling attributes of `decision` added when one is given (sampling.md "What is forwarded").
    fn encode(&self, spans: &[&Span], decision: Option<&Decision>) -> Bytes;

    /// Whether a message holds exactly one span (Jaeger), so a kept trace is one record per span.
    fn one_span_per_message(&self) -> bool {
        false
    }

    /// Every attribute of a span (tags, for Zipkin and Jaeger), in wire order, from its bytes.
    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)>;

    /// One attribute of a span, from its bytes.
    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue>;

    /// Calls `visit` with each attribute of a span that `find` knows (by its key's bytes: the
    /// key's index) and whose value has a text form (as [`AttrValue::as_text`]), in wire order,
    /// from its bytes. Encodings that can lend the bytes override it so that nothing is allocated
    /// and no other key is read as text.
    fn visit_span_attributes(
        &self,
        raw: &[u8],
        find: &dyn Fn(&[u8]) -> Option<usize>,
        visit: &mut dyn FnMut(usize, &str),
    ) {
        for (key, value) in self.span_attributes(raw) {
            if let (Some(index), Some(text)) = (find(key.as_bytes()), value.as_text()) {
                visit(index, &text);
            }
        }
    }

    /// The queue a span of `kind` publishes to or consumes from, from its bytes: whether it
    /// publishes (`None`: no queue), its name left in `scratch` (`queue.rs` states the rules).
    fn queue(&self, raw: &[u8], kind: SpanKind, scratch: &mut QueueScratch) -> Option<bool> {
        queue::from_attributes(|visit| self.visit_span_attributes(raw, &queue::messaging_key, visit), kind, scratch)
    }

    /// One attribute of a resource, from the bytes its origin keeps (`Origin::resource`); `None`
    /// for encodings without resources.
    fn find_resource_attribute(&self, _resource: &[u8], _key: &str) -> Option<AttrValue> {
        None
    }

    /// The first exception a span recorded, from its bytes (an OpenTelemetry `exception` event,
    /// as its encoding carries one: a span event, a Jaeger log, a Zipkin annotation; X-Ray's
    /// `cause`); `None` for a span without one.
    fn exception(&self, _raw: &[u8]) -> Option<Exception> {
        None
    }

    /// A hash of the bytes of the span's first exception, found without allocating: the same
    /// exception recorded again hashes the same, so its group is found without reading it
    /// again. `None` when the span has none, or the encoding cannot tell without reading it.
    fn exception_fingerprint(&self, _raw: &[u8]) -> Option<u64> {
        None
    }
}

/// The exception of a span read in `encoding` ([`Format::exception`]).
pub fn exception(encoding: Encoding, raw: &[u8]) -> Option<Exception> {
    encoding.format().exception(raw)
}

/// An exception from OpenTelemetry's attribute names (`exception.type`, `exception.message`,
/// `exception.stacktrace`) looked up in `attribute`; `None` when it names neither a type nor a
/// message (the semantic conventions require one of them).
pub(crate) fn exception_from(mut attribute: impl FnMut(&str) -> Option<String>) -> Option<Exception> {
    let type_name = attribute("exception.type").unwrap_or_default();
    let message = attribute("exception.message").unwrap_or_default();
    if type_name.is_empty() && message.is_empty() {
        return None;
    }
    Some(Exception { type_name, message, stacktrace: attribute("exception.stacktrace").unwrap_or_default() })
}

/// The table: each encoding's constant on [`Encoding`] and the type that implements it, in the
/// order they are listed everywhere (configuration help, metrics, summaries).
macro_rules! formats {
    ($( $(#[$doc:meta])* $constant:ident => $format:expr ),+ $(,)?) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Slot { $($constant),+ }

        impl Encoding {
            $( $(#[$doc])* pub const $constant: Encoding = Encoding(Slot::$constant as u8); )+

            /// Every encoding, in table order.
            pub const ALL: &'static [Encoding] = &[$(Encoding::$constant),+];
        }

        static FORMATS: &[&dyn Format] = &[$(&$format),+];
    };
}

formats! {
    /// OTLP protobuf (`ExportTraceServiceRequest` / `TracesData`): the Collector's `otlp_proto`.
    OTLP_PROTO => otlp_proto::OtlpProto,
    /// OTLP/JSON: the Collector's `otlp_json`.
    OTLP_JSON => otlp_json::OtlpJson,
    /// Zipkin v2 JSON: a list of spans.
    ZIPKIN_JSON => zipkin_json::ZipkinJson,
    /// Zipkin v2 protobuf: a `zipkin.proto3.ListOfSpans`.
    ZIPKIN_PROTO => zipkin_proto::ZipkinProto,
    /// One `jaeger.api_v2.Span`, its process embedded.
    JAEGER_PROTO => jaeger_proto::JaegerProto,
    /// The same in Jaeger's JSON (`jsonpb`) form.
    JAEGER_JSON => jaeger_json::JaegerJson,
    /// X-Ray segment documents (optionally after the daemon's header line), one or a list.
    XRAY_JSON => xray_json::XrayJson,
}

impl Encoding {
    /// What `auto` reads a payload as when no format [detects](Format::detects) it.
    pub const AUTO_FALLBACK: Encoding = Encoding::OTLP_PROTO;

    /// The format that reads and writes this encoding.
    pub fn format(self) -> &'static dyn Format {
        FORMATS[self.0 as usize]
    }

    /// Its name: the `encoding` label of `tracewarden_spans_received_total`, the configuration value.
    pub fn as_str(self) -> &'static str {
        self.format().name()
    }

    /// The encoding of a name (`jaeger_proto`); `None` for unknown names.
    pub fn named(name: &str) -> Option<Encoding> {
        Encoding::ALL.iter().copied().find(|e| e.as_str() == name)
    }

    /// What `auto` reads `payload` as.
    pub fn detect(payload: &[u8]) -> Encoding {
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(&first) => {
                Encoding::ALL.iter().copied().find(|e| e.format().detects(first)).unwrap_or(Self::AUTO_FALLBACK)
            }
            None => Self::AUTO_FALLBACK,
        }
    }
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Looks an attribute up in a span's wire bytes.
pub fn find_attribute(encoding: Encoding, raw: &[u8], key: &str) -> Option<AttrValue> {
    encoding.format().find_span_attribute(raw, key)
}

/// Looks an attribute up in a resource's wire bytes (empty for Zipkin, which has no resource).
pub fn find_resource_attribute(encoding: Encoding, resource: &[u8], key: &str) -> Option<AttrValue> {
    if resource.is_empty() {
        return None;
    }
    encoding.format().find_resource_attribute(resource, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `exception` is the one the OpenTelemetry Python SDK recorded on the fixtures'
    /// server span (tests/fixtures/python_sdk.py), whichever encoding carried it; `expected` is
    /// what the script wrote of it (its template and the frame that raised it).
    pub(super) fn assert_python_sdks_exception(exception: &Exception, expected: &serde_json::Value) {
        assert_eq!(exception.type_name, "LookupError");
        assert_eq!(
            exception.message,
            "owner 4711 not found in shard 'eu-1' (request 3f2b8c1e-9a4d-4e5f-8a6b-1c2d3e4f5a6b, cache 0x7f3a)"
        );
        assert!(exception.stacktrace.starts_with("Traceback (most recent call last):\n"), "{}", exception.stacktrace);
        let key = crate::signals::exception::ExceptionKey::of(exception);
        assert_eq!(key.message, "owner {n} not found in shard {str} (request {uuid}, cache {id})");
        assert_eq!(key.message, expected["template"].as_str().unwrap());
        assert_eq!(key.frame, expected["frame"].as_str().unwrap());
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for &encoding in Encoding::ALL {
            assert_eq!(Encoding::named(encoding.as_str()), Some(encoding));
            assert_eq!(Encoding::ALL.iter().filter(|e| e.as_str() == encoding.as_str()).count(), 1);
        }
        assert_eq!(Encoding::named("auto"), None);
        assert_eq!(Encoding::named("OTLP_PROTO"), None);
    }

    #[test]
    fn the_table_lists_what_the_spec_names() {
        // ingest.md "Kafka input encodings" names them.
        let names: Vec<&str> = Encoding::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            ["otlp_proto", "otlp_json", "zipkin_json", "zipkin_proto", "jaeger_proto", "jaeger_json", "xray_json"]
        );
    }

    /// The `decode` fuzz target reads its first byte as a slot of the table: every seed starts
    /// with the slot of the encoding its name begins with, and holds the fuzz property.
    #[test]
    fn fuzz_seeds_name_their_slot_and_hold_the_property() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/decode");
        let mut seeds_of = vec![0; Encoding::ALL.len()];
        for entry in std::fs::read_dir(dir).expect("the seeds directory") {
            let path = entry.expect("a seed").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name").to_owned();
            let encoding = name.split('-').next().and_then(Encoding::named).unwrap_or_else(|| panic!("{name}"));
            let seed = std::fs::read(&path).expect("readable");
            assert_eq!(seed[0], encoding.0, "{name} starts with its encoding's slot");
            crate::testing::fuzz_decode(InputEncoding::Fixed(encoding), &seed[1..]);
            seeds_of[encoding.0 as usize] += 1;
        }
        for &encoding in Encoding::ALL {
            assert!(seeds_of[encoding.0 as usize] > 0, "no seed for {encoding}");
        }
    }

    #[test]
    fn auto_detects_by_the_first_non_blank_byte() {
        assert_eq!(Encoding::detect(b"  {\"resourceSpans\":[]}"), Encoding::OTLP_JSON);
        assert_eq!(Encoding::detect(b"\n[{}]"), Encoding::ZIPKIN_JSON);
        assert_eq!(Encoding::detect(b"\x0a\x02"), Encoding::OTLP_PROTO);
        assert_eq!(Encoding::detect(b""), Encoding::OTLP_PROTO);
    }
}
