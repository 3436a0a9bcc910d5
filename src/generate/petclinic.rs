//! The PetClinic application model: the requests it serves, what each calls, how long each step
//! takes and what goes wrong. [`PetClinic::trace`] builds one request's trace.
//!
//! The story an investigation finds (README, "The demo's story"):
//! - **A bad canary.** While faults are injected, owner lookups fail with a 500 at
//!   `fault_rate` on average, but [`CANARY_FAULT_SHARE`] of customers-service's faults come
//!   from its canary pod (release [`super::deployment::CANARY_VERSION`]): a bug of the release,
//!   whose database query succeeds. The other pods fail rarely, on a database error as before.
//!   Visits fail at `fault_rate` when the insurer answers 503, on any pod. With faults switched
//!   off ([`PetClinic::set_faults`]) nothing faults, the canary included. The canary can be out
//!   of rotation ([`PetClinic::set_canary`]: not yet rolled out, or rolled back): the stable pods
//!   then serve every lookup, and fail as rarely as before.
//! - **A database that degrades on a schedule**: for the first 90 s of every 5 minutes of Unix
//!   time its queries are 5 × slower at the median and about 10 × at p99
//!   ([`super::latency::database_degraded`]), and so are the requests waiting on them.
//! - **Long tails everywhere**: every step's duration is log-normal and a request's steps share the
//!   load it meets ([`super::latency::LOAD`]), so every operation's p99 is several times its p50.
//!   A span's calls run inside it, one after another, between its own steps of work; a message
//!   published to Kafka is processed after the publish span ends.

use bytes::Bytes;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::deployment::{Pod, Service};
use super::latency::{self, LogNormal};
use super::wire::{self, GenSpan, Thrown, Val};
use crate::model::Encoding;

/// Shares of the traffic that go wrong.
#[derive(Clone, Debug)]
pub struct TrafficProfile {
    /// Probability that a fault-prone call fails with a 5xx (an owner lookup: mostly on the
    /// customers-service canary; a claim: insurance outage).
    pub fault_rate: f64,
    /// Probability that an owner lookup misses (404).
    pub error_rate: f64,
    /// Probability that a pet search is throttled (429).
    pub throttle_rate: f64,
    /// Probability that `GET /vets` is slow (1.2–2 s more than its usual ~40 ms).
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

/// Share of customers-service's faults that its canary pod serves while faults are injected.
pub const CANARY_FAULT_SHARE: f64 = 0.9;

const MS: u64 = 1_000_000;

/// Status message of a fault the canary's release causes.
const CANARY_BUG: &str = "java.lang.NullPointerException: Cannot invoke \"Owner.getPets()\" (OwnerResource.java:74)";
/// Status message of the other injected faults.
const INJECTED_FAULT: &str = "injected fault";

/// What the canary's release throws: one exception, always the same.
fn canary_bug() -> Thrown {
    Thrown {
        type_name: "java.lang.NullPointerException",
        message: "Cannot invoke \"org.springframework.samples.petclinic.customers.model.Owner.getPets()\" because \"owner\" is null".into(),
        stacktrace: "java.lang.NullPointerException: Cannot invoke \"org.springframework.samples.petclinic.customers.model.Owner.getPets()\" because \"owner\" is null\n\
            \tat org.springframework.samples.petclinic.customers.web.OwnerResource.findOwner(OwnerResource.java:74)\n\
            \tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n\
            \tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    }
}

/// What the other faults of an owner lookup throw: the database query timed out, for the
/// `n`th owner looked up so (the message varies, the group does not).
fn query_timeout(n: u64) -> Thrown {
    Thrown {
        type_name: "org.springframework.dao.QueryTimeoutException",
        message: format!(
            "PreparedStatementCallback; SQL [SELECT id, first_name, last_name FROM owners WHERE id = {}]; ERROR: canceling statement due to statement timeout",
            1_000 + n * 7_919 % 9_000
        ),
        stacktrace: "org.springframework.dao.QueryTimeoutException: PreparedStatementCallback; ERROR: canceling statement due to statement timeout\n\
            \tat org.springframework.jdbc.support.SQLStateSQLExceptionTranslator.doTranslate(SQLStateSQLExceptionTranslator.java:115)\n\
            \tat org.springframework.samples.petclinic.customers.model.OwnerRepository.findById(OwnerRepository.java:41)\n\
            \tat org.springframework.samples.petclinic.customers.web.OwnerResource.findOwner(OwnerResource.java:71)",
    }
}

/// Medians of the steps of work, in milliseconds.
const FRONTEND_WORK: LogNormal = LogNormal::typical_ms(3.0);
const NETWORK: LogNormal = LogNormal::typical_ms(1.0);
const OWNER_LOOKUP_WORK: LogNormal = LogNormal::typical_ms(6.0);
const VETS_WORK: LogNormal = LogNormal::typical_ms(30.0);
const VISIT_WORK: LogNormal = LogNormal::typical_ms(10.0);
const PUBLISH: LogNormal = LogNormal::typical_ms(3.0);
const QUEUE_WAIT: LogNormal = LogNormal::typical_ms(40.0);
const BILLING_WORK: LogNormal = LogNormal::typical_ms(20.0);
const CLAIM_WORK: LogNormal = LogNormal::typical_ms(50.0);
const PET_SEARCH_WORK: LogNormal = LogNormal::typical_ms(8.0);
const THROTTLED_WORK: LogNormal = LogNormal::typical_ms(0.5);
const HEALTH_CHECK_WORK: LogNormal = LogNormal::typical_ms(0.5);
const CACHE_REFRESH_WORK: LogNormal = LogNormal::typical_ms(15.0);
/// Medians of the database queries when it is healthy, in milliseconds.
const SELECT_MS: f64 = 4.0;
const INSERT_MS: f64 = 6.0;

/// The application: call it once per trace.
pub struct PetClinic {
    rng: SmallRng,
    profile: TrafficProfile,
    faults: bool,
    /// Whether customers-service's canary pod is in rotation ([`PetClinic::set_canary`]).
    canary: bool,
    /// Owner lookups that timed out so far (what varies in their exceptions' messages).
    timeouts: u64,
}

/// A span before it is placed in time: what it is, the calls it makes one after another, and its
/// own steps of work around them (`work[i]` before call `i`, the last one after the last call). A
/// message it hands to a consumer is processed `wait` after it ends, without holding it up.
struct Call {
    pod: &'static Pod,
    name: &'static str,
    kind: SpanKind,
    attributes: Vec<(&'static str, Val)>,
    error: Option<&'static str>,
    exception: Option<Thrown>,
    work: Vec<u64>,
    calls: Vec<Call>,
    handoff: Option<(u64, Box<Call>)>,
}

impl Call {
    /// Its HTTP response status, if it has one.
    fn status(&self) -> Option<i64> {
        self.attributes.iter().find_map(|(key, value)| match (key, value) {
            (&"http.response.status_code", Val::Int(code)) => Some(*code),
            _ => None,
        })
    }

    /// Sets status ERROR with `message`.
    fn failed(mut self, message: &'static str) -> Self {
        self.error = Some(message);
        self
    }

    /// Records `exception`, as an instrumented server records what it failed with.
    fn threw(mut self, exception: Thrown) -> Self {
        self.exception = Some(exception);
        self
    }

    /// Hands a message to `consumer`, whose span starts `wait` after this one ends.
    fn handing_off(mut self, wait: u64, consumer: Call) -> Self {
        self.handoff = Some((wait, Box::new(consumer)));
        self
    }
}

/// What goes wrong in one request, drawn before it is built.
struct Mishaps {
    /// Compared with a fault probability: below it, the request faults.
    fault_roll: f64,
    miss: bool,
    throttled: bool,
    slow: bool,
}

/// One request being built: the pod serving each service, the load it meets, the database's state.
struct Request<'a> {
    rng: &'a mut SmallRng,
    /// By [`Service`] discriminant, the order of [`Service::ALL`].
    pods: [&'static Pod; Service::ALL.len()],
    load: f64,
    database_degraded: bool,
    /// The application's count of owner lookups that timed out.
    timeouts: &'a mut u64,
}

impl Request<'_> {
    fn pod(&self, service: Service) -> &'static Pod {
        self.pods[service as usize]
    }

    /// A duration drawn from `d` (milliseconds) under the request's load, in whole microseconds
    /// (so Zipkin's microsecond times nest exactly as the nanosecond ones do).
    fn time(&mut self, d: LogNormal) -> u64 {
        let micros = (d.draw(self.rng) * self.load * 1e3).round() as u64;
        micros.max(1) * 1_000
    }

    /// A span of `service` that works for a time drawn from `work`, split around `calls`.
    fn span(
        &mut self,
        service: Service,
        name: &'static str,
        kind: SpanKind,
        attributes: Vec<(&'static str, Val)>,
        work: LogNormal,
        calls: Vec<Call>,
    ) -> Call {
        let total = self.time(work);
        let weights: Vec<f64> = (0..=calls.len()).map(|_| self.rng.random_range(0.1..1.0)).collect();
        let sum: f64 = weights.iter().sum();
        let mut work: Vec<u64> = weights.iter().map(|w| (total as f64 * w / sum) as u64 / 1_000 * 1_000).collect();
        work[0] = total - work[1..].iter().sum::<u64>();
        let mut call = Call {
            pod: self.pod(service),
            name,
            kind,
            attributes,
            error: None,
            exception: None,
            work,
            calls,
            handoff: None,
        };
        if call.status().is_some_and(|code| code >= 500) {
            call.error = Some(INJECTED_FAULT);
        }
        call
    }

    /// A request `page` ("{method} {route}") served by `service` with `status`.
    fn serve(&mut self, service: Service, page: &'static str, status: i64, work: LogNormal, calls: Vec<Call>) -> Call {
        let (method, route) = page.split_once(' ').expect("a page is \"{method} {route}\"");
        self.span(service, page, SpanKind::Server, http_server(method, route, status), work, calls)
    }

    /// `caller`'s HTTP call to `path` of the service serving `server`, answered with its status.
    fn call(&mut self, caller: Service, path: &str, server: Call) -> Call {
        let method = server.name.split_once(' ').map_or(server.name, |(method, _)| method);
        let attributes = http_client(method, path, server.pod.service.name(), server.status().unwrap_or(200));
        self.span(caller, method, SpanKind::Client, attributes, NETWORK, vec![server])
    }

    /// A frontend page calling `path` of the service serving `server`, answered with its status.
    fn frontend_page(&mut self, page: &'static str, path: &str, server: Call) -> Call {
        let status = server.status().unwrap_or(200);
        let call = self.call(Service::Frontend, path, server);
        self.serve(Service::Frontend, page, status, FRONTEND_WORK, vec![call])
    }

    /// A query of `service` to the database (`statement`: "{operation} petclinic.{table}"), as
    /// long as the database's state makes it.
    fn query(&mut self, service: Service, statement: &'static str, median_ms: f64) -> Call {
        let duration = latency::database_query(median_ms, self.database_degraded);
        self.span(service, statement, SpanKind::Client, db(statement), duration, vec![])
    }

    /// Places `call` from `start` under `parent`, its calls inside it; appends its spans (parents
    /// before children) and returns its end.
    fn place(&mut self, call: Call, parent: Option<[u8; 8]>, start: u64, spans: &mut Vec<GenSpan>) -> u64 {
        let Call { pod, name, kind, attributes, error, exception, work, calls, handoff } = call;
        let mut span_id = [0u8; 8];
        while span_id == [0; 8] {
            self.rng.fill(&mut span_id);
        }
        let index = spans.len();
        spans.push(GenSpan { pod, span_id, parent, name, kind, start, end: start, attributes, error, exception });
        let mut steps = work.into_iter();
        let mut end = start + steps.next().unwrap_or(0);
        for callee in calls {
            end = self.place(callee, Some(span_id), end, spans) + steps.next().unwrap_or(0);
        }
        spans[index].end = end;
        if let Some((wait, consumer)) = handoff {
            self.place(*consumer, Some(span_id), end + wait, spans);
        }
        end
    }

    /// An owner page: frontend → customers-service → database. Returns the root and whether it
    /// faults.
    fn owner_page(&mut self, mishaps: &Mishaps, fault_rate: f64) -> (Call, bool) {
        let pod = self.pod(Service::Customers);
        let fault = mishaps.fault_roll < owner_lookup_fault_rate(pod, fault_rate);
        let status = if fault {
            500
        } else if mishaps.miss {
            404
        } else {
            200
        };
        let mut query = self.query(Service::Customers, "SELECT petclinic.owners", SELECT_MS);
        if fault && !pod.is_canary() {
            query = query.failed(INJECTED_FAULT);
        }
        let page = "GET /owners/{ownerId}";
        let mut server = self.serve(Service::Customers, page, status, OWNER_LOOKUP_WORK, vec![query]);
        if fault && pod.is_canary() {
            server = server.failed(CANARY_BUG).threw(canary_bug());
        } else if fault {
            *self.timeouts += 1;
            server = server.threw(query_timeout(*self.timeouts));
        }
        (self.frontend_page(page, "/owners/{ownerId}", server), fault)
    }

    /// The vets list: slow now and then (1.2–2 s more work in vets-service).
    fn vets_list(&mut self, mishaps: &Mishaps) -> Call {
        let query = self.query(Service::Vets, "SELECT petclinic.vets", SELECT_MS);
        let mut server = self.serve(Service::Vets, "GET /vets", 200, VETS_WORK, vec![query]);
        if mishaps.slow {
            let last = server.work.len() - 1;
            server.work[last] += 1_200 * MS + self.rng.random_range(0..800) * MS;
        }
        self.frontend_page("GET /vets", "/vets", server)
    }

    /// A visit: stored, then billed asynchronously through Kafka; the insurer may fail the claim.
    fn visit(&mut self, mishaps: &Mishaps, fault_rate: f64) -> Call {
        let fault = mishaps.fault_roll < fault_rate;
        let insurer = self.serve(Service::Insurance, "POST /claims", if fault { 503 } else { 200 }, CLAIM_WORK, vec![]);
        let claim = self.call(Service::Billing, "/claims", insurer);
        let topic = "billing-events";
        let process_span = "billing-events process";
        let mut process = self.span(
            Service::Billing,
            process_span,
            SpanKind::Consumer,
            kafka("process", topic),
            BILLING_WORK,
            vec![claim],
        );
        if fault {
            process = process.failed(INJECTED_FAULT);
        }
        let wait = self.time(QUEUE_WAIT);
        let publish_span = "billing-events publish";
        let publish = self
            .span(Service::Visits, publish_span, SpanKind::Producer, kafka("publish", topic), PUBLISH, vec![])
            .handing_off(wait, process);
        let insert = self.query(Service::Visits, "INSERT petclinic.visits", INSERT_MS);
        let server = self.serve(Service::Visits, "POST /visits", 201, VISIT_WORK, vec![insert, publish]);
        self.frontend_page("POST /owners/{ownerId}/pets/{petId}/visits", "/visits", server)
    }

    /// A pet search, rate limited by customers-service: a throttled search is answered at once.
    fn pet_search(&mut self, mishaps: &Mishaps) -> Call {
        let (status, work) = if mishaps.throttled { (429, THROTTLED_WORK) } else { (200, PET_SEARCH_WORK) };
        let server = self.serve(Service::Customers, "GET /pets/search", status, work, vec![]);
        self.frontend_page("GET /api/pets/search", "/pets/search", server)
    }

    /// A load balancer health check.
    fn health_check(&mut self) -> Call {
        let mut check = self.serve(Service::Frontend, "GET /health", 200, HEALTH_CHECK_WORK, vec![]);
        check.attributes.push(("user_agent.original", Val::Str("ELB-HealthChecker/2.0".into())));
        check
    }

    /// A scheduled cache refresh: an internal root span.
    fn cache_refresh(&mut self) -> Call {
        let query = self.query(Service::Vets, "SELECT petclinic.specialties", SELECT_MS);
        let name = "refresh-specialties-cache";
        self.span(Service::Vets, name, SpanKind::Internal, vec![], CACHE_REFRESH_WORK, vec![query])
    }
}

/// The probability that an owner lookup served by `pod` faults, such that lookups fault at
/// `fault_rate` on average over the evenly balanced pods and the canary serves
/// [`CANARY_FAULT_SHARE`] of the faults (up to a `fault_rate` of 1 / (pods × share), 0.28 with
/// four pods; beyond it the canary fails every lookup and the average is lower).
fn owner_lookup_fault_rate(pod: &Pod, fault_rate: f64) -> f64 {
    let pods = pod.service.pods().len() as f64;
    let share = if pod.is_canary() { CANARY_FAULT_SHARE } else { (1.0 - CANARY_FAULT_SHARE) / (pods - 1.0) };
    fault_rate * pods * share
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

fn db(statement: &str) -> Vec<(&'static str, Val)> {
    let (operation, table) = statement.split_once(" petclinic.").expect("\"{operation} petclinic.{table}\"");
    vec![
        ("db.system", Val::Str("postgresql".into())),
        ("db.operation.name", Val::Str(operation.into())),
        ("db.collection.name", Val::Str(table.into())),
        ("server.address", Val::Str("petclinic-db".into())),
    ]
}

impl PetClinic {
    pub fn new(seed: u64, profile: TrafficProfile) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed), profile, faults: true, canary: true, timeouts: 0 }
    }

    /// Puts customers-service's canary pod in rotation (rolled out) or out of it (rolled back, or
    /// not yet rolled out): without it, customers-service's requests go to its stable pods.
    pub fn set_canary(&mut self, on: bool) {
        self.canary = on;
    }

    /// Switches fault injection on or off (errors, throttles, slowness and the database's schedule
    /// stay).
    pub fn set_faults(&mut self, on: bool) {
        self.faults = on;
    }

    /// Builds one trace starting 3 s before `now` (Unix nanoseconds); `now` also decides whether
    /// the database is degraded ([`latency::database_degraded`]).
    pub fn trace(&mut self, now: u64, encoding: Encoding) -> GeneratedTrace {
        let mut trace_id = [0u8; 16];
        while trace_id == [0; 16] {
            self.rng.fill(&mut trace_id);
        }
        let fault_rate = if self.faults { self.profile.fault_rate } else { 0.0 };
        let roll: f64 = self.rng.random();
        let mishaps = Mishaps {
            fault_roll: self.rng.random(),
            miss: self.rng.random::<f64>() < self.profile.error_rate,
            throttled: self.rng.random::<f64>() < self.profile.throttle_rate,
            slow: self.rng.random::<f64>() < self.profile.slow_rate,
        };
        let canary = self.canary;
        let pods = Service::ALL.map(|service| {
            let pods = service.pods();
            let in_rotation = |pod: &&Pod| canary || !pod.is_canary();
            let count = pods.iter().filter(in_rotation).count();
            pods.iter().filter(in_rotation).nth(self.rng.random_range(0..count)).expect("a pod in rotation")
        });
        let load = latency::LOAD.draw(&mut self.rng);
        let mut request = Request {
            rng: &mut self.rng,
            pods,
            load,
            database_degraded: latency::database_degraded(now),
            timeouts: &mut self.timeouts,
        };
        let mut root_fault = false;
        let root = if roll < 0.30 {
            let (root, fault) = request.owner_page(&mishaps, fault_rate);
            root_fault = fault;
            root
        } else if roll < 0.50 {
            request.vets_list(&mishaps)
        } else if roll < 0.75 {
            request.visit(&mishaps, fault_rate)
        } else if roll < 0.85 {
            request.pet_search(&mishaps)
        } else if roll < 0.95 {
            request.health_check()
        } else {
            request.cache_refresh()
        };
        let start = now.saturating_sub(3_000 * MS) / 1_000 * 1_000;
        let mut spans = Vec::new();
        request.place(root, None, start, &mut spans);
        let messages = wire::encode(&trace_id, &spans, encoding);
        GeneratedTrace { trace_id, messages, spans: spans.len(), root_fault }
    }
}
