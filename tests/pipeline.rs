//! End to end through Kafka (librdkafka's mock cluster): known traces in, exact metrics,
//! forwarded traces, dead letters and committed offsets out.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

use common::*;
use tracewarden::kafka_client::InputTopic;
use tracewarden::testing::{encode, AttrSpec, SpanSpec, CLIENT, SERVER};

const TRACES: u8 = 20;

/// Trace `t`: frontend GET /owners/{id} → customers-service → database. The customers service
/// answers 500 for t ≤ 4, 404 for 5 ≤ t ≤ 7, 429 for t = 8, else 200; the frontend passes it on.
/// The frontend takes 10 + t ms, except trace 20, which is slow: 2.5 s.
fn owner_trace(t: u8) -> (Vec<SpanSpec>, Vec<SpanSpec>) {
    let status = match t {
        1..=4 => 500,
        5..=7 => 404,
        8 => 429,
        _ => 200,
    };
    let frontend =
        vec![
            SpanSpec::new("frontend", t, 1, None, SERVER, "GET")
                .http("GET", "/owners/{id}", status)
                .micros(if t == 20 { 2_500_000 } else { 10_000 + t as u64 * 1_000 }),
            SpanSpec::new("frontend", t, 2, Some(1), CLIENT, "GET")
                .attr("http.request.method", AttrSpec::Str("GET"))
                .attr("server.address", AttrSpec::Str("customers"))
                .attr("http.response.status_code", AttrSpec::Int(status))
                .micros(8_000),
        ];
    let customers = vec![
        SpanSpec::new("customers", t, 3, Some(2), SERVER, "GET").http("GET", "/owners/{id}", status).micros(7_000),
        SpanSpec::new("customers", t, 4, Some(3), CLIENT, "SELECT owners")
            .attr("db.system", AttrSpec::Str("postgresql"))
            .attr("db.operation.name", AttrSpec::Str("SELECT"))
            .micros(2_000),
    ];
    (frontend, customers)
}

/// Labels of the frontend → customers dependency series of [`owner_trace`].
const FRONTEND_TO_CUSTOMERS: [(&str, &str); 5] = [
    ("service", "frontend"),
    ("operation", "GET /owners/{id}"),
    ("remote_service", "customers"),
    ("remote_operation", "GET /owners/{id}"),
    ("environment", "default"),
];

fn key(t: u8) -> String {
    hex::encode([t; 16])
}

fn labels<'a>(service: &'a str, operation: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("service", service), ("operation", operation), ("environment", "default")]
}

const OTLP_JSON_TRACE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
  "scopeSpans":[{"scope":{"name":"json-lib","version":"9"},"spans":[{"traceId":"1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e","spanId":"0101010101010101",
  "name":"GET /j","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000005000000",
  "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}]}]}]}]}"#;

const ZIPKIN_TRACE: &str = r#"[{"traceId":"1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f","id":"0202020202020202","name":"get /z","kind":"SERVER",
  "timestamp":1700000000000000,"duration":3000,"localEndpoint":{"serviceName":"zipkin-svc"},"tags":{"http.status_code":"200"}}]"#;

#[test]
fn known_traffic_gives_exact_metrics_forwards_dead_letters_and_offsets() {
    let mut harness = Harness::new("exact-metrics");
    // A second input topic with nothing but empty messages, which are done as soon as they are
    // read: a commit on it shows that its worker has committed since (see below). Its 6 partitions
    // and the 3 of the input are balanced over the 2 workers (5 and 4): each worker holds one.
    const PROBE: &str = "commit_probe";
    const PROBE_PARTITIONS: i32 = 6;
    harness.cluster().create_topic(PROBE, PROBE_PARTITIONS, 1).unwrap();
    harness.config.kafka.input_topics.push(PROBE.into());
    let pipeline = harness.start();

    let mut input_spans: HashMap<String, Vec<SpanSpec>> = HashMap::new();
    for t in 1..=TRACES {
        let (frontend, customers) = owner_trace(t);
        // Each service exports its own spans: two messages per trace, the callee's first.
        harness.produce(&key(t), &encode(&customers));
        harness.produce(&key(t), &encode(&frontend));
        input_spans.insert(key(t), [frontend, customers].concat());
    }
    harness.produce(&hex::encode([0x1e; 16]), OTLP_JSON_TRACE.as_bytes());
    harness.produce(&hex::encode([0x1f; 16]), ZIPKIN_TRACE.as_bytes());
    let garbage = b"\x0a\xff\xff\xff\x0f\x01";
    harness.produce("garbage", garbage);
    // A valid message with one span of a broken id: the span is rejected, the message is not.
    let mut broken = SpanSpec::new("frontend", 0, 1, None, SERVER, "broken");
    broken.trace = 0;
    harness.produce("broken", &encode(&[broken]));

    let total_spans = TRACES as f64 * 4.0;
    wait_for("every span to be received", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(total_spans)
            && metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "zipkin_json")]) == Some(1.0)
            && metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_json")]) == Some(1.0)
    });
    wait_for("the garbage to be dead-lettered", WAIT, || {
        metric(&pipeline, "tracewarden_messages_dead_lettered_total", &[]) == Some(1.0)
    });
    assert_eq!(
        metric(&pipeline, "tracewarden_messages_rejected_total", &[("reason", "malformed_protobuf")]),
        Some(1.0)
    );
    // The broken message holds no valid span: it is read when its rejection is counted.
    wait_for("the span with a broken id to be rejected", WAIT, || {
        metric(&pipeline, "tracewarden_spans_rejected_total", &[("reason", "invalid_id")]) == Some(1.0)
    });

    // Nothing is decided yet (the clock has not moved): no commit may pass a trace's message.
    // Every worker commits everything committable on its partitions at once, every
    // commit_interval: an empty message on each probe partition, produced now that every trace
    // message has been read, is committed by a commit that came after the traces were read.
    for p in 0..PROBE_PARTITIONS {
        harness.produce_topic_to(PROBE, p, "probe", br#"{"resourceSpans":[]}"#);
    }
    wait_for("every worker to commit after reading the traces", WAIT, || {
        harness.committed_on(PROBE, PROBE_PARTITIONS).iter().all(|&offset| offset == 1)
    });
    assert_eq!(
        metric(&pipeline, "tracewarden_traces_decided_total", &[("decision", "kept"), ("rule", "no_match")]),
        None
    );
    let input = harness.read_all(INPUT, TRACES as usize * 2 + 4);
    let committed = harness.committed();
    for p in 0..PARTITIONS {
        let first_trace_message = input
            .iter()
            .filter(|r| r.partition == p && r.key.as_deref() != Some(b"garbage") && r.key.as_deref() != Some(b"broken"))
            .map(|r| r.offset)
            .min();
        if let Some(first) = first_trace_message {
            assert!(
                committed[p as usize] <= first,
                "partition {p}: committed {} passes undecided offset {first}",
                committed[p as usize]
            );
        }
    }
    assert!(harness.read_all("sampled_spans", 0).is_empty(), "nothing forwarded before the decision");

    // The quiet period passes: every trace is complete, decided and forwarded.
    harness.advance(Duration::from_secs(6));
    let expected_traces = TRACES as f64 + 2.0;
    wait_for("every trace to be forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(expected_traces)
    });
    assert_eq!(metric(&pipeline, "tracewarden_traces_closed_total", &[("reason", "complete")]), Some(expected_traces));
    assert_eq!(
        metric(&pipeline, "tracewarden_traces_decided_total", &[("decision", "kept"), ("rule", "no_match")]),
        Some(expected_traces)
    );
    assert_eq!(metric(&pipeline, "tracewarden_spans_forwarded_total", &[]), Some(total_spans + 2.0));

    // Exact service metrics.
    for service in ["frontend", "customers"] {
        let l = labels(service, "GET /owners/{id}");
        assert_eq!(metric(&pipeline, "tracewarden_requests_total", &l), Some(20.0), "{service}");
        assert_eq!(metric(&pipeline, "tracewarden_faults_total", &l), Some(4.0), "{service}");
        assert_eq!(metric(&pipeline, "tracewarden_errors_total", &l), Some(4.0), "{service}: 404 ×3 and 429");
        assert_eq!(metric(&pipeline, "tracewarden_throttles_total", &l), Some(1.0), "{service}");
        assert_eq!(metric(&pipeline, "tracewarden_availability_ratio", &l), Some(0.8), "{service}");
    }
    assert_eq!(metric(&pipeline, "tracewarden_faults_total", &labels("json-svc", "GET /j")), Some(1.0));
    assert_eq!(metric(&pipeline, "tracewarden_requests_total", &labels("zipkin-svc", "get /z")), Some(1.0));
    // Frontend latencies are 11 ms … 29 ms and one of 2.5 s: the true p50 (10th of 20) is 20 ms,
    // p90 (18th) 28 ms, p99 (20th) 2.5 s.
    let quantile = |q: &str| {
        let mut l = labels("frontend", "GET /owners/{id}");
        l.push(("quantile", q));
        metric(&pipeline, "tracewarden_latency_quantile_seconds", &l).unwrap()
    };
    assert!((quantile("0.5") - 0.020).abs() <= 0.020 * 0.001, "p50 {}", quantile("0.5"));
    assert!((quantile("0.9") - 0.028).abs() <= 0.028 * 0.001, "p90 {}", quantile("0.9"));
    assert!((quantile("0.99") - 2.5).abs() <= 2.5 * 0.001, "p99 {}", quantile("0.99"));
    let slow_bucket = pipeline.handles.telemetry.registry.gather();
    let histogram = slow_bucket.iter().find(|f| f.name() == "tracewarden_latency_seconds").unwrap();
    let frontend = histogram
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == "frontend"))
        .unwrap()
        .get_histogram();
    let cumulative = |le: f64| frontend.get_bucket().iter().find(|b| b.upper_bound() == le).unwrap().cumulative_count();
    assert_eq!(
        (cumulative(0.025), cumulative(1.0), cumulative(2.5)),
        (15, 19, 20),
        "11–25 ms, then ≤ 1 s, then the slow one"
    );
    // Dependency metrics: the callee is resolved through the trace.
    let dep = FRONTEND_TO_CUSTOMERS;
    assert_eq!(metric(&pipeline, "tracewarden_dependency_requests_total", &dep), Some(20.0));
    assert_eq!(metric(&pipeline, "tracewarden_dependency_faults_total", &dep), Some(4.0));
    let db = [
        ("service", "customers"),
        ("operation", "GET /owners/{id}"),
        ("remote_service", "postgresql"),
        ("remote_operation", "SELECT"),
        ("environment", "default"),
    ];
    assert_eq!(metric(&pipeline, "tracewarden_dependency_requests_total", &db), Some(20.0));

    // Forwarded: one message per trace, keyed by trace id, in the arrival encoding.
    let output = harness.read_all("sampled_spans", TRACES as usize + 2);
    assert_eq!(output.len(), TRACES as usize + 2);
    let keys: BTreeSet<String> = output.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    let mut expected_keys: BTreeSet<String> = (1..=TRACES).map(key).collect();
    expected_keys.insert(hex::encode([0x1e; 16]));
    expected_keys.insert(hex::encode([0x1f; 16]));
    assert_eq!(keys, expected_keys);
    for record in &output {
        let k = String::from_utf8(record.key.clone().unwrap()).unwrap();
        if let Some(specs) = input_spans.get(&k) {
            let data = TracesData::decode(&record.payload[..]).expect("forwarded protobuf decodes");
            let original = TracesData::decode(&encode(specs)[..]).unwrap();
            let original_spans: Vec<_> =
                original.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
            let mut services = BTreeSet::new();
            let mut forwarded = 0;
            for resource_spans in &data.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .unwrap()
                    .attributes
                    .iter()
                    .find(|a| a.key == "service.name")
                    .unwrap();
                services.insert(format!("{:?}", service.value));
                for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                    forwarded += 1;
                    let mut stripped = span.clone();
                    let extra: Vec<_> = stripped.attributes.drain(stripped.attributes.len() - 2..).collect();
                    assert_eq!(extra[0].key, "sampling.rule");
                    assert_eq!(
                        extra[0].value.as_ref().unwrap().value,
                        Some(any_value::Value::StringValue("no_match".into()))
                    );
                    assert_eq!(extra[1].key, "sampling.sample_rate");
                    assert_eq!(extra[1].value.as_ref().unwrap().value, Some(any_value::Value::DoubleValue(1.0)));
                    assert!(original_spans.contains(&&stripped), "forwarded span differs from its input");
                }
            }
            assert_eq!(forwarded, 4);
            assert_eq!(services.len(), 2, "both resources preserved");
        } else if k == hex::encode([0x1e; 16]) {
            let json: serde_json::Value = serde_json::from_slice(&record.payload).expect("OTLP/JSON stays JSON");
            let rs = &json["resourceSpans"][0];
            assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "json-svc");
            assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "json-lib");
            let attrs = rs["scopeSpans"][0]["spans"][0]["attributes"].as_array().unwrap();
            assert!(attrs.iter().any(|a| a["key"] == "sampling.rule" && a["value"]["stringValue"] == "no_match"));
            assert!(attrs.iter().any(|a| a["key"] == "http.response.status_code"));
        } else {
            let json: serde_json::Value = serde_json::from_slice(&record.payload).expect("Zipkin stays Zipkin JSON");
            assert_eq!(json[0]["localEndpoint"]["serviceName"], "zipkin-svc");
            assert_eq!(json[0]["tags"]["sampling.sample_rate"], "1");
        }
    }

    // Dead letters: the garbage, unchanged, with its reason and source.
    let dead = harness.read_all("tracewarden_dead_letters", 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, garbage);
    assert_eq!(dead[0].key.as_deref(), Some(&b"garbage"[..]));
    let header = |name: &str| dead[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    assert!(header("tracewarden.error").contains("protobuf"), "{}", header("tracewarden.error"));
    let garbage_in = input.iter().find(|r| r.key.as_deref() == Some(b"garbage")).unwrap();
    assert_eq!(header("tracewarden.source"), format!("{INPUT}/{}/{}", garbage_in.partition, garbage_in.offset));

    // Everything decided and acknowledged: commits reach the end of every partition.
    let end = harness.end_offsets();
    wait_for("offsets committed to the end", WAIT, || harness.committed() == end);
    assert!(end.iter().all(|&e| e > 0), "every partition had traffic: {end:?}");
    pipeline.stop().unwrap();
}

#[test]
fn late_spans_follow_and_shutdown_hands_root_less_traces_over() {
    let harness = Harness::new("late-and-shutdown");
    let pipeline = harness.start();
    let mut held = pipeline.handles.ready.assignment();
    held.sort();
    assert_eq!(
        held,
        (0..PARTITIONS).map(|p| (INPUT.to_string(), p)).collect::<Vec<_>>(),
        "/readyz lists the assignment"
    );
    let root = SpanSpec::new("api", 1, 1, None, SERVER, "GET /a");
    harness.produce(&key(1), &encode(&[root]));
    wait_for("the root", WAIT, || {
        metric(&pipeline, "tracewarden_buffered_spans", &[]) == Some(1.0)
            || metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(1.0)
    });
    harness.advance(Duration::from_secs(6));
    wait_for("the trace to be forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(1.0)
    });

    // A late child: follows the kept decision at once, forwarded as its own message.
    let late = SpanSpec::new("api", 1, 2, Some(1), CLIENT, "SELECT").attr("db.system", AttrSpec::Str("mysql"));
    harness.produce(&key(1), &encode(&[late]));
    wait_for("the late span to be forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(2.0)
    });
    assert_eq!(metric(&pipeline, "tracewarden_late_spans_total", &[("decision", "kept")]), Some(1.0));
    assert_eq!(
        metric(&pipeline, "tracewarden_traces_decided_total", &[("decision", "kept"), ("rule", "no_match")]),
        Some(1.0),
        "late spans are not a new decision"
    );

    // At shutdown, a trace with its root is decided; a root-less one (its root may still be on its
    // way) is handed over undecided: the committed offset stays before its first message, and the
    // next instance of the group reads it whole. It arrives in two messages, so a commit between
    // them would leave the next owner half a trace.
    let rooted = SpanSpec::new("api", 3, 1, None, SERVER, "GET /c");
    harness.produce(&key(3), &encode(&[rooted]));
    harness.produce(&key(2), &encode(&[SpanSpec::new("api", 2, 5, Some(4), SERVER, "GET /b")]));
    harness.produce(&key(2), &encode(&[SpanSpec::new("api", 2, 6, Some(5), CLIENT, "SELECT")]));
    wait_for("both buffered", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(5.0)
    });
    let telemetry = pipeline.handles.telemetry.clone();
    let ready = pipeline.handles.ready.clone();
    pipeline.stop().unwrap();
    assert!(!ready.is_ready() && ready.assignment().is_empty(), "not ready once stopped");
    assert_eq!(telemetry.traces_closed.with_label_values(&["shutdown"]).get(), 1, "the rooted trace");
    assert_eq!(telemetry.traces_handed_over.get(), 1, "the root-less trace");
    let exported = telemetry.registry.gather();
    let handed_over = exported.iter().find(|f| f.name() == "tracewarden_traces_handed_over_total");
    assert_eq!(handed_over.map(|f| f.get_metric()[0].get_counter().get_value()), Some(1.0), "on /metrics too");
    assert_eq!(telemetry.traces_forwarded.get(), 3);
    let input = harness.read_all(INPUT, 5);
    let orphan: Vec<&Record> = input.iter().filter(|r| r.key.as_deref() == Some(key(2).as_bytes())).collect();
    assert_eq!(orphan.len(), 2, "the root-less trace's two messages");
    assert_eq!(orphan[0].partition, orphan[1].partition, "keyed by trace id: one partition");
    let (partition, first) = (orphan[0].partition, orphan.iter().map(|r| r.offset).min().unwrap());
    let committed = harness.committed()[partition as usize];
    assert!(
        committed <= first,
        "partition {partition}: committed {committed} passes the handed-over trace's first message at {first}"
    );

    let restarted = harness.start();
    wait_for("the handed-over trace to be read again", WAIT, || {
        metric(&restarted, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(2.0)
    });
    harness.advance(Duration::from_secs(31));
    wait_for("it to be forwarded", WAIT, || metric(&restarted, "tracewarden_traces_forwarded_total", &[]) == Some(1.0));
    assert_eq!(metric(&restarted, "tracewarden_traces_closed_total", &[("reason", "timeout")]), Some(1.0));
    assert_eq!(metric(&restarted, "tracewarden_spans_forwarded_total", &[]), Some(2.0));
    let output = harness.read_all("sampled_spans", 4);
    assert_eq!(output.len(), 4, "nothing lost, nothing forwarded twice");
    let handed_over: Vec<&Record> = output.iter().filter(|r| r.key.as_deref() == Some(key(2).as_bytes())).collect();
    assert_eq!(handed_over.len(), 1, "the handed-over trace forwarded once, by the next owner");
    let data = TracesData::decode(&handed_over[0].payload[..]).unwrap();
    let span_ids: BTreeSet<Vec<u8>> = tracewarden::testing::span_ids(&data).into_iter().collect();
    assert_eq!(span_ids.len(), 2, "whole: both of its spans in one message");
    wait_for("everything committed", WAIT, || harness.committed_to_end());
    restarted.stop().unwrap();
}

#[test]
fn missing_input_topic_is_named() {
    let mut harness = Harness::new("missing-topic");
    harness.config.kafka.input_topics = vec!["no_such_topic".into()];
    harness.config.kafka.client.insert("allow.auto.create.topics".into(), "false".into());
    let mut pipeline = tracewarden::pipeline::start(&harness.config, harness.clock.clone()).unwrap();
    let error = pipeline.join().unwrap_err().to_string();
    assert!(error.contains("no_such_topic"), "{error}");
}

#[test]
fn unkeyed_input_is_repartitioned_so_traces_assemble_whole() {
    unkeyed_input_is_repartitioned(false, false);
}

/// `kafka.exactly_once`: every record — re-keyed spans and kept traces here, SLO counts, alerts
/// and checkpoints in the SLO test below — goes out in transactions with the offsets (the mock
/// cluster serves the transactional producer's whole protocol: InitProducerId,
/// AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit with the consumer's group metadata,
/// EndTxn), and each trace reaches the output once, whole. What a crash does to transactions is
/// proven against a model of them in `delivery::transaction_tests`: the mock neither hides
/// aborted records nor stores transactional offsets.
#[test]
fn exactly_once_writes_every_record_in_transactions() {
    unkeyed_input_is_repartitioned(true, false);
}

/// Both guarantees over TLS: the same run with every client — the pipeline's consumers,
/// producers (transactional ones included) and the test's own — reaching the broker only
/// through a real TLS listener (stunnel4, certificates made by the test).
#[test]
#[ignore = "needs stunnel4 and openssl: run scripts/test.sh"]
fn at_least_once_holds_over_tls() {
    unkeyed_input_is_repartitioned(false, true);
}

#[test]
#[ignore = "needs stunnel4 and openssl: run scripts/test.sh"]
fn exactly_once_holds_over_tls() {
    unkeyed_input_is_repartitioned(true, true);
}

fn unkeyed_input_is_repartitioned(exactly_once: bool, tls: bool) {
    let name = match (exactly_once, tls) {
        (true, false) => "exactly-once",
        (false, false) => "repartition",
        (true, true) => "exactly-once-tls",
        (false, true) => "repartition-tls",
    };
    let mut harness = if tls {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        Harness::over_tls(name, 1, &dir)
    } else {
        Harness::new(name)
    };
    harness.config.kafka.input_keyed_by_trace = false;
    harness.config.kafka.exactly_once = exactly_once;
    // The mock cluster does not serve CreateTopics (a real broker does: tracewarden creates it).
    harness.cluster().create_topic(&harness.config.kafka.repartition_topic(), PARTITIONS, 1).unwrap();
    let pipeline = harness.start();
    // Every message mixes halves of two traces, under keys unrelated to traces: without the
    // repartition step the halves would land on different partitions.
    let traces: Vec<(Vec<SpanSpec>, Vec<SpanSpec>)> = (1..=12u8).map(owner_trace).collect();
    for (i, pair) in traces.chunks(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        harness.produce(&format!("batch-{i}-x"), &encode(&[a.0.clone(), b.1.clone()].concat()));
        harness.produce(&format!("batch-{i}-y"), &encode(&[a.1.clone(), b.0.clone()].concat()));
    }
    wait_for("every span to be repartitioned and received", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(48.0)
    });
    assert_eq!(metric(&pipeline, "tracewarden_spans_repartitioned_total", &[]), Some(48.0));
    harness.advance(Duration::from_secs(6));
    wait_for("every trace forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(12.0)
    });
    assert_eq!(metric(&pipeline, "tracewarden_traces_closed_total", &[("reason", "complete")]), Some(12.0));
    let output = harness.read_all("sampled_spans", 12);
    assert_eq!(output.len(), 12, "one message per trace: no trace split in two");
    let keys: BTreeSet<Vec<u8>> = output.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
    assert_eq!(keys.len(), 12, "each trace once");
    for record in &output {
        let data = TracesData::decode(&record.payload[..]).unwrap();
        let spans: usize = data.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        assert_eq!(spans, 4, "the whole trace in one message");
    }
    assert_eq!(metric(&pipeline, "tracewarden_requests_total", &labels("customers", "GET /owners/{id}")), Some(12.0));
    let dep = FRONTEND_TO_CUSTOMERS;
    assert_eq!(metric(&pipeline, "tracewarden_dependency_requests_total", &dep), Some(12.0), "resolved across halves");
    if tls {
        let connections = harness.tls_connections().unwrap_or(0);
        assert!(connections >= 3, "the clients went through the TLS listener ({connections} connections)");
    }
    let transactions = metric(&pipeline, "tracewarden_transactions_total", &[("result", "committed")]);
    if exactly_once {
        assert!(transactions.is_some_and(|n| n >= 2.0), "records went out in transactions: {transactions:?}");
        assert_eq!(metric(&pipeline, "tracewarden_transactions_total", &[("result", "aborted")]), None);
    } else {
        assert_eq!(transactions, None, "no transaction without kafka.exactly_once");
        let end = harness.end_offsets();
        wait_for("input offsets committed", WAIT, || harness.committed() == end);
    }
    pipeline.stop().unwrap();
}

#[test]
fn a_stalled_output_pauses_consumption_and_loses_nothing() {
    use rdkafka::mocking::MockCoordinator;
    let mut harness = Harness::with_brokers("backpressure", 2);
    // Input and the group on broker 1; the output topic on broker 2, which goes down.
    harness.cluster().coordinator(MockCoordinator::Group("backpressure".into()), 1).unwrap();
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    harness.cluster().create_topic("tracewarden_dead_letters", PARTITIONS, 1).unwrap();
    for p in 0..PARTITIONS {
        harness.cluster().partition_leader("sampled_spans", p, Some(2)).unwrap();
        harness.cluster().partition_leader("tracewarden_dead_letters", p, Some(1)).unwrap();
    }
    harness.config.kafka.client.insert("queue.buffering.max.messages".into(), "50".into());
    harness.config.kafka.client.insert("reconnect.backoff.max.ms".into(), "500".into());
    harness.config.window.max_buffered_spans = 100;
    harness.config.window.max_spans_per_trace = 50;
    let pipeline = harness.start();
    harness.cluster().broker_down(2).unwrap();

    const TRACES_IN: u8 = 240;
    let messages: Vec<(String, bytes::Bytes)> = (1..=TRACES_IN)
        .flat_map(|t| {
            let (frontend, customers) = owner_trace(t);
            [(key(t), encode(&customers)), (key(t), encode(&frontend))]
        })
        .collect();
    harness.produce_all(&messages);
    let total = TRACES_IN as f64 * 4.0;
    // Each worker pauses on its own (each has its partitions and its producer): both do.
    let workers = harness.config.workers.0 as f64;
    wait_for("consumption to pause", WAIT, || {
        metric(&pipeline, "tracewarden_consumption_paused", &[]) == Some(workers)
    });
    let received =
        || metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]).unwrap_or(0.0);
    let at_pause = received();
    assert!(at_pause < total, "paused before the end of the input: {at_pause} of {total}");
    // Each turn of a worker's loop polls its consumer, then ticks; a tick after the clock has
    // moved publishes the worker's gauges. Every message read is pending (nothing can be
    // forwarded), 2 spans each: the pending gauge shows them all once every worker — each
    // paused, each having read — has turned its loop, polling, while the rest of the input waited.
    harness.advance(Duration::from_secs(1));
    let pending = || metric(&pipeline, "tracewarden_pending_messages", &[]);
    wait_for("every paused worker to turn its loop", WAIT, || pending() == Some(at_pause / 2.0));
    assert_eq!(received(), at_pause, "no consumption while paused");
    assert_eq!(metric(&pipeline, "tracewarden_consumption_paused", &[]), Some(workers), "still paused");
    assert!(metric(&pipeline, "tracewarden_buffered_spans", &[]).unwrap() <= 100.0, "the window bound holds");
    assert!(
        metric(&pipeline, "tracewarden_traces_closed_total", &[("reason", "memory_pressure")]).unwrap_or(0.0) > 0.0,
        "max_buffered_spans decided traces early"
    );

    harness.cluster().broker_up(2).unwrap();
    wait_for("every span received and forwarded", WAIT, || {
        harness.advance(Duration::from_secs(6));
        received() == total && metric(&pipeline, "tracewarden_spans_forwarded_total", &[]) == Some(total)
    });
    let output = harness.read_all("sampled_spans", TRACES_IN as usize);
    let keys: BTreeSet<Vec<u8>> = output.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), TRACES_IN as usize, "every trace reached the output");
    assert_eq!(metric(&pipeline, "tracewarden_consumption_paused", &[]), Some(0.0));
    let end = harness.end_offsets();
    wait_for("offsets committed to the end", WAIT, || harness.committed() == end);
    pipeline.stop().unwrap();
}

#[test]
fn bad_input_is_dead_lettered_or_counted_and_never_stalls_a_partition() {
    let mut harness = Harness::new("bad-input");
    harness.config.window.max_spans_per_trace = 5_000;
    let pipeline = harness.start();
    let valid = encode(&[SpanSpec::new("api", 1, 1, None, SERVER, "GET /ok")]);
    let mut wrong_id = SpanSpec::new("api", 2, 1, None, SERVER, "x");
    wrong_id.id = 0;
    let ancient = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
    let future = br#"[{"traceId":"0102030405060708090a0b0c0d0e0f11","id":"0102030405060708","timestamp":9999999999999999,"duration":1}]"#;
    let short_trace_id = br#"[{"traceId":"0102","id":"0102030405060708","timestamp":1700000000000000,"duration":1}]"#;
    // A huge message: 8 000 spans of one trace in one 0.5 MB message (past max_spans_per_trace).
    let huge: Vec<SpanSpec> = (0..8000u32)
        .map(|i| SpanSpec::new("bulk", 3, (i % 250) as u8 + 1, Some(0), SERVER, "bulk").micros(i as u64 + 1))
        .collect();
    let huge = encode(&huge);
    assert!(huge.len() > 500_000, "{} bytes", huge.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated protobuf", valid[..valid.len() - 2].to_vec()),
        ("invalid JSON", b"{\"resourceSpans\": [ {".to_vec()),
        ("Zipkin JSON that is not a span list", b"[1, 2, 3]".to_vec()),
        ("wrong encoding: text", b"hello, kafka".to_vec()),
        ("empty message", Vec::new()),
        ("span id of the wrong length", encode(&[wrong_id]).to_vec()),
        ("timestamps in 1970", ancient.to_vec()),
        ("timestamps far in the future", future.to_vec()),
        ("trace id of the wrong length", short_trace_id.to_vec()),
        ("huge", huge.to_vec()),
        ("a good trace after all of it", valid.to_vec()),
    ];
    // All on one partition, in order: the good trace at the end must still get through.
    for (_, payload) in &cases {
        harness.produce("same-partition", payload);
    }
    wait_for("the good trace and the huge one", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(8001.0)
    });
    assert_eq!(metric(&pipeline, "tracewarden_traces_closed_total", &[("reason", "too_large")]), Some(1.0));
    harness.advance(Duration::from_secs(31));
    wait_for("both forwarded", WAIT, || metric(&pipeline, "tracewarden_spans_forwarded_total", &[]) == Some(8001.0));
    let reason = |r: &str| metric(&pipeline, "tracewarden_messages_rejected_total", &[("reason", r)]).unwrap_or(0.0);
    assert_eq!(reason("malformed_protobuf"), 2.0, "truncated protobuf, plain text");
    assert_eq!(reason("malformed_otlp_json"), 1.0);
    assert_eq!(reason("malformed_zipkin_json"), 1.0);
    assert_eq!(reason("empty"), 1.0);
    let spans = |r: &str| metric(&pipeline, "tracewarden_spans_rejected_total", &[("reason", r)]).unwrap_or(0.0);
    assert_eq!(spans("invalid_id"), 2.0, "span id, trace id");
    assert_eq!(spans("invalid_time"), 2.0, "1970, far future");
    wait_for("5 dead letters", WAIT, || {
        metric(&pipeline, "tracewarden_messages_dead_lettered_total", &[]) == Some(5.0)
    });
    let dead = harness.read_all("tracewarden_dead_letters", 5);
    assert_eq!(dead.len(), 5);
    for record in &dead {
        let original = cases.iter().find(|(_, p)| *p == record.payload).map(|(name, _)| *name);
        assert!(original.is_some(), "dead letters carry the message unchanged");
        assert!(record.headers.iter().any(|(k, v)| k == "tracewarden.error" && !v.is_empty()));
    }
    wait_for("the partition committed to its end", WAIT, || harness.committed_to_end());
    pipeline.stop().unwrap();
}

#[test]
fn sampling_rules_keep_faults_and_slow_traces_drop_health_checks_and_rate_the_rest() {
    let mut harness = Harness::new("sampling");
    harness.config.sampling = toml::from_str(
        r#"
        [[rules]]
        name = "faults"
        when = { outcome = "fault" }
        keep = "all"
        [[rules]]
        name = "slow"
        when = { min_duration = "1s" }
        keep = "all"
        [[rules]]
        name = "health-checks"
        when = { attribute = { key = "user_agent.original", matches = "ELB-HealthChecker*" } }
        keep = "none"
        [[rules]]
        name = "default"
        keep = "rate"
        rate = 0.25
        "#,
    )
    .unwrap();
    let pipeline = harness.start();
    let kind = |t: u8| t % 10;
    let mut messages = Vec::new();
    for t in 1..=250u8 {
        let span = SpanSpec::new("shop", t, 1, None, SERVER, "GET");
        let span = match kind(t) {
            0 => span.http("GET", "/buy", 500),
            1 => span.http("GET", "/buy", 200).micros(1_500_000),
            2 => span.http("GET", "/health", 200).attr("user_agent.original", AttrSpec::Str("ELB-HealthChecker/2.0")),
            _ => span.http("GET", "/buy", 200),
        };
        messages.push((key(t), encode(&[span])));
    }
    harness.produce_all(&messages);
    wait_for("all received", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(250.0)
    });
    harness.advance(Duration::from_secs(6));
    let decided = |decision: &str, rule: &str| {
        metric(&pipeline, "tracewarden_traces_decided_total", &[("decision", decision), ("rule", rule)]).unwrap_or(0.0)
    };
    wait_for("all decided", WAIT, || {
        decided("kept", "faults")
            + decided("kept", "slow")
            + decided("dropped", "health-checks")
            + decided("kept", "default")
            + decided("dropped", "default")
            == 250.0
    });
    let rated: Vec<u8> = (1..=250u8).filter(|t| kind(*t) > 2).collect();
    // p = 0.25 is `th:c`, the rejection threshold 0xc0000000000000 (OpenTelemetry specification,
    // trace/tracestate-handling.md "Sampling threshold value th"); a trace is kept when its id's
    // last 56 bits are at least that ("Testing randomness vs threshold"). Trace t's id is 16
    // bytes t, so its randomness is 0xtttttttttttttt: kept exactly when t ≥ 0xc0.
    let rate_kept: BTreeSet<String> = rated.iter().filter(|t| **t >= 0xc0).map(|t| key(*t)).collect();
    assert_eq!(rate_kept.len(), 42, "192 ..= 250 without the tens, ones and twos (fault, slow, health check)");
    assert_eq!(decided("kept", "faults"), 25.0);
    assert_eq!(decided("kept", "slow"), 25.0);
    assert_eq!(decided("dropped", "health-checks"), 25.0);
    assert_eq!(decided("kept", "default"), rate_kept.len() as f64);
    assert_eq!(decided("dropped", "default"), (rated.len() - rate_kept.len()) as f64);

    let expected: BTreeSet<String> =
        (1..=250u8).filter(|t| kind(*t) <= 1).map(key).chain(rate_kept.iter().cloned()).collect();
    let output = harness.read_all("sampled_spans", expected.len());
    let keys: BTreeSet<String> = output.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    assert_eq!(keys, expected, "every fault and slow trace, no health check, the rate's share of the rest");
    for record in &output {
        let data = TracesData::decode(&record.payload[..]).unwrap();
        let span = &data.resource_spans[0].scope_spans[0].spans[0];
        let attr =
            |k: &str| span.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value);
        let Some(any_value::Value::StringValue(rule)) = attr("sampling.rule") else { panic!("no sampling.rule") };
        let Some(any_value::Value::DoubleValue(sample_rate)) = attr("sampling.sample_rate") else { panic!("no rate") };
        if rule == "default" {
            assert_eq!(sample_rate, 4.0);
            assert_eq!(span.trace_state, "ot=th:c", "the OpenTelemetry threshold of p = 0.25");
        } else {
            assert_eq!(sample_rate, 1.0);
            assert!(span.trace_state.is_empty());
        }
    }
    // Sampling never changes metrics: all 250 requests are counted, dropped ones included.
    let buy = metric(&pipeline, "tracewarden_requests_total", &labels("shop", "GET /buy")).unwrap();
    let health = metric(&pipeline, "tracewarden_requests_total", &labels("shop", "GET /health")).unwrap();
    assert_eq!(buy + health, 250.0);
    wait_for("offsets committed, dropped traces included", WAIT, || harness.committed_to_end());
    pipeline.stop().unwrap();
}

#[test]
fn slo_alerts_reach_the_alerts_topic_in_the_alert_schema() {
    slo_alerts_reach_the_alerts_topic(false);
}

/// The same with `kafka.exactly_once`: SLO counts, alerts and checkpoints go out in transactions.
#[test]
fn slo_alerts_reach_the_alerts_topic_in_transactions() {
    slo_alerts_reach_the_alerts_topic(true);
}

fn slo_alerts_reach_the_alerts_topic(exactly_once: bool) {
    let mut harness = Harness::new(if exactly_once { "slo-alerts-eo" } else { "slo-alerts" });
    harness.config.kafka.exactly_once = exactly_once;
    harness.config.slo = tracewarden::slo::config::parse_slos(
        r#"
        [[slo]]
        name = "buy-availability"
        service = "shop"
        operation = "GET /buy"
        sli = "availability"
        goal = 0.99
        window = "1h"
        min_requests = 10
        "#,
    )
    .unwrap();
    let pipeline = harness.start();
    // 200 requests in the minute before the clock's time, 20 of them faults: 10 % against 1 %.
    let messages: Vec<(String, bytes::Bytes)> = (1..=200u8)
        .map(|t| {
            let status = if t <= 20 { 503 } else { 200 };
            let span = SpanSpec::new("shop", t, 1, None, SERVER, "x")
                .http("GET", "/buy", status)
                .starting(T0.0 - 30_000_000_000);
            (key(t), encode(&[span]))
        })
        .collect();
    harness.produce_all(&messages);
    wait_for("all received", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]) == Some(200.0)
    });
    // The counts travel through the aggregates topic to the SLO's owner (this instance).
    wait_for("the counts merged", WAIT, || {
        metric(&pipeline, "tracewarden_slo_attainment_ratio", &[("slo", "buy-availability")])
            .is_some_and(|a| (a - 0.9).abs() < 1e-9)
    });
    harness.advance(Duration::from_secs(11));
    wait_for("the traces decided", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(200.0)
    });
    harness.advance(Duration::from_secs(11));
    let alerts = harness.read_all("slo_alerts", 4);
    let parsed: Vec<serde_json::Value> = alerts.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect();
    let page_fast = parsed
        .iter()
        .find(|a| a["labels"]["tier"] == "page-fast")
        .unwrap_or_else(|| panic!("no page-fast alert in {parsed:#?}"));
    assert_eq!(page_fast["status"], "firing");
    assert_eq!(page_fast["schemaVersion"], 1);
    assert_eq!(page_fast["labels"]["slo"], "buy-availability");
    assert_eq!(page_fast["labels"]["alertname"], "SLOBurnRate");
    assert!(page_fast["endsAt"].is_null());
    let record = alerts.iter().zip(&parsed).find(|(_, a)| a["labels"]["tier"] == "page-fast").unwrap().0;
    assert_eq!(record.key.as_deref(), page_fast["fingerprint"].as_str().map(str::as_bytes), "keyed by fingerprint");
    assert!(parsed
        .iter()
        .any(|a| a["labels"]["alertname"] == "SLOErrorBudget" && a["labels"]["severity"] == "breached"));
    let window_burn = page_fast["evaluation"]["windows"][0]["burnRate"].as_f64().unwrap();
    assert!((window_burn - 10.0).abs() < 1e-6, "10 % bad over 1 % allowed: {window_burn}");
    // Gauges.
    assert_eq!(metric(&pipeline, "tracewarden_slo_goal_ratio", &[("slo", "buy-availability")]), Some(0.99));
    assert_eq!(
        metric(&pipeline, "tracewarden_slo_status", &[("slo", "buy-availability"), ("status", "BREACHED")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&pipeline, "tracewarden_slo_alert_firing", &[("slo", "buy-availability"), ("tier", "page-fast")]),
        Some(1.0)
    );
    assert!(
        (metric(&pipeline, "tracewarden_slo_attainment_ratio", &[("slo", "buy-availability")]).unwrap() - 0.9).abs()
            < 1e-9
    );
    let transactions = metric(&pipeline, "tracewarden_transactions_total", &[("result", "committed")]);
    assert_eq!(transactions.is_some_and(|n| n >= 2.0), exactly_once, "transactions: {transactions:?}");
    pipeline.stop().unwrap();
}

/// `[[kafka.inputs]]`: a topic read in an encoding of its own beside the main input's, and each
/// kept trace leaving in the encoding it arrived in. (Read as the main input's `otlp_proto`, the
/// Zipkin JSON messages would be dead letters.)
#[test]
fn each_input_topic_is_read_in_its_own_encoding() {
    use tracewarden::format::InputEncoding;
    use tracewarden::generate::{PetClinic, TrafficProfile};
    use tracewarden::model::Encoding;

    let mut harness = Harness::new("per-topic-encodings");
    harness.cluster().create_topic("zipkin_spans", PARTITIONS, 1).unwrap();
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    harness.config.kafka.encoding = InputEncoding::Fixed(Encoding::OTLP_PROTO);
    harness.config.kafka.inputs =
        vec![InputTopic { topic: "zipkin_spans".into(), encoding: InputEncoding::Fixed(Encoding::ZIPKIN_JSON) }];
    let pipeline = harness.start();
    let mut clinic = PetClinic::new(3, TrafficProfile::default());
    let zipkin = clinic.trace(T0.0, Encoding::ZIPKIN_JSON);
    let otlp = clinic.trace(T0.0, Encoding::OTLP_PROTO);
    let (zipkin_key, otlp_key) = (hex::encode(zipkin.trace_id), hex::encode(otlp.trace_id));
    for message in &zipkin.messages {
        harness.produce_topic("zipkin_spans", &zipkin_key, message);
    }
    for message in &otlp.messages {
        harness.produce(&otlp_key, message);
    }
    let received = |encoding: &str| {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", encoding)]).unwrap_or(0.0)
    };
    wait_for("both traces read, each in its encoding", WAIT, || {
        received("zipkin_json") == zipkin.spans as f64 && received("otlp_proto") == otlp.spans as f64
    });
    harness.advance(Duration::from_secs(10));
    let output = harness.read_all("sampled_spans", 2);
    let by_key: HashMap<String, &Record> =
        output.iter().map(|r| (String::from_utf8(r.key.clone().unwrap()).unwrap(), r)).collect();
    let zipkin_out: serde_json::Value = serde_json::from_slice(&by_key[&zipkin_key].payload).expect("Zipkin JSON out");
    assert_eq!(zipkin_out.as_array().map(Vec::len), Some(zipkin.spans), "the Zipkin trace leaves as Zipkin JSON");
    let otlp_out = TracesData::decode(&by_key[&otlp_key].payload[..]).expect("OTLP protobuf out");
    let spans: usize = otlp_out.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    assert_eq!(spans, otlp.spans, "the OTLP trace leaves as OTLP protobuf");
    pipeline.stop().unwrap();
}

/// X-Ray segment documents as the X-Ray SDK for Python sent them (`tests/fixtures/python_xray.py`),
/// one datagram per message: counted as requests and dependency calls, and each kept trace
/// forwarded as one JSON array of its documents with the decision in their annotations.
#[test]
fn xray_segments_are_counted_and_forwarded_as_documents() {
    use tracewarden::format::{Encoding, InputEncoding};

    let mut harness = Harness::new("xray-segments");
    harness.cluster().create_topic("xray_segments", PARTITIONS, 1).unwrap();
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    harness.config.kafka.input_topics = Vec::new();
    harness.config.kafka.inputs =
        vec![InputTopic { topic: "xray_segments".into(), encoding: InputEncoding::Fixed(Encoding::XRAY_JSON) }];
    let pipeline = harness.start();
    let datagrams: Vec<String> = serde_json::from_str(include_str!("fixtures/python-xray-datagrams.json")).unwrap();
    for datagram in &datagrams {
        let document: serde_json::Value = serde_json::from_str(datagram.split_once('\n').unwrap().1).unwrap();
        let trace_id = document["trace_id"].as_str().unwrap().replace("1-", "").replace('-', "");
        harness.produce_topic("xray_segments", &trace_id, datagram.as_bytes());
    }
    wait_for("every segment and subsegment read", WAIT, || {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", "xray_json")]) == Some(7.0)
    });
    harness.advance(Duration::from_secs(10));
    let output = harness.read_all("sampled_spans", 3);
    let count = |family: &str, route: &str| {
        metric(&pipeline, family, &[("service", "owners-api"), ("operation", route)]).unwrap_or(0.0)
    };
    assert_eq!(count("tracewarden_requests_total", "GET /owners/{id}"), 2.0);
    assert_eq!(count("tracewarden_faults_total", "GET /owners/{id}"), 1.0, "the 503");
    assert_eq!(count("tracewarden_requests_total", "GET /crash"), 1.0);
    assert_eq!(count("tracewarden_faults_total", "GET /crash"), 1.0);
    for record in &output {
        let documents: Vec<serde_json::Value> = serde_json::from_slice(&record.payload).expect("a list of documents");
        assert_eq!(documents.len(), 1, "one segment per trace, its subsegments inside it");
        assert!(documents[0]["annotations"]["sampling_rule"].is_string(), "{}", documents[0]);
    }
    pipeline.stop().unwrap();
}

/// Zipkin protobuf and both Jaeger encodings, each on a topic of its own: read into the same span
/// model (their spans counted like any), and each kept trace leaves in its arrival encoding —
/// a `ListOfSpans` for Zipkin, one message per span for Jaeger (what its ingester reads).
/// Reads only these topics, each in its encoding (created, with the output topic).
fn read_only(
    harness: &mut Harness,
    inputs: &[(&str, tracewarden::format::InputEncoding, tracewarden::model::Encoding)],
) {
    for (topic, _, _) in inputs {
        harness.cluster().create_topic(topic, PARTITIONS, 1).unwrap();
    }
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    harness.config.kafka.input_topics = Vec::new();
    harness.config.kafka.inputs = inputs
        .iter()
        .map(|(topic, encoding, _)| tracewarden::kafka_client::InputTopic {
            topic: topic.to_string(),
            encoding: *encoding,
        })
        .collect();
}

#[test]
fn zipkin_proto_and_jaeger_topics_are_read_and_forwarded_in_their_encodings() {
    use prost::Message;
    use tracewarden::format::schemas::{jaeger, zipkin};
    use tracewarden::format::InputEncoding;
    use tracewarden::generate::{PetClinic, TrafficProfile};
    use tracewarden::model::Encoding;

    let mut harness = Harness::new("zipkin-jaeger-encodings");
    let inputs = [
        ("zipkin_proto_spans", InputEncoding::Fixed(Encoding::ZIPKIN_PROTO), Encoding::ZIPKIN_PROTO),
        ("jaeger_proto_spans", InputEncoding::Fixed(Encoding::JAEGER_PROTO), Encoding::JAEGER_PROTO),
        ("jaeger_json_spans", InputEncoding::Fixed(Encoding::JAEGER_JSON), Encoding::JAEGER_JSON),
    ];
    read_only(&mut harness, &inputs);
    let pipeline = harness.start();
    let mut clinic = PetClinic::new(3, TrafficProfile::default());
    let traces: Vec<_> = inputs.iter().map(|(_, _, encoding)| clinic.trace(T0.0, *encoding)).collect();
    for ((topic, _, _), trace) in inputs.iter().zip(&traces) {
        for message in &trace.messages {
            harness.produce_topic(topic, &hex::encode(trace.trace_id), message);
        }
    }
    let received = |encoding: Encoding| {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", encoding.as_str())]).unwrap_or(0.0)
    };
    wait_for("every trace read, each in its encoding", WAIT, || {
        inputs.iter().zip(&traces).all(|((_, _, encoding), trace)| received(*encoding) == trace.spans as f64)
    });
    harness.advance(Duration::from_secs(10));
    let (zipkin_trace, jaeger_trace, jaeger_json_trace) = (&traces[0], &traces[1], &traces[2]);
    let output = harness.read_all("sampled_spans", 1 + jaeger_trace.spans + jaeger_json_trace.spans);
    let of_trace = |trace: &tracewarden::generate::GeneratedTrace| -> Vec<&Record> {
        let key = hex::encode(trace.trace_id);
        output.iter().filter(|r| r.key.as_deref() == Some(key.as_bytes())).collect()
    };
    let zipkin_out = of_trace(zipkin_trace);
    assert_eq!(zipkin_out.len(), 1, "one ListOfSpans for the Zipkin trace");
    let list = zipkin::ListOfSpans::decode(&zipkin_out[0].payload[..]).expect("Zipkin protobuf out");
    assert_eq!(list.spans.len(), zipkin_trace.spans);
    assert!(list.spans.iter().all(|s| s.tags.contains_key("sampling.rule")), "each span carries the decision");
    let jaeger_out = of_trace(jaeger_trace);
    assert_eq!(jaeger_out.len(), jaeger_trace.spans, "one Jaeger message per span");
    for record in &jaeger_out {
        let span = jaeger::Span::decode(&record.payload[..]).expect("Jaeger protobuf out");
        assert!(span.process.is_some_and(|p| !p.service_name.is_empty()), "the process travels with the span");
        assert!(span.tags.iter().any(|t| t.key == "sampling.rule"));
    }
    let json_out = of_trace(jaeger_json_trace);
    assert_eq!(json_out.len(), jaeger_json_trace.spans);
    for record in &json_out {
        let span: serde_json::Value = serde_json::from_slice(&record.payload).expect("Jaeger JSON out");
        let tags = span["tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["key"] == "sampling.rule"), "{span}");
    }
    pipeline.stop().unwrap();
}

#[test]
fn unkeyed_binary_encodings_are_repartitioned_and_forwarded_whole_in_their_encodings() {
    use prost::Message;
    use tracewarden::format::schemas::{jaeger, zipkin};
    use tracewarden::format::InputEncoding;
    use tracewarden::generate::{PetClinic, TrafficProfile};
    use tracewarden::model::Encoding;

    let mut harness = Harness::new("unkeyed-binary");
    harness.config.kafka.input_keyed_by_trace = false;
    let inputs = [
        ("zipkin_proto_spans", InputEncoding::Fixed(Encoding::ZIPKIN_PROTO), Encoding::ZIPKIN_PROTO),
        ("jaeger_proto_spans", InputEncoding::Fixed(Encoding::JAEGER_PROTO), Encoding::JAEGER_PROTO),
    ];
    harness.cluster().create_topic(&harness.config.kafka.repartition_topic(), PARTITIONS, 1).unwrap();
    read_only(&mut harness, &inputs);
    let pipeline = harness.start();
    let mut clinic = PetClinic::new(5, TrafficProfile::default());
    let traces: Vec<(usize, tracewarden::generate::GeneratedTrace)> =
        (0..8).map(|i| (i % 2, clinic.trace(T0.0 + i as u64 * 1_000_000, inputs[i % 2].2))).collect();
    // Every message under a key of its own: a trace's messages land on different partitions.
    let mut n = 0;
    for (input, trace) in &traces {
        for message in &trace.messages {
            harness.produce_topic(inputs[*input].0, &format!("unrelated-{n}"), message);
            n += 1;
        }
    }
    let spans_of = |input: usize| traces.iter().filter(|(i, _)| *i == input).map(|(_, t)| t.spans).sum::<usize>();
    let received = |encoding: Encoding| {
        metric(&pipeline, "tracewarden_spans_received_total", &[("encoding", encoding.as_str())]).unwrap_or(0.0)
    };
    wait_for("every span re-keyed and read back in its encoding", WAIT, || {
        received(Encoding::ZIPKIN_PROTO) == spans_of(0) as f64 && received(Encoding::JAEGER_PROTO) == spans_of(1) as f64
    });
    harness.advance(Duration::from_secs(10));
    let output = harness.read_all("sampled_spans", 4 + spans_of(1));
    assert_eq!(
        metric(&pipeline, "tracewarden_spans_repartitioned_total", &[]),
        Some((spans_of(0) + spans_of(1)) as f64)
    );
    assert_eq!(metric(&pipeline, "tracewarden_traces_closed_total", &[("reason", "complete")]), Some(8.0));
    for (input, trace) in &traces {
        let key = hex::encode(trace.trace_id);
        let out: Vec<&Record> = output.iter().filter(|r| r.key.as_deref() == Some(key.as_bytes())).collect();
        if *input == 0 {
            assert_eq!(out.len(), 1, "one ListOfSpans per Zipkin trace");
            let list = zipkin::ListOfSpans::decode(&out[0].payload[..]).expect("Zipkin protobuf out");
            assert_eq!(list.spans.len(), trace.spans, "the whole trace");
        } else {
            assert_eq!(out.len(), trace.spans, "one Jaeger message per span, every span");
            for record in out {
                jaeger::Span::decode(&record.payload[..]).expect("Jaeger protobuf out");
            }
        }
    }
    pipeline.stop().unwrap();
}
