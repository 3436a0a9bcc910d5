//! `tracewarden demo`: the whole product in one process with nothing installed.
//!
//! Starts librdkafka's mock cluster (the real Kafka protocol on a loopback port), creates the
//! input topic, runs the PetClinic generator against it, runs the full pipeline and the HTTP
//! endpoints, and prints where to look. Faults can be switched off and on while it runs with
//! `POST /api/demo/faults?enabled=false`, a route of the demo's own ([`fault_switch`]) next to the
//! pipeline's ([`crate::http::router`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Prints a line to stdout, ignoring a closed pipe (`tracewarden demo | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::mocking::MockCluster;

use crate::clock::SystemClock;
use crate::config::{Config, HttpConfig, HumanDuration, KafkaConfig};
use crate::generate::deployment::CANARY_VERSION;
use crate::generate::{GenerateProgress, GenerateSettings, Switches, TrafficProfile};
use crate::model::Encoding;

/// Options of the demo command.
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub duration: Option<Duration>,
    /// Spans per second the generator produces.
    pub rate: f64,
    /// When customers-service's canary is rolled out (`--canary-after`; zero: from the start).
    pub canary_after: Duration,
    pub partitions: i32,
    /// A configuration file (`--config`) and what it holds: its sampling rules, SLOs, window and
    /// metrics settings replace the demo's own (see [`demo_config`]).
    pub config: Option<(PathBuf, Config)>,
    /// Where the OTLP/gRPC receiver listens (`--otlp-grpc-listen`).
    pub otlp_grpc_listen: SocketAddr,
    /// Where the OTLP/HTTP receiver listens (`--otlp-http-listen`).
    pub otlp_http_listen: SocketAddr,
    /// Where the X-Ray UDP receiver listens (`--xray-listen`).
    pub xray_listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the in-process Kafka (librdkafka mock cluster): {0}")]
    Cluster(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
}

/// The demo's configuration: the in-process cluster, HTTP on `listen`, and either `file`'s
/// `[[sampling.rules]]`, `[[slo]]`, `[window]` and `[metrics]` (as loaded: defaults where the file
/// is silent) or, without a file, the demo's own ([`built_in_config`]). A file's `[kafka]` and
/// `[log]` settings give way to the cluster's and the demo's console logs, its `[http]` address
/// to `listen` (its credentials stay). Without a file, `TRACEWARDEN__HTTP__BEARER_TOKEN` in the
/// environment asks for a token, as it does of `run`.
pub fn demo_config(brokers: &str, listen: SocketAddr, file: Option<&Config>) -> Config {
    let mut config = match file {
        Some(file) => Config {
            window: file.window.clone(),
            metrics: file.metrics.clone(),
            sampling: file.sampling.clone(),
            slo: file.slo.clone(),
            investigation: file.investigation.clone(),
            ..Config::default()
        },
        None => built_in_config(),
    };
    config.kafka =
        KafkaConfig { brokers: brokers.into(), group_id: "tracewarden-demo".into(), ..KafkaConfig::default() };
    // The mock cluster's coordinator holds a rebalance of a group already up for the session
    // timeout less a second, whether every member has rejoined or not: a worker joining late
    // would wait 44 s with the default session.
    for (key, value) in [("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")] {
        config.kafka.client.insert(key.into(), value.into());
    }
    config.http = match file {
        Some(file) => HttpConfig { listen, advertised_url: None, ..file.http.clone() },
        None => HttpConfig {
            listen,
            bearer_token: std::env::var("TRACEWARDEN__HTTP__BEARER_TOKEN").ok().map(crate::settings::Secret::new),
            ..config.http
        },
    };
    config
}

/// The demo's own settings: defaults, a shorter decision wait so results show quickly, a
/// health-check exclusion like the one a real deployment would have, its sampling rules and SLOs.
pub fn built_in_config() -> Config {
    let mut config = Config::default();
    config.window.decision_wait = HumanDuration(Duration::from_secs(2));
    config.window.max_trace_age = HumanDuration(Duration::from_secs(10));
    config.metrics.exclude = vec![toml::from_str(
        "name = \"elb-health-checks\"\nattribute = { key = \"user_agent.original\", matches = \"ELB-HealthChecker*\" }",
    )
    .expect("valid exclusion rule")];
    config.sampling = toml::from_str(DEMO_SAMPLING_RULES).expect("valid demo rules");
    config.slo = crate::slo::config::parse_slos(DEMO_SLOS).expect("valid demo SLOs");
    config
}

/// The demo's SLOs: the owner page's availability breaches within a minute while faults are
/// injected (owner lookups, mostly those customers-service's canary pod serves, fail several times
/// more often than its 99 % goal allows); the vets list's latency (one request in ten over 1 s,
/// against 15 % allowed) keeps it at WARNING with a budget alert, whatever the faults. The tiers are sized for a demo: `page-fast`
/// (12 min long window, 1 min short one, threshold 2x) fires within a minute of the faults and
/// resolves within about two minutes of `POST /api/demo/faults?enabled=false`; `ticket` (1 h,
/// 5 min, 1x) resolves about five minutes later; the budget, spent, recovers within the hour.
pub const DEMO_SLOS: &str = r#"
[[slo]]
name = "owners-availability"
service = "frontend"
operation = "GET /owners/{ownerId}"
sli = "availability"
goal = 0.99
window = "1h"
alerts = [
  { tier = "page-fast", long = "12m", share = 0.4, severity = "page" },
  { tier = "ticket", long = "1h", share = 1.0, severity = "ticket" },
]

[[slo]]
name = "vets-latency"
service = "frontend"
operation = "GET /vets"
sli = "latency"
threshold = "1s"
goal = 0.85
window = "1h"
alerts = [
  { tier = "page-fast", long = "12m", share = 0.4, severity = "page" },
  { tier = "ticket", long = "1h", share = 1.0, severity = "ticket" },
]
"#;

/// The demo's tail-sampling rules: what most teams start with.
pub const DEMO_SAMPLING_RULES: &str = r#"
[[rules]]
name = "keep-faults"
when = { outcome = "fault" }
keep = "all"

[[rules]]
name = "keep-slow"
when = { min_duration = "1s" }
keep = "all"

[[rules]]
name = "drop-health-checks"
when = { attribute = { key = "user_agent.original", matches = "ELB-HealthChecker*" } }
keep = "none"

[[rules]]
name = "dynamic"
keep = "dynamic"
goal_rate = 10
key = ["service", "operation", "outcome"]
adjust_every = "5s"
"#;

pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    // The receivers, so that a real application can send to the demo: OTLP onto the input topic,
    // X-Ray segments onto their own topic, read as `xray_json`. Bound first: a taken port stops
    // the demo before anything starts.
    let hints = crate::ingest::BindHints {
        otlp_grpc: "--otlp-grpc-listen",
        otlp_http: "--otlp-http-listen",
        xray: "--xray-listen",
    };
    let receiver_config = crate::ingest::IngestConfig {
        otlp: Some(crate::ingest::OtlpIngestConfig {
            grpc_listen: options.otlp_grpc_listen,
            http_listen: options.otlp_http_listen,
            ..Default::default()
        }),
        xray: Some(crate::ingest::XrayIngestConfig { listen: options.xray_listen, ..Default::default() }),
    };
    let receivers = crate::ingest::bind(&receiver_config, hints).await?;
    let cluster = MockCluster::new(1).map_err(DemoError::Cluster)?;
    let brokers = cluster.bootstrap_servers();
    let mut config = demo_config(&brokers, options.listen, options.config.as_ref().map(|(_, c)| c));
    config.ingest = receiver_config;
    let xray_topic = config.ingest.xray.as_ref().map(|x| x.topic.clone()).unwrap_or_default();
    config.kafka.inputs.push(crate::kafka_client::InputTopic {
        topic: xray_topic,
        encoding: crate::format::InputEncoding::Fixed(Encoding::XRAY_JSON),
    });
    // The mock cluster does not serve CreateTopics: create every topic through its own API.
    let inputs = config.kafka.all_input_topics();
    let topics = inputs.iter().chain([
        &config.kafka.output_topic,
        &config.kafka.dead_letter_topic,
        &config.kafka.alerts_topic,
        &config.kafka.aggregates_topic,
        &config.kafka.slo_state_topic,
    ]);
    for topic in topics {
        cluster.create_topic(topic, options.partitions, 1).map_err(DemoError::Cluster)?;
    }
    // The mock broker is slow with produce requests spread over many partitions: the points
    // topic gets the demo's partition count, not the production default.
    config.kafka.points_partitions = options.partitions;
    let k = &config.kafka;
    for (topic, partitions) in
        [(&k.points_topic, k.points_partitions), (&k.timeline_topic, k.points_partitions), (&k.rollups_topic, 1)]
    {
        cluster.create_topic(topic, partitions, 1).map_err(DemoError::Cluster)?;
    }
    let switches = Switches::new(options.canary_after.is_zero());
    let clock = SystemClock::shared();
    let pipeline = crate::pipeline::start(&config, clock)?;
    let stop_http = Arc::new(tokio::sync::Notify::new());
    let (bound, server) = {
        let stop = stop_http.clone();
        let app = crate::http::router(pipeline.handles.clone()).merge(fault_switch(switches.clone()));
        let served = crate::http::serve_router(&config.http, app, async move { stop.notified().await }).await?;
        pipeline.handles.group.set_url(&config.http.advertised(served.0));
        served
    };
    let receivers = receivers.start(
        &config.ingest,
        &config.kafka,
        &pipeline.kafka_session,
        &pipeline.handles.telemetry.registry,
        stop_http.clone(),
    )?;

    let stop_generator = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(GenerateProgress::default());
    let generator = {
        let settings = GenerateSettings {
            kafka: crate::kafka_client::KafkaConfig { brokers: brokers.clone(), ..Default::default() },
            topic: config.kafka.input_topics[0].clone(),
            rate: options.rate,
            duration: None,
            encoding: Encoding::OTLP_PROTO,
            profile: TrafficProfile::default(),
            seed: 7,
        };
        let (switches, stop, progress) = (switches.clone(), stop_generator.clone(), progress.clone());
        std::thread::spawn(move || crate::generate::run(&settings, switches, stop, progress))
    };
    if !options.canary_after.is_zero() {
        let (switches, after) = (switches.clone(), options.canary_after);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            // Unless faults were switched off (the canary rolled back) before it came out.
            if switches.faults.load(Ordering::SeqCst) {
                switches.canary.store(true, Ordering::SeqCst);
                say!("customers-service canary {CANARY_VERSION} rolled out (see /api/deployments?service=customers-service)");
            }
        });
    }

    say!("tracewarden demo is running");
    say!("  Console:            http://{bound}/");
    say!("  Kafka (in-process mock cluster): {brokers}");
    say!("    input topic:  {}   output topic: {}", config.kafka.input_topics[0], config.kafka.output_topic);
    say!("    watch it:     kcat -b {brokers} -C -t {} -f '%k\\n'", config.kafka.output_topic);
    say!("  Prometheus metrics: http://{bound}/metrics");
    say!("  Services (JSON):    http://{bound}/api/services");
    say!("  Health / readiness: http://{bound}/healthz  http://{bound}/readyz");
    say!("  SLOs (JSON):        http://{bound}/api/slos");
    say!("  Service map (JSON): http://{bound}/api/service-map");
    say!("  Faults by pod:      http://{bound}/api/contributors?service=customers-service&dimension=k8s.pod.name&by=faults");
    say!("  SLO alerts:         kcat -b {brokers} -C -t {}", config.kafka.alerts_topic);
    say!("  Deployments (JSON): http://{bound}/api/deployments?service=customers-service");
    if !options.canary_after.is_zero() {
        say!(
            "  Canary:             customers-service {CANARY_VERSION} rolls out in {}",
            crate::duration::format_duration(options.canary_after)
        );
    }
    say!(
        "  Fault injection:    curl -X POST 'http://{bound}/api/demo/faults?enabled=false' (rolls the canary back too)"
    );
    if let (Some(grpc), Some(otlp), Some(xray)) = (receivers.otlp_grpc, receivers.otlp_http, receivers.xray) {
        say!("  Send your own spans: OTEL_EXPORTER_OTLP_ENDPOINT=http://{otlp} (OTLP/HTTP, protobuf or JSON)");
        say!("                       OTEL_EXPORTER_OTLP_ENDPOINT=http://{grpc} OTEL_EXPORTER_OTLP_PROTOCOL=grpc");
        say!("                       AWS_XRAY_DAEMON_ADDRESS={xray} (X-Ray SDKs; record every request)");
    }
    if let Some((path, _)) = &options.config {
        say!("  Configuration:      sampling rules, SLOs, window and metrics from {}", path.display());
    }
    say!("Press Ctrl-C to stop.");
    let sampling = SamplingSummary {
        rules: config.sampling.rules.iter().map(|r| r.name.clone()).chain([crate::sampling::NO_MATCH.into()]).collect(),
        note: match &options.config {
            None => "every fault and slow trace, no health check, the rest by dynamic sampling".into(),
            Some((path, _)) => format!("by the rules of {}", path.display()),
        },
    };

    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                print_summary(&pipeline.handles, &progress, switches.faults.load(Ordering::Relaxed), &sampling);
            }
            _ = crate::shutdown_signal() => break,
            _ = async {
                match options.duration {
                    Some(d) => tokio::time::sleep_until(started + d).await,
                    None => std::future::pending().await,
                }
            } => break,
        }
        if pipeline.is_finished() {
            break;
        }
    }
    say!("stopping: deciding buffered traces, flushing forwards, committing offsets");
    stop_generator.store(true, Ordering::SeqCst);
    let generated = tokio::task::spawn_blocking(move || generator.join()).await;
    if let Ok(Ok(Err(e))) = generated {
        tracing::error!(error = %e, "generator failed");
    }
    let handles = pipeline.handles.clone();
    tokio::task::spawn_blocking(move || pipeline.stop()).await.expect("pipeline stop task")?;
    print_summary(&handles, &progress, switches.faults.load(Ordering::Relaxed), &sampling);
    stop_http.notify_waiters();
    let _ = server.await;
    drop(cluster);
    Ok(())
}

/// `POST /api/demo/faults?enabled=BOOL`: switches the generator's fault injection on or off,
/// rolling customers-service's canary back with it (or out again), and answers
/// `{"faults": BOOL, "canary": BOOL}`.
pub fn fault_switch(switches: Arc<Switches>) -> Router {
    #[derive(serde::Deserialize)]
    struct Toggle {
        enabled: bool,
    }
    async fn set(State(switches): State<Arc<Switches>>, Query(toggle): Query<Toggle>) -> Json<serde_json::Value> {
        switches.faults.store(toggle.enabled, Ordering::SeqCst);
        switches.canary.store(toggle.enabled, Ordering::SeqCst);
        say!(
            "faults switched {}: customers-service canary {CANARY_VERSION} {}",
            if toggle.enabled { "on" } else { "off" },
            if toggle.enabled { "rolled out" } else { "rolled back" }
        );
        Json(serde_json::json!({ "faults": toggle.enabled, "canary": toggle.enabled }))
    }
    Router::new().route("/api/demo/faults", post(set)).with_state(switches)
}

/// What the periodic summary says about sampling: the rules whose decisions it adds up, and how
/// they decide.
struct SamplingSummary {
    rules: Vec<String>,
    note: String,
}

fn print_summary(
    handles: &crate::pipeline::Handles,
    progress: &GenerateProgress,
    faults: bool,
    sampling: &SamplingSummary,
) {
    let t = &handles.telemetry;
    let received = t.spans_received_total();
    let decided = |decision: &str| -> u64 {
        sampling.rules.iter().map(|rule| t.traces_decided.with_label_values(&[decision, rule.as_str()]).get()).sum()
    };
    let (kept, dropped) = (decided("kept"), decided("dropped"));
    say!(
        "generated {} traces / {} spans (faults {}) | received {} spans | buffered {} traces | forwarded {} traces / {} spans",
        progress.traces.load(Ordering::Relaxed),
        progress.spans.load(Ordering::Relaxed),
        if faults { "on" } else { "off" },
        received,
        t.buffered_traces.get(),
        t.traces_forwarded.get(),
        t.spans_forwarded.get(),
    );
    if kept + dropped > 0 {
        say!(
            "  tail sampling: kept {kept} of {} traces ({:.1}%): {}",
            kept + dropped,
            100.0 * kept as f64 / (kept + dropped) as f64,
            sampling.note
        );
    }
    let now = handles.clock.now();
    for slo in handles.slos.lock().expect("slo engine lock").reports((now.0 / 1_000_000_000) as i64) {
        say!(
            "  SLO {:<22} {:<17} attainment {:>7}  budget left {:>7.1}%  firing: {}",
            slo.name,
            slo.status,
            slo.attainment.map(|a| format!("{:.4}", a)).unwrap_or_else(|| "-".into()),
            slo.error_budget.remaining_ratio * 100.0,
            if slo.firing.is_empty() { "-".to_string() } else { slo.firing.join(", ") },
        );
    }
    // The services table of /api/services: the group view's rollups.
    let mut rows: Vec<_> = handles
        .group
        .window(now)
        .into_iter()
        .filter_map(|(id, _, aggregate)| match id {
            crate::signals::SeriesId::Service(key) => Some((key, aggregate.figures())),
            _ => None,
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    say!("  {:<20} {:<42} {:>8} {:>8} {:>9} {:>9}", "service", "operation", "req/win", "avail", "p50 ms", "p99 ms");
    for (key, row) in rows {
        say!(
            "  {:<20} {:<42} {:>8} {:>8} {:>9} {:>9}",
            key.service,
            key.operation,
            row.requests,
            row.availability.map(|a| format!("{:.3}", a)).unwrap_or_else(|| "-".into()),
            row.p50_seconds.map(|s| format!("{:.1}", s * 1e3)).unwrap_or_else(|| "-".into()),
            row.p99_seconds.map(|s| format!("{:.1}", s * 1e3)).unwrap_or_else(|| "-".into()),
        );
    }
}
