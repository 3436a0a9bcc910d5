//! The demo's story, checked on what the generator delivers: its messages decoded by the
//! project's decoder, every expectation worked out from the decoded spans (their attributes,
//! times and outcomes), none from the generator's internals.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::decode::{Decoder, InputEncoding};
use crate::model::{Span, SpanKind};

/// The `now` of the traces.
const NOW: u64 = 1_800_000_150_000_000_000;

/// The spans of `count` traces built at `now`, decoded; one list per trace.
fn traces(clinic: &mut PetClinic, count: usize, now: u64, encoding: Encoding) -> Vec<Vec<Span>> {
    let input = match encoding {
        Encoding::OtlpProto => InputEncoding::OtlpProto,
        Encoding::OtlpJson => InputEncoding::OtlpJson,
        Encoding::ZipkinJson => InputEncoding::ZipkinJson,
    };
    let mut decoder = Decoder::new(input);
    (0..count)
        .map(|_| {
            let trace = clinic.trace(now, encoding);
            let mut spans = Vec::new();
            for message in &trace.messages {
                let stats = decoder.decode(message, &mut spans).expect("a generated message decodes");
                assert_eq!(stats.invalid_id + stats.invalid_time, 0, "no generated span is rejected");
            }
            assert_eq!(spans.len(), trace.spans, "every span of the trace is in its messages");
            spans
        })
        .collect()
}

/// The `q` quantile (nearest rank) of `values`, sorted in place.
fn quantile(values: &mut [u64], q: f64) -> u64 {
    values.sort_unstable();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn every_operation_has_a_long_tail() {
    let mut clinic = PetClinic::new(9, TrafficProfile::default());
    let mut durations: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for span in traces(&mut clinic, 5000, NOW, Encoding::OtlpProto).iter().flatten() {
        let key = (span.service().to_string(), span.operation.to_string());
        durations.entry(key).or_default().push(span.duration_nanos());
    }
    let process = ("billing-service".to_string(), "billing-events process".to_string());
    assert!(durations.contains_key(&process), "{:?}", durations.keys());
    for ((service, operation), values) in &mut durations {
        if values.len() < 100 {
            continue;
        }
        let (p50, p99) = (quantile(values, 0.5), quantile(values, 0.99));
        assert!(p99 >= 3 * p50, "{service} {operation}: p50 {p50} ns, p99 {p99} ns");
    }
}

#[test]
fn every_span_lies_within_its_parent_and_a_consumer_starts_after_its_producer() {
    let mut clinic = PetClinic::new(10, TrafficProfile::default());
    for encoding in [Encoding::OtlpProto, Encoding::OtlpJson, Encoding::ZipkinJson] {
        for trace in traces(&mut clinic, 1000, NOW, encoding) {
            let by_id: HashMap<_, _> = trace.iter().map(|s| (s.span_id, s)).collect();
            assert_eq!(trace.iter().filter(|s| s.is_root()).count(), 1, "one root");
            for span in trace.iter().filter(|s| !s.is_root()) {
                let parent = by_id[&span.parent_span_id.unwrap()];
                let what = format!("{encoding}: {} in {}", span.operation, parent.operation);
                if span.kind == SpanKind::Consumer && parent.kind == SpanKind::Producer {
                    assert!(span.start_unix_nano >= parent.end_unix_nano, "{what}: processed after the publish");
                } else {
                    assert!(span.start_unix_nano >= parent.start_unix_nano, "{what}: starts inside");
                    assert!(span.end_unix_nano <= parent.end_unix_nano, "{what}: ends inside");
                }
            }
        }
    }
}
