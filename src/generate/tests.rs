//! The demo's story, checked on what the generator delivers: its messages decoded by the
//! project's decoder, every expectation worked out from the decoded spans (their resource and
//! span attributes, times and outcomes), none from the generator's internals.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::format::{AttributeLookup, Decoder, InputEncoding};
use crate::model::{Outcome, Span, SpanKind};

/// A Unix second at the start of a 5-minute period (1.8e9 is a multiple of 300).
const PERIOD_START: u64 = 1_800_000_000;
const SECOND: u64 = 1_000_000_000;
/// The `now` of the traces: 150 s into a period, when the database is healthy.
const NOW: u64 = (PERIOD_START + 150) * SECOND;

const ALL_ENCODINGS: [Encoding; 6] = [
    Encoding::OTLP_PROTO,
    Encoding::OTLP_JSON,
    Encoding::ZIPKIN_JSON,
    Encoding::ZIPKIN_PROTO,
    Encoding::JAEGER_PROTO,
    Encoding::JAEGER_JSON,
];

/// The spans of `count` traces built at `now`, decoded; one list per trace.
fn traces(clinic: &mut PetClinic, count: usize, now: u64, encoding: Encoding) -> Vec<Vec<Span>> {
    let mut decoder = Decoder::new(InputEncoding::from(encoding));
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

fn text(span: &Span, key: &str) -> Option<String> {
    span.attribute(key).and_then(|v| v.as_text())
}

/// The `q` quantile (nearest rank) of `values`, sorted in place.
fn quantile(values: &mut [u64], q: f64) -> u64 {
    values.sort_unstable();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Faults of customers-service's entry spans by pod, and each pod's `service.version`.
fn customers_faults_by_pod(traces: &[Vec<Span>]) -> BTreeMap<String, (String, usize)> {
    let mut by_pod = BTreeMap::new();
    for span in traces.iter().flatten().filter(|s| &**s.service() == "customers-service" && s.is_entry()) {
        let pod = text(span, "k8s.pod.name").expect("a pod name");
        let version = text(span, "service.version").expect("a version");
        let entry = by_pod.entry(pod).or_insert((version, 0));
        if span.facts.outcome == Outcome::Fault {
            entry.1 += 1;
        }
    }
    by_pod
}

#[test]
fn every_span_names_its_pod_and_each_service_runs_on_several() {
    let mut clinic = PetClinic::new(5, TrafficProfile::default());
    let mut pods: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut zones = BTreeSet::new();
    for encoding in ALL_ENCODINGS {
        for trace in traces(&mut clinic, 500, NOW, encoding) {
            let mut pod_of_service = HashMap::new();
            for span in &trace {
                for key in [
                    "k8s.pod.name",
                    "k8s.node.name",
                    "host.name",
                    "service.instance.id",
                    "service.version",
                    "cloud.availability_zone",
                    "cloud.region",
                ] {
                    assert!(text(span, key).is_some(), "{encoding}: {} lacks {key}", span.operation);
                }
                assert_eq!(text(span, "k8s.namespace.name").as_deref(), Some("petclinic"));
                let pod = text(span, "k8s.pod.name").unwrap();
                assert!(pod.starts_with(&**span.service()), "{pod} is a pod of {}", span.service());
                let first = pod_of_service.entry(span.service().to_string()).or_insert_with(|| pod.clone());
                assert_eq!(*first, pod, "a trace's spans of one service come from one pod");
                if !matches!(encoding, Encoding::ZIPKIN_JSON | Encoding::ZIPKIN_PROTO) {
                    assert_eq!(&**span.environment(), "demo");
                }
                zones.insert(text(span, "cloud.availability_zone").unwrap());
                pods.entry(span.service().to_string()).or_default().insert(pod);
            }
        }
    }
    assert_eq!(pods.len(), 6, "six services: {pods:?}");
    for (service, names) in &pods {
        assert!(names.len() >= 2, "{service} runs on several pods: {names:?}");
    }
    assert!((2..=3).contains(&zones.len()), "two or three zones: {zones:?}");
}

#[test]
fn a_service_message_holds_one_resource() {
    let mut clinic = PetClinic::new(6, TrafficProfile::default());
    for _ in 0..200 {
        let trace = clinic.trace(NOW, Encoding::OTLP_PROTO);
        let mut services = BTreeSet::new();
        for message in &trace.messages {
            let data = <opentelemetry_proto::tonic::trace::v1::TracesData as prost::Message>::decode(&message[..])
                .expect("protobuf");
            assert_eq!(data.resource_spans.len(), 1, "one pod per service and trace");
            let resource = data.resource_spans[0].resource.as_ref().expect("a resource");
            let service = resource.attributes.iter().find(|kv| kv.key == "service.name").expect("service.name");
            assert!(services.insert(format!("{:?}", service.value)), "one message per service");
        }
    }
}

#[test]
fn the_canary_pod_serves_most_of_customers_faults_until_faults_are_switched_off() {
    let mut clinic = PetClinic::new(7, TrafficProfile::default());
    let by_pod = customers_faults_by_pod(&traces(&mut clinic, 5000, NOW, Encoding::OTLP_PROTO));
    let canaries: Vec<_> = by_pod.iter().filter(|(_, (version, _))| version == "1.4.0-rc1").collect();
    assert_eq!(canaries.len(), 1, "one pod runs 1.4.0-rc1: {by_pod:?}");
    assert!(by_pod.len() >= 3, "customers-service runs on several pods: {by_pod:?}");
    let canary_faults = canaries[0].1 .1;
    let faults: usize = by_pod.values().map(|(_, f)| f).sum();
    assert!(faults >= 50, "enough faults to judge: {by_pod:?}");
    assert!(canary_faults as f64 >= 0.8 * faults as f64, "the canary serves ≥ 80 % of the faults: {by_pod:?}");

    clinic.set_faults(false);
    let after = traces(&mut clinic, 5000, NOW, Encoding::OTLP_PROTO);
    let by_pod = customers_faults_by_pod(&after);
    assert!(by_pod.values().all(|(_, faults)| *faults == 0), "no fault once switched off: {by_pod:?}");
    assert!(after.iter().flatten().all(|s| s.facts.outcome != Outcome::Fault), "no fault anywhere");
}

/// Out of rotation (not rolled out yet, or rolled back), the canary serves nothing: the stable pods
/// serve every lookup and fail as rarely as with it (a tenth of the faults spread over three pods).
#[test]
fn without_the_canary_the_stable_pods_serve_everything_and_fail_rarely() {
    let mut with = PetClinic::new(7, TrafficProfile::default());
    let stable_faults = |by_pod: &BTreeMap<String, (String, usize)>| -> usize {
        by_pod.values().filter(|(version, _)| version == "1.3.2").map(|(_, f)| f).sum()
    };
    let with_canary = customers_faults_by_pod(&traces(&mut with, 5000, NOW, Encoding::OTLP_PROTO));
    let mut without = PetClinic::new(7, TrafficProfile::default());
    without.set_canary(false);
    let without_canary = customers_faults_by_pod(&traces(&mut without, 5000, NOW, Encoding::OTLP_PROTO));
    assert_eq!(without_canary.len(), 3, "three stable pods: {without_canary:?}");
    assert!(without_canary.values().all(|(version, _)| version == "1.3.2"), "{without_canary:?}");
    // The same fault rate per stable pod, a third more lookups each: at most about 4/3 of the
    // faults they served beside the canary (and well under the canary's share).
    let (before, after) = (stable_faults(&with_canary), stable_faults(&without_canary));
    let canary: usize = with_canary.values().filter(|(v, _)| v == "1.4.0-rc1").map(|(_, f)| f).sum();
    assert!(after < canary / 2, "stable pods fail rarely: {after} against the canary's {canary}");
    assert!((after as f64) < 2.0 * before.max(5) as f64, "{before} with the canary, {after} without");
}

/// The database queries of `count` traces built at each of `offsets` seconds into a period: the
/// median duration at each offset, and every duration.
fn query_durations(clinic: &mut PetClinic, offsets: &[u64], count: usize) -> (Vec<(u64, u64)>, Vec<u64>) {
    let mut medians = Vec::new();
    let mut all = Vec::new();
    for &offset in offsets {
        let traces = traces(clinic, count, (PERIOD_START + offset) * SECOND, Encoding::OTLP_PROTO);
        let mut durations: Vec<u64> = traces
            .iter()
            .flatten()
            .filter(|s| text(s, "db.system").as_deref() == Some("postgresql"))
            .map(|s| s.duration_nanos())
            .collect();
        medians.push((offset, quantile(&mut durations, 0.5)));
        all.extend(durations);
    }
    (medians, all)
}

#[test]
fn the_database_slows_down_for_the_first_90_s_of_every_5_minutes() {
    let mut clinic = PetClinic::new(8, TrafficProfile::default());
    let (degraded_medians, mut degraded) = query_durations(&mut clinic, &[0, 45, 89, 300, 389], 600);
    let (healthy_medians, mut healthy) = query_durations(&mut clinic, &[90, 150, 299, 390, 599], 600);
    let slowest_healthy = healthy_medians.iter().map(|(_, median)| *median).max().unwrap();
    for (offset, median) in degraded_medians {
        assert!(
            median >= 3 * slowest_healthy,
            "{offset} s into the period the median query takes {median} ns, at most {slowest_healthy} ns when healthy"
        );
    }
    let (p99_degraded, p99_healthy) = (quantile(&mut degraded, 0.99), quantile(&mut healthy, 0.99));
    assert!(p99_degraded >= 6 * p99_healthy, "p99 {p99_degraded} ns degraded, {p99_healthy} ns healthy");
}

#[test]
fn every_operation_has_a_long_tail() {
    let mut clinic = PetClinic::new(9, TrafficProfile::default());
    let mut durations: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for span in traces(&mut clinic, 5000, NOW, Encoding::OTLP_PROTO).iter().flatten() {
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
    let degraded_now = PERIOD_START * SECOND;
    for (encoding, now) in [
        (Encoding::OTLP_PROTO, NOW),
        (Encoding::OTLP_PROTO, degraded_now),
        (Encoding::OTLP_JSON, NOW),
        (Encoding::ZIPKIN_JSON, degraded_now),
        (Encoding::ZIPKIN_PROTO, degraded_now),
        (Encoding::JAEGER_PROTO, degraded_now),
        (Encoding::JAEGER_JSON, NOW),
    ] {
        for trace in traces(&mut clinic, 1000, now, encoding) {
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
