//! The chaos run (README "Reliability", RELIABILITY.md): three `tracewarden run` processes of two
//! workers each in one group on a real broker, PetClinic traffic keyed by trace id, and an SLO in
//! an incident, while a random instance is `kill -9`ed at a random moment, again and again —
//! mid-forward, mid-rebalance (a kill soon after the previous restart), mid-checkpoint — and
//! restarted. At the end:
//! - every input trace is in the output topic, whole (all its spans in one record); duplicates
//!   are counted (at-least-once);
//! - each SLO alert fired once and was resolved once: a replayed count or a lost checkpoint would
//!   fire a tier twice or leave it open;
//! - the group has committed the whole input backlog.
//!
//! It prints `chaos: kills=K traces=T lost=L duplicates=D alerts_duplicated=A unresolved=U` last.
//! `CHAOS_KILLS` sets the kills (scripts/chaos.sh: 100; the test command: 5), `CHAOS_SEED` the
//! random choices (printed, so a failing run can be replayed).
//!
//! A killed instance is restarted once its group session has expired (6 s): Tansu's coordinator
//! can keep a dead member in the assignment for good when a new member joins while the dead one's
//! session is still open (Kafka expires it regardless).

#[path = "support/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseRecord, Producer};

use processes::*;

/// Kills in the test command's short run.
const SHORT_RUN_KILLS: usize = 5;

/// The input's partitions; the aggregates topic tracewarden creates has as many.
const PARTITIONS: i32 = 6;

/// The alerts of the SLO's incident: its three burn-rate tiers and the budget.
const ALERTS: [&str; 4] = ["breached", "page-fast", "page-slow", "ticket"];

/// What the run counted (the summary line).
#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    traces: usize,
    lost: usize,
    duplicates: usize,
    alerts_duplicated: usize,
    unresolved: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chaos: kills={} traces={} lost={} duplicates={} alerts_duplicated={} unresolved={}",
            self.kills, self.traces, self.lost, self.duplicates, self.alerts_duplicated, self.unresolved
        )
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh or scripts/chaos.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn kill_9_again_and_again_loses_no_trace_and_sends_each_alert_once() {
    let kills = env_number("CHAOS_KILLS").map_or(SHORT_RUN_KILLS, |k| k as usize);
    let seed = env_number("CHAOS_SEED").unwrap_or_else(|| now_nanos() % 1_000_000);
    eprintln!("chaos: {kills} kills, CHAOS_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let broker = broker("chaos");
    let group = SloGroup::new(&broker, PARTITIONS);
    let alerts = broker.topic("alerts");
    let dir = group.config.parent().unwrap().to_path_buf();
    let spawn = |label: &str| group.spawn(&broker, label, &[]);
    let mut live: Vec<Instance> = (0..3).map(|i| spawn(&format!("instance-{i}"))).collect();
    // Settled: the input and aggregates partitions all held, by every instance.
    wait_until_settled(&live, 2 * PARTITIONS as usize);

    // The incident: 5 faults in 100 requests, 5 % bad against 0.1 % allowed: every tier and the
    // budget fire.
    let producer = producer(&broker.brokers);
    let produce = |messages: Vec<(String, bytes::Bytes)>| {
        for (key, payload) in &messages {
            producer.send(BaseRecord::to(&broker.topic("in")).key(key).payload(&payload[..])).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    produce(tracewarden::testing::shop_requests(now_nanos(), 1, 100, 5, false));
    let fired = broker.read_while(&alerts, Duration::from_secs(60), |r| r.len() >= ALERTS.len());
    let logs = |live: &[Instance]| -> Vec<String> { live.iter().map(|i| i.log.display().to_string()).collect() };
    assert_eq!(fired.len(), ALERTS.len(), "the incident's alerts fire before the kills; see {:?}", logs(&live));

    // Traffic throughout the kills.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = produce_traffic_until(&broker, 100, true, stop.clone());
    let started = Instant::now();
    for kill in 0..kills {
        // A random moment: up to 4 s after the previous restart (so sometimes mid-rebalance).
        std::thread::sleep(Duration::from_millis(rng.random_range(0..4_000)));
        let victim = rng.random_range(0..live.len());
        live[victim].kill9();
        std::thread::sleep(Duration::from_secs(8));
        live[victim] = spawn(&format!("instance-{victim}-after-kill-{}", kill + 1));
        eprintln!("chaos: kill {}/{kills} of instance-{victim} at {:?}", kill + 1, started.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    let sent = traffic.join().unwrap();

    // The incident ends: 24 000 good requests. Every tier and the budget resolve (the budget is
    // 1 − (5/24 100)/0.001 = 0.79 left); a count replayed after a kill and counted twice would
    // show as a tier firing again.
    produce(tracewarden::testing::shop_requests(now_nanos(), 10, 24_000, 0, false));

    let mut figures = Figures { kills, traces: sent.len(), ..Figures::default() };
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let records = broker.read_until(&broker.topic("out"), &expected, Duration::from_secs(180));
    let mut split = Vec::new();
    let mut seen: BTreeMap<&String, usize> = BTreeMap::new();
    for (key, payload) in &records {
        let Some(spans_sent) = sent.get(key) else { continue };
        let data = TracesData::decode(&payload[..]).expect("forwarded protobuf");
        let spans: usize = data.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        if spans != *spans_sent {
            split.push(key.clone());
        }
        *seen.entry(key).or_default() += 1;
    }
    figures.lost = expected.len() - seen.len();
    figures.duplicates = seen.values().map(|n| n - 1).sum();

    let resolved_all = |records: &[(String, Vec<u8>)]| {
        let statuses = alert_statuses(records);
        ALERTS.iter().all(|a| statuses.get(*a).and_then(|s| s.last()).is_some_and(|s| s == "resolved"))
    };
    let all_alerts = broker.read_while(&alerts, Duration::from_secs(120), resolved_all);
    let statuses = alert_statuses(&all_alerts);
    for alert in ALERTS {
        let lifecycle = statuses.get(alert).cloned().unwrap_or_default();
        figures.alerts_duplicated += lifecycle.windows(2).filter(|w| w[0] == w[1]).count();
        figures.unresolved += usize::from(lifecycle.last().is_none_or(|s| s != "resolved"));
    }
    let group = broker.topic("group");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backlog = broker.backlog(&group, &broker.topic("in"));
    while backlog > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        backlog = broker.backlog(&group, &broker.topic("in"));
    }
    eprintln!("chaos: alert statuses {statuses:?}; uncommitted input backlog {backlog}; logs in {}", dir.display());
    eprintln!("{figures}");
    assert_eq!(figures.lost, 0, "every trace reaches the output; see {:?}", logs(&live));
    assert!(split.is_empty(), "traces forwarded in pieces: {:?}", &split[..split.len().min(5)]);
    assert_eq!((figures.alerts_duplicated, figures.unresolved), (0, 0), "alerts: {statuses:?}");
    assert_eq!(backlog, 0, "the whole input committed");
    for instance in live.iter_mut() {
        instance.terminate();
    }
}

/// Each alert's statuses (`firing`, `resolved`) in the order sent, by tier (or `breached`).
fn alert_statuses(records: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<String>> {
    let mut statuses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, payload) in records {
        let alert: serde_json::Value = serde_json::from_slice(payload).expect("alert JSON");
        let labels = &alert["labels"];
        let name = labels.get("tier").unwrap_or(&labels["severity"]).as_str().unwrap_or_default().to_string();
        statuses.entry(name).or_default().push(alert["status"].as_str().unwrap_or_default().to_string());
    }
    statuses
}
