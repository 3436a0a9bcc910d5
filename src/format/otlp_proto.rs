//! OTLP protobuf front end: a zero-copy walk over the wire format of `TracesData`
//! (`ExportTraceServiceRequest` has the same shape), using prost's varint primitives.
//!
//! Why not prost's generated types: they copy every string and attribute of every span onto the
//! heap, and drop the exact bytes a kept trace must be forwarded with. This walk reads only the
//! fields the pipeline needs and slices each span's bytes out of the payload. Field numbers follow
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`; the property tests
//! check this reader against prost's own encoder.

use bytes::Bytes;

use super::draft::binary_id;
use super::draft::{is_hot_key, AttrRef, ResourceIdentity, SpanBuilder, SpanDraft};
use super::encoder::{field_len, put_len_field, raised_threshold};
use super::{tracestate_with_threshold, RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use super::{DecodeStats, Format, Malformed};
use crate::decision::adjusted_count;
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception, Span, SpanKind, StatusCode};
use bytes::{BufMut, BytesMut};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

/// A protobuf wire-format violation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("truncated varint at byte {0}")]
    Varint(usize),
    #[error("invalid field key {key} at byte {at}")]
    Key { key: u64, at: usize },
    #[error("field {field} runs past the end of its message at byte {at}")]
    Truncated { field: u32, at: usize },
    #[error("unsupported wire type {wire_type} (groups) for field {field}")]
    WireType { field: u32, wire_type: u8 },
}

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug)]
pub enum WireField<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of one protobuf message.
pub struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut rest = &self.buf[self.pos..];
        let value = prost::encoding::decode_varint(&mut rest).map_err(|_| ProtoError::Varint(self.pos))?;
        self.pos = self.buf.len() - rest.len();
        Ok(value)
    }

    fn take(&mut self, n: usize, field: u32) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(ProtoError::Truncated { field, at: self.pos })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field: its number, value, and the byte range of the whole field (key included).
    #[allow(clippy::type_complexity)]
    pub fn next_field(&mut self) -> Result<Option<(u32, WireField<'a>, std::ops::Range<usize>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u32::MAX as u64 >> 3 {
            return Err(ProtoError::Key { key, at: start });
        }
        let value = match (key & 7) as u8 {
            0 => WireField::Varint(self.varint()?),
            1 => WireField::Fixed64(u64::from_le_bytes(self.take(8, field)?.try_into().expect("8 bytes"))),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| ProtoError::Truncated { field, at: self.pos })?;
                WireField::Len(self.take(len, field)?)
            }
            5 => WireField::Fixed32(u32::from_le_bytes(self.take(4, field)?.try_into().expect("4 bytes"))),
            wire_type => return Err(ProtoError::WireType { field, wire_type }),
        };
        Ok(Some((field, value, start..self.pos)))
    }
}

pub(super) fn decode(
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), ProtoError> {
    let mut traces = WireReader::new(payload);
    while let Some((field, value, _)) = traces.next_field()? {
        if let (1, WireField::Len(resource_spans)) = (field, value) {
            decode_resource_spans(payload, resource_spans, builder, out, stats)?;
        }
    }
    Ok(())
}

/// Copies every field of a message except the span list (`skip`) into `header`.
fn header_without(message: &[u8], skip: u32, header: &mut Vec<u8>) -> Result<(), ProtoError> {
    header.clear();
    let mut reader = WireReader::new(message);
    while let Some((field, _, range)) = reader.next_field()? {
        if field != skip {
            header.extend_from_slice(&message[range]);
        }
    }
    Ok(())
}

/// [`Identify`] for protobuf: the `Resource` is field 1 of the resource header.
fn identify(resource_header: &Bytes) -> (Bytes, ResourceIdentity) {
    let mut identity = ResourceIdentity::default();
    let mut resource = Bytes::new();
    let mut reader = WireReader::new(resource_header);
    while let Ok(Some((field, value, _))) = reader.next_field() {
        if let (1, WireField::Len(bytes)) = (field, value) {
            resource = resource_header.slice_ref(bytes);
            let _ = for_each_attribute(bytes, 1, |key, value| identity.observe(key, value));
        }
    }
    (resource, identity)
}

fn decode_resource_spans(
    payload: &Bytes,
    message: &[u8],
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), ProtoError> {
    let mut resource_header = std::mem::take(&mut builder.resource_scratch);
    let mut scope_header = std::mem::take(&mut builder.scope_scratch);
    let result = (|| {
        header_without(message, 2, &mut resource_header)?;
        let mut reader = WireReader::new(message);
        while let Some((field, value, _)) = reader.next_field()? {
            if let (2, WireField::Len(scope_spans)) = (field, value) {
                header_without(scope_spans, 2, &mut scope_header)?;
                let origin = builder.origin(Encoding::OTLP_PROTO, &resource_header, &scope_header, identify);
                let mut spans = WireReader::new(scope_spans);
                while let Some((field, value, _)) = spans.next_field()? {
                    if let (2, WireField::Len(span)) = (field, value) {
                        let draft = read_span(span)?;
                        builder.finish(draft, &origin, payload.slice_ref(span), out, stats);
                    }
                }
            }
        }
        Ok(())
    })();
    builder.resource_scratch = resource_header;
    builder.scope_scratch = scope_header;
    result
}

/// Reads a string; invalid UTF-8 reads as empty (prost would reject the message: we keep the span).
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn read_span(span: &[u8]) -> Result<SpanDraft<'_>, ProtoError> {
    let mut draft = SpanDraft::default();
    let mut reader = WireReader::new(span);
    while let Some((field, value, _)) = reader.next_field()? {
        match (field, value) {
            (1, WireField::Len(b)) => draft.trace_id = binary_id(b),
            (2, WireField::Len(b)) => draft.span_id = binary_id(b),
            (4, WireField::Len(b)) => {
                draft.parent_span_id = match b.len() {
                    0 => Ok(None),
                    8 => Ok(binary_id(b)),
                    _ => Err(()),
                }
            }
            (5, WireField::Len(b)) => draft.name = utf8(b),
            (6, WireField::Varint(v)) => draft.kind = SpanKind::from_otlp(v as i64),
            (7, WireField::Fixed64(v)) => draft.start_unix_nano = v,
            (8, WireField::Fixed64(v)) => draft.end_unix_nano = v,
            (9, WireField::Len(kv)) => {
                if let Some((key, value)) = read_key_value(kv, true)? {
                    draft.attrs.observe(key, value);
                }
            }
            (15, WireField::Len(status)) => {
                let mut reader = WireReader::new(status);
                while let Some((field, value, _)) = reader.next_field()? {
                    if let (3, WireField::Varint(code)) = (field, value) {
                        draft.status = StatusCode::from_otlp(code as i64);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(draft)
}

/// Reads a `KeyValue`; with `hot_only`, values of keys the hot path ignores are not decoded.
fn read_key_value(kv: &[u8], hot_only: bool) -> Result<Option<(&str, AttrRef<'_>)>, ProtoError> {
    let mut key: Option<&str> = None;
    let mut value: Option<&[u8]> = None;
    let mut reader = WireReader::new(kv);
    while let Some((field, v, _)) = reader.next_field()? {
        match (field, v) {
            (1, WireField::Len(b)) => key = Some(utf8(b)),
            (2, WireField::Len(b)) => value = Some(b),
            _ => {}
        }
    }
    let Some(key) = key else { return Ok(None) };
    if hot_only && !is_hot_key(key) {
        return Ok(None);
    }
    Ok(Some((key, value.map(read_any_value).transpose()?.unwrap_or(AttrRef::Other))))
}

fn read_any_value(any: &[u8]) -> Result<AttrRef<'_>, ProtoError> {
    let mut out = AttrRef::Other;
    let mut reader = WireReader::new(any);
    while let Some((field, v, _)) = reader.next_field()? {
        out = match (field, v) {
            (1, WireField::Len(b)) => AttrRef::Str(utf8(b)),
            (3, WireField::Varint(i)) => AttrRef::Int(i as i64),
            _ => AttrRef::Other,
        };
    }
    Ok(out)
}

/// Calls `f` for every attribute (`KeyValue` field `field`) of a message.
fn for_each_attribute<'a>(
    message: &'a [u8],
    field_number: u32,
    mut f: impl FnMut(&'a str, AttrRef<'a>),
) -> Result<(), ProtoError> {
    let mut reader = WireReader::new(message);
    while let Some((field, value, _)) = reader.next_field()? {
        if let (true, WireField::Len(kv)) = (field == field_number, value) {
            if let Some((key, value)) = read_key_value(kv, false)? {
                f(key, value);
            }
        }
    }
    Ok(())
}

/// The (key, encoded `AnyValue`) pairs of the `KeyValue` entries in field `field_number`.
fn key_values(message: &[u8], field_number: u32) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut reader = WireReader::new(message);
    std::iter::from_fn(move || loop {
        let (field, value, _) = reader.next_field().ok()??;
        let (true, WireField::Len(kv)) = (field == field_number, value) else { continue };
        let (mut key, mut any) = (None, None);
        let mut kv_reader = WireReader::new(kv);
        while let Ok(Some((f, v, _))) = kv_reader.next_field() {
            match (f, v) {
                (1, WireField::Len(b)) => key = Some(b),
                (2, WireField::Len(b)) => any = Some(b),
                _ => {}
            }
        }
        return Some((key.unwrap_or_default(), any.unwrap_or_default()));
    })
}

/// Full decoding of one attribute value.
fn any_value(any: &[u8]) -> AttrValue {
    let mut result = AttrValue::Other;
    let mut any_reader = WireReader::new(any);
    while let Ok(Some((f, v, _))) = any_reader.next_field() {
        result = match (f, v) {
            (1, WireField::Len(b)) => AttrValue::Str(String::from_utf8_lossy(b).into_owned()),
            (2, WireField::Varint(b)) => AttrValue::Bool(b != 0),
            (3, WireField::Varint(i)) => AttrValue::Int(i as i64),
            (4, WireField::Fixed64(d)) => AttrValue::Double(f64::from_bits(d)),
            _ => AttrValue::Other,
        };
    }
    result
}

/// The text of an `AnyValue` holding a valid UTF-8 string (field 1), lent from its bytes; `None`
/// for any other value.
fn string_value(any: &[u8]) -> Option<&str> {
    let mut reader = WireReader::new(any);
    let mut text = None;
    while let Ok(Some((f, v, _))) = reader.next_field() {
        text = match (f, v) {
            (1, WireField::Len(b)) => Some(std::str::from_utf8(b).ok()?),
            _ => None,
        };
    }
    text
}

/// One attribute, decoded on demand.
fn attribute_in(message: &[u8], field_number: u32, wanted: &str) -> Option<AttrValue> {
    key_values(message, field_number).find(|(key, _)| *key == wanted.as_bytes()).map(|(_, any)| any_value(any))
}

/// The bytes of a span's first event (field 11) named `exception` (Event: name 2).
fn exception_event(raw: &[u8]) -> Option<&[u8]> {
    let mut reader = WireReader::new(raw);
    while let Ok(Some((field, value, _))) = reader.next_field() {
        let (11, WireField::Len(event)) = (field, value) else { continue };
        let mut event_reader = WireReader::new(event);
        while let Ok(Some((f, v, _))) = event_reader.next_field() {
            if let (2, WireField::Len(b"exception")) = (f, v) {
                return Some(event);
            }
        }
    }
    None
}

/// OTLP protobuf: a `TracesData` / `ExportTraceServiceRequest` (the same wire shape).
pub struct OtlpProto;

impl Format for OtlpProto {
    fn name(&self) -> &'static str {
        "otlp_proto"
    }

    fn title(&self) -> &'static str {
        "OTLP protobuf"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_protobuf"
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
        encode_proto(spans, decision)
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        key_values(raw, 9).map(|(key, any)| (String::from_utf8_lossy(key).into_owned(), any_value(any))).collect()
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        attribute_in(raw, 9, key)
    }

    /// String values lent from the bytes; others (rare among the keys asked for) decoded.
    fn visit_span_attributes(
        &self,
        raw: &[u8],
        find: &dyn Fn(&[u8]) -> Option<usize>,
        visit: &mut dyn FnMut(usize, &str),
    ) {
        for (key, any) in key_values(raw, 9) {
            let Some(index) = find(key) else { continue };
            match string_value(any) {
                Some(text) => visit(index, text),
                None => {
                    if let Some(text) = any_value(any).as_text() {
                        visit(index, &text)
                    }
                }
            }
        }
    }

    fn find_resource_attribute(&self, resource: &[u8], key: &str) -> Option<AttrValue> {
        attribute_in(resource, 1, key)
    }

    /// The first span event (field 11) named `exception` (Event: name 2, attributes 3).
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let event = exception_event(raw)?;
        super::exception_from(|key| attribute_in(event, 3, key).and_then(|v| v.as_text()))
    }

    /// FNV-1a of the exception event's attributes (its time left out: the same exception
    /// recorded at another moment is the same).
    fn exception_fingerprint(&self, raw: &[u8]) -> Option<u64> {
        let event = exception_event(raw)?;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut reader = WireReader::new(event);
        while let Ok(Some((field, value, _))) = reader.next_field() {
            if let (3, WireField::Len(attribute)) = (field, value) {
                for &byte in attribute {
                    hash ^= byte as u64;
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        Some(hash)
    }
}

// Writing kept spans back.

/// The `trace_state` (field 3) of an encoded protobuf span.
fn proto_tracestate(raw: &[u8]) -> &str {
    let mut state = "";
    let mut reader = crate::format::WireReader::new(raw);
    while let Ok(Some((field, value, _))) = reader.next_field() {
        if let (3, crate::format::WireField::Len(bytes)) = (field, value) {
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
