//! Throughput and memory harness (numbers in BENCHMARKS.md).
//!
//! ```text
//! cargo run --release --example throughput                  # both measurements, defaults
//! cargo run --release --example throughput -- kafka 400000  # full pipeline over the mock cluster
//! cargo run --release --example throughput -- memory 200000 # heap per buffered span
//! ```
//! `kafka`: pre-produces PetClinic traffic (OTLP protobuf, Collector-style batches of 20 traces,
//! keyed by trace id) to librdkafka's mock cluster, then starts the whole pipeline and times it
//! until every span is counted and every trace forwarded with a broker acknowledgement.
//! `memory`: decodes and buffers spans without deciding them, and compares the heap they hold
//! (a counting allocator) with their encoded size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use tracewarden::assemble::TraceBuffer;
use tracewarden::clock::{Nanos, SystemClock};
use tracewarden::config::{Config, HumanDuration};
use tracewarden::decode::{Decoder, InputEncoding};
use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::model::Encoding;
use tracewarden::position::{PendingOffsets, SourceRef};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Collector-style batches: `per_batch` traces per message until `spans` spans.
fn batches(spans: usize, per_batch: usize) -> Vec<(String, Bytes)> {
    let mut clinic = PetClinic::new(42, TrafficProfile::default());
    let now = SystemClock::new();
    let mut out = Vec::new();
    let mut total = 0;
    while total < spans {
        let mut payload = BytesMut::new();
        let mut key = String::new();
        for _ in 0..per_batch {
            let trace = clinic.trace(tracewarden::clock::Clock::now(&now).0, Encoding::OtlpProto);
            total += trace.spans;
            key = hex::encode(trace.trace_id);
            for m in trace.messages {
                payload.extend_from_slice(&m);
            }
        }
        out.push((key, payload.freeze()));
    }
    out
}

fn memory(spans: usize) {
    let messages = batches(spans, 20);
    let mut decoder = Decoder::new(InputEncoding::OtlpProto);
    let mut limits = Config::default().window.limits();
    limits.max_buffered_spans = usize::MAX;
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
}

fn kafka(spans: usize) {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    // The mock broker keeps only a few MB per partition in memory and drops older records, so
    // the backlog is spread over enough partitions to stay under that (about 2.5 MB each).
    let messages = batches(spans, 20);
    let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum();
    let partitions = (bytes / 2_500_000 + 1).max(4) as i32;
    cluster.create_topic("otlp_spans", partitions, 1).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut total_spans = 0u64;
    {
        let mut decoder = Decoder::new(InputEncoding::OtlpProto);
        let mut scratch = Vec::new();
        for (_, p) in &messages {
            decoder.decode(p, &mut scratch).unwrap();
            total_spans += scratch.len() as u64;
            scratch.clear();
        }
    }
    for (key, payload) in &messages {
        producer.send(BaseRecord::to("otlp_spans").key(key).payload(&payload[..])).unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    println!(
        "kafka: pre-produced {} messages, {total_spans} spans, {:.1} MB over {partitions} partitions",
        messages.len(),
        bytes as f64 / 1e6
    );

    let mut config = Config::default();
    config.kafka.brokers = brokers;
    config.kafka.group_id = "throughput".into();
    config.window.decision_wait = HumanDuration(Duration::from_millis(200));
    config.window.max_trace_age = HumanDuration(Duration::from_secs(5));
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    if let Ok(strategy) = std::env::var("THROUGHPUT_ASSIGNOR") {
        config.kafka.client.insert("partition.assignment.strategy".into(), strategy);
    }
    if let Ok(debug) = std::env::var("THROUGHPUT_RDKAFKA_DEBUG") {
        config.kafka.client.insert("debug".into(), debug);
    }
    let started = Instant::now();
    let pipeline = tracewarden::pipeline::start(&config, SystemClock::shared()).unwrap();
    let t = pipeline.handles.telemetry.clone();
    let mut first: Option<Instant> = None;
    let mut received_at = None;
    loop {
        let received = t.spans_received.with_label_values(&["otlp_proto"]).get();
        if received > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if received >= total_spans && received_at.is_none() {
            received_at = Some(Instant::now());
        }
        if t.spans_forwarded.get() >= total_spans {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "did not finish");
        if std::env::var_os("THROUGHPUT_PROGRESS").is_some() && started.elapsed().as_millis() % 1000 < 5 {
            eprintln!(
                "  {:.0}s received {received} forwarded {} traces {} buffered {} retries {} dead letters {}",
                started.elapsed().as_secs_f64(),
                t.spans_forwarded.get(),
                t.traces_forwarded.get(),
                t.buffered_spans.get(),
                t.forward_retries.get(),
                t.messages_dead_lettered.get()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = Instant::now();
    let first = first.unwrap();
    let consume = received_at.unwrap() - first;
    println!(
        "kafka: consumed, decoded, assembled and counted {total_spans} spans in {:.2} s = {:.0} spans/s",
        consume.as_secs_f64(),
        total_spans as f64 / consume.as_secs_f64()
    );
    println!(
        "kafka: all {} traces forwarded and acknowledged {:.2} s after the first span (includes the 0.2 s decision_wait) = {:.0} spans/s end to end",
        t.traces_forwarded.get(),
        (done - first).as_secs_f64(),
        total_spans as f64 / (done - first).as_secs_f64()
    );
    pipeline.stop().unwrap();
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("all");
    let n = |default: usize| args.get(1).and_then(|s| s.parse().ok()).unwrap_or(default);
    match mode {
        "memory" => memory(n(200_000)),
        "kafka" => kafka(n(400_000)),
        _ => {
            memory(200_000);
            kafka(400_000);
        }
    }
}
