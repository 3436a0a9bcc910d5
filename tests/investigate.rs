//! Investigation APIs through Kafka (librdkafka's mock cluster) and HTTP: a known trace set in,
//! exactly the expected summaries out of `/api/traces`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tracewarden::testing::{encode, AttrSpec, SpanSpec, CLIENT, SERVER};

/// Trace `t`: frontend GET /owners → customers GET /owners/{id}; the customers service answers
/// 500 for t ≤ 3, 404 for t = 4, else 200. Trace 9 is slow (2 s).
fn trace(t: u8) -> Vec<SpanSpec> {
    let status = match t {
        1..=3 => 500,
        4 => 404,
        _ => 200,
    };
    let start = T0.0 - 10_000_000_000;
    let micros = if t == 9 { 2_000_000 } else { 20_000 };
    vec![
        SpanSpec::new("frontend", t, 1, None, SERVER, "GET")
            .http("GET", "/owners", status)
            .micros(micros)
            .starting(start),
        SpanSpec::new("frontend", t, 2, Some(1), CLIENT, "GET")
            .attr("server.address", AttrSpec::Str("customers"))
            .micros(8_000)
            .starting(start + 1_000_000),
        SpanSpec::new("customers", t, 3, Some(2), SERVER, "GET")
            .http("GET", "/owners/{id}", status)
            .micros(7_000)
            .starting(start + 2_000_000),
    ]
}

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(addr, path).expect("the server answers");
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["traces"].as_array().unwrap().iter().map(|t| t["traceId"].as_str().unwrap()[..2].to_string()).collect()
}

#[test]
fn the_trace_index_answers_searches_for_decided_traces() {
    let mut harness = Harness::new("investigate-traces");
    harness.config.sampling = toml::from_str(
        r#"
[[rules]]
name = "keep-faults"
when = { outcome = "fault" }
keep = "all"
[[rules]]
name = "drop-the-rest"
keep = "none"
"#,
    )
    .unwrap();
    let pipeline = harness.start();
    let messages: Vec<(String, bytes::Bytes)> =
        (1..=9).map(|t| (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&trace(t)))).collect();
    harness.produce_all(&messages);
    wait_for("every span read", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(27.0)
    });
    harness.advance(Duration::from_secs(6));
    wait_for("every trace decided", WAIT, || {
        let store = pipeline.handles.traces.lock().unwrap();
        store.index.len() == 9
    });

    let addr = serve(&pipeline);

    let (status, faults) = get(&addr, "/api/traces?outcome=fault");
    assert_eq!(status, 200);
    let mut fault_ids = ids(&faults);
    fault_ids.sort();
    assert_eq!(fault_ids, vec!["01", "02", "03"]);
    for summary in faults["traces"].as_array().unwrap() {
        assert_eq!(summary["decision"], "kept");
        assert_eq!(summary["rule"], "keep-faults");
        assert_eq!(summary["rootService"], "frontend");
        assert_eq!(summary["rootOperation"], "GET /owners");
        assert_eq!(summary["httpStatus"], 500);
        assert_eq!(summary["spanCount"], 3);
        assert_eq!(summary["services"], serde_json::json!(["frontend", "customers"]));
    }
    let (_, errors) = get(&addr, "/api/traces?outcome=error&decision=dropped");
    assert_eq!(ids(&errors), vec!["04"]);
    let (_, slow) = get(&addr, "/api/traces?min_duration=1s");
    assert_eq!(ids(&slow), vec!["09"]);
    assert_eq!(slow["traces"][0]["durationSeconds"], 2.0);
    let (_, by_callee) = get(&addr, "/api/traces?service=customers&operation=GET%20/owners/%7Bid%7D&limit=4");
    assert_eq!(by_callee["traces"].as_array().unwrap().len(), 4, "an entry span that is not the root matches");
    let (status, bad) = get(&addr, "/api/traces?outcome=terrible");
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "outcome");

    // The service map of the same traffic, once the series' owner (this instance) has rolled
    // the points up for the group.
    wait_for("the group view to show both services' traffic", WAIT, || {
        let (_, map) = get(&addr, "/api/service-map");
        let requests = |id: &str| {
            map["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["id"] == id && n["kind"] == "service"))
                .map(|n| n["requests"].clone())
        };
        requests("frontend:default") == Some(9.into()) && requests("customers:default") == Some(9.into())
    });
    let (status, map) = get(&addr, "/api/service-map");
    assert_eq!(status, 200);
    // The services table, from the same rollups (interfaces.md: camelCase fields).
    let (status, services) = get(&addr, "/api/services");
    assert_eq!(status, 200);
    let frontend =
        services["services"].as_array().unwrap().iter().find(|r| r["service"] == "frontend").unwrap().clone();
    let mut fields: Vec<&str> = frontend.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "availability",
            "environment",
            "errorRate",
            "faultRate",
            "operation",
            "p50Seconds",
            "p90Seconds",
            "p99Seconds",
            "requests",
            "service"
        ]
    );
    assert_eq!((frontend["operation"].as_str(), frontend["requests"].as_u64()), (Some("GET /owners"), Some(9)));
    assert_eq!(frontend["faultRate"].as_f64(), Some(3.0 / 9.0));
    assert_eq!(frontend["errorRate"].as_f64(), Some(1.0 / 9.0));
    let node = |id: &str| {
        let node = map["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("{id}"));
        (
            node["kind"].as_str().unwrap().to_string(),
            node["requests"].as_u64(),
            node["faults"].as_u64(),
            node["errors"].as_u64(),
        )
    };
    assert_eq!(map["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(node("frontend:default"), ("service".into(), Some(9), Some(3), Some(1)));
    assert_eq!(node("customers:default"), ("service".into(), Some(9), Some(3), Some(1)));
    assert_eq!(node("client:default"), ("client".into(), Some(9), Some(3), Some(1)));
    let mut edges: Vec<(String, u64, u64)> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["id"].as_str().unwrap().to_string(), e["requests"].as_u64().unwrap(), e["faults"].as_u64().unwrap())
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        vec![
            ("client:default->frontend:default".to_string(), 9, 3),
            ("frontend:default->customers:default".to_string(), 9, 0),
        ],
        "the client spans carry no status: the call itself did not fail"
    );
    let (_, focused) = get(&addr, "/api/service-map?service=customers&depth=1");
    assert_eq!(focused["nodes"].as_array().unwrap().len(), 2, "customers and its caller");
    assert_eq!(get(&addr, "/api/service-map?depth=2").0, 400);

    // The waterfall of a kept trace; a dropped one has its summary only.
    let (status, kept) = get(&addr, &format!("/api/traces/{:032x}", u128::from_be_bytes([2; 16])));
    assert_eq!(status, 200);
    assert_eq!(kept["decision"], "kept");
    let spans = kept["spans"].as_array().expect("a kept trace's spans are held");
    let names: Vec<(&str, &str)> =
        spans.iter().map(|s| (s["service"].as_str().unwrap(), s["kind"].as_str().unwrap())).collect();
    assert_eq!(names, vec![("frontend", "SERVER"), ("frontend", "CLIENT"), ("customers", "SERVER")]);
    assert_eq!(spans[2]["parentSpanId"], "0202020202020202");
    assert_eq!(spans[2]["outcome"], "fault");
    assert_eq!(spans[1]["attributes"]["server.address"], "customers");
    assert_eq!(spans[0]["attributes"]["sampling.rule"], "keep-faults", "as it was forwarded");
    let (status, dropped) = get(&addr, &format!("/api/traces/{:032x}", u128::from_be_bytes([5; 16])));
    assert_eq!(status, 200);
    assert_eq!(dropped["decision"], "dropped");
    assert_eq!(dropped["spans"], serde_json::Value::Null);
    assert_eq!(get(&addr, &format!("/api/traces/{:032x}", 77u128)).0, 404);
    let (status, bad) = get(&addr, "/api/traces/not-a-trace-id");
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "traceId");
    let kept_path = format!("/api/traces/{:032x}?redirect=maybe", u128::from_be_bytes([2; 16]));
    assert_eq!(get(&addr, &kept_path).1["parameter"], "redirect");

    // The operations and dependencies of a service, group-wide over the window.
    let (status, series) = get(&addr, "/api/series?service=frontend");
    assert_eq!(status, 200);
    assert_eq!(series["operations"][0]["operation"], "GET /owners");
    assert_eq!(series["operations"][0]["requests"], 9);
    assert_eq!(series["dependencies"][0]["remoteService"], "customers");
    assert_eq!(get(&addr, "/api/series?colour=red").1["parameter"], "colour");
    // The pipeline's own figures.
    let (status, figures) = get(&addr, "/api/pipeline");
    assert_eq!(status, 200);
    assert_eq!(figures["spansReceived"], 27.0);

    // The console: every asset from this instance, a restrictive policy on every response, and no
    // route that changes anything.
    let page = raw(&addr, "GET", "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    let policy = "content-security-policy: default-src 'none'; script-src 'self';";
    assert!(page.contains(policy), "{page}");
    assert!(page.contains("<main id=\"page\""));
    assert!(raw(&addr, "GET", "/console/app.js").starts_with("HTTP/1.1 200"));
    assert!(raw(&addr, "GET", "/api/services").contains(policy), "the APIs too");
    assert!(raw(&addr, "GET", "/console/secrets.txt").starts_with("HTTP/1.1 404"));
    assert!(
        raw(&addr, "POST", "/api/demo/faults?enabled=false").starts_with("HTTP/1.1 404"),
        "no fault switch outside the demo"
    );
    pipeline.stop().unwrap();
}

/// Trace `t` of the group test: frontend (pod frontend-a or -b) → customers on pod
/// customers-{t % 3}; customers-2 runs a bad version and answers 500 (recording an exception),
/// and so does customers-1 for trace 1 (recording none); everything else answers 200.
/// The user agent of trace `t`'s request: every fifth from the mobile app.
fn agent_of(t: u8) -> &'static str {
    if t.is_multiple_of(5) {
        "petclinic-mobile/2.1"
    } else {
        "Mozilla/5.0"
    }
}

fn pod_trace(t: u8) -> Vec<SpanSpec> {
    let pod = ["customers-0", "customers-1", "customers-2"][t as usize % 3];
    let status = if t % 3 == 2 || t == 1 { 500 } else { 200 };
    let frontend_pod = if t.is_multiple_of(2) { "frontend-a" } else { "frontend-b" };
    let version = if pod == "customers-2" { "1.4.0-rc1" } else { "1.3.2" };
    let start = T0.0 - 10_000_000_000;
    vec![
        SpanSpec::new("frontend", t, 1, None, SERVER, "GET")
            .http("GET", "/owners", status)
            .micros(30_000)
            .starting(start)
            .resource("k8s.pod.name", frontend_pod),
        SpanSpec::new("frontend", t, 2, Some(1), CLIENT, "GET")
            .attr("server.address", AttrSpec::Str("customers"))
            .micros(20_000)
            .starting(start + 1_000_000)
            .resource("k8s.pod.name", frontend_pod),
        {
            let span = SpanSpec::new("customers", t, 3, Some(2), SERVER, "GET")
                .http("GET", "/owners/{id}", status)
                .attr("user_agent.original", AttrSpec::Str(agent_of(t)))
                .micros(if pod == "customers-2" { 15_000 } else { 5_000 })
                .starting(start + 2_000_000)
                .resource("k8s.pod.name", pod)
                .resource("service.version", version);
            // The bad version's bug, with the owner in its message.
            let message: &'static str = format!("owner {t} has no pets").leak();
            if pod == "customers-2" {
                span.threw("java.lang.IllegalStateException", message)
            } else {
                span
            }
        },
    ]
}

/// Waits until two instances of a group each read part of the input partitions, and together all.
fn wait_for_the_split(first: &tracewarden::pipeline::Pipeline, second: &tracewarden::pipeline::Pipeline) {
    wait_for("the partitions split between the two", WAIT, || {
        let inputs = |p: &tracewarden::pipeline::Pipeline| {
            p.handles.ready.assignment().into_iter().filter(|(topic, _)| topic == INPUT).count()
        };
        let (a, b) = (inputs(first), inputs(second));
        a > 0 && b > 0 && a + b == PARTITIONS as usize
    });
}

/// `[http]` over TLS with the token `api-token`, on an ephemeral port.
fn https_with_token(cert: &std::path::Path, key: &std::path::Path) -> tracewarden::http::HttpConfig {
    tracewarden::http::HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bearer_token: Some(tracewarden::settings::Secret::new("api-token")),
        tls_cert_file: Some(cert.to_path_buf()),
        tls_key_file: Some(key.to_path_buf()),
        ..Default::default()
    }
}

/// Serves an instance's API on an ephemeral port, advertising it; returns the address.
fn serve(pipeline: &tracewarden::pipeline::Pipeline) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (addr, _server) = runtime
        .block_on(tracewarden::http::serve(
            &tracewarden::http::HttpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() },
            pipeline.handles.clone(),
            std::future::pending(),
        ))
        .unwrap();
    pipeline.handles.group.set_url(&format!("http://{addr}"));
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
    addr.to_string()
}

/// A whole response, headers included, read raw.
fn raw(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The `Location` of a response, read raw (the helper `http_get` does not return headers).
fn location(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().find_map(|l| l.strip_prefix("location: ").map(str::to_string))
}

/// Two instances of one group, each reading part of the partitions, answer the same for the whole
/// input: the map, the contributors (the bad pod first), the comparison of the faults and the
/// history; a trace looked up on the
/// instance that did not decide it redirects to the one that did.
#[test]
fn two_instances_answer_for_the_whole_group() {
    let mut harness = Harness::new("investigate-group");
    harness.config.sampling =
        toml::from_str("[[rules]]\nname = \"keep-faults\"\nwhen = { outcome = \"fault\" }\nkeep = \"all\"\n[[rules]]\nname = \"drop-the-rest\"\nkeep = \"none\"\n").unwrap();
    harness.config.slo = toml::from_str::<toml::Table>(
        "[[slo]]\nname = \"customers-availability\"\nservice = \"customers\"\nsli = \"availability\"\ngoal = 0.9\nwindow = \"1d\"\n",
    )
    .unwrap()["slo"]
        .clone()
        .try_into()
        .unwrap();
    let (first, second) = (harness.start(), harness.start());
    wait_for_the_split(&first, &second);
    let (addr_a, addr_b) = (serve(&first), serve(&second));
    const TRACES: u8 = 30;
    let messages: Vec<(String, bytes::Bytes)> =
        (1..=TRACES).map(|t| (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&pod_trace(t)))).collect();
    harness.produce_all(&messages);
    let spans = |p: &tracewarden::pipeline::Pipeline| {
        metric(p, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]).unwrap_or(0.0)
    };
    wait_for("every span read by one or the other", WAIT, || spans(&first) + spans(&second) == 90.0);
    assert!(spans(&first) > 0.0 && spans(&second) > 0.0, "both instances read part of the input");
    harness.advance(Duration::from_secs(6));

    // The expectations, from the trace set's definition.
    let faults_of =
        |pod: usize| (1..=TRACES).filter(|t| *t as usize % 3 == pod && (t % 3 == 2 || *t == 1)).count() as u64;
    let requests_of = |pod: usize| (1..=TRACES).filter(|t| *t as usize % 3 == pod).count() as u64;
    let total_faults: u64 = (0..3).map(faults_of).sum();

    let map_of = |addr: &str| get(addr, "/api/service-map").1;
    let customers = |map: &serde_json::Value| {
        map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "customers:default")
            .map(|n| (n["requests"].as_u64(), n["faults"].as_u64()))
    };
    wait_for("both instances to see the whole group's traffic", WAIT, || {
        customers(&map_of(&addr_a)) == Some((Some(TRACES as u64), Some(total_faults)))
            && customers(&map_of(&addr_b)) == Some((Some(TRACES as u64), Some(total_faults)))
    });
    // The SLO reports (a node's `sloStatus`) travel in the owner's snapshots, which may reach
    // the other instance a moment after the traffic does.
    wait_for("the same map on both, quantiles and SLO status included", WAIT, || {
        let (a, b) = (map_of(&addr_a), map_of(&addr_b));
        a == b && a["nodes"].as_array().unwrap().iter().any(|n| n["sloStatus"].is_string())
    });
    // The group-wide p99 of customers' one operation is on /metrics of its owner alone, and is
    // the map's (both come from the owner's merged sketch).
    let labels = [("service", "customers"), ("environment", "default"), ("quantile", "0.99")];
    let group_p99 =
        |p: &tracewarden::pipeline::Pipeline| metric(p, "tracewarden_group_latency_quantile_seconds", &labels);
    let exposed: Vec<f64> = [&first, &second].into_iter().filter_map(group_p99).collect();
    let map_p99 = map_of(&addr_a)["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "customers:default").unwrap()
        ["p99Seconds"]
        .as_f64();
    assert_eq!(exposed.len(), 1, "one instance, the owner, exposes the series");
    assert_eq!(Some(exposed[0]), map_p99);

    let contributors = "/api/contributors?service=customers&dimension=k8s.pod.name&by=faults";
    let (status, answer) = get(&addr_a, contributors);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, get(&addr_b, contributors).1);
    let rows: Vec<(String, u64, u64)> = answer["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["value"].as_str().unwrap().to_string(), c["requests"].as_u64().unwrap(), c["faults"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64, u64)> =
        [2, 1, 0].iter().map(|&pod| (format!("customers-{pod}"), requests_of(pod), faults_of(pod))).collect();
    assert_eq!(rows, expected, "the bad pod first, every figure exact");
    assert_eq!(answer["estimated"], false);
    // Compare the faults with the other requests: pod 2 served 10 of the 11 faults and none of
    // the 19 other requests; pod 1 one fault and 9 others; pod 0 none of the faults, 10 others.
    let compare = "/api/compare?service=customers&outcome=fault";
    let (status, answer) = get(&addr_b, compare);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, get(&addr_a, compare).1, "the same comparison from either instance");
    let baseline_requests = TRACES as u64 - total_faults;
    assert_eq!(
        (answer["selection"]["requests"].as_u64(), answer["baseline"]["requests"].as_u64()),
        (Some(total_faults), Some(baseline_requests))
    );
    let pods =
        answer["keys"].as_array().unwrap().iter().find(|k| k["key"] == "k8s.pod.name").expect("the pods compared");
    let compared: Vec<(String, u64, u64, f64, f64)> = pods["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let number = |field: &str| v[field].as_f64().unwrap();
            (
                v["value"].as_str().unwrap().to_string(),
                v["selection"].as_u64().unwrap(),
                v["baseline"].as_u64().unwrap(),
                number("selectionShare"),
                number("baselineShare"),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64, f64, f64)> = [2, 1, 0]
        .iter()
        .map(|&pod| {
            let (selected, others) = (faults_of(pod), requests_of(pod) - faults_of(pod));
            (
                format!("customers-{pod}"),
                selected,
                others,
                selected as f64 / total_faults as f64,
                others as f64 / baseline_requests as f64,
            )
        })
        .collect();
    assert_eq!(compared, expected, "ranked by the difference of the shares, every figure exact");
    assert_eq!(pods["values"][0]["lift"], serde_json::Value::Null, "no lift: the baseline has none of pod 2");
    // Span attributes travel to the owner as resources do: the user agents, counted from the
    // trace set's definition.
    let agents = answer["keys"].as_array().unwrap().iter().find(|k| k["key"] == "user_agent.original").expect("agents");
    let is_fault = |t: u8| t % 3 == 2 || t == 1;
    let mut expected: Vec<(String, u64, u64)> = ["petclinic-mobile/2.1", "Mozilla/5.0"]
        .iter()
        .map(|agent| {
            let of =
                |fault: bool| (1..=TRACES).filter(|&t| agent_of(t) == *agent && is_fault(t) == fault).count() as u64;
            (agent.to_string(), of(true), of(false))
        })
        .collect();
    let share = |(_, s, b): &(String, u64, u64)| *s as f64 / total_faults as f64 - *b as f64 / baseline_requests as f64;
    expected.sort_by(|a, b| share(b).total_cmp(&share(a)));
    let compared: Vec<(String, u64, u64)> = agents["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_string(),
                v["selection"].as_u64().unwrap(),
                v["baseline"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(compared, expected);
    let (_, dimensions) = get(&addr_b, "/api/contributors/dimensions?service=customers");
    assert_eq!(dimensions["dimensions"], serde_json::json!(["service.version", "k8s.pod.name"]));

    // The faults by exception, group-wide from either instance: every fault of the bad version
    // recorded the same exception (its owner varies: templated), customers-1's fault none.
    let exceptions = "/api/exceptions?service=customers";
    let (status, thrown) = get(&addr_a, exceptions);
    assert_eq!(status, 200, "{thrown}");
    assert_eq!(thrown, get(&addr_b, exceptions).1, "the same groups from either instance");
    let groups = thrown["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{thrown}");
    assert_eq!(
        (groups[0]["type"].as_str(), groups[0]["message"].as_str(), groups[0]["count"].as_u64()),
        (Some("java.lang.IllegalStateException"), Some("owner {n} has no pets"), Some(faults_of(2)))
    );
    assert_eq!(groups[0]["versions"], serde_json::json!(["1.4.0-rc1"]));

    let history = "/api/history?edge=frontend:default-%3Ecustomers:default";
    let (status, points) = get(&addr_a, history);
    assert_eq!(status, 200);
    assert_eq!(points, get(&addr_b, history).1);
    let calls: u64 = points["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(calls, TRACES as u64, "every call into customers, once");

    // The Services page in one request: figures from the rollups, trends from each owner. Each
    // service is owned by one of the two, so one instance at least had to ask the other.
    let (status, overview) = get(&addr_a, "/api/services/overview");
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview, get(&addr_b, "/api/services/overview").1, "the same page from either instance");
    assert_eq!(overview["partial"], serde_json::json!([]), "every owner answered");
    assert_eq!(overview["environments"], serde_json::json!(["default"]));
    assert_eq!(overview["slosConfigured"], true);
    let services = overview["services"].as_array().unwrap();
    let names: BTreeSet<&str> = services.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["customers", "frontend"]), "the service nodes, nothing else");
    for service in services {
        let trend: u64 = service["trend"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(trend, TRACES as u64, "{}: every request of the range in its trend", service["name"]);
        assert_eq!(service["requests"], TRACES as u64, "{}", service["name"]);
    }
    assert_eq!(get(&addr_a, "/api/services/overview?service=x:y").0, 400, "service is for the trends of one owner");

    // Summaries stay with the instance that decided the trace; a search on either asks both.
    let path = format!("/api/traces/{:032x}", u128::from_be_bytes([2; 16]));
    let held = |p: &tracewarden::pipeline::Pipeline| p.handles.traces.lock().unwrap().index.len();
    wait_for("every trace decided by one or the other", WAIT, || held(&first) + held(&second) == TRACES as usize);
    assert!(held(&first) > 0 && held(&second) > 0, "both decided some");
    for addr in [&addr_a, &addr_b] {
        let (status, all) = get(addr, "/api/traces?limit=100");
        assert_eq!(status, 200, "{all}");
        assert_eq!(all["traces"].as_array().unwrap().len(), TRACES as usize, "every trace, from both");
        assert_eq!(all["partial"], serde_json::json!([]), "both answered");
    }
    // Trace 2 is kept (a fault): the instance that did not decide it redirects to the one that did.
    let (status_a, body_a) = http_get(&addr_a, &path).unwrap();
    let (status_b, body_b) = http_get(&addr_b, &path).unwrap();
    let (holder, other) = if status_a == 200 { (&addr_a, &addr_b) } else { (&addr_b, &addr_a) };
    assert_eq!([status_a.min(status_b), status_a.max(status_b)], [200, 307], "{body_a} {body_b}");
    assert_eq!(location(other, &path), Some(format!("http://{holder}{path}")));
    let (_, summaries) = get(other, "/api/traces?outcome=fault&limit=100");
    let held_by: Vec<&str> =
        summaries["traces"].as_array().unwrap().iter().map(|t| t["heldBy"].as_str().unwrap()).collect();
    assert_eq!(held_by.len() as u64, total_faults);
    assert!(held_by.iter().all(|h| *h == format!("http://{addr_a}") || *h == format!("http://{addr_b}")));

    // The SLO is evaluated by one of the two; both answer with its report and its history.
    harness.advance(Duration::from_secs(11));
    let slos_of = |addr: &str| get(addr, "/api/slos").1;
    let attainment = 1.0 - total_faults as f64 / TRACES as f64;
    wait_for("both instances to report the SLO", WAIT, || {
        let (a, b) = (slos_of(&addr_a), slos_of(&addr_b));
        let reported = |slos: &serde_json::Value| {
            slos["slos"].as_array().is_some_and(|l| {
                l.len() == 1 && l[0]["attainment"].as_f64().is_some_and(|v| (v - attainment).abs() < 1e-9)
            })
        };
        reported(&a) && reported(&b)
    });
    let history_path = "/api/slos/customers-availability/history";
    wait_for("both instances to hold the SLO's evaluations", WAIT, || {
        let (a, b) = (get(&addr_a, history_path).1, get(&addr_b, history_path).1);
        a["points"].as_array().is_some_and(|p| !p.is_empty()) && a == b
    });
    assert_eq!(get(&addr_b, "/api/slos/nonesuch/history").0, 404);

    // Once the instance that decided the trace is gone, its summaries are gone with it: the
    // other answers 404 for its traces, and a search answers with what the live members hold.
    let (holder_pipeline, other_pipeline) = if holder == &addr_a { (first, second) } else { (second, first) };
    let other = other.clone();
    let held_by_other = held(&other_pipeline);
    holder_pipeline.stop().unwrap();
    harness.advance(Duration::from_secs(31));
    let (status, gone) = get(&other, &path);
    assert_eq!(status, 404, "{gone}");
    let (_, left) = get(&other, "/api/traces?limit=100");
    assert_eq!(left["traces"].as_array().unwrap().len(), held_by_other);
    assert_eq!(left["partial"], serde_json::json!([]), "a departed member is not asked");
    other_pipeline.stop().unwrap();
}

/// `[http]` TLS with a token, as curl (a real client) sees it: the API over HTTPS answers 401
/// without the token and the data with it; the probes answer without it; plain HTTP gets no
/// answer; the instance advertises an `https://` URL.
#[test]
fn the_api_over_https_answers_curl_only_with_the_token() {
    let harness = Harness::new("investigate-https");
    let pipeline = harness.start();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("investigate-https");
    let (cert, key) = common::self_signed_certificate(&dir);
    let http = https_with_token(&cert, &key);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (addr, _server) =
        runtime.block_on(tracewarden::http::serve(&http, pipeline.handles.clone(), std::future::pending())).unwrap();
    assert_eq!(http.advertised(addr), format!("https://{addr}"));
    let curl = |path: &str, token: Option<&str>| -> String {
        let mut command = std::process::Command::new("curl");
        command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(&cert);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = command.arg(format!("https://{addr}{path}")).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("/api/services", None), "401");
    assert_eq!(curl("/api/services", Some("wrong")), "401");
    assert_eq!(curl("/api/services", Some("api-token")), "200");
    assert_eq!(curl("/metrics", Some("api-token")), "200");
    assert_eq!(curl("/healthz", None), "200", "probes need no token");
    let plain = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://{addr}/healthz"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200", "plain HTTP is not served");
    pipeline.stop().unwrap();
}

/// A 10 s point whose contributor table is larger than a Kafka message (4 000 pods with
/// 270-byte names: about 1.2 MB of rows) travels split in records under 900 kB — librdkafka
/// refuses any record over `message.max.bytes`, 1 MB by default, as a broker does — and the owner
/// answers with every row, exact.
#[test]
fn a_point_larger_than_a_kafka_message_arrives_whole() {
    const TRACES: u8 = 16;
    const PER_TRACE: u8 = 250;
    const PODS: u64 = TRACES as u64 * PER_TRACE as u64;
    let mut harness = Harness::new("investigate-large-point");
    harness.config.investigation.dimensions = vec!["k8s.pod.name".into()];
    harness.config.investigation.max_values_per_dimension = 5_000;
    let pipeline = harness.start();
    let addr = serve(&pipeline);
    let start = T0.0 - 10_000_000_000;
    let messages: Vec<(String, bytes::Bytes)> = (1..=TRACES)
        .map(|t| {
            let spans: Vec<SpanSpec> =
                std::iter::once(SpanSpec::new("gateway", t, 1, None, SERVER, "GET").starting(start))
                    .chain((2..PER_TRACE + 2).map(|id| {
                        let pod: &'static str = format!("catalog-{t:03}-{id:03}-{}", "p".repeat(256)).leak();
                        SpanSpec::new("catalog", t, id, Some(1), SERVER, "GET")
                            .http("GET", "/items", 200)
                            .starting(start + 1_000_000)
                            .resource("k8s.pod.name", pod)
                    }))
                    .collect();
            (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&spans))
        })
        .collect();
    harness.produce_all(&messages);
    let spans = || metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]);
    let expected_spans = (TRACES as u64 * (PER_TRACE as u64 + 1)) as f64;
    wait_for("every span read", WAIT, || spans() == Some(expected_spans));
    harness.advance(Duration::from_secs(6));

    let path = "/api/contributors?service=catalog&dimension=k8s.pod.name&limit=1000";
    let rows = |answer: &serde_json::Value| -> Vec<(String, u64)> {
        answer["contributors"].as_array().map_or_else(Vec::new, |rows| {
            rows.iter().map(|c| (c["value"].as_str().unwrap().to_string(), c["requests"].as_u64().unwrap())).collect()
        })
    };
    wait_for("the owner to hold every catalog request", WAIT, || {
        rows(&get(&addr, path).1).iter().map(|(_, requests)| requests).sum::<u64>() == PODS
    });
    let (status, answer) = get(&addr, path);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["estimated"], false, "every pod tracked exactly");
    let rows = rows(&answer);
    assert_eq!(rows.len(), 1_001, "the first 1 000 pods and the rest");
    assert!(rows[..1_000].iter().all(|(pod, requests)| pod.starts_with("catalog-") && *requests == 1));
    assert_eq!(rows[1_000], ("__other__".to_string(), PODS - 1_000));

    // What crossed the broker: the catalog point in several records, each under the limit.
    let records = harness.read_all("tracewarden_points", 2);
    let sizes: Vec<usize> = records.iter().map(|r| r.payload.len()).collect();
    assert!(sizes.iter().all(|&size| size <= tracewarden::record::MAX_MESSAGE_BYTES), "{sizes:?}");
    assert!(sizes.iter().sum::<usize>() > 1_000_000, "the rows exceed one message: {sizes:?}");
    pipeline.stop().unwrap();
}

/// A group served over HTTPS with a token: a question about a series asked of the instance that
/// does not own it is forwarded over HTTPS (the peer's certificate trusted from
/// `[http] tls_cert_file`) with the caller's token, and both instances answer the same; without
/// the token the answer is 401 before anything is forwarded.
#[test]
fn questions_are_forwarded_to_the_owner_over_https_with_the_callers_token() {
    let mut harness = Harness::new("investigate-https-group");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("investigate-https-group");
    let (cert, key) = common::self_signed_certificate(&dir);
    harness.config.http.tls_cert_file = Some(cert.clone());
    harness.config.http.tls_key_file = Some(key.clone());
    let (first, second) = (harness.start(), harness.start());
    wait_for_the_split(&first, &second);
    let http = https_with_token(&cert, &key);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let addresses: Vec<String> = [&first, &second]
        .iter()
        .map(|pipeline| {
            let (addr, _server) = runtime
                .block_on(tracewarden::http::serve(&http, pipeline.handles.clone(), std::future::pending()))
                .unwrap();
            pipeline.handles.group.set_url(&http.advertised(addr));
            addr.to_string()
        })
        .collect();
    const TRACES: u8 = 12;
    let messages: Vec<(String, bytes::Bytes)> =
        (1..=TRACES).map(|t| (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&pod_trace(t)))).collect();
    harness.produce_all(&messages);
    let spans = |p: &tracewarden::pipeline::Pipeline| {
        metric(p, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]).unwrap_or(0.0)
    };
    wait_for("every span read", WAIT, || spans(&first) + spans(&second) == 3.0 * TRACES as f64);
    harness.advance(Duration::from_secs(6));

    let curl = |addr: &str, path: &str, token: Option<&str>| -> (String, String) {
        let mut command = std::process::Command::new("curl");
        command.args(["-s", "-w", "\n%{http_code}", "--cacert"]).arg(&cert);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = command.arg(format!("https://{addr}{path}")).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
        (status.to_string(), body.to_string())
    };
    let history = "/api/history?service=customers";
    let requests = |body: &str| -> u64 {
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        body["points"].as_array().map_or(0, |p| p.iter().filter_map(|p| p["requests"].as_u64()).sum())
    };
    wait_for("both instances to answer the whole history of customers", WAIT, || {
        addresses.iter().all(|addr| {
            let (status, body) = curl(addr, history, Some("api-token"));
            status == "200" && requests(&body) == TRACES as u64
        })
    });
    let answers: Vec<String> = addresses.iter().map(|addr| curl(addr, history, Some("api-token")).1).collect();
    assert_eq!(answers[0], answers[1], "the owner's answer, from either");
    let owners: Vec<bool> = [&first, &second]
        .iter()
        .map(|p| {
            let now = p.handles.clock.now();
            matches!(p.handles.group.route_service("customers", now), tracewarden::investigate::group::Route::Here)
        })
        .collect();
    assert_eq!(owners.iter().filter(|here| **here).count(), 1, "one owner; the other forwarded: {owners:?}");
    for addr in &addresses {
        assert_eq!(curl(addr, history, None).0, "401", "no token, no answer");
    }
    // A member with another certificate is not trusted.
    let (stranger, _) = common::self_signed_certificate(&dir.join("stranger"));
    let client = tracewarden::investigate::group::forward::PeerClient::new(Some(&stranger));
    let asked =
        runtime.block_on(client.get(&format!("https://{}", addresses[0]), "/healthz", None, Duration::from_secs(5)));
    assert!(matches!(asked, Err(tracewarden::investigate::group::forward::ForwardError::Tls(_))), "{asked:?}");
    first.stop().unwrap();
    second.stop().unwrap();
}

/// One trace of `requests` requests to `service` `version` on `pod` (the first `faults` of them
/// answer 503), each a server span under one frontend root; the trace starts 10 s before the
/// clock.
fn release_trace(
    harness: &Harness,
    t: u8,
    (service, version, pod): (&'static str, &'static str, &'static str),
    requests: u8,
    faults: u8,
) -> (String, bytes::Bytes) {
    let start = tracewarden::clock::Clock::now(&*harness.clock).0 - 10_000_000_000;
    let spans: Vec<SpanSpec> = std::iter::once(SpanSpec::new("frontend", t, 1, None, SERVER, "GET").starting(start))
        .chain((0..requests).map(|i| {
            SpanSpec::new(service, t, i + 2, Some(1), SERVER, "GET")
                .http("GET", "/owners", if i < faults { 503 } else { 200 })
                .starting(start + 1_000_000)
                .resource("service.version", version)
                .resource("k8s.pod.name", pod)
        }))
        .collect();
    (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&spans))
}

/// The deployment alerts on the alerts topic, by service.
fn deployment_alerts(harness: &Harness, expected: usize) -> Vec<serde_json::Value> {
    harness
        .read_all("slo_alerts", expected)
        .into_iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
        .filter(|alert| alert["type"] == "deployment")
        .collect()
}

/// A version first seen after the first window is a deployment; worse beyond chance, it is
/// `degraded`, answered from the owner and alerted once — also after another instance took the
/// service over (it reads the alert's mark from the changelog and does not write it again).
#[test]
fn a_degraded_deployment_is_alerted_once_also_after_a_takeover() {
    let mut harness = Harness::new("investigate-deployments");
    harness.config.metrics.window = tracewarden::settings::HumanDuration(Duration::from_secs(60));
    let first = harness.start();
    let addr_a = serve(&first);
    let spans = |p: &[&tracewarden::pipeline::Pipeline]| {
        p.iter()
            .map(|p| metric(p, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]).unwrap_or(0.0))
            .sum::<f64>()
    };
    let customers = ("customers", "1.3.2", "customers-a");
    let vets = ("vets", "1.0.0", "vets-a");
    // The versions running from the start: the baseline.
    harness.produce_all(&[release_trace(&harness, 1, customers, 20, 0), release_trace(&harness, 2, vets, 20, 0)]);
    wait_for("the baseline read", WAIT, || spans(&[&first]) == 42.0);
    harness.advance(Duration::from_secs(6));
    let requests = |addr: &str, service: &str| {
        get(addr, &format!("/api/series?service={service}")).1["operations"][0]["requests"].as_u64()
    };
    wait_for("the baseline at the owner", WAIT, || {
        requests(&addr_a, "customers") == Some(20) && requests(&addr_a, "vets") == Some(20)
    });
    assert_eq!(get(&addr_a, "/api/deployments?service=customers").1, serde_json::json!({"deployments": []}));

    // 70 s later, past the first window: customers 1.4.0-rc1 on a canary pod, 30 faults in 40,
    // beside 1.3.2's 100 requests with 1 fault.
    harness.advance(Duration::from_secs(70));
    harness.produce_all(&[
        release_trace(&harness, 3, ("customers", "1.3.2", "customers-a"), 100, 1),
        release_trace(&harness, 4, ("customers", "1.4.0-rc1", "customers-canary"), 40, 30),
    ]);
    wait_for("the canary read", WAIT, || spans(&[&first]) == 42.0 + 142.0);
    harness.advance(Duration::from_secs(6));
    let deployments = |addr: &str, service: &str| get(addr, &format!("/api/deployments?service={service}")).1;
    wait_for("the deployment judged", WAIT, || {
        deployments(&addr_a, "customers")["deployments"][0]["verdict"] == "degraded"
    });
    let answer = deployments(&addr_a, "customers");
    let deployment = &answer["deployments"][0];
    assert_eq!(answer["deployments"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(
        (deployment["version"].as_str(), deployment["previousVersion"].as_str()),
        (Some("1.4.0-rc1"), Some("1.3.2"))
    );
    assert_eq!(deployment["instances"], serde_json::json!(["customers-canary"]));
    assert_eq!(
        (deployment["before"]["requests"].as_u64(), deployment["before"]["faults"].as_u64()),
        (Some(100), Some(1))
    );
    assert_eq!(
        (deployment["after"]["requests"].as_u64(), deployment["after"]["faults"].as_u64()),
        (Some(40), Some(30))
    );
    // p0 = 0.01, p1 = 0.75, pooled 31/140: z = 0.74 / √(0.2214 · 0.7786 · (1/100 + 1/40)) = 9.5265.
    assert!((deployment["zScore"].as_f64().unwrap() - 9.5265).abs() < 1e-3, "{deployment}");
    let alerts = wait_until("the deployment alert", WAIT, || {
        let alerts = deployment_alerts(&harness, 1);
        (!alerts.is_empty()).then_some(alerts)
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["alertname"], "DeploymentDegraded");
    assert_eq!(alerts[0]["labels"]["version"], "1.4.0-rc1");
    assert_eq!(alerts[0]["labels"]["previous_version"], "1.3.2");

    // Another instance takes everything over.
    let second = harness.start();
    let addr_b = serve(&second);
    first.stop().unwrap();
    wait_for("the new owner to answer with the deployment from the changelog", WAIT, || {
        deployments(&addr_b, "customers")["deployments"][0]["verdict"] == "degraded"
    });
    // vets 2.0.0, degraded too: once its alert is out, the new owner has judged every service
    // it owns (customers included) at least once.
    harness.produce_all(&[
        release_trace(&harness, 5, ("vets", "1.0.0", "vets-a"), 100, 1),
        release_trace(&harness, 6, ("vets", "2.0.0", "vets-b"), 40, 30),
    ]);
    wait_for("vets' new version read", WAIT, || spans(&[&second]) == 142.0);
    harness.advance(Duration::from_secs(6));
    let alerts = wait_until("the new owner's alert for vets", WAIT, || {
        let alerts = deployment_alerts(&harness, 2);
        alerts.iter().any(|a| a["labels"]["service"] == "vets").then_some(alerts)
    });
    let services: Vec<&str> = alerts.iter().map(|a| a["labels"]["service"].as_str().unwrap()).collect();
    assert_eq!(services, vec!["customers", "vets"], "customers was not alerted again");
    second.stop().unwrap();
}
