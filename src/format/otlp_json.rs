//! OTLP/JSON front end (the OTLP JSON mapping: hex ids, camelCase keys, enums as integers, 64-bit
//! integers as strings or numbers). Unknown members are ignored, as OTLP receivers must.
//!
//! Spans, resources and scopes are captured as raw JSON text (`RawValue`) so a kept trace is
//! forwarded with every member it arrived with.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::draft::{parse_hex_id, parse_parent_id};
use super::draft::{AttrRef, ResourceIdentity, SpanBuilder, SpanDraft};
use super::encoder::{appended, raised_threshold, with_member};
use super::{tracestate_with_threshold, RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use super::{DecodeStats, Format, Malformed};
use crate::decision::adjusted_count;
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception, Span, SpanKind, StatusCode};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct TracesData<'a> {
    #[serde(borrow, default, rename = "resourceSpans")]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "scopeSpans")]
    scope_spans: Vec<ScopeSpans<'a>>,
    #[serde(borrow, default, rename = "schemaUrl")]
    schema_url: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(borrow, default)]
    scope: Option<&'a RawValue>,
    #[serde(borrow, default)]
    spans: Vec<&'a RawValue>,
    #[serde(borrow, default, rename = "schemaUrl")]
    schema_url: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(borrow, default)]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default)]
    span_id: Cow<'a, str>,
    #[serde(borrow, default)]
    parent_span_id: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(default)]
    kind: EnumValue,
    #[serde(default)]
    start_time_unix_nano: Uint64,
    #[serde(default)]
    end_time_unix_nano: Uint64,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    code: EnumValue,
}

#[derive(Deserialize)]
pub(super) struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    /// Absent and `null` (the proto3 JSON mapping's default) are both the empty value.
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    value: AnyValue<'a>,
}

fn null_as_empty<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<AnyValue<'a>, D::Error> {
    Ok(Option::<AnyValue<'a>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    #[serde(borrow, default)]
    string_value: Option<Cow<'a, str>>,
    #[serde(default)]
    int_value: Option<Int64>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default)]
    double_value: Option<f64>,
}

impl AnyValue<'_> {
    fn as_ref(&self) -> AttrRef<'_> {
        if let Some(s) = &self.string_value {
            AttrRef::Str(s)
        } else if let Some(JsonInt(i)) = self.int_value {
            AttrRef::Int(i)
        } else {
            AttrRef::Other
        }
    }

    fn to_value(&self) -> AttrValue {
        if let Some(s) = &self.string_value {
            AttrValue::Str(s.to_string())
        } else if let Some(JsonInt(i)) = self.int_value {
            AttrValue::Int(i)
        } else if let Some(b) = self.bool_value {
            AttrValue::Bool(b)
        } else if let Some(d) = self.double_value {
            AttrValue::Double(d)
        } else {
            AttrValue::Other
        }
    }
}

/// An OTLP/JSON enum: an integer, or (leniently) its name.
#[derive(Default, Clone, Copy)]
struct EnumValue(i64, Option<NamedEnum>);

#[derive(Clone, Copy)]
enum NamedEnum {
    Kind(SpanKind),
    Status(StatusCode),
}

impl<'de> Deserialize<'de> for EnumValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Int(i64),
            Name(#[serde(borrow)] Cow<'a, str>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Int(i) => EnumValue(i, None),
            Raw::Name(name) if name.starts_with("SPAN_KIND_") => {
                EnumValue(0, Some(NamedEnum::Kind(SpanKind::from_otlp_name(&name))))
            }
            Raw::Name(name) => EnumValue(0, Some(NamedEnum::Status(StatusCode::from_otlp_name(&name)))),
        })
    }
}

/// A 64-bit integer written as a JSON string or number (OTLP/JSON writes 64-bit integers as
/// strings; numbers are accepted too).
#[derive(Default, Clone, Copy)]
struct JsonInt<T>(T);

type Uint64 = JsonInt<u64>;
type Int64 = JsonInt<i64>;

impl<'de, T> Deserialize<'de> for JsonInt<T>
where
    T: Deserialize<'de> + std::str::FromStr,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a, T> {
            Num(T),
            Text(#[serde(borrow)] Cow<'a, str>),
        }
        match Raw::<T>::deserialize(d)? {
            Raw::Num(n) => Ok(JsonInt(n)),
            Raw::Text(t) => {
                t.parse().map(JsonInt).map_err(|_| de::Error::custom(format!("not a 64-bit integer: {t:?}")))
            }
        }
    }
}

/// `"name":<raw>` members joined by commas: the header of a resource or scope.
fn members(parts: &[(&str, Option<&RawValue>)]) -> String {
    let mut out = String::new();
    for (name, raw) in parts {
        if let Some(raw) = raw {
            if !out.is_empty() {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            out.push_str(raw.get());
        }
    }
    out
}

/// [`Identify`] for OTLP/JSON: the resource is the `"resource"` member of the header.
fn identify(resource_header: &Bytes) -> (Bytes, ResourceIdentity) {
    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow, default)]
        resource: Option<&'a RawValue>,
    }
    let mut identity = ResourceIdentity::default();
    let Ok(text) = std::str::from_utf8(resource_header) else { return (Bytes::new(), identity) };
    let wrapped = format!("{{{text}}}");
    let Ok(header) = serde_json::from_str::<Header<'_>>(&wrapped) else { return (Bytes::new(), identity) };
    let Some(raw) = header.resource else { return (Bytes::new(), identity) };
    // `wrapped` is the header with one leading brace: shift the raw value's position back by one.
    let start = raw.get().as_ptr() as usize - wrapped.as_ptr() as usize - 1;
    let resource_bytes = resource_header.slice(start..start + raw.get().len());
    if let Ok(resource) = serde_json::from_str::<Resource<'_>>(raw.get()) {
        for kv in &resource.attributes {
            identity.observe(&kv.key, kv.value.as_ref());
        }
    }
    (resource_bytes, identity)
}

pub(super) fn decode(
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), serde_json::Error> {
    let data: TracesData<'_> = serde_json::from_slice(payload)?;
    for resource_spans in &data.resource_spans {
        if let Some(resource) = resource_spans.resource {
            // Validate the resource even when its origin is cached.
            serde_json::from_str::<Resource<'_>>(resource.get())?;
        }
        let resource_header =
            members(&[("resource", resource_spans.resource), ("schemaUrl", resource_spans.schema_url)]);
        for scope_spans in &resource_spans.scope_spans {
            let scope_header = members(&[("scope", scope_spans.scope), ("schemaUrl", scope_spans.schema_url)]);
            let origin =
                builder.origin(Encoding::OTLP_JSON, resource_header.as_bytes(), scope_header.as_bytes(), identify);
            for raw in &scope_spans.spans {
                let span: JsonSpan<'_> = serde_json::from_str(raw.get())?;
                let draft = draft_of(&span);
                builder.finish(draft, &origin, payload.slice_ref(raw.get().as_bytes()), out, stats);
            }
        }
    }
    Ok(())
}

fn draft_of<'a>(span: &'a JsonSpan<'a>) -> SpanDraft<'a> {
    let mut draft = SpanDraft {
        trace_id: parse_hex_id(&span.trace_id),
        span_id: parse_hex_id(&span.span_id),
        parent_span_id: parse_parent_id(&span.parent_span_id),
        kind: match span.kind {
            EnumValue(_, Some(NamedEnum::Kind(k))) => k,
            EnumValue(i, _) => SpanKind::from_otlp(i),
        },
        status: match span.status.as_ref().map(|s| s.code) {
            Some(EnumValue(_, Some(NamedEnum::Status(s)))) => s,
            Some(EnumValue(i, _)) => StatusCode::from_otlp(i),
            None => StatusCode::Unset,
        },
        start_unix_nano: span.start_time_unix_nano.0,
        end_unix_nano: span.end_time_unix_nano.0,
        name: &span.name,
        ..Default::default()
    };
    for kv in &span.attributes {
        draft.attrs.observe(&kv.key, kv.value.as_ref());
    }
    draft
}

/// A span's events, all that [`OtlpJson::exception`] reads of it.
#[derive(Deserialize)]
struct SpanEvents<'a> {
    #[serde(borrow, default)]
    events: Vec<JsonEvent<'a>>,
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
}

fn find_in(attributes: &[KeyValue<'_>], key: &str) -> Option<AttrValue> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| kv.value.to_value())
}

/// OTLP/JSON: the protobuf mapping with hex ids, camelCase names and enums as integers.
pub struct OtlpJson;

impl Format for OtlpJson {
    fn name(&self) -> &'static str {
        "otlp_json"
    }

    fn title(&self) -> &'static str {
        "OTLP/JSON"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_otlp_json"
    }

    fn detects(&self, first: u8) -> bool {
        first == b'{'
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
        encode_otlp_json(spans, decision)
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        let Ok(span) = serde_json::from_slice::<JsonSpan<'_>>(raw) else { return Vec::new() };
        span.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_value())).collect()
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        let span: JsonSpan<'_> = serde_json::from_slice(raw).ok()?;
        find_in(&span.attributes, key)
    }

    fn find_resource_attribute(&self, resource: &[u8], key: &str) -> Option<AttrValue> {
        let resource: Resource<'_> = serde_json::from_slice(resource).ok()?;
        find_in(&resource.attributes, key)
    }

    /// The first event named `exception`.
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let span: SpanEvents<'_> = serde_json::from_slice(raw).ok()?;
        let event = span.events.iter().find(|e| e.name == "exception")?;
        super::exception_from(|key| find_in(&event.attributes, key).and_then(|v| v.as_text()))
    }
}

// Writing kept spans back.

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

/// An OTLP/JSON span with the sampling attributes appended to its `attributes` (and, for
/// probabilistic decisions, `ot=th:…` in its `traceState`).
pub(super) fn annotate_otlp_json(span: &str, decision: &Decision) -> String {
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
