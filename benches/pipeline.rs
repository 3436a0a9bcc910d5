//! Criterion benches of the hot path: decode, window insert/decide, metric recording, SLO
//! counting, decode + window + metrics together per message, and the whole span path
//! (`SpanPath::message`). Run: `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tracewarden::assemble::{TraceBuffer, WindowLimits};
use tracewarden::clock::Nanos;
use tracewarden::config::Config;
use tracewarden::format::{Decoder, InputEncoding};
use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::investigate::TraceStore;
use tracewarden::model::{Encoding, Span};
use tracewarden::position::{PendingOffsets, SourceRef};
use tracewarden::sampling::{Sampler, SamplingConfig};
use tracewarden::signals::{Exclusions, SignalStore};
use tracewarden::span_path::{Effects, Message, SpanPath, SpanPathSettings};
use tracewarden::telemetry::PipelineMetrics;

/// The binary's allocator, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Collector-style batch: the messages of `traces` PetClinic traces concatenated into one
/// `TracesData` (protobuf concatenation appends the repeated `resource_spans`).
fn batch(traces: usize, seed: u64) -> (Bytes, usize) {
    let mut clinic = PetClinic::new(seed, TrafficProfile::default());
    let mut out = BytesMut::new();
    let mut spans = 0;
    for _ in 0..traces {
        let trace = clinic.trace(1_800_000_000_000_000_000, Encoding::OTLP_PROTO);
        spans += trace.spans;
        for m in trace.messages {
            out.extend_from_slice(&m);
        }
    }
    (out.freeze(), spans)
}

fn decoded(payload: &Bytes) -> Vec<Span> {
    let mut spans = Vec::new();
    Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)).decode(payload, &mut spans).unwrap();
    spans
}

const FIVE_SLOS: &str = r#"
[[slo]]
name = "frontend-availability"
service = "frontend"
sli = "availability"
goal = 0.999
window = "30d"
[[slo]]
name = "owners-latency"
service = "frontend"
operation = "GET /owners/*"
sli = "latency"
threshold = "300ms"
goal = 0.99
window = "30d"
[[slo]]
name = "customers-success"
service = "customers-service"
sli = "success"
goal = 0.99
window = "7d"
[[slo]]
name = "visits-availability"
service = "visits-*"
sli = "availability"
goal = 0.995
calendar = "month"
[[slo]]
name = "vets-latency"
service = "vets-service"
sli = "latency"
threshold = "1s"
goal = 0.95
window = "1d"
budgeting = "periods"
period = "1m"
statistic = "p99"
"#;

const TEN_RULES: &str = r#"
[[rules]]
name = "faults"
when = { outcome = "fault" }
keep = "all"
[[rules]]
name = "slow-checkout"
when = { service = "checkout*", min_duration = "800ms" }
keep = "all"
[[rules]]
name = "slow"
when = { min_duration = "1s" }
keep = "all"
[[rules]]
name = "throttled"
when = { outcome = "throttle" }
keep = "rate"
rate = 0.5
[[rules]]
name = "health-checks"
when = { attribute = { key = "user_agent.original", matches = "ELB-HealthChecker*" } }
keep = "none"
[[rules]]
name = "big"
when = { min_spans = 50 }
keep = "all"
[[rules]]
name = "vets-api"
when = { service = "vets-*", operation = "GET /vets*" }
keep = "rate"
rate = 0.2
reservoir_per_second = 5
[[rules]]
name = "errors"
when = { status = "ERROR" }
keep = "all"
[[rules]]
name = "posts"
when = { http_method = "POST" }
keep = "dynamic"
goal_rate = 10
[[rules]]
name = "default"
keep = "rate"
rate = 0.05
reservoir_per_second = 1
"#;

fn limits() -> WindowLimits {
    Config::default().window.limits()
}

fn benches(c: &mut Criterion) {
    let (payload, span_count) = batch(100, 1);

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(span_count as u64));
    let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO));
    let mut out = Vec::with_capacity(span_count);
    group.bench_function("otlp_proto_batch", |b| {
        b.iter(|| {
            out.clear();
            decoder.decode(black_box(&payload), &mut out).unwrap();
        })
    });
    group.finish();

    let spans = decoded(&payload);
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(span_count as u64));
    group.bench_function("insert_then_decide", |b| {
        b.iter_batched(
            || (TraceBuffer::new(limits()), spans.clone()),
            |(mut buffer, mut spans)| {
                let mut ready = Vec::new();
                let message = PendingOffsets::new().begin(SourceRef { partition: 0, offset: 0 });
                buffer.insert(&mut spans, &message, Nanos(1), &mut ready);
                buffer.expire(Nanos(60_000_000_000), &mut ready);
                black_box(ready.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    let message = PendingOffsets::new().begin(SourceRef { partition: 0, offset: 0 });
    buffer.insert(&mut spans.clone(), &message, Nanos(1), &mut ready);
    buffer.expire(Nanos(60_000_000_000), &mut ready);
    let mut group = c.benchmark_group("signals");
    group.throughput(Throughput::Elements(span_count as u64));
    let mut store = SignalStore::new(Config::default().signal_settings());
    let mut now = 1_800_000_000_000_000_000u64;
    group.bench_function("record_traces", |b| {
        b.iter(|| {
            now += 1_000_000;
            for trace in &ready {
                store.record_trace(black_box(&trace.spans), Nanos(now));
            }
        })
    });
    group.finish();

    // Sampling decisions: a 10-rule configuration, most traces falling through to the last rules.
    let mut group = c.benchmark_group("sampling");
    group.throughput(Throughput::Elements(ready.len() as u64));
    let rules: SamplingConfig = toml::from_str(TEN_RULES).unwrap();
    assert_eq!(rules.rules.len(), 10);
    let mut sampler = Sampler::new(&rules);
    let mut now = 1_800_000_000_000_000_000u64;
    group.bench_function("decide_10_rules", |b| {
        b.iter(|| {
            now += 1_000_000;
            for trace in &ready {
                black_box(sampler.decide(trace, Nanos(now)));
            }
        })
    });
    group.finish();

    // SLO counting, as every input message is counted: five SLOs over the PetClinic services.
    let mut group = c.benchmark_group("slo");
    group.throughput(Throughput::Elements(span_count as u64));
    let slos = tracewarden::slo::config::parse_slos(FIVE_SLOS).unwrap();
    let engine = tracewarden::slo::engine::SloEngine::new(&slos);
    let mut counter = engine.counter();
    let mut tally = Vec::new();
    let mut counts = tracewarden::slo::aggregate::AggregateBatch::new(slos.len());
    group.bench_function("count_5_slos", |b| {
        let mut offset = 0;
        b.iter(|| {
            offset += 1;
            counter.count(black_box(&spans), &mut tally);
            counts.add(offset, &mut tally);
            if offset % 100 == 0 {
                black_box(counts.take());
            }
        })
    });
    group.finish();

    // Decode + assemble + metrics, as the worker does per message.
    let messages: Vec<Bytes> = (0..50).map(|i| batch(20, i).0).collect();
    let total: usize = messages.iter().map(|m| decoded(m).len()).sum();
    let mut group = c.benchmark_group("span_path");
    group.throughput(Throughput::Elements(total as u64));
    group.bench_function("decode_assemble_record", |b| {
        let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO));
        let mut store = SignalStore::new(Config::default().signal_settings());
        let mut spans = Vec::new();
        let mut ready = Vec::new();
        let mut clock = 1_800_000_000_000_000_000u64;
        let mut read = PendingOffsets::new();
        b.iter_batched(
            || TraceBuffer::new(limits()),
            |mut buffer| {
                for (i, message) in messages.iter().enumerate() {
                    clock += 1_000_000;
                    decoder.decode(message, &mut spans).unwrap();
                    let message = read.begin(SourceRef { partition: 0, offset: i as i64 });
                    buffer.insert(&mut spans, &message, Nanos(clock), &mut ready);
                }
                buffer.expire(Nanos(clock + 31_000_000_000), &mut ready);
                for trace in ready.drain(..) {
                    store.record_trace(&trace.spans, Nanos(clock));
                }
            },
            BatchSize::LargeInput,
        )
    });
    // The whole span path as the worker drives it: a hold per message, decode, per-span facts,
    // 5 SLOs counted, assemble, metrics, decisions (keep all), kept traces encoded into records
    // (then acknowledged at once: the records are dropped).
    group.bench_function("message_to_records", |b| {
        let config = Config::default();
        let slos = tracewarden::slo::engine::SloEngine::new(&tracewarden::slo::config::parse_slos(FIVE_SLOS).unwrap());
        let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
        let telemetry = Arc::new(PipelineMetrics::new());
        let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
        let mut clock = 1_800_000_000_000_000_000u64;
        let mut read = PendingOffsets::new();
        let mut effects = Effects::default();
        b.iter_batched(
            || {
                let settings = SpanPathSettings {
                    decoder: Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)),
                    buffer: TraceBuffer::new(limits()),
                    sampler: Arc::new(Mutex::new(Sampler::new(&config.sampling))),
                    exclusions: Exclusions::new(&config.metrics.exclude),
                    slo_counter: Some(slos.counter()),
                    max_message_bytes: config.kafka.message_max_bytes(),
                    repartition_from: Vec::new(),
                    lane: 0,
                };
                SpanPath::new(settings, signals.clone(), traces.clone(), telemetry.clone())
            },
            |mut path| {
                for (i, payload) in messages.iter().enumerate() {
                    clock += 1_000_000;
                    let hold = read.begin(SourceRef { partition: 0, offset: i as i64 });
                    let message =
                        Message { topic: "spans", partition: 0, offset: i as i64, key: None, payload, encoding: None };
                    path.message(message, &hold, Nanos(clock), &mut effects);
                    effects.slo_counts.clear();
                    effects.records.clear();
                }
                path.expire(Nanos(clock + 31_000_000_000), &mut effects);
                black_box(effects.records.len());
                effects.records.clear();
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(pipeline);
