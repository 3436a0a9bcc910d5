use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::investigate::versions::VersionColumns;
use crate::signals::SignalStore;
use crate::testing::{spans, SpanSpec, SERVER};

const T: u64 = 1_700_000_000_000_000_000;

fn at(step: u64) -> Nanos {
    Nanos(T + step * STEP_NANOS)
}

/// Requests of `customers` as the pipeline records them: per entry (step, operation route,
/// version, pod, requests, faults), latency 10 ms, or 200 ms for 1.4.0-rc1.
type Requests<'a> = &'a [(u64, &'static str, &'static str, &'static str, u64, u64)];

/// A timeline (1 h history, 60 s window) holding `requests`, merged step by step as owners do.
fn timeline(requests: Requests) -> Timeline {
    let config = Config::default();
    let mut store = SignalStore::new(config.signal_settings());
    let columns = VersionColumns::of(store.dimensions());
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100).with_versions(columns);
    let last = requests.iter().map(|r| r.0).max().unwrap_or(0);
    let mut trace = 0u8;
    for step in 0..=last {
        for &(_, route, version, pod, count, faults) in requests.iter().filter(|r| r.0 == step) {
            for i in 0..count {
                trace = trace % 250 + 1;
                let status = if i < faults { 503 } else { 200 };
                let micros = if version == "1.4.0-rc1" { 200_000 } else { 10_000 };
                let span = SpanSpec::new("customers", trace, 1, None, SERVER, "x")
                    .http("GET", route, status)
                    .micros(micros)
                    .resource("service.version", version)
                    .resource("k8s.pod.name", pod);
                store.record_trace(&spans(&[span]), at(step));
            }
        }
        // Each step's points arrive in two halves, as from two instances.
        let points = store.flush_points();
        let (first, second) = points.split_at(points.len() / 2);
        timeline.merge(first, at(step));
        timeline.merge(second, at(step));
    }
    timeline
}

fn query(service: &str) -> DeploymentsQuery {
    DeploymentsQuery::parse([("service", service)]).unwrap()
}

/// 1.3.2 runs from step 0 on pods a and b; 1.4.0-rc1 starts on pod c at step 10 (a minute and a
/// half in: after the first 60 s window) and is worse.
const CANARY: Requests = &[
    (0, "/owners", "1.3.2", "a", 50, 0),
    (0, "/owners", "1.3.2", "b", 50, 1),
    (5, "/owners", "1.3.2", "a", 40, 0),
    (10, "/owners", "1.3.2", "a", 100, 1),
    (10, "/owners", "1.3.2", "b", 100, 1),
    (10, "/owners", "1.4.0-rc1", "c", 60, 15),
    (10, "/vets", "1.3.2", "a", 500, 0),
    (11, "/owners", "1.3.2", "b", 100, 1),
    (11, "/owners", "1.4.0-rc1", "c", 40, 10),
];

#[test]
fn a_new_version_after_the_first_window_is_a_deployment_judged_against_the_one_it_replaced() {
    let answer = deployments(&timeline(CANARY), &query("customers"), at(12));
    assert_eq!(answer.deployments.len(), 1, "{answer:#?}");
    let deployment = &answer.deployments[0];
    assert_eq!(deployment.version, "1.4.0-rc1");
    assert_eq!(deployment.previous_version, "1.3.2");
    assert_eq!(deployment.environment, "default");
    // Step 10 starts 100 s after T (1 700 000 000 s = 2023-11-14T22:13:20Z).
    assert_eq!(deployment.first_seen, "2023-11-14T22:15:00Z");
    assert_eq!(deployment.last_seen, "2023-11-14T22:15:20Z");
    assert_eq!(deployment.instances, vec!["c".to_string()]);
    assert!(!deployment.rolled_back);
    // Since step 10, on /owners only (the new version never served /vets): 300 requests of
    // 1.3.2 with 3 faults, 100 of 1.4.0-rc1 with 25.
    assert_eq!((deployment.before.requests, deployment.before.faults), (300, 3));
    assert_eq!((deployment.after.requests, deployment.after.faults), (100, 25));
    assert_eq!(deployment.before.fault_rate, Some(0.01));
    assert_eq!(deployment.after.fault_rate, Some(0.25));
    assert_eq!(deployment.before.instances, vec!["a".to_string(), "b".to_string()]);
    // p0 = 0.01, p1 = 0.25, pooled 28/400: z = 0.24 / √(0.07 · 0.93 · (1/300 + 1/100)) = 8.1461.
    let z = deployment.z_score.unwrap();
    assert!((z - 8.1461).abs() < 1e-4, "{z}");
    assert_eq!(deployment.verdict, Verdict::Degraded);
    // The latencies are 10 ms and 200 ms, within the sketch's bucket error.
    let p99 = |f: &VersionFigures| f.p99_seconds.unwrap();
    assert!((p99(&deployment.before) - 0.010).abs() < 0.001, "{}", p99(&deployment.before));
    assert!((p99(&deployment.after) - 0.200).abs() < 0.02, "{}", p99(&deployment.after));
}

/// The canary stops after step 11 and 1.3.2 goes on: a window later, the deployment is rolled back.
#[test]
fn a_version_that_stopped_while_the_previous_one_goes_on_is_rolled_back() {
    let mut requests = CANARY.to_vec();
    requests.push((16, "/owners", "1.3.2", "a", 10, 0));
    let timeline = timeline(&requests);
    // At step 16 the window (steps 11 to 16) holds the canary's last requests.
    assert!(!deployments(&timeline, &query("customers"), at(16)).deployments[0].rolled_back);
    // At step 17 it holds 1.3.2's and none of 1.4.0-rc1's.
    let deployment = &deployments(&timeline, &query("customers"), at(17)).deployments[0];
    assert!(deployment.rolled_back);
    assert_eq!(deployment.last_seen, "2023-11-14T22:15:20Z");
    // The figures are those since the deployment: 1.3.2's later requests count too.
    assert_eq!(deployment.before.requests, 310);
}

#[test]
fn versions_of_the_first_window_are_the_baseline_and_a_new_service_is_no_deployment() {
    let requests: Requests = &[
        (0, "/owners", "1.3.2", "a", 10, 0),
        // Within the first window: a version already running when tracewarden started.
        (5, "/owners", "1.3.1", "b", 10, 0),
        (20, "/owners", "1.3.2", "a", 10, 0),
    ];
    assert_eq!(deployments(&timeline(requests), &query("customers"), at(20)).deployments, vec![]);
    // Another service only: no deployment of customers.
    assert_eq!(deployments(&timeline(CANARY), &query("vets"), at(12)).deployments, vec![]);
}

#[test]
fn the_previous_version_is_the_busiest_in_the_window_before() {
    let requests: Requests = &[
        (0, "/owners", "1.3.2", "a", 10, 0),
        (8, "/owners", "1.3.3", "a", 30, 0),
        (9, "/owners", "1.3.2", "b", 5, 0),
        (12, "/owners", "1.4.0", "a", 10, 0),
    ];
    let answer = deployments(&timeline(requests), &query("customers"), at(12));
    let pairs: Vec<(&str, &str)> =
        answer.deployments.iter().map(|d| (d.version.as_str(), d.previous_version.as_str())).collect();
    // Newest first; 1.3.3 replaced 1.3.2 (the only version before it), and 1.4.0 replaced 1.3.3
    // (30 requests in the window before it, against 5 of 1.3.2).
    assert_eq!(pairs, vec![("1.4.0", "1.3.3"), ("1.3.3", "1.3.2")]);
}

fn counts(requests: u64, faults: u64) -> Counts {
    Counts { requests, faults, errors: 0, throttles: 0 }
}

#[test]
fn the_verdict_on_both_sides_of_the_threshold() {
    // z = 0.01 / √(0.015 · 0.985 · 0.002) = 1.8396 < 2.3263; 1 000 requests are fewer than the
    // 2 000 needed to show 20 faults at 1 %: pending.
    let (verdict, z) = judge(&counts(1_000, 10), &counts(1_000, 20));
    assert!((z.unwrap() - 1.8396).abs() < 1e-4);
    assert_eq!(verdict, Verdict::Pending);
    // 2 000 requests with 40 faults: z = 2.0169, not beyond chance, on enough requests: ok.
    let (verdict, z) = judge(&counts(1_000, 10), &counts(2_000, 40));
    assert!((z.unwrap() - 2.0169).abs() < 1e-4);
    assert_eq!(verdict, Verdict::Ok);
    // 50 faults: z = 0.015 / √(0.02 · 0.98 · 0.0015) = 2.7664 > 2.3263: degraded.
    let (verdict, z) = judge(&counts(1_000, 10), &counts(2_000, 50));
    assert!((z.unwrap() - 2.7664).abs() < 1e-4);
    assert_eq!(verdict, Verdict::Degraded);
    // 19 faults in 100 against none: z = 13.90, but fewer than 20 faults: pending.
    let (verdict, z) = judge(&counts(1_000, 0), &counts(100, 19));
    assert!(z.unwrap() > 13.0);
    assert_eq!(verdict, Verdict::Pending);
    // No faults on either side: no statistic; enough requests: ok.
    assert_eq!(judge(&counts(1_000, 0), &counts(2_000, 0)), (Verdict::Ok, None));
    assert_eq!(judge(&counts(0, 0), &counts(2_000, 0)), (Verdict::Pending, None));
}

#[test]
fn the_alert_names_the_deployment_and_has_the_labels_fingerprint() {
    let answer = deployments(&timeline(CANARY), &query("customers"), at(12));
    let alert = DeploymentAlert::of(&answer.deployments[0], at(12));
    let json = serde_json::to_value(&alert).unwrap();
    assert_eq!(json["type"], "deployment");
    assert_eq!(json["status"], "firing");
    assert_eq!(
        json["labels"],
        serde_json::json!({"alertname": "DeploymentDegraded", "service": "customers", "environment": "default",
                           "version": "1.4.0-rc1", "previous_version": "1.3.2"})
    );
    // Alertmanager's fingerprint of those labels: FNV-1a 64 over the sorted names and values,
    // each followed by 0xff (computed here independently of the SLO module's implementation).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in [
        ("alertname", "DeploymentDegraded"),
        ("environment", "default"),
        ("previous_version", "1.3.2"),
        ("service", "customers"),
        ("version", "1.4.0-rc1"),
    ] {
        for byte in name.bytes().chain([0xff]).chain(value.bytes()).chain([0xff]) {
            hash = (hash ^ byte as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(json["fingerprint"], format!("{hash:016x}"));
    assert_eq!(json["startsAt"], "2023-11-14T22:15:20Z");
    assert_eq!(
        json["annotations"]["summary"],
        "customers 1.4.0-rc1 (after 1.3.2) in default faults 25.00 % of 100 requests against 1.00 % of 300 (z = 8.1)"
    );
}

#[test]
fn a_bad_query_names_its_parameter() {
    assert_eq!(DeploymentsQuery::parse([]).unwrap_err().parameter, "service");
    assert_eq!(DeploymentsQuery::parse([("service", "a"), ("operation", "b")]).unwrap_err().parameter, "operation");
}
