//! The PetClinic application model and its encoders.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::model::Encoding;

/// Shares of the traffic that go wrong.
#[derive(Clone, Debug)]
pub struct TrafficProfile {
    /// Probability that a fault-prone call fails with a 5xx (database error, insurance outage).
    pub fault_rate: f64,
    /// Probability that an owner lookup misses (404).
    pub error_rate: f64,
    /// Probability that a pet search is throttled (429).
    pub throttle_rate: f64,
    /// Probability that `GET /vets` is slow (1.2–2 s instead of ~40 ms).
    pub slow_rate: f64,
}

impl Default for TrafficProfile {
    fn default() -> Self {
        Self { fault_rate: 0.05, error_rate: 0.05, throttle_rate: 0.2, slow_rate: 0.1 }
    }
}

/// One generated trace, encoded as the messages an OpenTelemetry pipeline would deliver.
pub struct GeneratedTrace {
    pub trace_id: [u8; 16],
    /// One message per service.
    pub messages: Vec<Bytes>,
    pub spans: usize,
    /// Whether the trace's root request failed with a fault.
    pub root_fault: bool,
}

#[derive(Clone)]
enum Val {
    Str(String),
    Int(i64),
}

struct GenSpan {
    service: &'static str,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: span::SpanKind,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, Val)>,
    error: bool,
}

const MS: u64 = 1_000_000;

/// The application: call it once per trace.
pub struct PetClinic {
    rng: SmallRng,
    profile: TrafficProfile,
    faults: bool,
}

struct Builder<'a> {
    rng: &'a mut SmallRng,
    spans: Vec<GenSpan>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &'static str,
        parent: Option<[u8; 8]>,
        name: &str,
        kind: span::SpanKind,
        start: u64,
        duration: u64,
        attributes: Vec<(&'static str, Val)>,
    ) -> [u8; 8] {
        let mut span_id = [0u8; 8];
        while span_id == [0; 8] {
            self.rng.fill(&mut span_id);
        }
        self.spans.push(GenSpan {
            service,
            span_id,
            parent,
            name: name.into(),
            kind,
            start,
            end: start + duration,
            attributes,
            error: false,
        });
        span_id
    }

    fn fail(&mut self, span_id: [u8; 8], status: Option<i64>) {
        if let Some(s) = self.spans.iter_mut().find(|s| s.span_id == span_id) {
            match status {
                Some(code) => {
                    for (k, v) in &mut s.attributes {
                        if *k == "http.response.status_code" {
                            *v = Val::Int(code);
                        }
                    }
                    s.error = code >= 500;
                }
                None => s.error = true,
            }
        }
    }

    fn jitter(&mut self, base_ms: u64) -> u64 {
        (base_ms * MS) + self.rng.random_range(0..=base_ms * MS / 2)
    }
}

fn http_server(method: &str, route: &str, status: i64) -> Vec<(&'static str, Val)> {
    vec![
        ("http.request.method", Val::Str(method.into())),
        ("http.route", Val::Str(route.into())),
        ("url.path", Val::Str(route.replace("{ownerId}", "7").replace("{petId}", "3"))),
        ("http.response.status_code", Val::Int(status)),
    ]
}

fn http_client(method: &str, template: &str, host: &str, status: i64) -> Vec<(&'static str, Val)> {
    vec![
        ("http.request.method", Val::Str(method.into())),
        ("url.template", Val::Str(template.into())),
        ("server.address", Val::Str(host.into())),
        ("http.response.status_code", Val::Int(status)),
    ]
}

fn kafka(operation: &str, topic: &str) -> Vec<(&'static str, Val)> {
    vec![
        ("messaging.system", Val::Str("kafka".into())),
        ("messaging.operation", Val::Str(operation.into())),
        ("messaging.destination.name", Val::Str(topic.into())),
    ]
}

fn db(operation: &str, table: &str) -> Vec<(&'static str, Val)> {
    vec![
        ("db.system", Val::Str("postgresql".into())),
        ("db.operation.name", Val::Str(operation.into())),
        ("db.collection.name", Val::Str(table.into())),
        ("server.address", Val::Str("petclinic-db".into())),
    ]
}

impl PetClinic {
    pub fn new(seed: u64, profile: TrafficProfile) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed), profile, faults: true }
    }

    /// Switches fault injection on or off (errors, throttles and slowness stay).
    pub fn set_faults(&mut self, on: bool) {
        self.faults = on;
    }

    /// Builds one trace ending at `now` (Unix nanoseconds).
    pub fn trace(&mut self, now: u64, encoding: Encoding) -> GeneratedTrace {
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            self.rng.fill(&mut trace_id);
        }
        let fault_rate = if self.faults { self.profile.fault_rate } else { 0.0 };
        let profile = self.profile.clone();
        let roll: f64 = self.rng.random();
        let fault = self.rng.random::<f64>() < fault_rate;
        let miss = self.rng.random::<f64>() < profile.error_rate;
        let throttled = self.rng.random::<f64>() < profile.throttle_rate;
        let slow = self.rng.random::<f64>() < profile.slow_rate;
        let start = now.saturating_sub(3_000 * MS);
        let mut b = Builder { rng: &mut self.rng, spans: Vec::new() };
        use span::SpanKind::{Client, Consumer, Internal, Producer, Server};
        let mut root_fault = false;
        if roll < 0.30 {
            // An owner page: frontend → customers-service → database.
            let (d_db, d_cust) = (b.jitter(4), b.jitter(8));
            let total = d_db + d_cust + b.jitter(6);
            let root = b.span(
                "frontend",
                None,
                "GET /owners/{ownerId}",
                Server,
                start,
                total,
                http_server("GET", "/owners/{ownerId}", 200),
            );
            let call = b.span(
                "frontend",
                Some(root),
                "GET",
                Client,
                start + MS,
                d_cust + d_db + 2 * MS,
                http_client("GET", "/owners/{ownerId}", "customers-service", 200),
            );
            let server = b.span(
                "customers-service",
                Some(call),
                "GET /owners/{ownerId}",
                Server,
                start + 2 * MS,
                d_cust + d_db,
                http_server("GET", "/owners/{ownerId}", 200),
            );
            let query = b.span(
                "customers-service",
                Some(server),
                "SELECT petclinic.owners",
                Client,
                start + 3 * MS,
                d_db,
                db("SELECT", "owners"),
            );
            if fault {
                b.fail(query, None);
                b.fail(server, Some(500));
                b.fail(call, Some(500));
                b.fail(root, Some(500));
                root_fault = true;
            } else if miss {
                b.fail(server, Some(404));
                b.fail(call, Some(404));
                b.fail(root, Some(404));
            }
        } else if roll < 0.50 {
            // The vets list: slow now and then.
            let d_db = b.jitter(4);
            let d_vets = if slow { 1_200 * MS + b.rng.random_range(0..800 * MS) } else { b.jitter(30) };
            let root =
                b.span("frontend", None, "GET /vets", Server, start, d_vets + 6 * MS, http_server("GET", "/vets", 200));
            let call = b.span(
                "frontend",
                Some(root),
                "GET",
                Client,
                start + MS,
                d_vets + 3 * MS,
                http_client("GET", "/vets", "vets-service", 200),
            );
            let server = b.span(
                "vets-service",
                Some(call),
                "GET /vets",
                Server,
                start + 2 * MS,
                d_vets,
                http_server("GET", "/vets", 200),
            );
            b.span(
                "vets-service",
                Some(server),
                "SELECT petclinic.vets",
                Client,
                start + 3 * MS,
                d_db,
                db("SELECT", "vets"),
            );
        } else if roll < 0.75 {
            // A visit: stored, then billed asynchronously through Kafka; insurance may fail.
            let root = b.span(
                "frontend",
                None,
                "POST /owners/{ownerId}/pets/{petId}/visits",
                Server,
                start,
                40 * MS,
                http_server("POST", "/owners/{ownerId}/pets/{petId}/visits", 201),
            );
            let call = b.span(
                "frontend",
                Some(root),
                "POST",
                Client,
                start + MS,
                35 * MS,
                http_client("POST", "/visits", "visits-service", 201),
            );
            let server = b.span(
                "visits-service",
                Some(call),
                "POST /visits",
                Server,
                start + 2 * MS,
                32 * MS,
                http_server("POST", "/visits", 201),
            );
            b.span(
                "visits-service",
                Some(server),
                "INSERT petclinic.visits",
                Client,
                start + 4 * MS,
                6 * MS,
                db("INSERT", "visits"),
            );
            let publish = b.span(
                "visits-service",
                Some(server),
                "billing-events publish",
                Producer,
                start + 12 * MS,
                3 * MS,
                kafka("publish", "billing-events"),
            );
            let consume = b.span(
                "billing-service",
                Some(publish),
                "billing-events process",
                Consumer,
                start + 60 * MS,
                90 * MS,
                kafka("process", "billing-events"),
            );
            let claim = b.span(
                "billing-service",
                Some(consume),
                "POST",
                Client,
                start + 65 * MS,
                70 * MS,
                http_client("POST", "/claims", "insurance-service", 200),
            );
            let insurer = b.span(
                "insurance-service",
                Some(claim),
                "POST /claims",
                Server,
                start + 67 * MS,
                65 * MS,
                http_server("POST", "/claims", 200),
            );
            if fault {
                b.fail(insurer, Some(503));
                b.fail(claim, Some(503));
                b.fail(consume, None);
            }
        } else if roll < 0.85 {
            // A pet search, rate limited by customers-service.
            let status = if throttled { 429 } else { 200 };
            let root = b.span(
                "frontend",
                None,
                "GET /api/pets/search",
                Server,
                start,
                15 * MS,
                http_server("GET", "/api/pets/search", status),
            );
            let call = b.span(
                "frontend",
                Some(root),
                "GET",
                Client,
                start + MS,
                12 * MS,
                http_client("GET", "/pets/search", "customers-service", status),
            );
            b.span(
                "customers-service",
                Some(call),
                "GET /pets/search",
                Server,
                start + 2 * MS,
                10 * MS,
                http_server("GET", "/pets/search", status),
            );
        } else if roll < 0.95 {
            // A load balancer health check.
            let mut attributes = http_server("GET", "/health", 200);
            attributes.push(("user_agent.original", Val::Str("ELB-HealthChecker/2.0".into())));
            b.span("frontend", None, "GET /health", Server, start, MS / 2, attributes);
        } else {
            // A scheduled cache refresh: an internal root span.
            let root = b.span("vets-service", None, "refresh-specialties-cache", Internal, start, 20 * MS, vec![]);
            b.span(
                "vets-service",
                Some(root),
                "SELECT petclinic.specialties",
                Client,
                start + MS,
                5 * MS,
                db("SELECT", "specialties"),
            );
        }
        let spans = b.spans;
        let count = spans.len();
        let messages = encode(&trace_id, &spans, encoding);
        GeneratedTrace { trace_id, messages, spans: count, root_fault }
    }
}

fn services_in_order(spans: &[GenSpan]) -> Vec<&'static str> {
    let mut services = Vec::new();
    for s in spans {
        if !services.contains(&s.service) {
            services.push(s.service);
        }
    }
    services
}

fn kv(key: &str, value: &Val) -> KeyValue {
    let value = match value {
        Val::Str(s) => any_value::Value::StringValue(s.clone()),
        Val::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn proto_data(trace_id: &[u8; 16], service: &str, spans: &[&GenSpan]) -> TracesData {
    let resource = Resource {
        attributes: vec![
            kv("service.name", &Val::Str(service.into())),
            kv("deployment.environment.name", &Val::Str("demo".into())),
            kv("telemetry.sdk.language", &Val::Str("java".into())),
        ],
        ..Default::default()
    };
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: s.kind as i32,
            start_time_unix_nano: s.start,
            end_time_unix_nano: s.end,
            attributes: s.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
            status: Some(Status {
                code: if s.error { 2 } else { 0 },
                message: if s.error { "injected fault".into() } else { String::new() },
            }),
            ..Default::default()
        })
        .collect();
    TracesData {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.spring-webmvc-6.0".into(),
                    version: "2.10.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
    }
}

fn zipkin_span(trace_id: &[u8; 16], s: &GenSpan) -> Value {
    let kind = match s.kind {
        span::SpanKind::Server => Some("SERVER"),
        span::SpanKind::Client => Some("CLIENT"),
        span::SpanKind::Producer => Some("PRODUCER"),
        span::SpanKind::Consumer => Some("CONSUMER"),
        _ => None,
    };
    let mut tags = serde_json::Map::new();
    for (k, v) in &s.attributes {
        let text = match v {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
        };
        tags.insert(k.to_string(), Value::String(text));
    }
    if s.error {
        tags.insert("error".into(), Value::String("injected fault".into()));
    }
    let mut span = json!({
        "traceId": hex::encode(trace_id),
        "id": hex::encode(s.span_id),
        "name": s.name,
        "timestamp": s.start / 1000,
        "duration": (s.end - s.start) / 1000,
        "localEndpoint": {"serviceName": s.service},
        "tags": tags,
    });
    if let Some(parent) = s.parent {
        span["parentId"] = Value::String(hex::encode(parent));
    }
    if let Some(kind) = kind {
        span["kind"] = Value::String(kind.into());
    }
    span
}

fn encode(trace_id: &[u8; 16], spans: &[GenSpan], encoding: Encoding) -> Vec<Bytes> {
    services_in_order(spans)
        .into_iter()
        .map(|service| {
            let of_service: Vec<&GenSpan> = spans.iter().filter(|s| s.service == service).collect();
            match encoding {
                Encoding::OtlpProto => Bytes::from(proto_data(trace_id, service, &of_service).encode_to_vec()),
                Encoding::OtlpJson => {
                    Bytes::from(serde_json::to_vec(&proto_data(trace_id, service, &of_service)).expect("serialisable"))
                }
                Encoding::ZipkinJson => {
                    let list: Vec<Value> = of_service.iter().map(|s| zipkin_span(trace_id, s)).collect();
                    Bytes::from(Value::Array(list).to_string())
                }
            }
        })
        .collect()
}
