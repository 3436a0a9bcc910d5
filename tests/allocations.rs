//! No allocation per span on the hot path: a counting allocator over the span path in steady
//! state (decode, facts, assemble, signals, sampling, forward encoding, trace index), fed
//! Collector-style batches of PetClinic traces.
//!
//! What is asserted is what a user relies on when traffic grows: the allocations follow the
//! traces and messages, not the spans. Traces of many spans cost about what traces of few cost,
//! per trace; the remaining per-trace and per-message allocations are listed with their reason
//! in BENCHMARKS.md. Only this thread's allocations are counted, and only while measuring.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use tracewarden::assemble::TraceBuffer;
use tracewarden::clock::Nanos;
use tracewarden::config::Config;
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

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if MEASURING.with(Cell::get) {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts the allocations (and reallocations) `work` makes on this thread.
fn allocations(work: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    MEASURING.with(|m| m.set(true));
    work();
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// A batch: Collector-style messages of 20 traces each, and the spans and traces they hold.
struct Batch {
    messages: Vec<Bytes>,
    spans: usize,
    traces: usize,
}

/// `messages` messages of traces from `clinic` whose span count satisfies `wanted`.
fn batch(clinic: &mut PetClinic, now: u64, messages: usize, wanted: impl Fn(usize) -> bool) -> Batch {
    let (mut out, mut spans, mut traces) = (Vec::new(), 0, 0);
    while out.len() < messages {
        let mut payload = BytesMut::new();
        let mut in_message = 0;
        while in_message < 20 {
            let trace = clinic.trace(now, Encoding::OTLP_PROTO);
            if !wanted(trace.spans) {
                continue;
            }
            in_message += 1;
            spans += trace.spans;
            for m in trace.messages {
                payload.extend_from_slice(&m);
            }
        }
        traces += in_message;
        out.push(payload.freeze());
    }
    Batch { messages: out, spans, traces }
}

/// The span path as the worker drives it, with `config`'s sampling rules and metrics settings.
struct Path {
    path: SpanPath,
    effects: Effects,
    read: PendingOffsets,
    offset: i64,
    now: u64,
}

impl Path {
    fn new(config: &Config) -> Self {
        let settings = SpanPathSettings {
            decoder: Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO)),
            buffer: TraceBuffer::new(config.window.limits()),
            sampler: Arc::new(Mutex::new(Sampler::new(&config.sampling))),
            exclusions: Exclusions::new(&config.metrics.exclude),
            slo_counter: None,
            max_message_bytes: config.kafka.message_max_bytes(),
            repartition_from: Vec::new(),
            lane: 0,
        };
        let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
        let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
        let path = SpanPath::new(settings, signals, traces, Arc::new(PipelineMetrics::new()));
        Self { path, effects: Effects::default(), read: PendingOffsets::new(), offset: 0, now: NOW }
    }

    /// Feeds the batch, then lets every trace be decided; the records are acknowledged at once.
    fn feed(&mut self, batch: &Batch) {
        for payload in &batch.messages {
            self.now += 1_000_000;
            self.offset += 1;
            let hold = self.read.begin(SourceRef { partition: 0, offset: self.offset });
            let message =
                Message { topic: "spans", partition: 0, offset: self.offset, key: None, payload, encoding: None };
            self.path.message(message, &hold, Nanos(self.now), &mut self.effects);
            self.path.expire(Nanos(self.now), &mut self.effects);
            self.effects.records.clear();
        }
        self.now += 60_000_000_000;
        self.path.expire(Nanos(self.now), &mut self.effects);
        self.effects.records.clear();
        assert_eq!(self.path.buffered_spans(), 0, "every trace decided");
    }
}

const NOW: u64 = 1_800_000_000_000_000_000;

/// Allocations per span, and per trace for small and for large traces, after a warm-up.
fn measure(config: &Config) -> (f64, f64, f64) {
    let mut clinic = PetClinic::new(7, TrafficProfile::default());
    let mut path = Path::new(config);
    // Warm up: series, contributor rows, interned names, maps and buffers at their working size.
    for _ in 0..3 {
        path.feed(&batch(&mut clinic, NOW, 100, |_| true));
    }
    let any = batch(&mut clinic, NOW, 50, |_| true);
    let small = batch(&mut clinic, NOW, 25, |spans| spans <= 3);
    let large = batch(&mut clinic, NOW, 25, |spans| spans >= 7);
    let per_span = allocations(|| path.feed(&any)) as f64 / any.spans as f64;
    let small_per_trace = allocations(|| path.feed(&small)) as f64 / small.traces as f64;
    let large_per_trace = allocations(|| path.feed(&large)) as f64 / large.traces as f64;
    let (small_spans, large_spans) =
        (small.spans as f64 / small.traces as f64, large.spans as f64 / large.traces as f64);
    eprintln!(
        "allocations: {per_span:.2} per span over {} spans; per trace {small_per_trace:.1} for traces of \
         {small_spans:.1} spans, {large_per_trace:.1} for traces of {large_spans:.1} spans",
        any.spans
    );
    assert!(large_spans >= 2.0 * small_spans, "the batches differ in spans per trace");
    (per_span, small_per_trace, large_per_trace)
}

#[test]
fn the_span_path_allocates_per_trace_and_message_not_per_span() {
    // Every trace kept: small and large traces take the same path.
    let (_, small, large) = measure(&Config::default());
    // Traces of four times the spans cost the same per trace, give or take a reallocation of a
    // trace's span list: the spans allocate nothing of their own.
    assert!(large <= small + 2.0, "per trace: {small:.1} allocations for small traces, {large:.1} for large");
    // What a kept trace costs, listed with the reason of each in BENCHMARKS.md.
    assert!(large <= 40.0, "{large:.1} allocations per trace");
    // The demo's rules (dynamic sampling, drops, the health-check exclusion): here the large
    // traces are the slow and failed ones, kept with their sampling trace state, the small ones
    // mostly dropped, so only the bound per trace compares.
    let mut demo = tracewarden::demo::built_in_config();
    demo.investigation = Config::default().investigation;
    let (_, small, large) = measure(&demo);
    assert!(small <= 40.0 && large <= 60.0, "per trace: {small:.1} (small), {large:.1} (large)");
}

/// Once warm, decoding allocates per message only and measuring nothing: spans go into a reused
/// list, names are interned, resources shared, series and contributor rows exist.
#[test]
fn decoding_allocates_per_message_and_measuring_nothing_once_warm() {
    let mut clinic = PetClinic::new(7, TrafficProfile::default());
    let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO));
    let mut store = SignalStore::new(Config::default().signal_settings());
    let mut spans = Vec::new();
    let warm = batch(&mut clinic, NOW, 100, |_| true);
    let mut traces: Vec<Vec<tracewarden::model::Span>> = Vec::new();
    for message in &warm.messages {
        decoder.decode(message, &mut spans).unwrap();
        spans.sort_by_key(|s| s.trace_id);
        traces.extend(spans.chunk_by(|a, b| a.trace_id == b.trace_id).map(<[_]>::to_vec));
        spans.clear();
    }
    for trace in &traces {
        store.record_trace(trace, Nanos(NOW));
    }
    let steady = batch(&mut clinic, NOW, 50, |_| true);
    let decoding = allocations(|| {
        for message in &steady.messages {
            decoder.decode(message, &mut spans).unwrap();
            spans.clear();
        }
    });
    // A message's spans move into one buffer of exactly their encodings (decode's `compact`): the
    // buffer and its shared handle, two allocations per message whatever its spans.
    let messages = steady.messages.len() as u64;
    assert!(decoding <= 2 * messages, "decoding {} spans in {messages} messages: {decoding} allocations", steady.spans);
    let measuring = allocations(|| {
        for trace in &traces {
            store.record_trace(trace, Nanos(NOW));
        }
    });
    assert_eq!(measuring, 0, "measuring {} traces", traces.len());
}
