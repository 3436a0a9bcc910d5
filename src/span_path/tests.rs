//! The span path without Kafka: bytes and a hold in, records, metrics and SLO counts out, on a
//! manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::investigate::TraceStore;
use crate::position::PendingOffsets;
use crate::slo::engine::SloEngine;
use crate::testing::{encode, AttrSpec, SpanSpec, CLIENT, SERVER};

/// Just after the test spans' start (`SpanSpec` starts at 1.7e18 ns).
const NOW: Nanos = Nanos(1_700_000_001_000_000_000);

struct Harness {
    path: SpanPath,
    signals: Arc<Mutex<SignalStore>>,
    traces: Arc<Mutex<TraceStore>>,
    telemetry: Arc<PipelineMetrics>,
    read: PendingOffsets,
    partition: u32,
    next_offset: i64,
}

fn harness(config: &str) -> Harness {
    let config = Config::from_toml(config).expect("valid configuration");
    let telemetry = Arc::new(PipelineMetrics::new());
    let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
    let slos = SloEngine::new(&config.slo);
    let settings = SpanPathSettings {
        decoder: Decoder::new(config.kafka.encoding),
        buffer: TraceBuffer::new(config.window.limits()),
        sampler: Arc::new(Mutex::new(Sampler::new(&config.sampling))),
        exclusions: Exclusions::new(&config.metrics.exclude),
        slo_counter: Some(slos.counter()),
        max_message_bytes: config.kafka.message_max_bytes(),
        repartition_from: if config.kafka.input_keyed_by_trace {
            Vec::new()
        } else {
            config.kafka.input_topics.clone()
        },
        lane: 0,
    };
    let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
    let mut read = PendingOffsets::new();
    let partition = read.index("spans", 0);
    Harness {
        path: SpanPath::new(settings, signals.clone(), traces.clone(), telemetry.clone()),
        traces,
        signals,
        telemetry,
        read,
        partition,
        next_offset: 0,
    }
}

impl Harness {
    /// Feeds one message; returns its hold (the consumer's), as the worker keeps it meanwhile.
    fn feed(&mut self, payload: &[u8], now: Nanos) -> Effects {
        let offset = self.next_offset;
        self.next_offset += 1;
        let hold = self.read.begin(SourceRef { partition: self.partition, offset });
        let message = Message { topic: "spans", partition: 0, offset, key: Some(b"k"), payload, encoding: None };
        let mut effects = Effects::default();
        self.path.message(message, &hold, now, &mut effects);
        effects
    }

    fn expire(&mut self, now: Nanos) -> Effects {
        let mut effects = Effects::default();
        self.path.expire(now, &mut effects);
        effects
    }

    fn committable(&mut self) -> Option<i64> {
        self.read.committable(self.partition)
    }

    fn requests(&self, service: &str, operation: &str) -> u64 {
        let store = self.signals.lock().unwrap();
        store
            .services
            .series
            .iter()
            .filter(|(k, _)| &*k.service == service && &*k.operation == operation)
            .map(|(_, s)| s.requests)
            .sum()
    }
}

fn checkout(trace: u8, status: i64) -> Vec<SpanSpec> {
    vec![
        SpanSpec::new("shop", trace, 1, None, SERVER, "GET /buy").http("GET", "/buy", status),
        SpanSpec::new("shop", trace, 2, Some(1), CLIENT, "SELECT").attr("db.system", AttrSpec::Str("postgresql")),
    ]
}

#[test]
fn a_complete_trace_is_measured_then_forwarded_holding_its_message() {
    let mut h = harness("");
    let effects = h.feed(&encode(&checkout(7, 200)), NOW);
    assert!(effects.records.is_empty(), "buffered until quiet for decision_wait (5s)");
    assert_eq!(h.committable(), Some(0), "the buffered trace holds its message");
    assert_eq!(h.requests("shop", "GET /buy"), 0, "measured when released, not before");

    assert!(h.expire(NOW.saturating_add(Duration::from_millis(4_999))).records.is_empty());
    let mut effects = h.expire(NOW.saturating_add(Duration::from_secs(5)));
    assert_eq!(effects.records.len(), 1);
    let record = &effects.records[0];
    assert_eq!(record.destination, Destination::Output);
    assert_eq!(&record.key[..], b"07070707070707070707070707070707", "keyed by the 32-hex trace id");
    assert_eq!(record.spans, 2);
    assert_eq!(record.holds.iter().map(Hold::source).collect::<Vec<_>>(), vec![SourceRef { partition: 0, offset: 0 }]);
    assert_eq!(h.requests("shop", "GET /buy"), 1);
    assert_eq!(h.committable(), Some(0), "held until the record is acknowledged");
    effects.records.clear();
    assert_eq!(h.committable(), Some(1), "acknowledged: the message is done");
}

#[test]
fn a_dropped_trace_releases_its_message_when_decided() {
    let mut h = harness(
        r#"
[[sampling.rules]]
name = "drop-everything"
keep = "none"
"#,
    );
    let _ = h.feed(&encode(&checkout(9, 200)), NOW);
    assert_eq!(h.committable(), Some(0));
    let effects = h.expire(NOW.saturating_add(Duration::from_secs(5)));
    assert!(effects.records.is_empty(), "dropped: nothing to forward");
    assert_eq!(h.requests("shop", "GET /buy"), 1, "still measured: metrics come from every span");
    assert_eq!(h.committable(), Some(1));
    let decided = h.telemetry.traces_decided.with_label_values(&["dropped", "drop-everything"]).get();
    assert_eq!(decided, 1);
    let store = h.traces.lock().unwrap();
    let summary = store.index.get(&[9; 16]).expect("a dropped trace leaves a summary too");
    assert!(!summary.kept);
    assert_eq!(&*summary.rule, "drop-everything");
}

#[test]
fn an_undecodable_message_becomes_a_dead_letter_unchanged() {
    let mut h = harness("");
    let payload = b"{ not json".to_vec();
    let effects = h.feed(&payload, NOW);
    assert_eq!(effects.records.len(), 1);
    let record = &effects.records[0];
    assert_eq!(record.destination, Destination::DeadLetter);
    assert_eq!(&record.payload[..], &payload[..], "the bytes as they came");
    assert_eq!(&record.key[..], b"k");
    let (error, source) = record.dead_letter.clone().expect("error headers");
    assert!(error.starts_with("malformed OTLP/JSON (otlp_json): "), "{error}");
    assert_eq!(source, "spans/0/0");
    assert_eq!(h.telemetry.messages_rejected.with_label_values(&["malformed_otlp_json"]).get(), 1);
    drop(effects);
    assert_eq!(h.committable(), Some(1), "acknowledged dead letter: the partition moves on");
}

#[test]
fn slo_counts_come_from_entry_spans_and_respect_exclusions_judged_once() {
    let mut h = harness(
        r#"
[[slo]]
name = "buy-availability"
service = "shop"
sli = "availability"
goal = 0.99
window = "30d"

[[metrics.exclude]]
name = "health-checks"
operation = "GET /health"
"#,
    );
    let mut specs = checkout(3, 503);
    specs.push(SpanSpec::new("shop", 4, 1, None, SERVER, "GET /health").http("GET", "/health", 200));
    let effects = h.feed(&encode(&specs), NOW);
    // One request (the client span is a dependency, the health check excluded), not good.
    assert_eq!(effects.slo_counts.len(), 1);
    let (slo, bucket, counts) = effects.slo_counts[0];
    assert_eq!(slo, 0);
    assert_eq!(bucket, 1_700_000_000 - 1_700_000_000 % 60, "the minute the span ended in");
    assert_eq!((counts.good, counts.total), (0, 1), "a 503 is a fault");
    let _ = h.expire(NOW.saturating_add(Duration::from_secs(5)));
    assert_eq!(h.requests("shop", "GET /health"), 0, "excluded from the metrics too");
    let excluded = h.signals.lock().unwrap().excluded.clone();
    assert_eq!(excluded, vec![(Arc::from("health-checks"), 1)]);
}

#[test]
fn unkeyed_input_is_rekeyed_one_record_per_trace() {
    let mut h = harness(
        r#"
[kafka]
input_topics = ["spans"]
input_keyed_by_trace = false
"#,
    );
    let mut specs = checkout(1, 200);
    specs.extend(checkout(2, 200));
    let mut effects = h.feed(&encode(&specs), NOW);
    let keys: Vec<&[u8]> = effects.records.iter().map(|r| &r.key[..]).collect();
    assert_eq!(keys, vec![&b"01010101010101010101010101010101"[..], &b"02020202020202020202020202020202"[..]]);
    assert!(effects.records.iter().all(|r| r.destination == Destination::Repartition && r.spans == 2));
    assert_eq!(h.path.buffered_spans(), 0, "assembled after the re-keyed records come back");
    assert_eq!(h.committable(), Some(0));
    effects.records.clear();
    assert_eq!(h.committable(), Some(1));
}

#[test]
fn hand_over_returns_the_holds_of_rootless_traces() {
    let mut h = harness("");
    let child_only = vec![SpanSpec::new("shop", 5, 2, Some(1), CLIENT, "SELECT")];
    let _ = h.feed(&encode(&child_only), NOW);
    let holds = h.path.hand_over(|source| source.partition == 0, NOW);
    assert_eq!(holds.len(), 1);
    assert_eq!(h.path.buffered_spans(), 0);
    assert_eq!(h.telemetry.traces_handed_over.get(), 1);
    assert_eq!(h.committable(), Some(0), "the handed-over trace still holds its message");
    drop(holds);
    assert_eq!(h.committable(), Some(1));
}

#[test]
fn an_xray_subsegment_sent_alone_is_measured_under_its_segments_service() {
    let mut h = harness("[kafka]\nencoding = \"xray_json\"\n");
    let trace = "1-6553f100-0123456789abcdef01234567";
    // Streamed before their segment (the SDK sends a long request's subsegments as they end): a
    // local one, and a call nested in it.
    let query = format!(
        r#"{{"type":"subsegment","trace_id":"{trace}","parent_id":"aaaaaaaaaaaaaaaa","id":"bbbbbbbbbbbbbbbb","name":"render","start_time":1700000000.1,"end_time":1700000000.4}}"#
    );
    let call = format!(
        r#"{{"type":"subsegment","trace_id":"{trace}","parent_id":"bbbbbbbbbbbbbbbb","id":"cccccccccccccccc","name":"payments","namespace":"remote","start_time":1700000000.2,"end_time":1700000000.3,"http":{{"request":{{"method":"POST","url":"http://payments/charge/123"}},"response":{{"status":503}}}}}}"#
    );
    let segment = format!(
        r#"{{"trace_id":"{trace}","id":"aaaaaaaaaaaaaaaa","name":"owners-api","origin":"AWS::EC2::Instance","start_time":1700000000.0,"end_time":1700000000.5,"http":{{"request":{{"method":"GET","url":"http://owners/owners/7"}},"response":{{"status":200}}}},"metadata":{{"default":{{"deployment.environment.name":"prod"}}}}}}"#
    );
    // One whose segment never comes.
    let stray = r#"{"type":"subsegment","trace_id":"1-6553f100-00000000000000000000dead","parent_id":"dddddddddddddddd","id":"eeeeeeeeeeeeeeee","name":"cache","namespace":"remote","start_time":1700000000.2,"end_time":1700000000.3}"#;
    for document in [&query, &call, &segment, stray] {
        h.feed(format!("{{\"format\":\"json\",\"version\":1}}\n{document}").as_bytes(), NOW);
    }
    h.expire(NOW.saturating_add(Duration::from_secs(60)));
    let store = h.signals.lock().unwrap();
    let dependencies: Vec<(&str, &str, &str, &str, u64, u64)> = store
        .dependencies
        .series
        .iter()
        .map(|(k, s)| (&*k.service, &*k.environment, &*k.remote_service, &*k.remote_operation, s.requests, s.faults))
        .collect();
    assert!(dependencies.contains(&("owners-api", "prod", "payments", "POST /charge/{id}", 1, 1)), "{dependencies:?}");
    assert!(dependencies.iter().any(|d| d.0 == "unknown_service" && d.2 == "cache"), "{dependencies:?}");
    assert_eq!(dependencies.len(), 2, "{dependencies:?}");
    let services: Vec<(&str, &str, u64)> =
        store.services.series.iter().map(|(k, s)| (&*k.service, &*k.operation, s.requests)).collect();
    assert_eq!(services, vec![("owners-api", "GET /owners/{id}", 1)]);
}
