use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::model::{Encoding, Origin, Span, SpanKind, StatusCode};

fn limits() -> WindowLimits {
    WindowLimits {
        decision_wait: Duration::from_secs(5),
        max_trace_age: Duration::from_secs(30),
        max_spans_per_trace: 100,
        max_buffered_spans: 1_000,
        max_buffered_bytes: usize::MAX,
        decision_cache_kept: 10,
        decision_cache_dropped: 10,
    }
}

/// `span` with an encoding of `bytes` bytes.
fn sized(mut span: Span, bytes: usize) -> Span {
    span.raw = Bytes::from(vec![0u8; bytes]);
    span
}

fn span(trace: u8, id: u8, parent: Option<u8>) -> Span {
    let origin = Arc::new(Origin {
        encoding: Encoding::OTLP_PROTO,
        service: Arc::from("svc"),
        environment: Arc::from("default"),
        resource_header: Bytes::new(),
        scope_header: Bytes::new(),
        resource: Bytes::new(),
    });
    Span {
        trace_id: [trace; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        kind: SpanKind::Server,
        status: StatusCode::Unset,
        start_unix_nano: 1,
        end_unix_nano: 2,
        operation: Arc::from("op"),
        http_status: 0,
        grpc_status: None,
        remote_service: None,
        remote_operation: None,
        remote_kind: crate::model::RemoteKind::Remote,
        origin,
        raw: Bytes::new(),
        facts: crate::model::SpanFacts {
            role: crate::model::Role::Entry,
            outcome: crate::model::Outcome::Ok,
            excluded: None,
        },
    }
}

fn at(secs: f64) -> Nanos {
    Nanos((secs * 1e9) as u64)
}

thread_local! {
    /// The messages the tests' spans come from (partition index = `SourceRef::partition`).
    static READ: std::cell::RefCell<crate::position::PendingOffsets> = Default::default();
}

/// A hold on message `offset` of partition 0, as the delivery ledger issues it.
fn src(offset: i64) -> Hold {
    on(0, offset)
}

fn on(partition: u32, offset: i64) -> Hold {
    READ.with(|read| read.borrow_mut().begin(SourceRef { partition, offset }))
}

fn positions(holds: &[Hold]) -> Vec<SourceRef> {
    holds.iter().map(Hold::source).collect()
}

#[test]
fn complete_after_root_and_quiet_period() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 2, Some(1))], &src(0), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(1, 1, None)], &src(1), at(1.0), &mut ready);
    buffer.expire(at(5.9), &mut ready);
    assert!(ready.is_empty(), "quiet for only 4.9 s");
    buffer.insert(&mut vec![span(1, 3, Some(1))], &src(2), at(5.9), &mut ready);
    buffer.expire(at(10.8), &mut ready);
    assert!(ready.is_empty(), "a new span restarts the quiet period");
    buffer.expire(at(10.9), &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].reason, DecisionReason::Complete);
    assert_eq!(ready[0].spans.len(), 3);
    let at_partition_0 = |offset| SourceRef { partition: 0, offset };
    assert_eq!(positions(&ready[0].sources), vec![at_partition_0(0), at_partition_0(1), at_partition_0(2)]);
    assert!(ready[0].root_present);
    assert_eq!(buffer.buffered_spans(), 0);
}

#[test]
fn timeout_without_root() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 2, Some(1))], &src(0), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(1, 3, Some(1))], &src(1), at(20.0), &mut ready);
    buffer.expire(at(29.9), &mut ready);
    assert!(ready.is_empty(), "no root: waits for max_trace_age from the first span");
    buffer.expire(at(30.0), &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].reason, DecisionReason::Timeout);
    assert!(!ready[0].root_present);
}

#[test]
fn timeout_even_when_spans_keep_arriving() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    for i in 0..40 {
        buffer.insert(
            &mut vec![span(1, i + 1, if i == 0 { None } else { Some(1) })],
            &src(i as i64),
            at(i as f64),
            &mut ready,
        );
        buffer.expire(at(i as f64), &mut ready);
    }
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].reason, DecisionReason::Timeout);
    assert_eq!(ready[0].spans.len(), 31, "spans at 0..=30 s");
}

#[test]
fn too_large_is_decided_at_once() {
    let mut buffer = TraceBuffer::new(WindowLimits { max_spans_per_trace: 3, ..limits() });
    let mut ready = Vec::new();
    let message = src(0);
    buffer.insert(&mut (1..=4).map(|i| span(1, i, Some(9))).collect(), &message, at(0.0), &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].reason, DecisionReason::TooLarge);
    assert_eq!(ready[0].spans.len(), 3);
    assert_eq!(buffer.buffered_spans(), 1, "the fourth span starts a new trace");
    assert_eq!(ready[0].sources.len(), 1, "the decided trace holds its message");
    drop(message);
    ready.clear();
    let (handed_over, holds) = buffer.hand_over(|_| true);
    assert_eq!((handed_over, holds.len()), (1, 1), "and so does the new buffered trace");
}

#[test]
fn memory_pressure_decides_oldest_first_and_bounds_the_store() {
    let mut buffer = TraceBuffer::new(WindowLimits { max_buffered_spans: 4, max_spans_per_trace: 4, ..limits() });
    let mut ready = Vec::new();
    for trace in 1..=3u8 {
        buffer.insert(
            &mut vec![span(trace, 1, Some(9)), span(trace, 2, Some(9))],
            &src(trace as i64),
            at(trace as f64),
            &mut ready,
        );
        assert!(buffer.buffered_spans() <= 4);
    }
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].reason, DecisionReason::MemoryPressure);
    assert_eq!(ready[0].trace_id, [1; 16], "the oldest trace goes first");
    assert_eq!(buffer.buffered_spans(), 4);
}

/// Large spans: the byte bound decides the oldest traces early while the span count is far below
/// its own bound, and counts each span's own encoding, which is what it pins.
#[test]
fn the_byte_bound_decides_oldest_first_when_messages_are_large() {
    let limits = WindowLimits { max_buffered_bytes: 2_500_000, ..limits() };
    let mut buffer = TraceBuffer::new(limits);
    let mut ready = Vec::new();
    // Three messages of two spans (two traces) of 500 000 bytes each.
    for message in 0..3u8 {
        let (a, b) = (2 * message + 1, 2 * message + 2);
        let mut spans = vec![sized(span(a, 1, Some(9)), 500_000), sized(span(b, 1, Some(9)), 500_000)];
        buffer.insert(&mut spans, &src(message as i64), at(message as f64), &mut ready);
        assert!(buffer.buffered_bytes() <= 2_500_000, "{} bytes buffered", buffer.buffered_bytes());
    }
    // The third message's first span fits (2.5 MB); its second does not: the oldest trace goes
    // early, for the memory.
    let early: Vec<TraceId> = ready.iter().map(|r| r.trace_id).collect();
    assert_eq!(early, vec![[1; 16]], "the oldest trace");
    assert_eq!(ready[0].reason, DecisionReason::MemoryPressure);
    assert_eq!(buffer.buffered_spans(), 5, "far below max_buffered_spans (1 000)");
    assert_eq!(buffer.buffered_bytes(), 2_500_000);
    // Deciding the rest frees their bytes.
    buffer.expire(at(100.0), &mut ready);
    assert_eq!((buffer.buffered_spans(), buffer.buffered_bytes()), (0, 0));
}

#[test]
fn late_spans_follow_the_cached_decision() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 1, None)], &src(0), at(0.0), &mut ready);
    buffer.expire(at(5.0), &mut ready);
    let decided = ready.pop().unwrap();
    let decision = Decision::keep(Arc::from("keep-all"), 1.0);
    buffer.remember(decided.trace_id, &decision);
    buffer.insert(&mut vec![span(1, 2, Some(1)), span(1, 3, Some(1)), span(2, 1, None)], &src(1), at(6.0), &mut ready);
    assert_eq!(ready.len(), 1, "late spans of one trace in one message form one group");
    assert_eq!(ready[0].reason, DecisionReason::Late);
    assert_eq!(ready[0].spans.len(), 2);
    assert_eq!(ready[0].prior, Some(decision));
    assert_eq!(
        positions(&ready[0].sources),
        vec![SourceRef { partition: 0, offset: 1 }],
        "the late group holds its message"
    );
    assert_eq!(buffer.buffered_traces(), 1);

    // A dropped trace's late spans are dropped too.
    buffer.remember([3; 16], &Decision::drop(Arc::from("drop")));
    ready.clear();
    buffer.insert(&mut vec![span(3, 5, Some(1))], &src(2), at(7.0), &mut ready);
    assert!(!ready[0].prior.as_ref().unwrap().keep);
}

#[test]
fn forgotten_decisions_start_a_new_trace() {
    let mut buffer = TraceBuffer::new(WindowLimits { decision_cache_kept: 1, ..limits() });
    let keep = Decision::keep(Arc::from("r"), 1.0);
    buffer.remember([1; 16], &keep);
    buffer.remember([2; 16], &keep);
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 5, Some(1))], &src(0), at(0.0), &mut ready);
    assert!(ready.is_empty(), "trace 1 was evicted from the cache: buffered again");
    assert_eq!(buffer.buffered_traces(), 1);
    buffer.insert(&mut vec![span(2, 5, Some(1))], &src(1), at(0.0), &mut ready);
    assert_eq!(ready.len(), 1);
}

#[test]
fn drain_by_partition() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 1, None)], &on(0, 0), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(2, 1, None)], &on(1, 0), at(0.0), &mut ready);
    buffer.drain(DecisionReason::Rebalance, |sources, _| sources.iter().any(|s| s.source().partition == 1), &mut ready);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].trace_id, [2; 16]);
    assert_eq!(ready[0].reason, DecisionReason::Rebalance);
    buffer.drain(DecisionReason::Shutdown, |_, _| true, &mut ready);
    assert_eq!(ready.len(), 2);
    assert_eq!(buffer.buffered_spans(), 0);
    // Stale queue entries of drained traces decide nothing later.
    buffer.expire(at(100.0), &mut ready);
    assert_eq!(ready.len(), 2);
}

#[test]
fn hand_over_keeps_only_traces_of_kept_partitions() {
    let mut buffer = TraceBuffer::new(limits());
    let mut ready = Vec::new();
    buffer.insert(&mut vec![span(1, 2, Some(1))], &on(0, 0), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(2, 2, Some(1)), span(2, 3, Some(1))], &on(1, 0), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(3, 2, Some(1))], &on(1, 1), at(0.0), &mut ready);
    buffer.insert(&mut vec![span(3, 3, Some(1))], &on(0, 1), at(0.0), &mut ready);
    // Partition 1 is revoked: trace 2 lies wholly in it; trace 3 also holds spans of partition 0.
    let (handed_over, holds) = buffer.hand_over(|s| s.partition == 1);
    assert_eq!(handed_over, 1);
    assert_eq!(positions(&holds), vec![SourceRef { partition: 1, offset: 0 }], "trace 2's message stays held");
    assert_eq!(buffer.buffered_traces(), 2);
    assert_eq!(buffer.buffered_spans(), 3);
    assert!(ready.is_empty(), "handed over, not decided");
}

proptest! {
    /// Whatever the arrivals and limits: every span comes back exactly once, the store never
    /// exceeds its bound, every message stays held until the traces with its spans are let go,
    /// and nothing stays buffered past max_trace_age.
    #[test]
    fn every_span_handed_back_once(
        arrivals in proptest::collection::vec((0u8..12, any::<bool>(), 0u32..3000), 1..200),
        max_buffered in 5usize..50,
        max_per_trace in 1usize..10,
        span_bytes in proptest::collection::vec(1usize..5_000, 200),
        max_bytes in 5_000usize..40_000,
    ) {
        let limits = WindowLimits {
            max_buffered_spans: max_buffered.max(max_per_trace),
            max_spans_per_trace: max_per_trace,
            max_buffered_bytes: max_bytes,
            ..limits()
        };
        let mut buffer = TraceBuffer::new(limits);
        let mut ready = Vec::new();
        let mut now_ms = 0u64;
        let mut read = crate::position::PendingOffsets::new();
        for (i, (trace, root, gap_ms)) in arrivals.iter().enumerate() {
            now_ms += *gap_ms as u64;
            let s = span(*trace, (i % 250) as u8 + 1, if *root { None } else { Some(200) });
            let message = read.begin(SourceRef { partition: 0, offset: i as i64 });
            buffer.insert(&mut vec![sized(s, span_bytes[i])], &message, Nanos(now_ms * 1_000_000), &mut ready);
            prop_assert!(buffer.buffered_spans() <= max_buffered.max(max_per_trace));
            prop_assert!(buffer.buffered_bytes() <= max_bytes, "{} bytes over {}", buffer.buffered_bytes(), max_bytes);
            buffer.expire(Nanos(now_ms * 1_000_000), &mut ready);
        }
        buffer.expire(Nanos((now_ms + 30_000) * 1_000_000), &mut ready);
        prop_assert_eq!(buffer.buffered_spans(), 0, "max_trace_age decides everything");
        prop_assert_eq!(buffer.buffered_bytes(), 0, "and frees every byte");
        let spans: usize = ready.iter().map(|r| r.spans.len()).sum();
        prop_assert_eq!(spans, arrivals.len());
        prop_assert_eq!(read.pending(0), arrivals.len(), "each message is held by the trace holding its span");
        prop_assert_eq!(read.committable(0), Some(0));
        ready.clear();
        prop_assert_eq!(read.pending(0), 0, "and released when those traces are let go");
        prop_assert_eq!(read.committable(0), Some(arrivals.len() as i64));
    }
}
