//! The spans of the most recent kept traces, for the waterfall of `GET /api/traces/{id}`
//! (investigation.md "Correlated traces").
//!
//! A kept trace is held as the very records it was forwarded in (reference-counted payloads: no
//! copy and no per-span work on the span path); a request decodes them again. Invariant: the
//! payloads held, with the bookkeeping of each trace and record, never add up to more than
//! `max_trace_bytes`; the oldest kept trace goes first.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::Serialize;

use crate::format::{AttributeLookup, Decoder, InputEncoding};
use crate::model::{AttrValue, FastMap, Span, SpanKind, TraceId};

/// Bytes of bookkeeping per held record (its `Bytes` handle and shared header), counted in the
/// bound (measured with `examples/memory.rs`).
const BOOKKEEPING_PER_RECORD: usize = 64;
/// Bytes of bookkeeping per hold (map entry, list of records, place in the eviction order).
const BOOKKEEPING_PER_HOLD: usize = 96;

/// Kept traces' records, bounded in bytes.
pub struct HeldTraces {
    max_bytes: usize,
    bytes: usize,
    /// Per trace: its records (a trace forwarded in several records, or whose late spans came
    /// after, has several).
    records: FastMap<TraceId, Vec<Bytes>>,
    /// (trace, bytes added) in the order they were added: the oldest goes first.
    order: VecDeque<(TraceId, usize)>,
}

impl HeldTraces {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, bytes: 0, records: FastMap::default(), order: VecDeque::new() }
    }

    /// Holds the records of a kept trace (or of its late spans), forgetting the oldest traces
    /// until the bound holds. A trace larger than the bound is not held.
    pub fn hold(&mut self, trace_id: TraceId, payloads: &[Bytes]) {
        let size: usize =
            payloads.iter().map(|p| p.len() + BOOKKEEPING_PER_RECORD).sum::<usize>() + BOOKKEEPING_PER_HOLD;
        if size > self.max_bytes {
            return;
        }
        while self.bytes + size > self.max_bytes {
            let Some((oldest, bytes)) = self.order.pop_front() else { break };
            if let Some(records) = self.records.get_mut(&oldest) {
                // A trace added in several parts loses its oldest part first.
                let mut freed = 0;
                while freed + BOOKKEEPING_PER_HOLD < bytes && !records.is_empty() {
                    freed += records.remove(0).len() + BOOKKEEPING_PER_RECORD;
                }
                if records.is_empty() {
                    self.records.remove(&oldest);
                }
            }
            self.bytes -= bytes;
        }
        self.records.entry(trace_id).or_default().extend(payloads.iter().cloned());
        self.order.push_back((trace_id, size));
        self.bytes += size;
    }

    /// Bytes held, bookkeeping included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The spans of a held trace, decoded again; `None` when it is not held.
    pub fn spans(&self, trace_id: &TraceId) -> Option<Vec<SpanView>> {
        let records = self.records.get(trace_id)?;
        let mut decoder = Decoder::new(InputEncoding::Auto);
        let mut spans: Vec<Span> = Vec::new();
        for record in records {
            // The records were encoded by tracewarden itself: they decode.
            let _ = decoder.decode(record, &mut spans);
        }
        spans.sort_by_key(|s| s.start_unix_nano);
        Some(spans.iter().map(SpanView::of).collect())
    }
}

/// One span of the waterfall, as `/api/traces/{id}` writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanView {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub start_unix_nano: String,
    pub duration_seconds: f64,
    pub outcome: &'static str,
    pub status: &'static str,
    pub http_status: Option<u16>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "UNSPECIFIED",
        SpanKind::Internal => "INTERNAL",
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
    }
}

fn json_value(value: AttrValue) -> serde_json::Value {
    match value {
        AttrValue::Str(s) => s.into(),
        AttrValue::Int(i) => i.into(),
        AttrValue::Double(d) => d.into(),
        AttrValue::Bool(b) => b.into(),
        AttrValue::Other => serde_json::Value::Null,
    }
}

impl SpanView {
    fn of(span: &Span) -> Self {
        Self {
            span_id: hex::encode(span.span_id),
            parent_span_id: span.parent_span_id.map(hex::encode),
            service: span.service().to_string(),
            name: span.operation.to_string(),
            kind: kind_name(span.kind),
            start_unix_nano: span.start_unix_nano.to_string(),
            duration_seconds: span.duration_nanos() as f64 / 1e9,
            outcome: span.facts.outcome.as_str(),
            status: span.status.as_str(),
            http_status: (span.http_status != 0).then_some(span.http_status),
            attributes: span.attributes().into_iter().map(|(k, v)| (k, json_value(v))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode, AttrSpec, SpanSpec, CLIENT, SERVER};

    fn trace(t: u8) -> Bytes {
        encode(&[
            SpanSpec::new("shop", t, 1, None, SERVER, "GET").http("GET", "/buy", 503).micros(30_000),
            SpanSpec::new("shop", t, 2, Some(1), CLIENT, "SELECT")
                .attr("db.system", AttrSpec::Str("postgresql"))
                .attr("db.rows", AttrSpec::Int(3))
                .micros(5_000)
                .starting(1_700_000_000_001_000_000),
        ])
    }

    #[test]
    fn a_held_trace_decodes_into_its_waterfall() {
        let mut held = HeldTraces::new(1 << 20);
        held.hold([4; 16], &[trace(4)]);
        let spans = held.spans(&[4; 16]).expect("held");
        assert_eq!(spans.len(), 2);
        let json = serde_json::to_value(&spans).unwrap();
        assert_eq!(json[0]["spanId"], "0101010101010101");
        assert_eq!(json[0]["parentSpanId"], serde_json::Value::Null);
        assert_eq!(json[0]["name"], "GET /buy");
        assert_eq!(json[0]["kind"], "SERVER");
        assert_eq!(json[0]["startUnixNano"], "1700000000000000000");
        assert_eq!(json[0]["durationSeconds"], 0.03);
        assert_eq!(json[0]["outcome"], "fault");
        assert_eq!(json[0]["httpStatus"], 503);
        assert_eq!(json[0]["attributes"]["http.route"], "/buy");
        assert_eq!(json[1]["parentSpanId"], "0101010101010101");
        assert_eq!(json[1]["kind"], "CLIENT");
        assert_eq!(json[1]["attributes"]["db.system"], "postgresql");
        assert_eq!(json[1]["attributes"]["db.rows"], 3);
        assert!(held.spans(&[5; 16]).is_none(), "never held");
    }

    #[test]
    fn the_oldest_traces_go_first_and_the_bound_holds() {
        // Room for two traces with their bookkeeping, not three.
        let size = trace(1).len() + BOOKKEEPING_PER_RECORD + BOOKKEEPING_PER_HOLD;
        let mut held = HeldTraces::new(size * 2);
        for t in 1..=3 {
            held.hold([t; 16], &[trace(t)]);
            assert!(held.bytes() <= size * 2);
        }
        assert!(held.spans(&[1; 16]).is_none(), "the oldest was let go");
        assert!(held.spans(&[2; 16]).is_some() && held.spans(&[3; 16]).is_some());
        held.hold([9; 16], &[Bytes::from(vec![0u8; size * 3])]);
        assert!(held.spans(&[9; 16]).is_none(), "larger than the bound: not held");
        assert!(held.spans(&[3; 16]).is_some(), "and nothing was let go for it");
    }
}
