//! The compact span model every pipeline stage shares.
//!
//! A [`Span`] holds the handful of fields the hot path needs (ids, kind, status, times, the interned
//! names that label metrics) plus the span exactly as it was encoded on the wire (`raw`), so that a
//! kept trace can be forwarded byte-compatible in its original encoding. Spans decoded from the same
//! resource and instrumentation scope share one [`Origin`].
//!
//! Invariants established by the decoders (and relied on everywhere else):
//! - `trace_id` and `span_id` are never all zero;
//! - `end_unix_nano >= start_unix_nano` and the duration is at most [`MAX_SPAN_DURATION_NANOS`];
//! - `parent_span_id` is `None` for root spans (an all-zero or empty parent id means no parent).

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use bytes::Bytes;

/// Maps on the hot path (trace ids, span ids, series keys, interned names): foldhash, seeded
/// per map, costs a fraction of SipHash. Every such map is bounded by configuration.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// A 128-bit W3C trace id.
pub type TraceId = [u8; 16];
/// A 64-bit span id.
pub type SpanId = [u8; 8];

/// Spans longer than this are rejected with `reason="invalid_time"` (24 h).
pub const MAX_SPAN_DURATION_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// The 32-hex-digit form of a trace id (the key of forwarded messages).
pub fn trace_id_hex(id: &TraceId) -> String {
    hex::encode(id)
}

/// OpenTelemetry span kind, with the numbering of the OTLP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// Maps the OTLP enum number; unknown numbers become `Unspecified`.
    pub fn from_otlp(value: i64) -> Self {
        match value {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }

    /// Maps the OTLP/JSON enum name (`SPAN_KIND_SERVER`), accepted alongside numbers.
    pub fn from_otlp_name(name: &str) -> Self {
        match name {
            "SPAN_KIND_INTERNAL" => Self::Internal,
            "SPAN_KIND_SERVER" => Self::Server,
            "SPAN_KIND_CLIENT" => Self::Client,
            "SPAN_KIND_PRODUCER" => Self::Producer,
            "SPAN_KIND_CONSUMER" => Self::Consumer,
            _ => Self::Unspecified,
        }
    }
}

/// OpenTelemetry span status code, with the numbering of the OTLP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_otlp(value: i64) -> Self {
        match value {
            1 => Self::Ok,
            2 => Self::Error,
            _ => Self::Unset,
        }
    }

    pub fn from_otlp_name(name: &str) -> Self {
        match name {
            "STATUS_CODE_OK" => Self::Ok,
            "STATUS_CODE_ERROR" => Self::Error,
            _ => Self::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "UNSET",
            Self::Ok => "OK",
            Self::Error => "ERROR",
        }
    }
}

/// A wire encoding tracewarden reads and writes (kafka.md, "Encodings"): a slot of the format
/// table in `format`, which gives each its constant (`Encoding::OTLP_PROTO`), name and behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encoding(pub(crate) u8);

/// The resource and instrumentation scope a group of spans was reported under.
///
/// `resource_header` and `scope_header` are the encoded members of the enclosing `ResourceSpans` and
/// `ScopeSpans` messages other than their span lists, exactly as received: protobuf fields for
/// `otlp_proto`, comma-separated JSON members for `otlp_json`. Forwarding writes them back
/// unchanged, which is how resource and scope data survive the round trip. For `zipkin_json`, whose
/// spans have no resource, the resource header encodes the span's identity (its local service name
/// and the environment tags standing in for resource attributes) and is never written.
/// Origins are shared by every span reported under the same headers, across messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub encoding: Encoding,
    /// `service.name` of the resource, or `unknown_service`.
    pub service: Arc<str>,
    /// `deployment.environment.name` (else `deployment.environment`) of the resource, or `default`.
    pub environment: Arc<str>,
    pub resource_header: Bytes,
    pub scope_header: Bytes,
    /// The encoded `Resource` message (protobuf) or object (JSON), for attribute look-ups.
    pub resource: Bytes,
}

/// The service of spans whose resource names none (OpenTelemetry's convention).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One validated span in the compact form the pipeline works on.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `"{method} {route}"` when both HTTP attributes are set, else the span name.
    pub operation: Arc<str>,
    /// HTTP status code (0 when absent).
    pub http_status: u16,
    /// gRPC status code (`None` when absent).
    pub grpc_status: Option<u8>,
    /// For CLIENT/PRODUCER spans: the remote service named by the span's own attributes
    /// (`peer.service`, `db.system`, …), before the trace is consulted.
    pub remote_service: Option<Arc<str>>,
    /// For CLIENT/PRODUCER spans: the remote operation named by the span's own attributes.
    pub remote_operation: Option<Arc<str>>,
    /// What the remote side is, by the attributes that describe the call (`db.system`,
    /// `messaging.system`, `rpc.system = "aws-api"`): the service map's node kind.
    pub remote_kind: RemoteKind,
    pub origin: Arc<Origin>,
    /// The span as it was encoded on the wire.
    pub raw: Bytes,
    /// What the span is for the metrics, worked out once ([`SpanFacts`]).
    pub facts: SpanFacts,
}

/// The per-span facts every consumer of spans shares — metrics, SLO counting, sampling — worked
/// out once: role and outcome by the decoder, the exclusion verdict by the span path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanFacts {
    pub role: Role,
    pub outcome: Outcome,
    /// The first `[[metrics.exclude]]` rule matching the span (its index), if any.
    pub excluded: Option<u16>,
}

impl SpanFacts {
    /// Role and outcome from the span's own fields; not excluded until judged.
    pub fn of(span: &Span) -> Self {
        let role = if span.is_entry() {
            Role::Entry
        } else if span.is_dependency() {
            Role::Dependency
        } else {
            Role::Internal
        };
        Self { role, outcome: Outcome::of(span), excluded: None }
    }
}

/// What a dependency call reaches, when it is not an instrumented service (investigation.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RemoteKind {
    Database,
    Queue,
    Aws,
    #[default]
    Remote,
}

impl RemoteKind {
    /// The `kind` of a service-map node.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Queue => "queue",
            Self::Aws => "aws",
            Self::Remote => "remote",
        }
    }
}

/// What a span stands for in the metrics (signals.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A request served: SERVER and CONSUMER spans, and root INTERNAL/UNSPECIFIED spans.
    Entry,
    /// A call out: CLIENT and PRODUCER spans.
    Dependency,
    /// Neither: not measured.
    Internal,
}

impl Span {
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// SERVER and CONSUMER spans, and root spans of kind INTERNAL/UNSPECIFIED (signals.md).
    pub fn is_entry(&self) -> bool {
        match self.kind {
            SpanKind::Server | SpanKind::Consumer => true,
            SpanKind::Internal | SpanKind::Unspecified => self.is_root(),
            SpanKind::Client | SpanKind::Producer => false,
        }
    }

    /// CLIENT and PRODUCER spans.
    pub fn is_dependency(&self) -> bool {
        matches!(self.kind, SpanKind::Client | SpanKind::Producer)
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano - self.start_unix_nano
    }

    pub fn service(&self) -> &Arc<str> {
        &self.origin.service
    }

    pub fn environment(&self) -> &Arc<str> {
        &self.origin.environment
    }
}

/// An exception a span recorded, as its wire format carries it (an OpenTelemetry `exception` span
/// event, Jaeger's `exception` log, X-Ray's `cause.exceptions`), read on demand from the span's
/// bytes ([`crate::format::Format::exception`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exception {
    /// `exception.type`: the class or kind (`java.lang.IllegalStateException`, `ValueError`).
    pub type_name: String,
    /// `exception.message`, as recorded.
    pub message: String,
    /// `exception.stacktrace`, as the language prints it (X-Ray's frames written one a line,
    /// `at label (path:line)`).
    pub stacktrace: String,
}

/// An attribute value looked up on demand.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes: present, but not comparable.
    Other,
}

impl AttrValue {
    /// The value as text, for string matching (numbers and booleans in their usual form).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(s.clone()),
            Self::Int(i) => Some(i.to_string()),
            Self::Double(d) => Some(d.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Other => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Double(d) => Some(*d),
            Self::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// Outcome of a request (signals.md, "Outcome of a request").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Error,
    /// An error that is also a throttle (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    Throttle,
    Fault,
}

impl Outcome {
    pub fn of(span: &Span) -> Self {
        if span.http_status != 0 {
            return match span.http_status {
                500..=599 => Self::Fault,
                429 => Self::Throttle,
                400..=499 => Self::Error,
                _ => Self::Ok,
            };
        }
        if let Some(code) = span.grpc_status {
            return match code {
                2 | 4 | 12 | 13 | 14 | 15 => Self::Fault,
                8 => Self::Throttle,
                3 | 5 | 6 | 7 | 9 | 10 | 11 | 16 => Self::Error,
                _ => Self::Ok,
            };
        }
        if span.status == StatusCode::Error {
            Self::Fault
        } else {
            Self::Ok
        }
    }

    /// The API name of an outcome (investigation.md): `ok` | `error` | `throttle` | `fault`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Throttle => "throttle",
            Self::Fault => "fault",
        }
    }

    /// The outcome an API name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Ok, Self::Error, Self::Throttle, Self::Fault].into_iter().find(|o| o.as_str() == name)
    }

    /// How bad it is, for "the worst outcome": ok < error < throttle < fault.
    pub fn severity(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
            Self::Throttle => 2,
            Self::Fault => 3,
        }
    }

    pub fn is_fault(self) -> bool {
        self == Self::Fault
    }

    /// Errors include throttles.
    pub fn is_error(self) -> bool {
        matches!(self, Self::Error | Self::Throttle)
    }

    pub fn is_throttle(self) -> bool {
        self == Self::Throttle
    }
}
