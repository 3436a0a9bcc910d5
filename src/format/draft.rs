//! The encoding-independent half of decoding: a [`SpanDraft`] filled by a wire-format front end is
//! validated and turned into a [`Span`] here, so every encoding shares one set of rules
//! (signals.md "Identity of a span", "Outcome of a request", "Dependency spans").

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;

use super::{DecodeStats, SpanReject};
use crate::model::{
    Encoding, FastMap, FastSet, Origin, Outcome, RemoteKind, Role, Span, SpanFacts, SpanId, SpanKind, StatusCode,
    TraceId, MAX_SPAN_DURATION_NANOS,
};

/// A span as read off the wire, borrowing its strings from the payload.
pub(crate) struct SpanDraft<'a> {
    /// `None` when missing, of the wrong length or all zero.
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    /// `Ok(None)`: no parent; `Err(())`: a parent id of the wrong length.
    pub parent_span_id: Result<Option<SpanId>, ()>,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub name: &'a str,
    pub attrs: HotAttributes<'a>,
    /// An outcome the encoding states outright (X-Ray's fault/error/throttle flags without a
    /// status); `None`: worked out from status codes (signals.md).
    pub outcome: Option<Outcome>,
}

impl Default for SpanDraft<'_> {
    fn default() -> Self {
        Self {
            trace_id: None,
            span_id: None,
            parent_span_id: Ok(None),
            kind: SpanKind::Unspecified,
            status: StatusCode::Unset,
            start_unix_nano: 0,
            end_unix_nano: 0,
            name: "",
            attrs: HotAttributes::default(),
            outcome: None,
        }
    }
}

/// The attributes the hot path needs, by their semantic-convention names.
#[derive(Default)]
pub(crate) struct HotAttributes<'a> {
    http_method: Option<&'a str>,
    http_method_legacy: Option<&'a str>,
    http_route: Option<&'a str>,
    url_template: Option<&'a str>,
    http_status: Option<i64>,
    http_status_legacy: Option<i64>,
    grpc_status: Option<i64>,
    peer_service: Option<&'a str>,
    db_system: Option<&'a str>,
    messaging_system: Option<&'a str>,
    rpc_service: Option<&'a str>,
    rpc_system: Option<&'a str>,
    server_address: Option<&'a str>,
    net_peer_name: Option<&'a str>,
    db_operation: Option<&'a str>,
    db_operation_legacy: Option<&'a str>,
    messaging_operation: Option<&'a str>,
    messaging_destination: Option<&'a str>,
    rpc_method: Option<&'a str>,
}

/// A borrowed attribute value as a front end sees it.
#[derive(Clone, Copy)]
pub(crate) enum AttrRef<'a> {
    Str(&'a str),
    Int(i64),
    Other,
}

impl<'a> AttrRef<'a> {
    fn int(self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(i),
            Self::Str(s) => s.trim().parse().ok(),
            Self::Other => None,
        }
    }

    fn str(self) -> Option<&'a str> {
        match self {
            Self::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

impl<'a> HotAttributes<'a> {
    /// Records one attribute if the hot path needs it; every other key is ignored.
    pub(crate) fn observe(&mut self, key: &str, value: AttrRef<'a>) {
        match key {
            "http.request.method" => self.http_method = value.str(),
            "http.method" => self.http_method_legacy = value.str(),
            "http.route" => self.http_route = value.str(),
            "url.template" => self.url_template = value.str(),
            "http.response.status_code" => self.http_status = value.int(),
            "http.status_code" => self.http_status_legacy = value.int(),
            "rpc.grpc.status_code" => self.grpc_status = value.int(),
            "peer.service" => self.peer_service = value.str(),
            "db.system" | "db.system.name" => self.db_system = self.db_system.or(value.str()),
            "messaging.system" => self.messaging_system = value.str(),
            "rpc.service" => self.rpc_service = value.str(),
            "rpc.system" => self.rpc_system = value.str(),
            "server.address" => self.server_address = value.str(),
            "net.peer.name" => self.net_peer_name = value.str(),
            "db.operation.name" => self.db_operation = value.str(),
            "db.operation" => self.db_operation_legacy = value.str(),
            "messaging.operation" | "messaging.operation.name" => {
                self.messaging_operation = self.messaging_operation.or(value.str())
            }
            "messaging.destination.name" => self.messaging_destination = value.str(),
            "rpc.method" => self.rpc_method = value.str(),
            _ => {}
        }
    }

    fn method(&self) -> Option<&'a str> {
        self.http_method.or(self.http_method_legacy)
    }
}

/// Whether an attribute key is one [`HotAttributes::observe`] keeps (lets front ends skip values).
pub(crate) fn is_hot_key(key: &str) -> bool {
    matches!(
        key,
        "http.request.method"
            | "http.method"
            | "http.route"
            | "url.template"
            | "http.response.status_code"
            | "http.status_code"
            | "rpc.grpc.status_code"
            | "peer.service"
            | "db.system"
            | "db.system.name"
            | "messaging.system"
            | "rpc.service"
            | "server.address"
            | "net.peer.name"
            | "db.operation.name"
            | "db.operation"
            | "messaging.operation"
            | "messaging.operation.name"
            | "messaging.destination.name"
            | "rpc.method"
    )
}

/// What names a resource: its service and environment attributes, as a front end finds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResourceIdentity {
    /// `service.name`.
    pub service: Option<String>,
    /// `deployment.environment.name`.
    pub environment: Option<String>,
    /// `deployment.environment`, the older name, read when the current one is absent.
    pub environment_legacy: Option<String>,
}

impl ResourceIdentity {
    /// Keeps `value` when `key` is one of the identity's attributes.
    pub(crate) fn observe(&mut self, key: &str, value: AttrRef<'_>) {
        if let Some(slot) = self.slot(key) {
            *slot = value.str().map(String::from);
        }
    }

    /// The field an attribute fills, if any.
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "service.name" => Some(&mut self.service),
            "deployment.environment.name" => Some(&mut self.environment),
            "deployment.environment" => Some(&mut self.environment_legacy),
            _ => None,
        }
    }

    /// The fields in one fixed order, for a front end that writes them into a header and reads
    /// them back (Zipkin).
    pub(crate) fn fields_mut(&mut self) -> [&mut Option<String>; 3] {
        [&mut self.service, &mut self.environment, &mut self.environment_legacy]
    }
}

/// What the front ends build spans with, kept across messages: the interned names, the shared
/// origins, the validation of drafts into spans, and reused header buffers.
pub struct SpanBuilder {
    interner: Interner,
    origins: OriginCache,
    /// Spans ending after this (Unix ns) are rejected: arrival time plus the allowed clock skew.
    pub(crate) latest_end: u64,
    /// Reused buffers for the headers of the message being decoded.
    pub(crate) resource_scratch: Vec<u8>,
    pub(crate) scope_scratch: Vec<u8>,
}

/// Origins by a hash of their encoding and headers. Resources repeat in message after message;
/// sharing one `Origin` means a message allocates nothing for them and does not pin its payload
/// through them. Bounded: past [`MAX_ORIGINS`] it starts over (handed-out `Arc`s stay valid).
struct OriginCache {
    origins: FastMap<u64, Arc<Origin>>,
    /// foldhash: a hit is checked byte for byte, so the hash only has to spread well.
    hasher: foldhash::fast::RandomState,
    unknown_service: Arc<str>,
    default_environment: Arc<str>,
}

/// How a front end reads the identity of a resource from its (owned) header, on a cache miss:
/// returns the encoded resource (a slice of the header) and what names it.
pub(crate) type Identify = fn(&Bytes) -> (Bytes, ResourceIdentity);

const MAX_ORIGINS: usize = 10_000;

/// Spans starting before 2000-01-01 are rejected (`invalid_time`): unset or corrupt timestamps.
pub(crate) const EARLIEST_START: u64 = 946_684_800 * 1_000_000_000;

impl SpanBuilder {
    pub(crate) fn new() -> Self {
        Self {
            interner: Interner::new(),
            origins: OriginCache::new(),
            latest_end: u64::MAX,
            resource_scratch: Vec::new(),
            scope_scratch: Vec::new(),
        }
    }

    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        self.interner.intern(s)
    }

    fn intern_pair(&mut self, a: &str, b: &str) -> Arc<str> {
        self.interner.intern_pair(a, ' ', b)
    }

    /// The shared origin of spans reported under these headers.
    pub(crate) fn origin(
        &mut self,
        encoding: Encoding,
        resource_header: &[u8],
        scope_header: &[u8],
        identify: Identify,
    ) -> Arc<Origin> {
        self.origins.get(&mut self.interner, encoding, resource_header, scope_header, identify)
    }

    /// Validates a draft and appends the span, or counts why it was rejected.
    pub(crate) fn finish(
        &mut self,
        draft: SpanDraft<'_>,
        origin: &Arc<Origin>,
        raw: Bytes,
        out: &mut Vec<Span>,
        stats: &mut DecodeStats,
    ) {
        match self.build(draft, origin, raw) {
            Ok(span) => out.push(span),
            Err(why) => stats.reject(why),
        }
    }

    fn build(&mut self, draft: SpanDraft<'_>, origin: &Arc<Origin>, raw: Bytes) -> Result<Span, SpanReject> {
        let (Some(trace_id), Some(span_id), Ok(parent_span_id)) = (draft.trace_id, draft.span_id, draft.parent_span_id)
        else {
            return Err(SpanReject::InvalidId);
        };
        if draft.start_unix_nano < EARLIEST_START
            || draft.end_unix_nano > self.latest_end
            || draft.end_unix_nano < draft.start_unix_nano
            || draft.end_unix_nano - draft.start_unix_nano > MAX_SPAN_DURATION_NANOS
        {
            return Err(SpanReject::InvalidTime);
        }
        let attrs = &draft.attrs;
        let method = attrs.method();
        let operation = match (method, attrs.http_route) {
            (Some(m), Some(r)) => self.intern_pair(m, r),
            _ => self.intern(draft.name),
        };
        let http_status =
            attrs.http_status.or(attrs.http_status_legacy).and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
        let grpc_status = attrs.grpc_status.and_then(|s| u8::try_from(s).ok());
        let (remote_service, remote_operation) = if matches!(draft.kind, SpanKind::Client | SpanKind::Producer) {
            let service = attrs
                .peer_service
                .or(attrs.db_system)
                .or(attrs.messaging_system)
                .or(attrs.rpc_service)
                .or(attrs.server_address)
                .or(attrs.net_peer_name)
                .map(|s| self.intern(s));
            let operation = if let Some(op) = attrs.db_operation.or(attrs.db_operation_legacy) {
                self.intern(op)
            } else if let (Some(op), Some(dest)) = (attrs.messaging_operation, attrs.messaging_destination) {
                self.intern_pair(op, dest)
            } else if let Some(m) = attrs.rpc_method {
                self.intern(m)
            } else if let (Some(m), Some(t)) = (method, attrs.url_template.or(attrs.http_route)) {
                self.intern_pair(m, t)
            } else {
                self.intern(draft.name)
            };
            (service, Some(operation))
        } else {
            (None, None)
        };
        let mut span = Span {
            trace_id,
            span_id,
            parent_span_id,
            kind: draft.kind,
            status: draft.status,
            start_unix_nano: draft.start_unix_nano,
            end_unix_nano: draft.end_unix_nano,
            operation,
            http_status,
            grpc_status,
            remote_service,
            remote_operation,
            remote_kind: if attrs.db_system.is_some() {
                RemoteKind::Database
            } else if attrs.messaging_system.is_some() {
                RemoteKind::Queue
            } else if attrs.rpc_system == Some("aws-api") {
                RemoteKind::Aws
            } else {
                RemoteKind::Remote
            },
            origin: origin.clone(),
            raw,
            facts: SpanFacts { role: Role::Internal, outcome: Outcome::Ok, excluded: None },
        };
        span.facts = SpanFacts::of(&span);
        if let Some(outcome) = draft.outcome {
            span.facts.outcome = outcome;
        }
        Ok(span)
    }
}

impl OriginCache {
    fn new() -> Self {
        Self {
            origins: FastMap::default(),
            hasher: foldhash::fast::RandomState::default(),
            unknown_service: Arc::from(crate::model::UNKNOWN_SERVICE),
            default_environment: Arc::from("default"),
        }
    }

    /// The origin of these headers: the cached one, or a new one named by `identify`.
    fn get(
        &mut self,
        interner: &mut Interner,
        encoding: Encoding,
        resource_header: &[u8],
        scope_header: &[u8],
        identify: Identify,
    ) -> Arc<Origin> {
        let key = self.hasher.hash_one((encoding, resource_header, scope_header));
        if let Some(origin) = self.origins.get(&key) {
            if origin.resource_header == resource_header
                && origin.scope_header == scope_header
                && origin.encoding == encoding
            {
                return origin.clone();
            }
        }
        let resource_header = Bytes::copy_from_slice(resource_header);
        let (resource, ResourceIdentity { service, environment, environment_legacy }) = identify(&resource_header);
        let service = match service.filter(|s| !s.is_empty()) {
            Some(s) => interner.intern(&s),
            None => self.unknown_service.clone(),
        };
        let environment = match environment.filter(|e| !e.is_empty()).or(environment_legacy.filter(|e| !e.is_empty())) {
            Some(e) => interner.intern(&e),
            None => self.default_environment.clone(),
        };
        let origin = Arc::new(Origin {
            encoding,
            service,
            environment,
            resource_header,
            scope_header: Bytes::copy_from_slice(scope_header),
            resource,
        });
        if self.origins.len() >= MAX_ORIGINS {
            self.origins.clear();
        }
        self.origins.insert(key, origin.clone());
        origin
    }
}

/// Interned names: service, operation and remote names repeat endlessly, so each distinct string
/// is allocated once. Bounded: past `MAX_INTERNED` distinct strings the table starts over (handed-out
/// `Arc`s stay valid), so a high-cardinality attribute cannot grow it without limit.
pub(crate) struct Interner {
    strings: FastSet<Arc<str>>,
    /// Where a pair is joined before it is looked up.
    scratch: String,
}

const MAX_INTERNED: usize = 200_000;

impl Interner {
    pub(crate) fn new() -> Self {
        Self { strings: FastSet::default(), scratch: String::new() }
    }

    /// `a`, `separator` and `b` joined (`GET /owners/{id}`), interned (no allocation once seen).
    pub(crate) fn intern_pair(&mut self, a: &str, separator: char, b: &str) -> Arc<str> {
        let mut joined = std::mem::take(&mut self.scratch);
        joined.clear();
        joined.push_str(a);
        joined.push(separator);
        joined.push_str(b);
        let interned = self.intern(&joined);
        self.scratch = joined;
        interned
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
