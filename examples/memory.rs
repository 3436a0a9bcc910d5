//! Measures the memory of the investigation structures with a counting allocator: the trace
//! index (summaries), the held spans of kept traces, and an hour of the timeline's 10 s points.
//!
//! Run: `cargo run --release --example memory [traces_per_step]` (default 100 PetClinic traces per
//! 10 s step). Figures go to BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tracewarden::clock::Nanos;
use tracewarden::config::Config;
use tracewarden::decision::Decision;
use tracewarden::format::{Decoder, InputEncoding};
use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::investigate::held::HeldTraces;
use tracewarden::investigate::timeline::Timeline;
use tracewarden::investigate::traces::{TraceIndex, TraceSummary};
use tracewarden::model::{Encoding, Span};
use tracewarden::signals::SignalStore;

/// The system allocator, counting the bytes held.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

const T0: u64 = 1_800_000_000_000_000_000;
const STEP: u64 = 10_000_000_000;

/// One PetClinic trace: its messages and decoded spans.
fn trace(clinic: &mut PetClinic, decoder: &mut Decoder, now: u64) -> (Vec<Bytes>, Vec<Span>) {
    let generated = clinic.trace(now, Encoding::OTLP_PROTO);
    let mut spans = Vec::new();
    for message in &generated.messages {
        decoder.decode(message, &mut spans).expect("generated traces decode");
    }
    (generated.messages, spans)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    let per_step: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut clinic = PetClinic::new(7, TrafficProfile::default());
    let mut decoder = Decoder::new(InputEncoding::Fixed(Encoding::OTLP_PROTO));
    let config = Config::default();

    // The trace index at its default bound.
    let capacity = config.investigation.max_trace_summaries;
    let rule: Arc<str> = Arc::from("keep-faults");
    let mut summaries = Vec::with_capacity(capacity);
    for _ in 0..capacity {
        let (_, spans) = trace(&mut clinic, &mut decoder, T0);
        summaries.push(TraceSummary::of(&spans, &Decision::keep(rule.clone(), 1.0)));
    }
    let before = held();
    let mut index = TraceIndex::new(capacity);
    for summary in summaries.drain(..) {
        index.insert(summary);
    }
    drop(summaries);
    let index_bytes = held() - before + capacity * std::mem::size_of::<TraceSummary>();
    println!(
        "trace index: {capacity} summaries, {:.1} MiB, {} bytes per summary (struct and its vectors; names are shared)",
        mib(index_bytes),
        index_bytes / capacity
    );
    drop(index);

    // Held spans at their default bound, filled well past it.
    let bound = config.investigation.max_trace_bytes;
    let before = held();
    let mut held_traces = HeldTraces::new(bound);
    let mut payload_bytes = 0usize;
    let mut traces = 0usize;
    while payload_bytes < 2 * bound {
        let (messages, spans) = trace(&mut clinic, &mut decoder, T0);
        payload_bytes += messages.iter().map(Bytes::len).sum::<usize>();
        held_traces.hold(spans[0].trace_id, &messages);
        traces += 1;
    }
    let held_bytes = held() - before;
    println!(
        "held spans: {traces} kept traces ({:.1} MiB of records) offered, {:.1} MiB held (bound {:.1} MiB)",
        mib(payload_bytes),
        mib(held_bytes),
        mib(bound)
    );
    drop(held_traces);

    // An hour of the timeline: `per_step` traces every 10 s.
    let mut store = SignalStore::new(config.signal_settings());
    let history = config.investigation.history.0;
    let mut timeline = Timeline::new(history, config.metrics.window.0, config.metrics.max_series);
    let steps = history.as_secs() / 10;
    // Warm up the signal store (its series and HDR windows) so that what grows is the timeline.
    let warm_up = 8;
    for step in 0..warm_up {
        for _ in 0..per_step {
            let (_, spans) = trace(&mut clinic, &mut decoder, T0 + step * STEP);
            store.record_trace(&spans, Nanos(T0 + step * STEP));
        }
        drop(store.flush_points());
    }
    let before = held();
    for step in warm_up..warm_up + steps {
        let now = T0 + step * STEP;
        for _ in 0..per_step {
            let (_, spans) = trace(&mut clinic, &mut decoder, now);
            store.record_trace(&spans, Nanos(now));
        }
        let now = Nanos(now);
        timeline.merge(&store.flush_points(), now);
        timeline.expire(now);
    }
    let timeline_bytes = held().saturating_sub(before);
    let series = timeline.series_count();
    println!(
        "timeline: {series} series x {steps} steps ({per_step} traces per step) = {:.1} MiB, {} bytes per series and step \
         (points {:.1} MiB by their own count)",
        mib(timeline_bytes),
        timeline_bytes / (series.max(1) * steps as usize),
        mib(timeline.heap_bytes())
    );
}
