//! Test helpers: spans built as OTLP protobuf with the `opentelemetry-proto` types and decoded by
//! the real decoder, so tests exercise the same path as production input.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan, Status, TracesData};
use prost::Message;

use crate::format::{Decoder, Encoding, InputEncoding};
use crate::model::Span;

/// One span to build.
#[derive(Clone)]
pub struct SpanSpec {
    pub service: &'static str,
    pub trace: u8,
    pub id: u8,
    pub parent: Option<u8>,
    pub kind: i32,
    pub name: &'static str,
    pub duration_micros: u64,
    pub attributes: Vec<(&'static str, AttrSpec)>,
    pub error_status: bool,
    /// Start, Unix nanoseconds.
    pub start: u64,
    /// The W3C `tracestate` the span arrives with.
    pub trace_state: &'static str,
    /// Resource attributes besides `service.name` (a pod, a version).
    pub resource: Vec<(&'static str, &'static str)>,
    /// An `exception` event: `exception.type` and `exception.message`.
    pub exception: Option<(&'static str, &'static str)>,
}

#[derive(Clone)]
pub enum AttrSpec {
    Str(&'static str),
    Int(i64),
}

pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;
pub const INTERNAL: i32 = 1;
pub const PRODUCER: i32 = 4;
pub const CONSUMER: i32 = 5;

impl SpanSpec {
    pub fn new(service: &'static str, trace: u8, id: u8, parent: Option<u8>, kind: i32, name: &'static str) -> Self {
        Self {
            service,
            trace,
            id,
            parent,
            kind,
            name,
            duration_micros: 1000,
            attributes: Vec::new(),
            error_status: false,
            start: 1_700_000_000_000_000_000,
            trace_state: "",
            resource: Vec::new(),
            exception: None,
        }
    }

    /// Adds a resource attribute: spans of one service with different resources are reported
    /// under separate `ResourceSpans`.
    pub fn resource(mut self, key: &'static str, value: &'static str) -> Self {
        self.resource.push((key, value));
        self
    }

    pub fn attr(mut self, key: &'static str, value: AttrSpec) -> Self {
        self.attributes.push((key, value));
        self
    }

    pub fn http(self, method: &'static str, route: &'static str, status: i64) -> Self {
        self.attr("http.request.method", AttrSpec::Str(method))
            .attr("http.route", AttrSpec::Str(route))
            .attr("http.response.status_code", AttrSpec::Int(status))
    }

    pub fn micros(mut self, d: u64) -> Self {
        self.duration_micros = d;
        self
    }

    pub fn starting(mut self, unix_nano: u64) -> Self {
        self.start = unix_nano;
        self
    }

    /// Records an exception event (as an SDK's `record_exception` does) of `type_name` and
    /// `message`.
    pub fn threw(mut self, type_name: &'static str, message: &'static str) -> Self {
        self.exception = Some((type_name, message));
        self
    }

    pub fn error(mut self) -> Self {
        self.error_status = true;
        self
    }

    pub fn trace_state(mut self, state: &'static str) -> Self {
        self.trace_state = state;
        self
    }

    fn proto(&self) -> ProtoSpan {
        let start = self.start;
        ProtoSpan {
            trace_id: vec![self.trace; 16],
            span_id: vec![self.id; 8],
            parent_span_id: self.parent.map(|p| vec![p; 8]).unwrap_or_default(),
            trace_state: self.trace_state.into(),
            name: self.name.into(),
            kind: self.kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + self.duration_micros * 1000,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: Some(AnyValue {
                        value: Some(match v {
                            AttrSpec::Str(s) => any_value::Value::StringValue(s.to_string()),
                            AttrSpec::Int(i) => any_value::Value::IntValue(*i),
                        }),
                    }),
                    ..Default::default()
                })
                .collect(),
            status: Some(Status { code: if self.error_status { 2 } else { 0 }, message: String::new() }),
            events: self
                .exception
                .iter()
                .map(|(type_name, message)| Event {
                    time_unix_nano: start,
                    name: "exception".into(),
                    attributes: [("exception.type", type_name), ("exception.message", message)]
                        .map(|(key, value)| KeyValue {
                            key: key.into(),
                            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
                            ..Default::default()
                        })
                        .to_vec(),
                    dropped_attributes_count: 0,
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Encodes specs as one `TracesData`, one `ResourceSpans` per service and resource (in
/// first-seen order).
pub fn encode(specs: &[SpanSpec]) -> Bytes {
    type ResourceKey<'a> = (&'a str, &'a [(&'static str, &'static str)]);
    let mut resources: Vec<ResourceKey<'_>> = Vec::new();
    for s in specs {
        if !resources.contains(&(s.service, &s.resource[..])) {
            resources.push((s.service, &s.resource));
        }
    }
    let string = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    };
    let data = TracesData {
        resource_spans: resources
            .iter()
            .map(|&(service, resource)| ResourceSpans {
                resource: Some(Resource {
                    attributes: std::iter::once(string("service.name", service))
                        .chain(resource.iter().map(|(k, v)| string(k, v)))
                        .collect(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: specs
                        .iter()
                        .filter(|s| s.service == service && s.resource == resource)
                        .map(SpanSpec::proto)
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    };
    Bytes::from(data.encode_to_vec())
}

/// The `[[alerts]]` tables (under `table`, such as `alerts` or `slo.alerts`) of an SLO at the
/// configuration's bounds: eight tiers, long windows from 12 minutes to 7 days.
pub fn tiers_at_the_bounds(table: &str) -> String {
    ["7d", "6d", "5d", "3d", "1d", "6h", "1h", "12m"]
        .iter()
        .enumerate()
        .map(|(i, long)| {
            format!("[[{table}]]\ntier = \"tier-{i}-with-a-long-name\"\nlong = \"{long}\"\nshare = 0.05\nseverity = \"page\"\n")
        })
        .collect()
}

/// An availability SLO over [`shop_requests`]: 99.9 % over 30 days, default tiers (thresholds
/// 14.4, 6 and 1).
pub const SHOP_AVAILABILITY_SLO: &str = r#"
[[slo]]
name = "buy-availability"
service = "shop"
operation = "GET /buy"
sli = "availability"
goal = 0.999
window = "30d"
"#;

/// Input messages (key, OTLP protobuf) of `count` requests to shop `GET /buy` ending at
/// `end_unix_nano`: one trace per message (ids from `first_trace`, wrapping over 1..=255; an
/// all-zero id is invalid), 50 entry spans each. The first `faults` answer 503; with `slow`,
/// every tenth request takes 250 ms, the others 5 ms.
pub fn shop_requests(
    end_unix_nano: u64,
    first_trace: u8,
    count: usize,
    faults: usize,
    slow: bool,
) -> Vec<(String, Bytes)> {
    (0..count)
        .collect::<Vec<_>>()
        .chunks(50)
        .enumerate()
        .map(|(m, chunk)| {
            let trace = 1 + ((first_trace.max(1) as usize - 1 + m) % 255) as u8;
            let specs: Vec<SpanSpec> = chunk
                .iter()
                .map(|&i| {
                    let status = if i < faults { 503 } else { 200 };
                    let micros = if slow && i % 10 == 0 { 250_000 } else { 5_000 };
                    SpanSpec::new("shop", trace, (i % 50) as u8 + 1, None, SERVER, "GET /buy")
                        .http("GET", "/buy", status)
                        .micros(micros)
                        .starting(end_unix_nano - micros * 1000)
                })
                .collect();
            (format!("{trace:032x}"), encode(&specs))
        })
        .collect()
}

/// Builds and decodes spans.
pub fn spans(specs: &[SpanSpec]) -> Vec<Span> {
    let mut out = Vec::new();
    Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)).decode(&encode(specs), &mut out).expect("valid protobuf");
    assert_eq!(out.len(), specs.len(), "every test span is valid");
    out
}

/// The property the fuzz targets check (and the unit tests run on a corpus): decoding never
/// panics; what decodes re-encodes, as a kept trace is forwarded, into a payload that decodes to
/// the same spans.
pub fn fuzz_decode(input: InputEncoding, data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let mut spans = Vec::new();
    if Decoder::new(input).decode(&payload, &mut spans).is_err() {
        assert!(spans.is_empty(), "a failed decode appends nothing");
        return;
    }
    if spans.is_empty() {
        return;
    }
    let decision = crate::decision::Decision::keep(std::sync::Arc::from("fuzz"), 1.0);
    let mut again = Vec::new();
    for part in crate::format::encode_trace(&spans, &decision, usize::MAX) {
        Decoder::new(part.encoding.into()).decode(&part.payload, &mut again).expect("re-encoded spans decode");
    }
    // Re-encoding groups spans by resource and scope, so compare them as sorted lists.
    let key = |s: &Span| {
        (s.trace_id, s.span_id, s.parent_span_id, s.kind as u8, s.status as u8, s.start_unix_nano, s.end_unix_nano)
            .to_owned()
    };
    let describe =
        |s: &Span| (key(s), s.operation.to_string(), s.http_status, s.grpc_status, s.origin.service.to_string());
    let mut before: Vec<_> = spans.iter().map(describe).collect();
    let mut after: Vec<_> = again.iter().map(describe).collect();
    before.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    after.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    assert_eq!(before, after, "every span survives re-encoding");
}

/// The span ids of a forwarded OTLP message, in order.
pub fn span_ids(data: &TracesData) -> Vec<Vec<u8>> {
    data.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).map(|s| s.span_id.clone()).collect()
}
