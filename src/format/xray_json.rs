//! X-Ray front end (`xray_json`): one segment document per message, optionally preceded by the
//! daemon header line `{"format":"json","version":1}`, or a JSON array of documents (what
//! tracewarden forwards: X-Ray's `PutTraceSegments` shape). Mapping (ingest.md "X-Ray segment
//! documents"):
//! - trace id `1-5759e988-bd862e3fe1be46a994272793` ↔ the 16 bytes of its 8 + 24 hex digits;
//! - a segment is an entry (SERVER) span of service `name`, its `parent_id` (the caller's
//!   subsegment) its parent; an embedded subsegment is a child of the document that holds it, of
//!   the same service; a subsegment with `namespace` `remote` or `aws` is a dependency (CLIENT)
//!   span — `remote_service` its `name`, `remote_operation` its `aws.operation`, else its SQL
//!   statement verb, else `"{method} {path}"` of its HTTP request — other subsegments INTERNAL;
//! - outcome from `http.response.status` when present, else from the flags: `fault` → fault,
//!   `throttle` → error and throttle, `error` → error;
//! - a segment's operation is `"{method} {route}"`, the route being the annotation `http_route`,
//!   the metadata key `http.route` in any namespace, else the URL path with ids templated
//!   (`{id}`); without `http`, its `name`;
//! - environment: the metadata key `deployment.environment.name` in any namespace;
//! - `in_progress` documents are skipped: the complete document with the same id replaces them,
//!   and an unfinished request never counts;
//! - a subsegment sent alone (`type = "subsegment"`) names no service: it takes its segment's
//!   resource (service, environment, placement), found through its trace once the trace is
//!   released ([`adopt_segment_resources`]) — the segment may arrive after it; one whose segment
//!   never arrives counts under `unknown_service`;
//! - `origin`, `aws` and `service.version` become resource attributes (`cloud.*`, `host.*`,
//!   `k8s.*`, `container.id`); annotations, metadata (by key, in any namespace), `http`, `sql` and
//!   `aws` call details become span attributes.
//!
//! A document's span keeps the document's own bytes (embedded subsegments included) and is
//! forwarded whole; an embedded subsegment's span keeps its own object for attribute look-ups and
//! is marked [`EMBEDDED`] so that it is not forwarded a second time.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::draft::parse_hex_id;
use super::draft::{AttrRef, ResourceIdentity, SpanBuilder, SpanDraft};
use super::encoder::with_object_members;
use super::SpanReject;
use super::{DecodeStats, Format, Malformed, QueueScratch};
use crate::decision::Decision;
use crate::model::{
    AttrValue, Encoding, Exception, FastMap, Origin, Outcome, Span, SpanId, SpanKind, StatusCode, TraceId,
    UNKNOWN_SERVICE,
};
use serde_json::json;

/// The scope header of a span that travels inside its segment's document.
pub(crate) const EMBEDDED: &[u8] = b"embedded";

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parent_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    document_type: Option<Cow<'a, str>>,
    #[serde(default)]
    start_time: Option<f64>,
    #[serde(default)]
    end_time: Option<f64>,
    #[serde(default)]
    in_progress: bool,
    #[serde(default)]
    fault: bool,
    #[serde(default)]
    error: bool,
    #[serde(default)]
    throttle: bool,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    http: Option<Http<'a>>,
    #[serde(default)]
    aws: Option<Map<String, Value>>,
    #[serde(default)]
    sql: Option<Map<String, Value>>,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    origin: Option<Cow<'a, str>>,
    #[serde(default)]
    service: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    subsegments: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Http<'a> {
    #[serde(borrow, default)]
    request: Option<HttpRequest<'a>>,
    #[serde(default)]
    response: Option<HttpResponse>,
}

#[derive(Deserialize, Default)]
struct HttpRequest<'a> {
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct HttpResponse {
    #[serde(default)]
    status: Option<i64>,
}

/// The X-Ray daemon's header line, when a message starts with one.
fn without_header(payload: &[u8]) -> &[u8] {
    let Some(newline) = payload.iter().position(|&b| b == b'\n') else { return payload };
    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        format: Cow<'a, str>,
    }
    match serde_json::from_slice::<Header<'_>>(&payload[..newline]) {
        Ok(header) if header.format == "json" => &payload[newline + 1..],
        _ => payload,
    }
}

/// `1-5759e988-bd862e3fe1be46a994272793` → its 16 bytes.
pub(crate) fn trace_id(text: &str) -> Option<TraceId> {
    let mut parts = text.split('-');
    let (Some("1"), Some(epoch), Some(unique), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if epoch.len() != 8 || unique.len() != 24 {
        return None;
    }
    let mut hex_id = [0u8; 32];
    hex_id[..8].copy_from_slice(epoch.as_bytes());
    hex_id[8..].copy_from_slice(unique.as_bytes());
    parse_hex_id(std::str::from_utf8(&hex_id).ok()?)
}

/// Epoch seconds with a fraction → Unix nanoseconds, to the microsecond X-Ray SDKs record.
fn nanos(seconds: Option<f64>) -> u64 {
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 && s < 1e11 => (s * 1e6).round() as u64 * 1000,
        _ => 0,
    }
}

/// Whether a URL path segment stands for an id: all digits, a UUID, or 16+ hex digits.
fn is_id(segment: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let is_uuid =
        segment.len() == 36 && segment.split('-').map(str::len).eq([8, 4, 4, 4, 12]) && segment.split('-').all(hex);
    (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()))
        || is_uuid
        || (segment.len() >= 16 && hex(segment))
}

/// The queue an AWS SDK call publishes to, as OpenTelemetry's AWS conventions name it: SQS
/// `SendMessage`/`SendMessageBatch` to the queue of `aws.queue_url` (`aws_sqs`, the URL's last
/// segment), SNS `Publish`/`PublishBatch` to the topic of `aws.topic_arn` (`aws_sns`, the ARN's
/// last part).
fn aws_publish<'a>(
    operation: &str,
    aws: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> Option<(&'static str, &'a str)> {
    let field = |name: &str| aws?.get(name)?.as_str();
    let last = |text: &'a str, separator: char| {
        text.trim_end_matches(separator).rsplit(separator).next().filter(|s| !s.is_empty())
    };
    match operation {
        "SendMessage" | "SendMessageBatch" => Some(("aws_sqs", last(field("queue_url")?, '/')?)),
        "Publish" | "PublishBatch" => Some(("aws_sns", last(field("topic_arn")?, ':')?)),
        _ => None,
    }
}

/// The path of a URL (scheme, host and query string removed), ids replaced by `{id}`.
pub(crate) fn templated_path(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        without_scheme.find('/').map_or("/", |at| &without_scheme[at..])
    } else {
        without_scheme
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').map(|s| if is_id(s) { "{id}" } else { s }).collect();
    let joined = segments.join("/");
    if joined.is_empty() {
        "/".into()
    } else {
        joined
    }
}

/// A string value in a metadata namespace (any namespace), by key.
fn metadata_text<'m>(metadata: Option<&'m Map<String, Value>>, key: &str) -> Option<&'m str> {
    metadata?.values().find_map(|namespace| namespace.get(key)?.as_str())
}

/// The statement verb of a sanitized SQL query, when it is a known one.
fn sql_verb(sql: &Map<String, Value>) -> Option<String> {
    let query = sql.get("sanitized_query")?.as_str()?;
    let verb = query.split_whitespace().next()?.to_ascii_uppercase();
    const VERBS: [&str; 12] =
        ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "WITH", "CALL", "BEGIN", "COMMIT"];
    VERBS.contains(&verb.as_str()).then_some(verb)
}

/// The resource attributes of a segment (ingest.md): its service, environment, origin and AWS
/// placement, as a JSON object of strings (the origin header and the resource).
fn resource_of(doc: &Document<'_>, is_segment: bool, environment: Option<&str>) -> Vec<u8> {
    let mut resource = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            resource.insert(key.into(), Value::String(value.into()));
        }
    };
    // A subsegment sent alone names its call, not its service (that is its segment's).
    put("service.name", Some(&*doc.name).filter(|_| is_segment));
    put("deployment.environment.name", environment);
    put("service.version", doc.service.as_ref().and_then(|s| s.get("version")?.as_str()));
    if let Some(origin) = doc.origin.as_deref() {
        put("cloud.provider", Some("aws"));
        put("aws.xray.origin", Some(origin));
        let platform = match origin {
            "AWS::EC2::Instance" => Some("aws_ec2"),
            "AWS::ECS::Container" => Some("aws_ecs"),
            "AWS::EKS::Container" => Some("aws_eks"),
            "AWS::ElasticBeanstalk::Environment" => Some("aws_elastic_beanstalk"),
            "AWS::Lambda::Function" => Some("aws_lambda"),
            _ => None,
        };
        put("cloud.platform", platform);
    }
    if let Some(aws) = &doc.aws {
        let text = |path: &[&str]| {
            let mut value = aws.get(path[0])?;
            for key in &path[1..] {
                value = value.get(key)?;
            }
            value.as_str()
        };
        put("cloud.account.id", text(&["account_id"]));
        put("host.id", text(&["ec2", "instance_id"]));
        put("cloud.availability_zone", text(&["ec2", "availability_zone"]));
        put("host.type", text(&["ec2", "instance_size"]));
        put("k8s.cluster.name", text(&["eks", "cluster_name"]));
        put("k8s.pod.name", text(&["eks", "pod"]));
        put("container.id", text(&["eks", "container_id"]).or(text(&["ecs", "container_id"])));
        put("container.name", text(&["ecs", "container"]));
        put("telemetry.sdk.name", text(&["xray", "sdk"]));
        put("telemetry.sdk.version", text(&["xray", "sdk_version"]));
    }
    serde_json::to_vec(&resource).expect("serialisable")
}

/// [`super::draft::Identify`] for X-Ray: the header is the resource object itself.
fn identify(header: &Bytes) -> (Bytes, ResourceIdentity) {
    let resource: Map<String, Value> = serde_json::from_slice(header).unwrap_or_default();
    let text = |key: &str| resource.get(key).and_then(Value::as_str).map(String::from);
    let identity = ResourceIdentity {
        service: text("service.name"),
        environment: text("deployment.environment.name"),
        environment_legacy: None,
    };
    (header.clone(), identity)
}

/// How many parents are followed from a subsegment sent alone to its segment at most (a cycle of
/// parent ids ends there too).
const MAX_SUBSEGMENT_DEPTH: usize = 64;

/// Subsegments sent alone (and the subsegments they embed) take the resource of their segment,
/// the nearest ancestor in `spans` (one trace) that names a service. Whether any did: their
/// exclusion verdicts are then out of date.
pub fn adopt_segment_resources(spans: &mut [Span]) -> bool {
    let orphan = |span: &Span| span.origin.encoding == Encoding::XRAY_JSON && &*span.origin.service == UNKNOWN_SERVICE;
    if !spans.iter().any(orphan) {
        return false;
    }
    let index: FastMap<SpanId, usize> = spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
    // The embedded variant of each segment resource adopted, made once per trace.
    let mut embedded_origins: Vec<(Arc<Origin>, Arc<Origin>)> = Vec::new();
    let mut adopted = false;
    for i in 0..spans.len() {
        if !orphan(&spans[i]) {
            continue;
        }
        let mut segment = None;
        let mut at = i;
        for _ in 0..MAX_SUBSEGMENT_DEPTH {
            let Some(&parent) = spans[at].parent_span_id.as_ref().and_then(|parent| index.get(parent)) else {
                break;
            };
            if !orphan(&spans[parent]) {
                segment = Some(parent);
                break;
            }
            at = parent;
        }
        let Some(segment) = segment else { continue };
        let origin = spans[segment].origin.clone();
        spans[i].origin = if spans[i].origin.scope_header == EMBEDDED {
            match embedded_origins.iter().find(|(of, _)| Arc::ptr_eq(of, &origin)) {
                Some((_, embedded)) => embedded.clone(),
                None => {
                    let embedded =
                        Arc::new(Origin { scope_header: Bytes::from_static(EMBEDDED), ..origin.as_ref().clone() });
                    embedded_origins.push((origin, embedded.clone()));
                    embedded
                }
            }
        } else {
            origin
        };
        adopted = true;
    }
    adopted
}

/// What a document's span is.
struct Place<'p> {
    trace_id: Option<TraceId>,
    /// The parent span: the holding document's id, or the document's own `parent_id`.
    parent: Result<Option<SpanId>, ()>,
    /// The resource (origin) of the segment the document belongs to.
    origin: &'p std::sync::Arc<crate::model::Origin>,
}

pub(super) fn decode(
    payload: &Bytes,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), serde_json::Error> {
    let body = without_header(payload);
    let documents: Vec<&RawValue> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body)?,
        _ => vec![serde_json::from_slice(body)?],
    };
    // Every document is read before any span is kept: a malformed one rejects the whole message.
    let parsed: Vec<Document<'_>> =
        documents.iter().map(|raw| serde_json::from_str(raw.get())).collect::<Result<_, _>>()?;
    for (raw, doc) in documents.iter().zip(&parsed) {
        if doc.in_progress {
            continue;
        }
        let is_segment = doc.document_type.as_deref() != Some("subsegment");
        let environment = metadata_text(doc.metadata.as_ref(), "deployment.environment.name").map(str::to_owned);
        let resource = resource_of(doc, is_segment, environment.as_deref());
        let origin = builder.origin(Encoding::XRAY_JSON, &resource, b"", identify);
        let embedded_origin = builder.origin(Encoding::XRAY_JSON, &resource, EMBEDDED, identify);
        let trace_id = doc.trace_id.as_deref().and_then(trace_id);
        let parent = match doc.parent_id.as_deref() {
            None | Some("") => Ok(None),
            Some(id) => parse_hex_id::<8>(id).map(Some).ok_or(()),
        };
        let place = Place { trace_id, parent, origin: &origin };
        let ids_before = stats.invalid_id;
        if document_span(payload, raw, doc, is_segment, &place, builder, out, stats) {
            embedded(payload, doc, trace_id, &embedded_origin, builder, out, stats)?;
        } else {
            reject_embedded(doc, reason(stats, ids_before), stats)?;
        }
    }
    Ok(())
}

/// A rejected document takes its embedded subsegments with it (they travel inside it), counted
/// under the same reason.
fn reject_embedded(holder: &Document<'_>, why: SpanReject, stats: &mut DecodeStats) -> Result<(), serde_json::Error> {
    for raw in &holder.subsegments {
        let doc: Document<'_> = serde_json::from_str(raw.get())?;
        if !doc.in_progress {
            stats.reject(why);
        }
        reject_embedded(&doc, why, stats)?;
    }
    Ok(())
}

/// Why the span just rejected was: its id, if the id count moved since `ids_before`.
fn reason(stats: &DecodeStats, ids_before: u32) -> SpanReject {
    if stats.invalid_id > ids_before {
        SpanReject::InvalidId
    } else {
        SpanReject::InvalidTime
    }
}

/// The spans of a document's embedded subsegments, depth first.
fn embedded(
    payload: &Bytes,
    holder: &Document<'_>,
    trace_id: Option<TraceId>,
    origin: &std::sync::Arc<crate::model::Origin>,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), serde_json::Error> {
    let parent = parse_hex_id::<8>(&holder.id).map(Some).ok_or(());
    for raw in &holder.subsegments {
        let doc: Document<'_> = serde_json::from_str(raw.get())?;
        if doc.in_progress {
            continue;
        }
        let place = Place { trace_id, parent, origin };
        let ids_before = stats.invalid_id;
        if document_span(payload, raw, &doc, false, &place, builder, out, stats) {
            embedded(payload, &doc, trace_id, origin, builder, out, stats)?;
        } else {
            reject_embedded(&doc, reason(stats, ids_before), stats)?;
        }
    }
    Ok(())
}

/// Appends a document's span; `false` when it was rejected (invalid id or time).
#[allow(clippy::too_many_arguments)]
fn document_span(
    payload: &Bytes,
    raw: &RawValue,
    doc: &Document<'_>,
    is_segment: bool,
    place: &Place<'_>,
    builder: &mut SpanBuilder,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> bool {
    let request = doc.http.as_ref().and_then(|h| h.request.as_ref());
    // SDKs write some methods in lowercase (the Python SDK's `requests` patch: "get").
    let method = request.and_then(|r| r.method.as_deref()).map(str::to_ascii_uppercase);
    let status = doc.http.as_ref().and_then(|h| h.response.as_ref()).and_then(|r| r.status);
    let remote = matches!(doc.namespace.as_deref(), Some("remote" | "aws"));
    let path = request.and_then(|r| r.url.as_deref()).map(templated_path);
    let route: Option<String> = if is_segment {
        let annotation = doc.annotations.as_ref().and_then(|a| a.get("http_route")?.as_str());
        annotation.or(metadata_text(doc.metadata.as_ref(), "http.route")).map(str::to_owned).or(path.clone())
    } else {
        None
    };
    let verb = doc.sql.as_ref().and_then(sql_verb);
    let aws_operation = doc.aws.as_ref().and_then(|a| a.get("operation")?.as_str());
    let database = doc.sql.as_ref().and_then(|s| s.get("database_type")?.as_str());

    let mut draft = SpanDraft {
        trace_id: place.trace_id,
        span_id: parse_hex_id(&doc.id),
        parent_span_id: place.parent,
        kind: if is_segment {
            SpanKind::Server
        } else if remote {
            SpanKind::Client
        } else {
            SpanKind::Internal
        },
        start_unix_nano: nanos(doc.start_time),
        end_unix_nano: nanos(doc.end_time),
        name: &doc.name,
        ..Default::default()
    };
    if let Some(status) = status {
        draft.attrs.observe("http.response.status_code", AttrRef::Int(status));
    }
    if let Some(method) = method.as_deref() {
        draft.attrs.observe("http.request.method", AttrRef::Str(method));
    }
    if let Some(route) = route.as_deref() {
        draft.attrs.observe("http.route", AttrRef::Str(route));
    }
    if remote {
        draft.attrs.observe("peer.service", AttrRef::Str(&doc.name));
        if let Some(operation) = aws_operation {
            draft.attrs.observe("rpc.system", AttrRef::Str("aws-api"));
            draft.attrs.observe("rpc.method", AttrRef::Str(operation));
            if let Some((system, destination)) = aws_publish(operation, doc.aws.as_ref()) {
                draft.attrs.observe("messaging.system", AttrRef::Str(system));
                draft.attrs.observe("messaging.destination.name", AttrRef::Str(destination));
            }
        } else if let Some(verb) = verb.as_deref() {
            draft.attrs.observe("db.operation.name", AttrRef::Str(verb));
        } else if let Some(path) = path.as_deref() {
            draft.attrs.observe("url.template", AttrRef::Str(path));
        }
        if let Some(database) = database {
            draft.attrs.observe("db.system", AttrRef::Str(database));
        }
    }
    // The flags decide only without a status (as for OTLP, the status decides).
    let flagged = if status.is_some() {
        None
    } else if doc.fault {
        Some(Outcome::Fault)
    } else if doc.throttle {
        Some(Outcome::Throttle)
    } else if doc.error {
        Some(Outcome::Error)
    } else {
        None
    };
    if doc.fault || doc.error || doc.throttle {
        draft.status = StatusCode::Error;
    }
    draft.outcome = flagged;
    let before = out.len();
    builder.finish(draft, place.origin, payload.slice_ref(raw.get().as_bytes()), out, stats);
    out.len() > before
}

/// The span attributes of a document (without those of its subsegments).
fn attributes_of(raw: &[u8]) -> Vec<(String, AttrValue)> {
    let Ok(doc) = serde_json::from_slice::<Document<'_>>(raw) else { return Vec::new() };
    let mut attributes = Vec::new();
    let value = |v: &Value| match v {
        Value::String(s) => AttrValue::Str(s.clone()),
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => {
            n.as_i64().map_or_else(|| AttrValue::Double(n.as_f64().unwrap_or(f64::NAN)), AttrValue::Int)
        }
        _ => AttrValue::Other,
    };
    if let Some(request) = doc.http.as_ref().and_then(|h| h.request.as_ref()) {
        if let Some(method) = &request.method {
            attributes.push(("http.request.method".into(), AttrValue::Str(method.to_string())));
        }
        if let Some(url) = &request.url {
            attributes.push(("url.full".into(), AttrValue::Str(url.to_string())));
        }
    }
    if let Some(status) = doc.http.as_ref().and_then(|h| h.response.as_ref()).and_then(|r| r.status) {
        attributes.push(("http.response.status_code".into(), AttrValue::Int(status)));
    }
    for (prefix, map) in [("aws", &doc.aws), ("sql", &doc.sql)] {
        for (key, v) in map.iter().flatten().filter(|(_, v)| !v.is_object()) {
            attributes.push((format!("{prefix}.{key}"), value(v)));
        }
    }
    for (key, v) in doc.annotations.iter().flatten() {
        attributes.push((key.clone(), value(v)));
    }
    for namespace in doc.metadata.iter().flatten().filter_map(|(_, ns)| ns.as_object()) {
        for (key, v) in namespace {
            attributes.push((key.clone(), value(v)));
        }
    }
    attributes
}

/// X-Ray segment documents, one or a list, optionally after the daemon's header line.
pub struct XrayJson;

impl Format for XrayJson {
    fn name(&self) -> &'static str {
        "xray_json"
    }

    fn title(&self) -> &'static str {
        "X-Ray JSON"
    }

    fn malformed_reason(&self) -> &'static str {
        "malformed_xray_json"
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
        encode_xray(spans, decision)
    }

    fn span_attributes(&self, raw: &[u8]) -> Vec<(String, AttrValue)> {
        attributes_of(raw)
    }

    fn find_span_attribute(&self, raw: &[u8], key: &str) -> Option<AttrValue> {
        attributes_of(raw).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The queue of an SQS or SNS call ([`aws_publish`]), as the decoder read it.
    fn queue(&self, raw: &[u8], _kind: SpanKind, scratch: &mut QueueScratch) -> Option<bool> {
        scratch.clear();
        let doc = serde_json::from_slice::<Document<'_>>(raw).ok()?;
        let operation = doc.aws.as_ref().and_then(|a| a.get("operation")?.as_str())?;
        let (system, destination) = aws_publish(operation, doc.aws.as_ref())?;
        scratch.system.push_str(system);
        scratch.destination.push_str(destination);
        scratch.named(SpanKind::Producer)
    }

    fn find_resource_attribute(&self, resource: &[u8], key: &str) -> Option<AttrValue> {
        let resource: Map<String, Value> = serde_json::from_slice(resource).ok()?;
        resource.get(key)?.as_str().map(|s| AttrValue::Str(s.into()))
    }

    /// The first of the document's `cause.exceptions` (a `cause` that is only the id of an
    /// exception recorded elsewhere names none); its `stack` frames written one a line as
    /// `at label (path:line)`, in the document's order.
    fn exception(&self, raw: &[u8]) -> Option<Exception> {
        #[derive(Deserialize)]
        struct Caused {
            #[serde(default)]
            cause: Option<Value>,
        }
        let caused: Caused = serde_json::from_slice(raw).ok()?;
        let first = caused.cause?.get("exceptions")?.as_array()?.first()?.clone();
        let text = |key: &str| first.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let frames: Vec<String> = first
            .get("stack")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|frame| {
                let field = |key: &str| {
                    frame.get(key).map_or(String::new(), |v| v.as_str().map_or(v.to_string(), str::to_string))
                };
                format!("at {} ({}:{})", field("label"), field("path"), field("line"))
            })
            .collect();
        let exception = Exception { type_name: text("type"), message: text("message"), stacktrace: frames.join("\n") };
        (!exception.type_name.is_empty() || !exception.message.is_empty()).then_some(exception)
    }
}

// Writing kept spans back.

/// X-Ray documents as a JSON array (the shape of X-Ray's `PutTraceSegments`), each with the
/// sampling attributes as annotations (`sampling_rule`, `sampling_sample_rate`: annotation keys
/// cannot hold dots). Subsegments embedded in a document travel inside it, unchanged.
fn encode_xray(spans: &[&Span], decision: Option<&Decision>) -> Bytes {
    let documents: Vec<String> = spans
        .iter()
        .filter(|span| span.origin.scope_header != EMBEDDED)
        .map(|span| {
            let raw = std::str::from_utf8(&span.raw).unwrap_or("{}");
            match decision {
                Some(decision) => with_object_members(
                    raw,
                    "annotations",
                    &[
                        ("sampling_rule", Value::String(decision.rule.to_string()).to_string()),
                        ("sampling_sample_rate", json!(decision.sample_rate).to_string()),
                    ],
                ),
                None => raw.to_string(),
            }
        })
        .collect();
    Bytes::from(format!("[{}]", documents.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_convert_both_ways() {
        let id = trace_id("1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(hex::encode(id), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(trace_id("2-5759e988-bd862e3fe1be46a994272793"), None);
        assert_eq!(trace_id("1-5759e98-bd862e3fe1be46a994272793"), None);
        assert_eq!(trace_id("1-5759e988-bd862e3fe1be46a99427279z"), None);
    }

    #[test]
    fn url_paths_are_templated() {
        assert_eq!(templated_path("http://api.example.com/owners/42/pets?x=1"), "/owners/{id}/pets");
        assert_eq!(
            templated_path("https://h/orders/3fa85f64-5717-4562-b3fc-2c963f66afa6/items/0123456789abcdef0"),
            "/orders/{id}/items/{id}"
        );
        assert_eq!(templated_path("/vets"), "/vets");
        assert_eq!(templated_path("http://h"), "/");
        assert_eq!(templated_path("/v2/abcdef"), "/v2/abcdef", "short hex words are not ids");
    }
}
