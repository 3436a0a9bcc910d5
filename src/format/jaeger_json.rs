//! Jaeger's JSON form of a span, as gogo `jsonpb` writes it (the Collector's `jaeger_json`, Jaeger's
//! own JSON fixtures): ids as hex strings of any length up to their width (Jaeger's
//! `TraceID.String()` drops leading zeros), times in RFC 3339 (any offset), durations in Go's
//! notation (`"0.000005s"`, `"5000ns"`, `"1m2.5s"`), enums by name or number, 64-bit integers as
//! numbers or strings; member names in lowerCamelCase or as in the `.proto`.
//!
//! Those ids and durations are gogo custom types, outside the proto3 JSON mapping, so this reader
//! is written out here; it yields the generated `jaeger.api_v2.Span`, so both Jaeger encodings
//! share one mapping to tracewarden's span model ([`super::jaeger`]).
//!
//! The decoder skips a span's `logs`; [`JaegerJson::exception`] reads them from the span's bytes
//! when asked.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::encoder::{appended, with_member};
use super::schemas::jaeger::{KeyValue, Log, Process, Span, SpanRef, SpanRefType, ValueType};
use super::{jaeger_proto, SpanBuilder, RULE_ATTRIBUTE, SAMPLE_RATE_ATTRIBUTE};
use super::{DecodeStats, Format, Malformed};
use crate::decision::Decision;
use crate::model::{AttrValue, Encoding, Exception};
use bytes::Bytes;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan<'a> {
    #[serde(alias = "trace_id", default, deserialize_with = "hex_id::<_, 16>")]
    trace_id: Vec<u8>,
    #[serde(alias = "span_id", default, deserialize_with = "hex_id::<_, 8>")]
    span_id: Vec<u8>,
    #[serde(alias = "operation_name", default)]
    operation_name: String,
    #[serde(default)]
    references: Vec<JsonRef>,
    #[serde(default, deserialize_with = "integer")]
    flags: i64,
    #[serde(alias = "start_time", default)]
    start_time: Option<&'a str>,
    #[serde(default)]
    duration: Option<&'a str>,
    #[serde(default)]
    tags: Vec<JsonKeyValue>,
    #[serde(default)]
    process: Option<JsonProcess>,
    #[serde(alias = "process_id", default)]
    process_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRef {
    #[serde(alias = "trace_id", default, deserialize_with = "hex_id::<_, 16>")]
    trace_id: Vec<u8>,
    #[serde(alias = "span_id", default, deserialize_with = "hex_id::<_, 8>")]
    span_id: Vec<u8>,
    #[serde(alias = "ref_type", default)]
    ref_type: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProcess {
    #[serde(alias = "service_name", default)]
    service_name: String,
    #[serde(default)]
    tags: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonKeyValue {
    #[serde(default)]
    key: String,
    #[serde(alias = "v_type", default)]
    v_type: Option<Box<RawValue>>,
    #[serde(alias = "v_str", default)]
    v_str: String,
    #[serde(alias = "v_bool", default)]
    v_bool: bool,
    #[serde(alias = "v_int64", default, deserialize_with = "integer")]
    v_int64: i64,
    #[serde(alias = "v_float64", default, deserialize_with = "float")]
    v_float64: f64,
}

/// A span's logs, all that [`JaegerJson::exception`] reads of it.
#[derive(Deserialize)]
struct JsonLogs {
    #[serde(default)]
    logs: Vec<JsonLog>,
}

#[derive(Deserialize)]
struct JsonLog {
    #[serde(default)]
    fields: Vec<JsonKeyValue>,
}

/// Reads one Jaeger JSON span. The whole message must be UTF-8 (RFC 8259), members skipped or
/// not: it is forwarded as it came.
pub(super) fn parse(payload: &[u8]) -> Result<Span, serde_json::Error> {
    let text = std::str::from_utf8(payload).map_err(|e| serde_json::Error::custom(format!("not UTF-8: {e}")))?;
    let span: JsonSpan<'_> = serde_json::from_str(text)?;
    let start_time = span
        .start_time
        .map(|text| {
            let time = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| serde_json::Error::custom(format!("startTime {text:?}: {e}")))?;
            Ok::<_, serde_json::Error>(prost_types::Timestamp {
                seconds: time.timestamp(),
                nanos: time.timestamp_subsec_nanos() as i32,
            })
        })
        .transpose()?;
    let duration = span
        .duration
        .map(|text| {
            let nanos = go_duration_nanos(text)
                .ok_or_else(|| serde_json::Error::custom(format!("duration {text:?} is not a duration")))?;
            Ok::<_, serde_json::Error>(prost_types::Duration {
                seconds: (nanos / 1_000_000_000) as i64,
                nanos: (nanos % 1_000_000_000) as i32,
            })
        })
        .transpose()?;
    let references = span
        .references
        .into_iter()
        .map(|r| {
            let ref_type =
                enum_value(r.ref_type.as_deref(), |name| SpanRefType::from_str_name(name).map(|t| t as i32))?;
            Ok(SpanRef { trace_id: r.trace_id, span_id: r.span_id, ref_type })
        })
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(Span {
        trace_id: span.trace_id,
        span_id: span.span_id,
        operation_name: span.operation_name,
        references,
        flags: span.flags as u32,
        start_time,
        duration,
        tags: key_values(span.tags)?,
        logs: Vec::new(),
        process: span
            .process
            .map(|p| Ok::<_, serde_json::Error>(Process { service_name: p.service_name, tags: key_values(p.tags)? }))
            .transpose()?,
        process_id: span.process_id,
        warnings: Vec::new(),
    })
}

fn key_values(tags: Vec<JsonKeyValue>) -> Result<Vec<KeyValue>, serde_json::Error> {
    tags.into_iter()
        .map(|tag| {
            let v_type = enum_value(tag.v_type.as_deref(), |name| ValueType::from_str_name(name).map(|t| t as i32))?;
            Ok(KeyValue {
                key: tag.key,
                v_type,
                v_str: tag.v_str,
                v_bool: tag.v_bool,
                v_int64: tag.v_int64,
                v_float64: tag.v_float64,
                // Binary values are kept as present, not decoded (never compared).
                v_binary: Vec::new(),
            })
        })
        .collect()
}

/// An enum member given by name (`"INT64"`) or number; absent is the first value.
fn enum_value(raw: Option<&RawValue>, by_name: impl Fn(&str) -> Option<i32>) -> Result<i32, serde_json::Error> {
    let Some(raw) = raw else { return Ok(0) };
    if let Ok(number) = serde_json::from_str::<i32>(raw.get()) {
        return Ok(number);
    }
    let name: &str = serde_json::from_str(raw.get())?;
    by_name(name).ok_or_else(|| serde_json::Error::custom(format!("unknown enum value {name:?}")))
}

/// An id as Jaeger writes it: hex without leading zeros, up to `N` bytes; widened to `N` bytes.
fn hex_id<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Vec<u8>, D::Error> {
    let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
    if text.is_empty() || text.len() > 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(D::Error::custom(format!("{text:?} is not a hex id of at most {N} bytes")));
    }
    let padded = format!("{text:0>width$}", width = 2 * N);
    hex::decode(padded).map_err(D::Error::custom)
}

/// A 64-bit integer as a JSON number or string.
fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int<'a> {
        Number(i64),
        Text(&'a str),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(text) => text.parse().map_err(D::Error::custom),
    }
}

/// A double as a JSON number or string (`"NaN"`, `"Infinity"` included).
fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Float<'a> {
        Number(f64),
        Text(&'a str),
    }
    match Float::deserialize(d)? {
        Float::Number(n) => Ok(n),
        Float::Text(text) => text.parse().map_err(D::Error::custom),
    }
}

/// A duration in Go's notation (`time.ParseDuration`: `"300ms"`, `"1.5h"`, `"2h45m"`, `"5000ns"`,
/// proto3 JSON's `"0.000005s"`), in nanoseconds; `None` when malformed, negative or too long.
pub(super) fn go_duration_nanos(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| total.round() as u64)
}

/// One Jaeger span per message in Jaeger's JSON (`jsonpb`) form, mapped as [`super::jaeger_proto`].
pub struct JaegerJson;

impl Format for JaegerJson {
    fn name(&self) -> &'static str {
        "jaeger_json"
    }

    fn title(&self) -> &'static str {
        "Jaeger JSON"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_jaeger_json"
    }

    fn decode(
        &self,
        payload: &Bytes,
        builder: &mut SpanBuilder,
        out: &mut Vec<crate::model::Span>,
        stats: &mut DecodeStats,
    ) -> Result<(), Malformed> {
        Ok(jaeger_proto::decode(Encoding::JAEGER_JSON, payload, builder, out, stats)?)
    }

    fn encode(&self, spans: &[&crate::model::Span], decision: Option<&Decision>) -> Bytes {
        encode_jaeger_json(spans, decision)
    }

    fn one_span_per_message(&self) -> bool {
        true
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        jaeger_proto::span_attributes(Encoding::JAEGER_JSON, raw)
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        jaeger_proto::find_span_attribute(Encoding::JAEGER_JSON, raw, key)
    }

    fn find_resource_attribute(&self, resource: &[u8], key: &str) -> Option<AttrValue> {
        jaeger_proto::find_resource_attribute(resource, key)
    }

    /// From the span's `logs` alone, mapped as Jaeger protobuf's ([`jaeger_proto::exception_in`]).
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        let span: JsonLogs = serde_json::from_slice(raw).ok()?;
        let logs = span
            .logs
            .into_iter()
            .map(|log| Ok(Log { timestamp: None, fields: key_values(log.fields)? }))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .ok()?;
        jaeger_proto::exception_in(&logs)
    }
}

// Writing kept spans back.

/// One Jaeger JSON span (a chunk of one span), with the sampling tags added to its `tags`; every
/// other member is copied byte for byte.
fn encode_jaeger_json(spans: &[&crate::model::Span], decision: Option<&Decision>) -> Bytes {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_nanos("5000ns"), Some(5_000));
        assert_eq!(go_duration_nanos("0.001245672s"), Some(1_245_672));
        assert_eq!(go_duration_nanos("1m2.5s"), Some(62_500_000_000));
        assert_eq!(go_duration_nanos("1.5µs"), Some(1_500));
        assert_eq!(go_duration_nanos("0"), Some(0));
        assert_eq!(go_duration_nanos("-1s"), None);
        assert_eq!(go_duration_nanos("5"), None);
        assert_eq!(go_duration_nanos("s"), None);
    }

    #[test]
    fn the_python_exporters_exception_log_is_read() {
        jaeger_proto::tests::python_exporters_exception_is_read(Encoding::JAEGER_JSON);
    }

    #[test]
    fn the_jaeger_clients_opentracing_error_log_is_read() {
        jaeger_proto::tests::opentracing_clients_error_is_read(Encoding::JAEGER_JSON);
    }

    #[test]
    fn the_collectors_exception_log_is_read() {
        // A span event as the Collector's translator writes it, in jsonpb form.
        let span = r#"{"traceId":"5b8aa5a2d2c872e8321cf37308d69df2","spanId":"051581bf3cb55c13","operationName":"GET /owners/{id}","startTime":"2026-12-07T19:41:31.705338954Z","duration":"0.009s","logs":[{"timestamp":"2026-12-07T19:41:31.707Z","fields":[{"key":"event","vStr":"exception"},{"key":"exception.message","vStr":"owner 7 missing"},{"key":"exception.stacktrace","vStr":"java.lang.IllegalStateException: owner 7 missing\n\tat com.acme.Owners.find(Owners.java:12)"},{"key":"exception.type","vStr":"java.lang.IllegalStateException"}]}],"process":{"serviceName":"owners-api"}}"#;
        assert_eq!(
            JaegerJson.exception(span.as_bytes()),
            Some(Exception {
                type_name: "java.lang.IllegalStateException".into(),
                message: "owner 7 missing".into(),
                stacktrace:
                    "java.lang.IllegalStateException: owner 7 missing\n\tat com.acme.Owners.find(Owners.java:12)".into(),
            })
        );
        let without = span.replace(r#""vStr":"exception"}"#, r#""vStr":"retry"}"#);
        assert_eq!(JaegerJson.exception(without.as_bytes()), None);
    }
}
