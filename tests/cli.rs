//! The binary as a user runs it: `check-config` and `demo` with its HTTP endpoints.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tracewarden");

#[test]
fn check_config_accepts_the_example_and_names_bad_keys() {
    let ok = Command::new(BIN).args(["check-config", "config/tracewarden.toml"]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));
    // The compose deployment's file: sampling rules and three SLOs.
    let deploy = Command::new(BIN).args(["check-config", "deploy/tracewarden.toml"]).output().unwrap();
    assert_eq!(deploy.status.code(), Some(0), "{}", String::from_utf8_lossy(&deploy.stderr));
    assert!(String::from_utf8_lossy(&deploy.stdout).contains("slo: 3 objective(s)"));

    let path = std::env::temp_dir().join(format!("tw-warn-{}.toml", std::process::id()));
    std::fs::write(&path, "[[sampling.rules]]\nname = \"faults\"\nwhen = { outcome = \"fault\" }\nkeep = \"all\"\n")
        .unwrap();
    let warned = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(warned.status.code(), Some(0), "a warning is not an error");
    assert!(String::from_utf8_lossy(&warned.stdout).contains("warning: sampling.rules: no catch-all rule"));

    let path = std::env::temp_dir().join(format!("tw-rule-{}.toml", std::process::id()));
    std::fs::write(&path, "[[sampling.rules]]\nname = \"r\"\nkeep = \"rate\"\nrate = 2\n").unwrap();
    let bad_rule = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(bad_rule.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_rule.stderr).contains(r#"sampling.rules[0] ("r").rate: 2 is not a probability"#)
    );

    let path = std::env::temp_dir().join(format!("tw-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[window]\ndecision_wait = \"soon\"\n[metrics]\nmax_series = 0\n").unwrap();
    let bad = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("window.decision_wait"), "{stderr}");

    let path = std::env::temp_dir().join(format!("tw-bad2-{}.toml", std::process::id()));
    std::fs::write(&path, "[metrics]\nmax_series = 0\nseries_ttl = \"1s\"\n").unwrap();
    let bad = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr.contains("metrics.max_series") && stderr.contains("metrics.series_ttl"), "every problem: {stderr}");
}

fn get(addr: &str, path: &str) -> (u16, String) {
    get_with(addr, path, "")
}

fn get_with(addr: &str, path: &str, headers: &str) -> (u16, String) {
    request(addr, "GET", path, headers)
}

fn request(addr: &str, method: &str, path: &str, headers: &str) -> (u16, String) {
    let answer = answer(addr, method, path, headers);
    (answer.status, answer.text())
}

/// The answer to a request; `headers` as written on the wire (each line ending in CRLF).
fn answer(addr: &str, method: &str, path: &str, headers: &str) -> common::http::Answer {
    let lines: Vec<&str> = headers.split("\r\n").filter(|l| !l.is_empty()).collect();
    common::http::request(addr, method, path, &lines, b"").expect("the server answers")
}

/// The whole answer to a request as text, head and body.
fn raw_request(addr: &str, method: &str, path: &str, headers: &str) -> String {
    let answer = answer(addr, method, path, headers);
    format!("{}\r\n\r\n{}", answer.head, answer.text())
}

/// Starts `tracewarden demo` with `extra` arguments; returns the process and its HTTP address,
/// once it is serving.
fn spawn_demo(duration: &str, label: &str, extra: &[&str]) -> (std::process::Child, String) {
    let (child, demo) = spawn_demo_with_receivers(duration, label, extra);
    (child, demo.http)
}

/// Where a running demo listens.
struct DemoAddresses {
    http: String,
    /// `http://host:port` of the OTLP/HTTP receiver.
    otlp_endpoint: String,
    /// `http://host:port` of the OTLP/gRPC receiver.
    otlp_grpc_endpoint: String,
    /// `host:port` of the X-Ray UDP receiver.
    xray: String,
}

/// As [`spawn_demo`], with the receivers' addresses (every port chosen by the system, so demos
/// run side by side).
fn spawn_demo_with_receivers(duration: &str, label: &str, extra: &[&str]) -> (std::process::Child, DemoAddresses) {
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{label}.log"));
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", duration, "--listen", "127.0.0.1:0", "--rate", "1500"])
        // The canary from the start: these tests look at its faults, not at its rollout.
        .args(["--canary-after", "0s"])
        .args([
            "--otlp-grpc-listen",
            "127.0.0.1:0",
            "--otlp-http-listen",
            "127.0.0.1:0",
            "--xray-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut broker = None;
    let (mut otlp_endpoint, mut otlp_grpc_endpoint, mut xray) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("OTEL_EXPORTER_OTLP_ENDPOINT=").nth(1) {
            let endpoint = rest.split_whitespace().next().map(String::from);
            if line.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc") {
                otlp_grpc_endpoint = endpoint;
            } else {
                otlp_endpoint = endpoint;
            }
        }
        if let Some(rest) = line.split("AWS_XRAY_DAEMON_ADDRESS=").nth(1) {
            xray = rest.split_whitespace().next().map(String::from);
        }
        if let Some(rest) = line.split("http://").nth(1).filter(|_| line.contains("Prometheus metrics")) {
            addr = Some(rest.trim_end_matches("/metrics").to_string());
        }
        if line.contains("in-process mock cluster") {
            broker = line.rsplit(' ').next().map(String::from);
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let addr = addr.expect("the demo prints its metrics URL");
    assert!(broker.is_some_and(|b| b.contains(':')), "the demo prints the broker address");
    // Keep reading: the demo prints a summary now and then, and at exit.
    std::thread::spawn(move || lines.for_each(drop));
    let demo = DemoAddresses {
        http: addr,
        otlp_endpoint: otlp_endpoint.expect("the demo prints its OTLP endpoint"),
        otlp_grpc_endpoint: otlp_grpc_endpoint.expect("the demo prints its OTLP/gRPC endpoint"),
        xray: xray.expect("the demo prints its X-Ray address"),
    };
    (child, demo)
}

/// Real SDKs send to the demo's receivers (`tests/fixtures/send_to_receivers.py`: the OpenTelemetry
/// Python SDK's OTLP/HTTP and OTLP/gRPC exporters and the AWS X-Ray SDK for Python): every request is counted,
/// exactly, beside the demo's own traffic.
#[test]
fn sdks_send_to_the_demo_receivers_and_every_request_is_counted() {
    let (mut child, demo) = spawn_demo_with_receivers("90s", "demo-receivers", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/send_to_receivers.py");
    let sent = Command::new("python3")
        .args([script, &demo.otlp_endpoint, &demo.xray, &demo.otlp_grpc_endpoint])
        .output()
        .unwrap();
    assert!(sent.status.success(), "the SDKs sent: {}", String::from_utf8_lossy(&sent.stderr));
    let series = |family: &str, service: &str, operation: &str| {
        format!("{family}{{service=\"{service}\",operation=\"{operation}\",environment=")
    };
    let value = |body: &str, prefix: &str| -> Option<f64> {
        body.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
    };
    let expected = [
        (series("tracewarden_requests_total", "sdk-shop", "GET /cart/{id}"), 5.0),
        (series("tracewarden_faults_total", "sdk-shop", "GET /cart/{id}"), 1.0),
        (series("tracewarden_errors_total", "sdk-shop", "GET /cart/{id}"), 1.0),
        (series("tracewarden_requests_total", "grpc-shop", "GET /stock/{id}"), 3.0),
        (series("tracewarden_faults_total", "grpc-shop", "GET /stock/{id}"), 1.0),
        (series("tracewarden_errors_total", "grpc-shop", "GET /stock/{id}"), 1.0),
        (series("tracewarden_throttles_total", "grpc-shop", "GET /stock/{id}"), 1.0),
        (series("tracewarden_requests_total", "xray-shop", "GET /items/{id}"), 1.0),
        (series("tracewarden_faults_total", "xray-shop", "GET /items/{id}"), 0.0),
        (series("tracewarden_requests_total", "xray-shop", "GET /boom"), 1.0),
        (series("tracewarden_faults_total", "xray-shop", "GET /boom"), 1.0),
    ];
    let got = |body: &str| -> Vec<Option<f64>> { expected.iter().map(|(prefix, _)| value(body, prefix)).collect() };
    let want: Vec<Option<f64>> = expected.iter().map(|(_, v)| Some(*v)).collect();
    let what = common::explained(|| format!("{:?}, now {:?}", want, got(&get(&demo.http, "/metrics").1)));
    let body = common::wait_until(what, Duration::from_secs(60), || {
        let (_, body) = get(&demo.http, "/metrics");
        (got(&body) == want).then_some(body)
    });
    assert!(value(&body, "tracewarden_ingest_requests_total{receiver=\"otlp_http\",result=\"ok\"}") >= Some(5.0));
    assert_eq!(value(&body, "tracewarden_ingest_requests_total{receiver=\"xray\",result=\"ok\"}"), Some(2.0));
    assert_eq!(value(&body, "tracewarden_ingest_spans_total{receiver=\"otlp_grpc\"}"), Some(3.0));
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn demo_serves_metrics_and_services() {
    let (child, addr) = spawn_demo("40s", "demo-metrics", &[]);
    let (status, _) = get(&addr, "/healthz");
    assert_eq!(status, 200);

    let what = common::explained(|| format!("service metrics in:\n{}", get(&addr, "/metrics").1));
    let metrics = common::wait_until(what, Duration::from_secs(30), || {
        let (_, body) = get(&addr, "/metrics");
        let served = body.contains("tracewarden_latency_quantile_seconds{")
            && body.contains("tracewarden_dependency_requests_total{");
        served.then_some(body)
    });
    // Every worker joins the group: the demo becomes ready (a second member's join waits for the
    // mock broker's rebalance, so it may come after the first metrics).
    let what = common::explained(|| format!("the demo to be ready: {}", get(&addr, "/readyz").1));
    common::wait_for(what, Duration::from_secs(30), || get(&addr, "/readyz").0 == 200);
    for family in [
        "tracewarden_requests_total{service=\"frontend\",operation=\"GET /owners/{ownerId}\",environment=\"demo\"}",
        "tracewarden_faults_total{",
        "tracewarden_errors_total{",
        "tracewarden_throttles_total{",
        "tracewarden_latency_seconds_bucket{",
        "tracewarden_availability_ratio{",
        "tracewarden_spans_received_total{encoding=\"otlp_proto\"}",
        "tracewarden_spans_excluded_total{rule=\"elb-health-checks\"}",
        "tracewarden_spans_forwarded_total",
    ] {
        assert!(metrics.contains(family), "missing {family}");
    }
    assert!(!metrics.contains("operation=\"GET /health\""), "health checks are excluded from metrics");

    let (status, openmetrics) = get_with(&addr, "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n");
    assert_eq!(status, 200);
    assert!(openmetrics.ends_with("# EOF\n"), "OpenMetrics when asked for");
    assert!(openmetrics.contains("tracewarden_latency_seconds_bucket{") && openmetrics.contains(" # {trace_id=\""));

    // The services table comes from the owners' rollups (every 10 s, the first soon after the
    // series are owned): wait for the first that lists the page.
    let what = common::explained(|| format!("the frontend's owner page listed in {}", get(&addr, "/api/services").1));
    let owners = common::wait_until(what, Duration::from_secs(30), || {
        let (status, body) = get(&addr, "/api/services");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = json["services"].as_array().unwrap().clone();
        rows.into_iter().find(|r| r["service"] == "frontend" && r["operation"] == "GET /owners/{ownerId}")
    });
    assert!(owners["requests"].as_u64().unwrap() > 0);
    assert!(owners["availability"].as_f64().unwrap() < 1.0, "the demo injects faults");
    assert!(owners["p99Seconds"].as_f64().is_some());

    // The story (README, "The demo's story"): the map shows the failing edge, and top
    // contributors name the canary pod and its version first.
    let json = |path: &str| -> serde_json::Value { serde_json::from_str(&get(&addr, path).1).unwrap_or_default() };
    let first_value = |dimension: &str| {
        let path = format!("/api/contributors?service=customers-service&dimension={dimension}&by=faults");
        json(&path)["contributors"][0]["value"].as_str().map(str::to_string)
    };
    let what = common::explained(|| {
        format!(
            "the map and the contributors to tell the story:\n{}\n{}",
            json("/api/service-map"),
            json("/api/contributors?service=customers-service&dimension=k8s.pod.name&by=faults")
        )
    });
    common::wait_for(what, Duration::from_secs(30), || {
        let map = json("/api/service-map");
        let failing_edge = map["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| e["id"] == "frontend:demo->customers-service:demo" && e["faults"].as_u64() > Some(0))
        });
        failing_edge
            && first_value("k8s.pod.name").as_deref() == Some("customers-service-5b7c4d9f6-zr8vt")
            && first_value("service.version").as_deref() == Some("1.4.0-rc1")
    });
    // And comparing customers-service's faults with its other requests puts the canary's pod and
    // version first, far more frequent among the faults than among the rest.
    let comparison = json("/api/compare?service=customers-service&outcome=fault");
    let first_compared = |key: &str| {
        let keys = comparison["keys"].as_array().cloned().unwrap_or_default();
        keys.into_iter().find(|k| k["key"] == key).map(|k| k["values"][0].clone()).unwrap_or_default()
    };
    for (key, value) in [("k8s.pod.name", "customers-service-5b7c4d9f6-zr8vt"), ("service.version", "1.4.0-rc1")] {
        let first = first_compared(key);
        assert_eq!(first["value"], value, "{key} in {comparison}");
        assert!(first["lift"].as_f64().is_none_or(|lift| lift > 2.0), "{key}: {first}");
    }
    // Its faults by exception: the canary's bug is one group, on the canary's version alone; the
    // database timeouts of the other pods another (one fault in ten: wait for the first), their
    // owner ids templated away.
    let exceptions =
        || json("/api/exceptions?service=customers-service")["groups"].as_array().cloned().unwrap_or_default();
    let of_type =
        |groups: &[serde_json::Value], type_name: &str| groups.iter().find(|g| g["type"] == type_name).cloned();
    let what = common::explained(|| format!("both exception groups of customers-service: {:?}", exceptions()));
    let (bug, timeouts, groups) = common::wait_until(what, Duration::from_secs(60), || {
        let groups = exceptions();
        let bug = of_type(&groups, "java.lang.NullPointerException")?;
        let timeouts = of_type(&groups, "org.springframework.dao.QueryTimeoutException")?;
        Some((bug, timeouts, groups))
    });
    assert_eq!(
        bug["frame"],
        "at org.springframework.samples.petclinic.customers.web.OwnerResource.findOwner(OwnerResource.java:74)",
        "{groups:?}"
    );
    assert_eq!(bug["versions"], serde_json::json!(["1.4.0-rc1"]), "{bug}");
    assert_eq!(bug["operation"], "GET /owners/{ownerId}");
    assert_eq!(
        timeouts["message"],
        "PreparedStatementCallback; SQL [SELECT id, first_name, last_name FROM owners WHERE id = {n}]; ERROR: canceling statement due to statement timeout",
        "{groups:?}"
    );
    assert_eq!(
        timeouts["frame"],
        "at org.springframework.samples.petclinic.customers.model.OwnerRepository.findById(OwnerRepository.java:41)"
    );
    assert_eq!(groups.len(), 2, "two groups: {groups:?}");

    terminate(&child);
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");
}

/// The demo's SLO alerts follow its fault injection: `owners-availability` fires page-fast soon
/// after the start (the canary runs from it here), and resolves once
/// `POST /api/demo/faults?enabled=false` stops the faults and rolls the canary back.
#[test]
fn demo_slo_fires_with_faults_and_resolves_when_they_stop() {
    let (child, addr) = spawn_demo("6m", "demo-slo", &[]);
    let firing = |tier: &str| {
        let (_, body) = get(&addr, "/api/slos");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let slos = json["slos"].as_array().unwrap().clone();
        let owners = slos.iter().find(|s| s["name"] == "owners-availability").cloned();
        owners.is_some_and(|o| o["firing"].as_array().unwrap().iter().any(|f| f == tier))
    };
    common::wait_for("page-fast to fire while faults are injected", Duration::from_secs(90), || firing("page-fast"));
    let (status, body) = request(&addr, "POST", "/api/demo/faults?enabled=false", "");
    // Switching faults off rolls the canary back too.
    assert_eq!((status, body.as_str()), (200, r#"{"canary":false,"faults":false}"#));
    common::wait_for("page-fast to resolve once the faults stop", Duration::from_secs(240), || !firing("page-fast"));
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

/// `demo --config FILE` runs the file's SLOs, sampling rules and metrics settings in place of the
/// demo's own, on the in-process cluster: the file's Kafka brokers are not used.
#[test]
fn demo_runs_the_slos_rules_and_metrics_settings_of_a_config_file() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-config.toml");
    std::fs::write(
        &path,
        r#"
[kafka]
brokers = "kafka.invalid:9092"

[window]
decision_wait = "1s"

[[metrics.exclude]]
name = "no-vets"
operation = "GET /vets"

[[sampling.rules]]
name = "keep-everything"
keep = "all"

[[slo]]
name = "frontend-from-the-file"
service = "frontend"
sli = "availability"
goal = 0.9
window = "1h"
"#,
    )
    .unwrap();
    let (child, addr) = spawn_demo("60s", "demo-config", &["--config", path.to_str().unwrap()]);
    let slo_names = || {
        let json: serde_json::Value = serde_json::from_str(&get(&addr, "/api/slos").1).unwrap();
        json["slos"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    common::wait_for("an SLO evaluated", Duration::from_secs(30), || !slo_names().is_empty());
    assert_eq!(slo_names(), ["frontend-from-the-file"], "the file's SLOs, not the demo's");
    let kept = "tracewarden_traces_decided_total{decision=\"kept\",rule=\"keep-everything\"}";
    let excluded = "tracewarden_spans_excluded_total{rule=\"no-vets\"}";
    let what = common::explained(|| format!("the file's rule and exclusion in:\n{}", get(&addr, "/metrics").1));
    let metrics = common::wait_until(what, Duration::from_secs(30), || {
        let (_, body) = get(&addr, "/metrics");
        (body.contains(kept) && body.contains(excluded)).then_some(body)
    });
    assert!(!metrics.contains("rule=\"dynamic\""), "the demo's sampling rules are replaced");
    assert!(!metrics.contains("rule=\"elb-health-checks\""), "the demo's exclusions are replaced");
    assert!(
        !metrics.contains("tracewarden_requests_total{service=\"frontend\",operation=\"GET /vets\""),
        "GET /vets is excluded from the service metrics"
    );
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

/// Sends SIGTERM (graceful shutdown) without extra dependencies.
fn terminate(child: &std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

mod common;

/// The mock cluster's coordinator holds a rebalance of a group already up for the session timeout
/// less a second, whether every member has rejoined or not: with the default 45 s, a worker that
/// joins after the others (two workers rarely land in the same join) waits 44 s.
const MOCK_GROUP_TIMING: [(&str, &str); 2] = [
    ("TRACEWARDEN__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "6000"),
    ("TRACEWARDEN__KAFKA__CLIENT__HEARTBEAT_INTERVAL_MS", "500"),
];

/// `tracewarden run` as deployed: consumes, serves exact metrics, and on SIGTERM decides the
/// traces still buffered, forwards them and commits. The decision wait is an hour, so the only
/// ways out of the window while the test runs are `window.max_spans_per_trace` (two spans: the
/// first five traces, decided at once as `too_large`) and the shutdown (the last trace, one span).
#[test]
fn run_consumes_serves_and_shuts_down_cleanly_on_sigterm() {
    use tracewarden::testing::{encode, SpanSpec, INTERNAL, SERVER};
    let harness = common::Harness::new("cli-run");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .arg("run")
        .env("TRACEWARDEN__KAFKA__BROKERS", &harness.brokers)
        .env("TRACEWARDEN__KAFKA__GROUP_ID", "cli-run")
        .envs(MOCK_GROUP_TIMING)
        .env("TRACEWARDEN__HTTP__LISTEN", &listen)
        .env("TRACEWARDEN__WINDOW__DECISION_WAIT", "1h")
        .env("TRACEWARDEN__WINDOW__MAX_TRACE_AGE", "2h")
        .env("TRACEWARDEN__WINDOW__MAX_SPANS_PER_TRACE", "2")
        .env("TRACEWARDEN__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = || TcpStream::connect(&listen).is_ok() && get(&listen, "/readyz").0 == 200;
    let became_ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::wait_for("run to be ready", Duration::from_secs(30), ready)
    }));
    if became_ready.is_err() {
        // What each worker's group membership was doing, and the log, for the diagnosis.
        let readyz = if TcpStream::connect(&listen).is_ok() { get(&listen, "/readyz").1 } else { String::new() };
        terminate(&child);
        let mut log = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut log);
        panic!("never ready: {readyz}\n{log}");
    }
    let (_, readyz) = get(&listen, "/readyz");
    let readyz: serde_json::Value = serde_json::from_str(&readyz).unwrap();
    let workers = readyz["workers"].as_array().expect("/readyz lists the workers");
    assert!(!workers.is_empty() && workers.iter().all(|w| w["joined"] == true), "{readyz}");
    // Ready means the series group has assigned this lone instance its (every) points partition.
    let series = readyz["seriesPartitions"].as_array().expect("/readyz lists the series partitions");
    assert!(!series.is_empty(), "a lone instance owns the points partitions once ready: {readyz}");
    for t in 1..=5u8 {
        let spans = [
            SpanSpec::new("api", t, 1, None, SERVER, "x").http("GET", "/r", if t == 1 { 500 } else { 200 }),
            SpanSpec::new("api", t, 2, Some(1), INTERNAL, "render"),
        ];
        harness.produce(&hex::encode([t; 16]), &encode(&spans));
    }
    let requests = "tracewarden_requests_total{service=\"api\",operation=\"GET /r\",environment=\"default\"} 5";
    let metrics = || get(&listen, "/metrics").1;
    let what = common::explained(|| format!("5 requests counted and 5 traces forwarded:\n{}", metrics()));
    let body = common::wait_until(what, Duration::from_secs(30), || {
        let body = metrics();
        (body.contains(requests) && body.contains("tracewarden_traces_forwarded_total 5")).then_some(body)
    });
    assert!(body.contains("tracewarden_faults_total{service=\"api\",operation=\"GET /r\",environment=\"default\"} 1"));
    assert!(body.contains("tracewarden_traces_closed_total{reason=\"too_large\"} 5"), "{body}");
    // One more trace, with its root and under the span limit: it stays buffered (the gauges are
    // published every second) until SIGTERM, which decides and forwards it on the way out.
    let last = hex::encode([9u8; 16]);
    harness.produce(&last, &encode(&[SpanSpec::new("api", 9, 1, None, SERVER, "last")]));
    let what = common::explained(|| format!("the last trace to be received and buffered:\n{}", metrics()));
    let body = common::wait_until(what, Duration::from_secs(30), || {
        let body = metrics();
        let buffered = body.contains("tracewarden_spans_received_total{encoding=\"otlp_proto\"} 11")
            && body.contains("tracewarden_buffered_traces 1\n");
        buffered.then_some(body)
    });
    assert!(body.contains("tracewarden_traces_forwarded_total 5\n"), "the last trace is not decided yet");
    assert!(!body.contains("tracewarden_traces_closed_total{reason=\"shutdown\"} 1"), "{body}");
    assert!(
        harness.read_all("sampled_spans", 5).iter().all(|r| r.key.as_deref() != Some(last.as_bytes())),
        "the last trace is not forwarded before SIGTERM"
    );
    terminate(&child);
    let status = child.wait().unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(status.success(), "exit code {status:?}\n{logs}");
    assert!(logs.lines().any(|l| l.starts_with('{') && l.contains("tracewarden running")), "JSON logs: {logs}");
    let forwarded = harness.read_all("sampled_spans", 6);
    assert_eq!(forwarded.len(), 6);
    assert!(
        forwarded.iter().any(|r| r.key.as_deref() == Some(last.as_bytes())),
        "the buffered trace was decided and forwarded at shutdown"
    );
    assert!(harness.committed_to_end(), "offsets committed on the way out");
}

#[test]
fn run_names_a_missing_input_topic_and_exits_2() {
    let harness = common::Harness::new("cli-missing");
    let output = Command::new(BIN)
        .arg("run")
        .env("TRACEWARDEN__KAFKA__BROKERS", &harness.brokers)
        .env("TRACEWARDEN__KAFKA__INPUT_TOPICS", "nope_spans")
        .env("TRACEWARDEN__KAFKA__CLIENT__ALLOW_AUTO_CREATE_TOPICS", "false")
        .env("TRACEWARDEN__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope_spans"));
}

/// A receiver port already taken stops the demo at once with an error naming the address and the
/// flag that changes it.
#[test]
fn demo_names_a_taken_receiver_port_and_the_flag_to_change_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--xray-listen", "127.0.0.1:0", "--otlp-grpc-listen", "127.0.0.1:0"])
        .args(["--otlp-http-listen", &addr])
        .args(["--duration", "30s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&addr) && stderr.contains("--otlp-http-listen"), "{stderr}");
}

/// `[http] bearer_token`: the data is served only to holders of the token (the probes and the
/// console's own files stay open), an overlong query is refused, and no secret — the token, Kafka
/// client passwords — shows in any output of the process: its logs, its answers, `check-config`.
#[test]
fn run_serves_its_data_only_with_the_token_and_never_shows_a_secret() {
    let harness = common::Harness::new("cli-secrets");
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (token, kafka_password, key_password) =
        (format!("token-{unique}"), format!("kafka-pw-{unique}"), format!("key-pw-{unique}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let secrets = [
        ("TRACEWARDEN__HTTP__BEARER_TOKEN", token.as_str()),
        ("TRACEWARDEN__KAFKA__CLIENT__SASL_USERNAME", "tracewarden"),
        ("TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD", kafka_password.as_str()),
    ];
    let mut outputs = String::new();
    // A client configuration librdkafka refuses (a key file that is not there, with its
    // password): `run` names it before it starts, and quotes no secret.
    let refused = Command::new(BIN)
        .arg("run")
        .envs(secrets)
        .env("TRACEWARDEN__KAFKA__CLIENT__SECURITY_PROTOCOL", "SSL")
        .env("TRACEWARDEN__KAFKA__CLIENT__SSL_KEY_LOCATION", "/no/such/key.pem")
        .env("TRACEWARDEN__KAFKA__CLIENT__SSL_CERTIFICATE_LOCATION", "/no/such/cert.pem")
        .env("TRACEWARDEN__KAFKA__CLIENT__SSL_KEY_PASSWORD", &key_password)
        .env("TRACEWARDEN__KAFKA__BROKERS", &harness.brokers)
        .env("TRACEWARDEN__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "a refused client configuration stops run: {refusal}");
    assert!(refusal.contains("kafka.client.ssl."), "the refused property is named: {refusal}");
    outputs += &refusal;
    let config = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-secrets.toml");
    std::fs::write(&config, "[kafka]\ngroup_id = \"cli-secrets\"\n").unwrap();
    let checked = Command::new(BIN).args(["check-config"]).arg(&config).envs(secrets).output().unwrap();
    assert!(checked.status.success(), "{checked:?}");
    outputs += &String::from_utf8_lossy(&checked.stdout);
    outputs += &String::from_utf8_lossy(&checked.stderr);
    let mut child = Command::new(BIN)
        .arg("run")
        .envs(secrets)
        .env("TRACEWARDEN__KAFKA__BROKERS", &harness.brokers)
        .env("TRACEWARDEN__KAFKA__GROUP_ID", "cli-secrets")
        .envs(MOCK_GROUP_TIMING)
        .env("TRACEWARDEN__HTTP__LISTEN", &listen)
        .env("TRACEWARDEN__LOG__LEVEL", "debug")
        // librdkafka's own debug output of its configuration.
        .env("TRACEWARDEN__KAFKA__CLIENT__DEBUG", "conf,security,generic")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both outputs while the process runs: at debug level it writes more than a pipe holds.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout_reader = drain(Box::new(child.stdout.take().unwrap()));
    let stderr_reader = drain(Box::new(child.stderr.take().unwrap()));
    let what = common::explained(|| format!("run to be ready: {:?}", get(&listen, "/readyz")));
    common::wait_for(what, Duration::from_secs(30), || {
        TcpStream::connect(&listen).is_ok() && get(&listen, "/readyz").0 == 200
    });
    let span = tracewarden::testing::SpanSpec::new("api", 7, 1, None, tracewarden::testing::SERVER, "GET /x");
    harness.produce(&hex::encode([7u8; 16]), &tracewarden::testing::encode(&[span.http("GET", "/x", 200)]));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    for path in ["/api/services", "/metrics", "/api/traces", "/api/pipeline", "/api/slos"] {
        let refused = raw_request(&listen, "GET", path, "");
        assert!(refused.starts_with("HTTP/1.1 401"), "{path} without the token: {refused}");
        assert!(refused.to_ascii_lowercase().contains("www-authenticate: bearer realm=\"tracewarden\""), "{refused}");
        let wrong = raw_request(&listen, "GET", path, "Authorization: Bearer not-the-token\r\n");
        assert!(wrong.starts_with("HTTP/1.1 401"), "{path} with another token: {wrong}");
        let served = raw_request(&listen, "GET", path, &bearer);
        assert!(served.starts_with("HTTP/1.1 200"), "{path} with the token: {served}");
        outputs += &served;
    }
    for open in ["/healthz", "/readyz", "/", "/console/app.js"] {
        let served = raw_request(&listen, "GET", open, "");
        assert!(served.starts_with("HTTP/1.1 200"), "{open} is open (and the instance stays ready): {served}");
        outputs += &served;
    }
    let long = format!("/api/traces?service={}", "x".repeat(9000));
    let refused = raw_request(&listen, "GET", &long, &bearer);
    assert!(refused.starts_with("HTTP/1.1 414") && refused.contains("http.max_query_bytes"), "{refused}");
    terminate(&child);
    let status = child.wait().unwrap();
    let (stdout, stderr) = (stdout_reader.join().unwrap(), stderr_reader.join().unwrap());
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("CONFWARN"), "librdkafka's configuration logs are in the output: {stderr}");
    outputs += &stdout;
    outputs += &stderr;
    for secret in [&token, &kafka_password, &key_password] {
        assert!(!outputs.contains(secret.as_str()), "{secret} shows in an output:\n{outputs}");
    }
}
