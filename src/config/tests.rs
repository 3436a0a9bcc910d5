use std::time::Duration;

use super::*;
use crate::format::{Encoding, InputEncoding};

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_toml(text) {
        Ok(_) => panic!("expected an invalid configuration:\n{text}"),
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.kafka.brokers, "localhost:9092");
    assert_eq!(c.kafka.input_topics, vec!["otlp_spans"]);
    assert_eq!(c.kafka.output_topic, "sampled_spans");
    assert_eq!(c.kafka.dead_letter_topic, "tracewarden_dead_letters");
    assert_eq!(c.kafka.encoding, InputEncoding::Auto);
    assert_eq!(c.window.decision_wait.0, Duration::from_secs(5));
    assert_eq!(c.window.max_trace_age.0, Duration::from_secs(30));
    assert_eq!(c.window.max_spans_per_trace, 10_000);
    assert_eq!(c.window.max_buffered_spans, 2_000_000);
    assert_eq!(c.window.max_buffered_bytes, 1 << 30);
    assert_eq!((c.window.decision_cache_kept, c.window.decision_cache_dropped), (100_000, 1_000_000));
    assert_eq!(c.metrics.window.0, Duration::from_secs(60));
    assert_eq!(c.metrics.max_series, 10_000);
    assert_eq!(c.metrics.series_ttl.0, Duration::from_secs(900));
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9464");
}

#[test]
fn shipped_example_config_is_valid_and_matches_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tracewarden.toml")).unwrap();
    let shipped = Config::from_toml(&text).unwrap();
    let defaults = Config::default();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"), "config/tracewarden.toml documents the defaults");
}

#[test]
fn full_literal_config() {
    let c = Config::from_toml(
        r#"
        [kafka]
        brokers = "k1:9092,k2:9092"
        group_id = "tw"
        input_topics = ["a", "b"]
        encoding = "zipkin_json"
        commit_interval = "250ms"
        input_keyed_by_trace = false
        client = { "security.protocol" = "SASL_SSL", "sasl.mechanisms" = "PLAIN", "sasl.username" = "tw", "sasl.password" = "pw" }

        [window]
        decision_wait = "2s"
        max_trace_age = "1m"

        [metrics]
        window = "30s"
        latency_buckets = [0.1, 0.5]

        [[metrics.exclude]]
        name = "health"
        attribute = { key = "http.route", equals = "/health" }

        [http]
        listen = "0.0.0.0:9000"

        [log]
        level = "debug"
        format = "json"
        "#,
    )
    .unwrap();
    assert_eq!(c.kafka.input_topics, vec!["a", "b"]);
    assert_eq!(c.kafka.encoding, InputEncoding::Fixed(Encoding::ZIPKIN_JSON));
    assert_eq!(c.kafka.commit_interval.0, Duration::from_millis(250));
    assert!(!c.kafka.input_keyed_by_trace);
    assert_eq!(c.kafka.client["security.protocol"], "SASL_SSL");
    assert_eq!(c.window.max_trace_age.0, Duration::from_secs(60));
    assert_eq!(c.metrics.exclude[0].name, "health");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn unknown_keys_are_named() {
    let p = problems("[window]\ndecison_wait = \"5s\"\n");
    assert_eq!(p[0].key, "window.decison_wait");
    assert!(p[0].message.contains("decison_wait"), "{p:?}");
    let p = problems("[kafak]\nbrokers = \"x\"\n");
    assert!(p[0].message.contains("kafak"), "{p:?}");
    let p = problems("[[metrics.exclude]]\nname = \"x\"\nservice = \"a\"\nwhat = 1\n");
    assert!(p[0].key.starts_with("metrics.exclude"), "{p:?}");
    assert!(p[0].message.contains("what"), "{p:?}");
}

#[test]
fn bad_values_name_the_key_and_the_form() {
    let p = problems("[window]\ndecision_wait = \"5 parsecs\"\n");
    assert_eq!(p[0].key, "window.decision_wait");
    assert!(p[0].message.contains("\"500ms\""), "{p:?}");
    let p = problems("[kafka]\nencoding = \"protobuf\"\n");
    assert_eq!(p[0].key, "kafka.encoding");
    assert!(p[0].message.contains("otlp_proto"), "{p:?}");
    let p = problems("[window]\nmax_spans_per_trace = -4\n");
    assert_eq!(p[0].key, "window.max_spans_per_trace");
    let p = problems("[http]\nlisten = \"nowhere\"\n");
    assert_eq!(p[0].key, "http.listen");
}

/// `[http]` and `[ingest.otlp]` credentials and TLS: each half of a pair asks for the other, a
/// path must be one, a misspelt key is named.
#[test]
fn access_and_tls_settings_are_checked() {
    let keys = |toml: &str| problems(toml).into_iter().map(|p| p.key).collect::<Vec<_>>();
    assert_eq!(keys("[http]\ntls_cert_file = \"c.pem\"\n"), vec!["http.tls_key_file"]);
    assert_eq!(keys("[http]\nbasic_username = \"sre\"\n"), vec!["http.basic_password"]);
    assert_eq!(keys("[http]\nbearer_token = \" \"\n"), vec!["http.bearer_token"]);
    assert_eq!(keys("[http]\nopen_paths = [\"metrics\"]\n"), vec!["http.open_paths[0]"]);
    assert_eq!(keys("[ingest.otlp]\ntls_key_file = \"k.pem\"\n"), vec!["ingest.otlp.tls_key_file"]);
    let p = problems("[http]\nbearer_tokn = \"x\"\n");
    assert!(p[0].message.contains("bearer_tokn"), "{p:?}");
    let fine = Config::from_toml("[http]\nbearer_token = \"t\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n");
    assert!(fine.is_ok_and(|c| c.http.tls().is_some() && c.http.bearer_token.is_some()));
}

#[test]
fn cross_field_rules_report_every_problem() {
    let p = problems(
        r#"
        [kafka]
        input_topics = ["spans"]
        output_topic = "spans"
        [window]
        decision_wait = "40s"
        max_trace_age = "30s"
        max_spans_per_trace = 100
        max_buffered_spans = 10
        [metrics]
        latency_buckets = [0.5, 0.1]
        series_ttl = "10s"
        [[metrics.exclude]]
        name = "a"
        [log]
        level = "loud"
        "#,
    );
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "kafka.output_topic",
        "window.max_trace_age",
        "window.max_buffered_spans",
        "metrics.latency_buckets",
        "metrics.series_ttl",
        "metrics.exclude[0]",
        "log.level",
    ] {
        assert!(keys.contains(&key), "{key} not reported in {keys:?}");
    }
}

#[test]
fn exactly_once_is_off_by_default_and_refuses_reading_uncommitted_records() {
    let c = Config::from_toml("").unwrap();
    assert!(!c.kafka.exactly_once && c.kafka.transactional_id.is_none());
    let c = Config::from_toml("[kafka]\nexactly_once = true\ntransactional_id = \"node-1\"\n").unwrap();
    assert!(c.kafka.exactly_once);
    assert_eq!(c.kafka.transactional_id.as_deref(), Some("node-1"));
    let p = problems(
        r#"
        [kafka]
        exactly_once = true
        transactional_id = " "
        [kafka.client]
        "isolation.level" = "read_uncommitted"
        "#,
    );
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"kafka.transactional_id") && keys.contains(&"kafka.client.isolation.level"), "{keys:?}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("tw-env-{}", std::process::id()));
    std::fs::write(&dir, "[kafka]\nbrokers = \"file:9092\"\n[window]\nmax_spans_per_trace = 7\n").unwrap();
    let env = [
        ("TRACEWARDEN__KAFKA__BROKERS", "kafka:9092"),
        ("TRACEWARDEN__KAFKA__INPUT_TOPICS", "a,b"),
        ("TRACEWARDEN__WINDOW__DECISION_WAIT", "2s"),
        ("TRACEWARDEN__METRICS__MAX_SERIES", "5"),
        ("TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD", "s3cret"),
        ("UNRELATED", "x"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::load_with_env(Some(&dir), env).unwrap();
    std::fs::remove_file(&dir).unwrap();
    assert_eq!(c.kafka.brokers, "kafka:9092");
    assert_eq!(c.kafka.input_topics, vec!["a", "b"]);
    assert_eq!(c.window.decision_wait.0, Duration::from_secs(2));
    assert_eq!(c.window.max_spans_per_trace, 7);
    assert_eq!(c.metrics.max_series, 5);
    assert_eq!(c.kafka.client["sasl.password"], "s3cret");

    let bad = [("TRACEWARDEN__WINDOW__DECISION_WAIT".to_string(), "soon".to_string())];
    match Config::load_with_env(None, bad) {
        Err(ConfigError::Invalid(p)) => assert_eq!(p[0].key, "window.decision_wait"),
        other => panic!("{other:?}"),
    }
    let unknown = [("TRACEWARDEN__WINDOW__NOPE".to_string(), "1".to_string())];
    match Config::load_with_env(None, unknown) {
        Err(ConfigError::Invalid(p)) => assert!(p[0].message.contains("nope"), "{p:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn workers_default_to_the_cores_and_must_fit_the_window() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(64);
    assert_eq!(Config::from_toml("").unwrap().workers, Workers(cores));
    assert_eq!(Config::from_toml("workers = 3").unwrap().workers, Workers(3));
    let zero = problems("workers = 0");
    assert!(zero.iter().any(|p| p.key == "workers" && p.message.contains("from 1 to 64")), "{zero:?}");
    // Four workers share 20 000 buffered spans: 5 000 each, less than a 10 000-span trace.
    let tight = problems("workers = 4\n[window]\nmax_buffered_spans = 20000\n");
    assert!(tight.iter().any(|p| p.key == "window.max_buffered_spans" && p.message.contains("5000")), "{tight:?}");
    assert!(Config::from_toml("workers = 2\n[window]\nmax_buffered_spans = 20000\n").is_ok());
}

/// `[[kafka.inputs]]`: topics read in an encoding of their own, beside (or instead of)
/// `input_topics`; one encoding per topic; none may be one of tracewarden's own outputs.
#[test]
fn input_topics_with_their_own_encodings() {
    let c = Config::from_toml(
        r#"
        [kafka]
        input_topics = ["otlp"]
        encoding = "otlp_proto"
        [[kafka.inputs]]
        topic = "zipkin"
        encoding = "zipkin_json"
        [[kafka.inputs]]
        topic = "otlp"
        encoding = "auto"
        "#,
    )
    .unwrap();
    assert_eq!(c.kafka.all_input_topics(), vec!["otlp", "zipkin"]);
    assert_eq!(
        c.kafka.topic_encodings(),
        vec![
            ("zipkin".to_string(), InputEncoding::Fixed(Encoding::ZIPKIN_JSON)),
            ("otlp".to_string(), InputEncoding::Auto)
        ]
    );
    let only =
        Config::from_toml("[kafka]\ninput_topics = []\n[[kafka.inputs]]\ntopic = \"z\"\nencoding = \"zipkin_json\"\n")
            .unwrap();
    assert_eq!(only.kafka.all_input_topics(), vec!["z"]);

    let p = problems("[kafka]\ninput_topics = []\n");
    assert_eq!(p[0].key, "kafka.input_topics");
    let p = problems(
        "[[kafka.inputs]]\ntopic = \"z\"\nencoding = \"zipkin_json\"\n[[kafka.inputs]]\ntopic = \"z\"\nencoding = \"otlp_json\"\n",
    );
    assert_eq!(p[0].key, "kafka.inputs[1].topic");
    assert!(p[0].message.contains("twice"), "{p:?}");
    let p = problems("[[kafka.inputs]]\ntopic = \"sampled_spans\"\nencoding = \"otlp_proto\"\n");
    assert_eq!(p[0].key, "kafka.output_topic");
    let p = problems("[[kafka.inputs]]\ntopic = \"z\"\nencoding = \"jaeger\"\n");
    assert!(p[0].key.starts_with("kafka.inputs"), "{p:?}");
    assert!(p[0].message.contains("zipkin_json"), "the accepted encodings are named: {p:?}");
    let p = problems("[[kafka.inputs]]\ntopic = \"z\"\nencodng = \"otlp_json\"\n");
    assert!(p[0].message.contains("encodng"), "{p:?}");
    let jaeger = Config::from_toml("[[kafka.inputs]]\ntopic = \"j\"\nencoding = \"jaeger_proto\"\n").unwrap();
    assert_eq!(jaeger.kafka.topic_encodings(), vec![("j".to_string(), InputEncoding::Fixed(Encoding::JAEGER_PROTO))]);
    // Re-keyed spans say their encoding in a header: every encoding can be re-keyed.
    let unkeyed =
        "[kafka]\ninput_keyed_by_trace = false\n[[kafka.inputs]]\ntopic = \"j\"\nencoding = \"jaeger_proto\"\n";
    assert!(Config::from_toml(unkeyed).is_ok());
}

/// `[ingest.otlp]` and `[ingest.xray]`: off unless present, defaults as ingest.md says, a
/// misspelt key named.
#[test]
fn receivers_are_off_unless_configured() {
    let c = Config::from_toml("").unwrap();
    assert!(c.ingest.otlp.is_none() && c.ingest.xray.is_none());
    let c = Config::from_toml("[ingest.otlp]\n[ingest.xray]\n").unwrap();
    let otlp = c.ingest.otlp.unwrap();
    assert_eq!(
        (otlp.grpc_listen.to_string(), otlp.http_listen.to_string()),
        ("127.0.0.1:4317".into(), "127.0.0.1:4318".into())
    );
    assert_eq!((otlp.max_request_bytes, otlp.ack_timeout.0), (16 << 20, std::time::Duration::from_secs(10)));
    let xray = c.ingest.xray.unwrap();
    assert_eq!((xray.listen.to_string(), xray.topic.as_str()), ("127.0.0.1:2000".to_string(), "xray_segments"));
    let p = problems("[ingest.otlp]\nhttp_listn = \"0.0.0.0:4318\"\n");
    assert!(p[0].message.contains("http_listn"), "{p:?}");
    let p = problems("[ingest.otlp]\nmax_request_bytes = 10\n");
    assert_eq!(p[0].key, "ingest.otlp.max_request_bytes");
    // A request must fit within the in-flight bound.
    let p = problems("[ingest.otlp]\nmax_request_bytes = 2048\nmax_in_flight_bytes = 1024\n");
    assert_eq!(p[0].key, "ingest.otlp.max_in_flight_bytes", "{p:?}");
    assert_eq!(Config::from_toml("[ingest.otlp]\n").unwrap().ingest.otlp.unwrap().max_in_flight_bytes, 64 << 20);
}
