//! Throughput harness: the product beside its ceilings, measured in one run (BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --example throughput                    # everything, 400 000 spans, 3 runs
//! cargo run --release --example throughput -- all 400000 3    # the same, spelled out
//! cargo run --release --example throughput -- memory 200000   # heap per buffered span only
//! NO_COMPARE=1 cargo run --release --example throughput       # the span path without compare's
//!                                                             # span attributes (their cost)
//! ```
//! The input is PetClinic traffic as the Collector writes it: OTLP protobuf batches of 20 traces,
//! keyed by trace id, pre-produced once to a topic of librdkafka's mock cluster. Over that same
//! input every run measures, one after the other:
//! - **bare consume**: an rdkafka consumer with the pipeline's consumer settings reading every
//!   message and doing nothing with it (the Kafka ceiling on this machine);
//! - **bare decode**: `prost` decoding every payload into `opentelemetry-proto` types (the decoding
//!   every Rust user knows);
//! - **span path** with 1 and with N threads (N = the cores): `SpanPath::message` on every message
//!   and `expire` after each, as the worker drives it — decode, facts, assemble, metrics, sampling
//!   (keep all), forward encoding — without Kafka, the threads sharing the signal and trace stores;
//! - **end to end**: the whole pipeline (`pipeline::start`, default `workers`) from the first span
//!   consumed to the last offset committed (every kept trace forwarded and acknowledged first),
//!   with every trace kept, then with the demo's configuration (its sampling rules, SLOs and
//!   exclusion);
//! - **heap per buffered span** (once: it does not vary) against the span's share of its message.
//!
//! Each figure is the median of the runs; the last line gives the ratios the targets are set on.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Message as _};

use tracewarden::assemble::TraceBuffer;
use tracewarden::clock::{Nanos, SystemClock};
use tracewarden::config::{Config, HumanDuration};
use tracewarden::format::{Decoder, InputEncoding};
use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::investigate::TraceStore;
use tracewarden::model::Encoding;
use tracewarden::position::{PendingOffsets, SourceRef};
use tracewarden::sampling::Sampler;
use tracewarden::signals::{Exclusions, SignalStore};
use tracewarden::span_path::{Effects, Message, SpanPath, SpanPathSettings};
use tracewarden::telemetry::PipelineMetrics;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TOPIC: &str = "otlp_spans";

/// The pre-produced input: Collector-style batches and what they hold.
struct Input {
    /// (key, payload) per message.
    messages: Vec<(String, Bytes)>,
    spans: u64,
    bytes: usize,
}

/// Collector-style batches: `per_batch` traces per message until `spans` spans.
fn batches(spans: usize, per_batch: usize) -> Input {
    let mut clinic = PetClinic::new(42, TrafficProfile::default());
    let now = SystemClock::new();
    let mut messages = Vec::new();
    let mut total = 0;
    while total < spans {
        let mut payload = BytesMut::new();
        let mut key = String::new();
        for _ in 0..per_batch {
            let trace = clinic.trace(tracewarden::clock::Clock::now(&now).0, Encoding::OTLP_PROTO);
            total += trace.spans;
            key = hex::encode(trace.trace_id);
            for m in trace.messages {
                payload.extend_from_slice(&m);
            }
        }
        messages.push((key, payload.freeze()));
    }
    let bytes = messages.iter().map(|(_, p)| p.len()).sum();
    Input { messages, spans: total as u64, bytes }
}

/// Heap per buffered span and the span's share of its message, in bytes.
struct MemoryFigures {
    heap_per_span: f64,
    message_share: f64,
}

fn memory(spans: usize) -> MemoryFigures {
    let messages = batches(spans, 20).messages;
    let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO));
    let mut limits = Config::default().window.limits();
    limits.max_buffered_spans = usize::MAX;
    limits.max_buffered_bytes = usize::MAX;
    let mut buffer = TraceBuffer::new(limits);
    let mut scratch = Vec::new();
    let mut ready = Vec::new();
    let mut encoded = 0usize;
    let mut message_bytes = 0usize;
    let mut count = 0usize;
    let mut read = PendingOffsets::new();
    // Warm the interner and the decoder first, so the measurement is of buffered spans only.
    decoder.decode(&messages[0].1, &mut scratch).unwrap();
    scratch.clear();
    let baseline = LIVE.load(Ordering::Relaxed);
    for (i, (_, payload)) in messages.iter().enumerate() {
        // The payload arrives as a copy out of librdkafka, as in the pipeline.
        let payload = Bytes::copy_from_slice(payload);
        message_bytes += payload.len();
        decoder.decode(&payload, &mut scratch).unwrap();
        encoded += scratch.iter().map(|s| s.raw.len()).sum::<usize>();
        count += scratch.len();
        let message = read.begin(SourceRef { partition: 0, offset: i as i64 });
        buffer.insert(&mut scratch, &message, Nanos(1), &mut ready);
    }
    let held = LIVE.load(Ordering::Relaxed) - baseline;
    assert!(ready.is_empty());
    println!(
        "memory: {count} spans buffered in {} traces; heap held {:.1} B/span; a span's own encoding is {:.1} B ({:.2}x), \
         its share of the Kafka message it arrived in {:.1} B ({:.2}x)",
        buffer.buffered_traces(),
        held as f64 / count as f64,
        encoded as f64 / count as f64,
        held as f64 / encoded as f64,
        message_bytes as f64 / count as f64,
        held as f64 / message_bytes as f64,
    );
    MemoryFigures { heap_per_span: held as f64 / count as f64, message_share: message_bytes as f64 / count as f64 }
}

/// The mock cluster with the input pre-produced to [`TOPIC`].
struct Cluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    partitions: i32,
}

fn pre_produce(input: &Input) -> Cluster {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    // The mock broker keeps only a few MB per partition in memory and drops older records, so
    // the backlog is spread over enough partitions to stay under that (about 2.5 MB each).
    let partitions = (input.bytes / 2_500_000 + 1).max(4) as i32;
    cluster.create_topic(TOPIC, partitions, 1).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let started = Instant::now();
    for (key, payload) in &input.messages {
        producer.send(BaseRecord::to(TOPIC).key(key).payload(&payload[..])).unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    println!(
        "input: {} messages, {} spans, {:.1} MB ({:.0} B/span) over {partitions} partitions of the mock cluster, produced in {:.2} s",
        input.messages.len(),
        input.spans,
        input.bytes as f64 / 1e6,
        input.bytes as f64 / input.spans as f64,
        started.elapsed().as_secs_f64()
    );
    Cluster { cluster, brokers, partitions }
}

/// The pipeline's own consumer settings, for `group`.
fn kafka_config(brokers: &str, group: &str) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = brokers.into();
    config.kafka.group_id = group.into();
    config
}

/// Spans per second of an rdkafka consumer that reads every message and does nothing else.
fn bare_consume(cluster: &Cluster, input: &Input, run: usize) -> f64 {
    let config = kafka_config(&cluster.brokers, &format!("bare-consume-{run}"));
    let consumer: BaseConsumer = tracewarden::kafka_client::consumer_config(&config.kafka).create().unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let (mut seen, mut bytes) = (0, 0usize);
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < input.messages.len() {
        assert!(Instant::now() < deadline, "bare consume did not finish");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            first.get_or_insert_with(Instant::now);
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    assert_eq!(bytes, input.bytes);
    input.spans as f64 / first.unwrap().elapsed().as_secs_f64()
}

/// Spans per second of `prost` decoding every payload into `opentelemetry-proto` types.
fn bare_decode(input: &Input) -> f64 {
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    let started = Instant::now();
    let mut spans = 0u64;
    for (_, payload) in &input.messages {
        let data = TracesData::decode(&payload[..]).unwrap();
        spans += data.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum::<u64>();
        std::hint::black_box(&data);
    }
    let elapsed = started.elapsed();
    assert_eq!(spans, input.spans);
    input.spans as f64 / elapsed.as_secs_f64()
}

/// Spans per second of the span path on `threads` threads, each with its share of the messages
/// (a message holds whole traces), sharing the signal and trace stores as the workers do.
fn span_path(input: &Input, threads: usize) -> f64 {
    let mut config = Config::default();
    if std::env::var_os("NO_COMPARE").is_some() {
        config.investigation.compare_attributes.clear();
    }
    let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
    let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
    let telemetry = Arc::new(PipelineMetrics::new());
    let mut window = config.window.clone();
    window.decision_wait = HumanDuration(Duration::from_millis(200));
    window.max_trace_age = HumanDuration(Duration::from_secs(5));
    let sampler = Arc::new(Mutex::new(Sampler::new(&config.sampling)));
    let paths: Vec<SpanPath> = (0..threads)
        .map(|thread| {
            let settings = SpanPathSettings {
                decoder: Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)),
                buffer: TraceBuffer::new(window.limits()),
                sampler: sampler.clone(),
                exclusions: Exclusions::new(&config.metrics.exclude),
                slo_counter: None,
                max_message_bytes: config.kafka.message_max_bytes(),
                repartition_from: Vec::new(),
                lane: u8::try_from(thread).expect("at most 256 threads"),
            };
            SpanPath::new(settings, signals.clone(), traces.clone(), telemetry.clone())
        })
        .collect();
    let start = SystemClock::new();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (worker, mut path) in paths.into_iter().enumerate() {
            let messages = &input.messages;
            let start = tracewarden::clock::Clock::now(&start);
            let thread = std::thread::Builder::new().name(format!("span-path-{worker}"));
            thread
                .spawn_scoped(scope, move || {
                    let mut read = PendingOffsets::new();
                    let mut effects = Effects::default();
                    let mut now = start;
                    for (i, (key, payload)) in messages.iter().enumerate().skip(worker).step_by(threads) {
                        // Time goes on by a millisecond a message: traces wait `decision_wait` for more.
                        now = Nanos(now.0 + 1_000_000);
                        // The payload is copied out of librdkafka, as in the pipeline.
                        let hold = read.begin(SourceRef { partition: worker as u32, offset: i as i64 });
                        let key = Some(key.as_bytes());
                        let message = Message {
                            topic: TOPIC,
                            partition: worker as i32,
                            offset: i as i64,
                            key,
                            payload,
                            encoding: None,
                        };
                        path.message(message, &hold, now, &mut effects);
                        path.expire(now, &mut effects);
                        effects.records.clear();
                    }
                    path.expire(Nanos(now.0 + 60_000_000_000), &mut effects);
                    assert_eq!(path.buffered_spans(), 0);
                })
                .unwrap();
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(telemetry.spans_received.with_label_values(&["otlp_proto"]).get(), input.spans);
    input.spans as f64 / elapsed.as_secs_f64()
}

/// Whether `group` has committed the end of every partition of [`TOPIC`].
fn committed_to_end(checker: &BaseConsumer, ends: &TopicPartitionList) -> bool {
    let Ok(committed) = checker.committed_offsets(ends.clone(), Duration::from_secs(5)) else {
        return false;
    };
    ends.elements().iter().all(|end| {
        let at = committed.find_partition(end.topic(), end.partition()).map(|e| e.offset());
        at == Some(end.offset())
    })
}

/// Spans per second of the whole pipeline with `config`, from the first span consumed to the
/// last offset committed.
fn end_to_end(cluster: &Cluster, input: &Input, mut config: Config, group: &str) -> f64 {
    config.kafka.brokers = cluster.brokers.clone();
    config.kafka.group_id = group.into();
    config.kafka.commit_interval = HumanDuration(Duration::from_millis(50));
    config.window.decision_wait = HumanDuration(Duration::from_millis(200));
    config.window.max_trace_age = HumanDuration(Duration::from_secs(5));
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.kafka.output_topic = format!("{group}-sampled");
    config.investigation.max_trace_bytes = 0;
    let checker: BaseConsumer =
        tracewarden::kafka_client::consumer_config(&kafka_config(&cluster.brokers, group).kafka).create().unwrap();
    let mut ends = TopicPartitionList::new();
    for partition in 0..cluster.partitions {
        let (_, high) = checker.fetch_watermarks(TOPIC, partition, Duration::from_secs(5)).unwrap();
        ends.add_partition_offset(TOPIC, partition, rdkafka::Offset::Offset(high)).unwrap();
    }
    // The mock cluster does not answer topic creation: every topic the pipeline uses exists
    // first. Four partitions each: the mock broker takes produce requests spread over many
    // partitions so slowly (tens of times slower at 87 than at 4) that it, not the pipeline,
    // would be measured.
    let k = &config.kafka;
    for topic in [
        &k.output_topic,
        &k.dead_letter_topic,
        &k.alerts_topic,
        &k.aggregates_topic,
        &k.points_topic,
        &k.timeline_topic,
    ] {
        let _ = cluster.cluster.create_topic(topic, 4, 1);
    }
    let _ = cluster.cluster.create_topic(&k.rollups_topic, 1, 1);
    let _ = cluster.cluster.create_topic(&k.slo_state_topic, 1, 1);
    let mut pipeline = tracewarden::pipeline::start(&config, SystemClock::shared()).unwrap();
    let telemetry = pipeline.handles.telemetry.clone();
    let received = || telemetry.spans_received.with_label_values(&["otlp_proto"]).get();
    let deadline = Instant::now() + Duration::from_secs(120);
    // From the assignment on (the counters are published once a second, too late for a start).
    while !pipeline.handles.ready.is_ready() {
        assert!(Instant::now() < deadline, "end to end did not start");
        if pipeline.is_finished() {
            panic!("the pipeline stopped: {:?}", pipeline.join());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = Instant::now();
    // THROUGHPUT_PROGRESS=1 prints where the pipeline stands every half second.
    let progress = std::env::var_os("THROUGHPUT_PROGRESS").is_some();
    let mut reported = Instant::now();
    while received() < input.spans || !committed_to_end(&checker, &ends) {
        assert!(Instant::now() < deadline, "end to end did not finish");
        if progress && reported.elapsed() >= Duration::from_millis(500) {
            reported = Instant::now();
            eprintln!(
                "  {:>5.1}s received {} forwarded {} buffered {} pending messages {} retries {} paused {}",
                first.elapsed().as_secs_f64(),
                received(),
                telemetry.spans_forwarded.get(),
                telemetry.buffered_spans.get(),
                telemetry.pending_messages.get(),
                telemetry.forward_retries.get(),
                telemetry.consumption_paused.get(),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = first.elapsed();
    assert_eq!(received(), input.spans, "every span read once");
    pipeline.stop().unwrap();
    input.spans as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn all(spans: usize, runs: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let input = batches(spans, 20);
    let cluster = pre_produce(&input);
    let demo = tracewarden::demo::built_in_config();
    let names = [
        "bare_consume",
        "bare_decode",
        "span_path",
        &format!("span_path_{cores}_threads"),
        "e2e_keep_all",
        "e2e_demo_rules",
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for run in 0..runs {
        // THROUGHPUT_ONLY=e2e_demo_rules,... measures only those (for a profile); the rest read 0.
        let only = std::env::var("THROUGHPUT_ONLY").ok();
        let wanted = |i: usize| only.as_ref().is_none_or(|o| o.split(',').any(|n| n == names[i]));
        let stages: [&dyn Fn() -> f64; 6] = [
            &|| bare_consume(&cluster, &input, run),
            &|| bare_decode(&input),
            &|| span_path(&input, 1),
            &|| span_path(&input, cores),
            &|| end_to_end(&cluster, &input, Config::default(), &format!("keep-all-{run}")),
            &|| end_to_end(&cluster, &input, demo.clone(), &format!("demo-rules-{run}")),
        ];
        let measured: Vec<f64> =
            stages.iter().enumerate().map(|(i, stage)| if wanted(i) { stage() } else { 0.0 }).collect();
        let line: Vec<String> = names.iter().zip(&measured).map(|(n, f)| format!("{n}={f:.0}")).collect();
        println!("run {}: spans/s {}", run + 1, line.join(" "));
        for (all, f) in figures.iter_mut().zip(measured) {
            all.push(f);
        }
    }
    let memory = memory(spans.min(200_000));
    let m: Vec<f64> = figures.into_iter().map(median).collect();
    println!("medians of {runs} runs, spans/s:");
    for (name, figure) in names.iter().zip(&m) {
        println!("  {name:<24} {figure:>10.0}");
    }
    println!(
        "ratios: e2e_keep_all/bare_consume={:.2} e2e_demo_rules/bare_consume={:.2} span_path/bare_decode={:.2} \
         workers_{cores}/workers_1={:.2} heap_per_span/message_share={:.2}",
        m[4] / m[0],
        m[5] / m[0],
        m[2] / m[1],
        m[3] / m[2],
        memory.heap_per_span / memory.message_share,
    );
    drop(cluster.cluster);
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("all");
    let n = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match mode {
        "memory" => {
            memory(n(1, 200_000));
        }
        "all" => all(n(1, 400_000), n(2, 3)),
        other => panic!("unknown mode {other}: all [spans] [runs] | memory [spans]"),
    }
}
