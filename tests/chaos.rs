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
//! The same harness runs network faults instead of kills: a proxy between the instances and the
//! broker cuts, stalls or slows every connection for seconds at a time
//! ([`network_faults_lose_nothing_and_the_instances_recover_by_themselves`]).
//!
//! A killed instance is restarted once its group session has expired ([`SESSION_TIMEOUT`]): Tansu's coordinator
//! can keep a dead member in the assignment for good when a new member joins while the dead one's
//! session is still open (Kafka expires it regardless).

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
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

use fault_proxy::{Fault, FaultProxy};
use processes::*;

/// Kills in the test command's short run.
const SHORT_RUN_KILLS: usize = 5;

/// Network faults in the test command's short run.
const SHORT_RUN_FAULTS: usize = 4;

/// Seconds of overload in the test command's short run.
const SHORT_RUN_OVERLOAD_SECONDS: u64 = 30;

/// The runs here take the machine's cores: one at a time, even when the test harness runs tests
/// in parallel.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
        // A random moment: up to 4 s after the previous restart (so sometimes mid-rebalance). A
        // sleep by design: when the kill lands is the chaos under test.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..4_000)));
        let victim = rng.random_range(0..live.len());
        live[victim].kill9();
        // The replacement comes back after a fixed back-off, as a restarted pod does: a sleep by
        // design (the kill and the restart times are the chaos under test, and a kill may land
        // before the previous replacement has joined, so no group state marks "noticed").
        std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
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
    let output = count_output(&broker, &sent);
    (figures.lost, figures.duplicates) = (output.lost, output.duplicates);

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
    let backlog = wait_for_backlog_committed(&broker, &broker.topic("group"), &broker.topic("in"));
    eprintln!("chaos: alert statuses {statuses:?}; uncommitted input backlog {backlog}; logs in {}", dir.display());
    eprintln!("{figures}");
    assert_eq!(figures.lost, 0, "every trace reaches the output; see {:?}", logs(&live));
    assert!(output.split.is_empty(), "traces forwarded in pieces: {:?}", &output.split[..output.split.len().min(5)]);
    assert_eq!((figures.alerts_duplicated, figures.unresolved), (0, 0), "alerts: {statuses:?}");
    assert_eq!(backlog, 0, "the whole input committed");
    for instance in live.iter_mut() {
        instance.terminate();
    }
}

/// A Tansu of the test's own behind a fault proxy it advertises (so every client connection
/// passes through the proxy), with the input, output and dead-letter topics created. The broker
/// process lives as long as the first value.
fn broker_behind_proxy(test: &str) -> (OwnBroker, FaultProxy, Broker) {
    let proxy_port = free_port();
    let own = OwnBroker::advertising(Some(&format!("127.0.0.1:{proxy_port}")));
    let proxy = FaultProxy::start(proxy_port, own.listen_addr());
    let broker =
        Broker { brokers: proxy.addr.clone(), name: format!("{test}-{}", std::process::id()), security: Vec::new() };
    broker.create_topic(&broker.topic("in"), PARTITIONS);
    broker.create_topic(&broker.topic("out"), PARTITIONS);
    broker.create_topic(&broker.topic("dlq"), 1);
    (own, proxy, broker)
}

/// What the output topic holds of the input traces.
struct Output {
    lost: usize,
    duplicates: usize,
    /// Traces forwarded in a record without all their spans (their other spans later, after the
    /// decision, or never).
    split: Vec<String>,
    /// Traces some of whose spans never reached the output.
    incomplete: Vec<String>,
}

/// Reads the output until every trace of `sent` is there (or 3 minutes passed) and counts.
fn count_output(broker: &Broker, sent: &BTreeMap<String, usize>) -> Output {
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let records = broker.read_until(&broker.topic("out"), &expected, Duration::from_secs(180));
    let mut split = Vec::new();
    // Per trace, the spans forwarded so far; a record adding none is a duplicate.
    let mut seen: BTreeMap<&String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut duplicates = 0;
    for (key, payload) in &records {
        let Some(spans_sent) = sent.get(key) else { continue };
        let data = TracesData::decode(&payload[..]).expect("forwarded protobuf");
        let spans = tracewarden::testing::span_ids(&data);
        if spans.len() != *spans_sent {
            split.push(key.clone());
        }
        let ids = seen.entry(key).or_default();
        if spans.iter().all(|id| ids.contains(id)) {
            duplicates += 1;
        }
        ids.extend(spans);
    }
    let incomplete =
        seen.iter().filter(|(key, ids)| ids.len() < sent[key.as_str()]).map(|(k, _)| (*k).clone()).collect();
    Output { lost: expected.len() - seen.len(), duplicates, split, incomplete }
}

/// Waits (up to a minute) until `group` has committed all of `topic`; the backlog left (the
/// caller reports it before asserting it is zero).
fn wait_for_backlog_committed(broker: &Broker, group: &str, topic: &str) -> i64 {
    held_within(Duration::from_secs(60), || broker.backlog(group, topic) == 0);
    broker.backlog(group, topic)
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

/// Network faults between the instances and the broker (a proxy the broker advertises, so every
/// client connection goes through it): connections cut, stalled or slowed for 2 to 8 s at a time
/// (past a 6 s session, set here: members are expelled and join again). Nothing is lost, the group commits
/// the whole input, `/readyz` shows a cut (the first fault is one of 5 s or more) and every
/// instance is ready again without help. `CHAOS_NETWORK_FAULTS` sets
/// the faults (scripts/chaos.sh: 30; the test command: 4); the summary line is
/// `network: faults=F traces=T lost=L duplicates=D`.
#[test]
#[ignore = "needs the Tansu broker: run scripts/test.sh or scripts/chaos.sh (they install it)"]
fn network_faults_lose_nothing_and_the_instances_recover_by_themselves() {
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let faults = env_number("CHAOS_NETWORK_FAULTS").map_or(SHORT_RUN_FAULTS, |f| f as usize);
    let seed = env_number("CHAOS_SEED").unwrap_or_else(|| now_nanos() % 1_000_000);
    eprintln!("network: {faults} faults, CHAOS_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let (_own, proxy, broker) = broker_behind_proxy("network");
    // A session shorter than the longest faults, so that some expel members.
    let session = [("TRACEWARDEN__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "6000")];
    let mut live: Vec<Instance> =
        (0..3).map(|i| Instance::spawn(&broker, &format!("instance-{i}"), &session)).collect();
    wait_until_settled(&live, PARTITIONS as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = produce_traffic_until(&broker, 100, true, stop.clone());
    let started = Instant::now();
    // Cuts of at least 4 s, and how many of them some instance's /readyz showed.
    let (mut long_cuts, mut cuts_seen) = (0, 0);
    for round in 0..faults {
        // A random pause between faults: a sleep by design (when the next fault lands is the chaos).
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..3_000)));
        // The first fault is a cut long enough for readiness to show it.
        let fault =
            if round == 0 { Fault::Cut } else { [Fault::Cut, Fault::Stall, Fault::Slow][rng.random_range(0..3)] };
        let lasting = Duration::from_millis(rng.random_range(if round == 0 { 5_000 } else { 2_000 }..8_000));
        proxy.set(fault);
        let began = Instant::now();
        let mut seen = false;
        while began.elapsed() < lasting {
            seen |= live.iter().any(|i| i.get("/readyz").is_some_and(|b| b.contains("not ready")));
            // Sampling readiness while the fault lasts (its length is the fault under test).
            std::thread::sleep(Duration::from_millis(250));
        }
        proxy.set(Fault::None);
        if fault == Fault::Cut && lasting >= Duration::from_secs(4) {
            long_cuts += 1;
            cuts_seen += usize::from(seen);
        }
        eprintln!(
            "network: fault {}/{faults}: {fault:?} for {lasting:?} at {:?}{}",
            round + 1,
            started.elapsed(),
            if seen { ", an instance not ready" } else { "" }
        );
    }
    stop.store(true, Ordering::SeqCst);
    let sent = traffic.join().unwrap();
    let output = count_output(&broker, &sent);
    let backlog = wait_for_backlog_committed(&broker, &broker.topic("group"), &broker.topic("in"));
    let ready = |live: &[Instance]| live.iter().all(|i| i.get("/readyz").is_some_and(|b| b.contains("\"ready\"")));
    held_within(Duration::from_secs(60), || ready(&live));
    let logs: Vec<String> = live.iter().map(|i| i.log.display().to_string()).collect();
    eprintln!(
        "network: faults={faults} traces={} lost={} duplicates={} long_cuts={long_cuts} seen_not_ready={cuts_seen}",
        sent.len(),
        output.lost,
        output.duplicates
    );
    assert!(cuts_seen > 0, "readiness showed none of the {long_cuts} cuts of 4 s or more; see {logs:?}");
    assert_eq!(output.lost, 0, "every trace reaches the output; see {logs:?}");
    // The test's producer goes through the proxy too: a trace whose spans it could not send for
    // seconds is decided with what arrived, its late spans following the decision (sampling.md).
    assert!(
        output.incomplete.is_empty(),
        "spans never forwarded: {:?}",
        &output.incomplete[..output.incomplete.len().min(5)]
    );
    assert_eq!(backlog, 0, "the whole input committed; see {logs:?}");
    assert!(ready(&live), "every instance ready again by itself; see {logs:?}");
    for instance in live.iter_mut() {
        instance.terminate();
    }
}

/// Overload: every Produce request of the instance is held at the proxy, 300 ms and 64 kB/s per
/// connection (forwarding lets out a few dozen traces/s) while the input arrives at 300 traces/s, for `CHAOS_OVERLOAD_SECONDS`
/// (scripts/chaos.sh: 300; the test command: 30). Consumption pauses instead of buffering without
/// bound; the process's RSS (from /proc) stays under what its settings allow — the window, and per
/// worker the producer queue and the consumer prefetch — over its size once started; once
/// forwarding is released the backlog drains and nothing is lost. The summary line is
/// `overload: seconds=S traces=T peak_rss_mib=P bound_mib=B paused_share=F lost=L duplicates=D`.
#[test]
#[ignore = "needs the Tansu broker: run scripts/test.sh or scripts/chaos.sh (they install it)"]
fn overload_pauses_consumption_keeps_memory_bounded_and_loses_nothing() {
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seconds = env_number("CHAOS_OVERLOAD_SECONDS").unwrap_or(SHORT_RUN_OVERLOAD_SECONDS);
    let (_own, proxy, broker) = broker_behind_proxy("overload");
    // The bounds: 16 MiB of span encodings in the window, and per worker (two) an 8 MiB producer
    // queue and an 8 MiB consumer prefetch.
    const WINDOW_MIB: u64 = 16;
    const QUEUE_MIB: u64 = 8;
    const PREFETCH_MIB: u64 = 8;
    let (window, queue, prefetch) =
        ((WINDOW_MIB << 20).to_string(), (QUEUE_MIB << 10).to_string(), (PREFETCH_MIB << 10).to_string());
    let settings = [
        ("TRACEWARDEN__WINDOW__MAX_BUFFERED_BYTES", window.as_str()),
        ("TRACEWARDEN__KAFKA__CLIENT__QUEUE_BUFFERING_MAX_KBYTES", queue.as_str()),
        ("TRACEWARDEN__KAFKA__CLIENT__QUEUED_MAX_MESSAGES_KBYTES", prefetch.as_str()),
    ];
    let mut instance = Instance::spawn(&broker, "overloaded", &settings);
    wait_until_settled(std::slice::from_ref(&instance), PARTITIONS as usize);
    let started_rss = instance.rss_kib();
    // A buffered span costs about twice its encoding (README "Back-pressure and memory"); the
    // allocator keeps some slack.
    let bound_mib = started_rss / 1024 + 2 * WINDOW_MIB + 2 * (QUEUE_MIB + PREFETCH_MIB) + 32;
    proxy.set(Fault::ThrottleProduce);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = produce_traffic_until(&broker, 300, true, stop.clone());
    let started = Instant::now();
    let (mut peak_rss, mut samples, mut paused_samples) = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        peak_rss = peak_rss.max(instance.rss_kib());
        samples += 1;
        paused_samples += usize::from(instance.metric("tracewarden_consumption_paused") > 0.0);
        // Sampling memory and back-pressure four times a second for the overload's length.
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = traffic.join().unwrap();
    proxy.set(Fault::None);
    let output = count_output(&broker, &sent);
    let backlog = wait_for_backlog_committed(&broker, &broker.topic("group"), &broker.topic("in"));
    let paused_at_end = instance.metric("tracewarden_consumption_paused");
    eprintln!(
        "overload: seconds={seconds} traces={} peak_rss_mib={} bound_mib={bound_mib} paused_share={:.2} lost={} duplicates={}",
        sent.len(),
        peak_rss / 1024,
        paused_samples as f64 / samples.max(1) as f64,
        output.lost,
        output.duplicates
    );
    let log = instance.log.display().to_string();
    assert!(paused_samples > 0, "consumption paused while forwarding was held back; see {log}");
    assert_eq!(paused_at_end, 0.0, "and resumed once released");
    assert!(peak_rss / 1024 < bound_mib, "RSS {} MiB within {bound_mib} MiB", peak_rss / 1024);
    assert_eq!(output.lost, 0, "every trace reaches the output; see {log}");
    assert!(
        output.incomplete.is_empty(),
        "spans never forwarded: {:?}",
        &output.incomplete[..output.incomplete.len().min(5)]
    );
    assert_eq!(backlog, 0, "the backlog drained and was committed; see {log}");
    instance.terminate();
}
