//! What the real-broker tests share (tests/broker.rs, tests/chaos.rs): the broker named by
//! TRACEWARDEN_TEST_BROKERS, `tracewarden run` processes, PetClinic traffic and the check that
//! every trace reached the output whole.
//!
//! Every record is produced in a batch of its own, the tests' and the instances' alike. Tansu 0.6
//! answers a fetch from an offset inside a record batch with the batches after it, skipping the
//! rest of that one (Kafka returns the whole batch and the client skips what it already has). A
//! consumer restarts mid-batch whenever a partition is paused and resumed — back-pressure, and
//! librdkafka's own pause of every partition during a cooperative rebalance — so with batching the
//! broker itself loses records: the backlog test, two workers rebalancing at start-up under load,
//! missed the 3 to 12 records after the position each time it failed. One record per batch keeps
//! every restart on a batch boundary.

#![allow(dead_code)]

#[path = "http.rs"]
pub mod http;
#[path = "tls.rs"]
pub mod tls;
#[path = "wait.rs"]
pub mod wait;

#[allow(unused_imports)]
pub use wait::{explained, held_within, wait_for, wait_until};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};

use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::model::Encoding;

pub const BIN: &str = env!("CARGO_BIN_EXE_tracewarden");

/// The instances' group session (`session.timeout.ms`): how long after a kill -9 the broker
/// expires the dead member. Tansu 0.6.0's coordinator answers a follower's JoinGroup only after
/// 3 s, and refreshes a member's session on heartbeats alone (librdkafka sends none while it
/// waits on JoinGroup or SyncGroup): two rounds of a rebalance in a row then expire a live member
/// at 6 s, and the group re-forms without it, its partitions held twice or by no one. 15 s leaves
/// room for four rounds; Kafka waits for every member before it answers a JoinGroup.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker under test, and names unique to one test.
/// `fixed` settings followed by `owned` ones (such as [`Broker::group_view_settings`]), as
/// [`Instance::spawn`] takes them.
pub fn settings<'a>(fixed: &[(&'a str, &'a str)], owned: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    fixed.iter().copied().chain(owned.iter().map(|(key, value)| (*key, value.as_str()))).collect()
}

pub struct Broker {
    pub brokers: String,
    pub name: String,
    /// librdkafka properties every client of the test sets besides the brokers (TLS, SASL).
    pub security: Vec<(String, String)>,
}

/// Why every test here is `#[ignore]`d: without a broker it cannot run, and a test that did not
/// run must not report passed. scripts/test.sh starts one and runs them with `--include-ignored`.
pub const NEEDS_BROKER: &str = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS";

/// The broker named by TRACEWARDEN_TEST_BROKERS; a test run without it fails, saying so. Its
/// clients' security settings come from the file TRACEWARDEN_TEST_CLIENT names, when set: one
/// librdkafka property per line, `key=value`, as in a Kafka `client.properties`
/// (scripts/secured-kafka.sh).
pub fn broker(test: &str) -> Broker {
    match std::env::var("TRACEWARDEN_TEST_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => {
            let unique = format!("{test}-{}", std::process::id());
            Broker { brokers, name: unique, security: client_properties() }
        }
        _ => panic!("{NEEDS_BROKER}"),
    }
}

/// The properties of the file TRACEWARDEN_TEST_CLIENT names (blank lines and `#` comments skipped).
fn client_properties() -> Vec<(String, String)> {
    let Ok(file) = std::env::var("TRACEWARDEN_TEST_CLIENT") else { return Vec::new() };
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("TRACEWARDEN_TEST_CLIENT={file}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{file}: not key=value: {line}"));
            (key.trim().to_string(), value.trim().to_string())
        })
        .collect()
}

impl Broker {
    /// A client configuration reaching this broker as every client of the test does.
    pub fn client(&self) -> ClientConfig {
        tls::client_config(&self.brokers, &self.security)
    }

    pub fn topic(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// The settings that give an instance group-view topics of this test's own (`{prefix}points`,
    /// `{prefix}timeline`, `{prefix}rollups`): the defaults may exist on a shared broker with
    /// other partition counts, and a lone instance compared with a group needs its own.
    pub fn group_view_settings(&self, prefix: &str) -> Vec<(&'static str, String)> {
        [
            ("TRACEWARDEN__KAFKA__POINTS_TOPIC", "points"),
            ("TRACEWARDEN__KAFKA__TIMELINE_TOPIC", "timeline"),
            ("TRACEWARDEN__KAFKA__ROLLUPS_TOPIC", "rollups"),
        ]
        .into_iter()
        .map(|(key, role)| (key, self.topic(&format!("{prefix}{role}"))))
        .collect()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code}"));
        }
    }

    /// Messages of `topic` the group `group` has not committed yet (its lag), over every
    /// partition.
    pub fn backlog(&self, group: &str, topic: &str) -> i64 {
        let consumer: BaseConsumer = self.client().set("group.id", group).create().unwrap();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| {
                let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
                let position = match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                };
                high - position
            })
            .sum()
    }

    /// The end (high watermark) of every partition of `topic`, by partition.
    pub fn ends(&self, topic: &str) -> Vec<i64> {
        let consumer: BaseConsumer = self.client().create().unwrap();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
        (0..partitions).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).collect()
    }

    /// Where every record of `topic` up to its ends now is: (key, partition, offset).
    pub fn positions(&self, topic: &str) -> Vec<(String, i32, i64)> {
        let ends = self.ends(topic);
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("{}-positions", self.name))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..ends.len() as i32 {
            list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut next = vec![0i64; ends.len()];
        let mut positions = Vec::new();
        let what = format!("every record of {topic} up to {ends:?}");
        wait_for(what, Duration::from_secs(120), || {
            while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                next[m.partition() as usize] = m.offset() + 1;
                if m.offset() < ends[m.partition() as usize] {
                    positions.push((key, m.partition(), m.offset()));
                }
            }
            next.iter().zip(&ends).all(|(n, e)| n >= e)
        });
        positions
    }

    /// How many records of `topic` each key has, read until every key of `expected` was seen.
    pub fn records_per_key(&self, topic: &str, expected: &BTreeSet<String>) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (key, _) in self.read_until(topic, expected, Duration::from_secs(120)) {
            *counts.entry(key).or_default() += 1;
        }
        counts
    }

    /// How many members the broker lists in the consumer group `group` (DescribeGroups).
    pub fn group_members(&self, group: &str) -> usize {
        let consumer: BaseConsumer =
            self.client().set("group.id", format!("{}-describer", self.name)).create().unwrap();
        let list = consumer.fetch_group_list(Some(group), Duration::from_secs(10)).unwrap();
        list.groups().iter().filter(|g| g.name() == group).map(|g| g.members().len()).sum()
    }

    /// Every record of `topic`, read until every key of `expected` was seen (or the deadline).
    pub fn read_until(&self, topic: &str, expected: &BTreeSet<String>, deadline: Duration) -> Vec<(String, Vec<u8>)> {
        // The keys seen so far, and how many records they came from: each record is looked at
        // once (a hundred thousand records are read in seconds, not in quadratic time).
        let seen = std::cell::RefCell::new((0, BTreeSet::new()));
        self.read_while(topic, deadline, |records| {
            let (looked_at, keys) = &mut *seen.borrow_mut();
            for (key, _) in &records[*looked_at..] {
                if expected.contains(key) {
                    keys.insert(key.clone());
                }
            }
            *looked_at = records.len();
            keys.len() == expected.len()
        })
    }

    /// Every record of `topic`, read from the beginning until `done` holds (or the deadline),
    /// then for two seconds more (duplicates may still be on their way).
    pub fn read_while(
        &self,
        topic: &str,
        deadline: Duration,
        done: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("{}-reader", self.name))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let start = Instant::now();
        let partitions = wait_until(format!("{topic} to exist"), deadline, || {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
            metadata.topics().first().map(|t| t.partitions().len() as i32).filter(|&n| n > 0)
        });
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut records = Vec::new();
        let record = |m: &rdkafka::message::BorrowedMessage<'_>| {
            (
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            )
        };
        while start.elapsed() < deadline && !done(&records) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                records.push(record(&m));
            }
        }
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(2) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                records.push(record(&m));
            }
        }
        records
    }
}

/// One `tracewarden run` process.
pub struct Instance {
    pub child: Child,
    pub http: String,
    pub log: PathBuf,
}

/// A producer writing one record per batch (see the module header).
/// Its `client.id` is the one the fault proxy never throttles (tests/support/fault_proxy.rs): the
/// input keeps coming while forwarding is held back.
pub fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    producer_with(ClientConfig::new().set("bootstrap.servers", brokers).clone())
}

/// [`producer`] over `client` (a [`Broker::client`], with its security settings).
pub fn producer_with(mut client: ClientConfig) -> ThreadedProducer<DefaultProducerContext> {
    client.set("batch.num.messages", "1").set("client.id", "chaos-input").create().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Instance {
    pub fn spawn(broker: &Broker, label: &str, extra: &[(&str, &str)]) -> Instance {
        Self::spawn_with_config(broker, label, extra, None)
    }

    /// An instance reading a configuration file too (environment variables override it).
    pub fn spawn_with_config(
        broker: &Broker,
        label: &str,
        extra: &[(&str, &str)],
        config: Option<&PathBuf>,
    ) -> Instance {
        let http = format!("127.0.0.1:{}", free_port());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&broker.name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{label}.log"));
        let mut command = Command::new(BIN);
        command.arg("run");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        for (key, value) in &broker.security {
            let name = format!("TRACEWARDEN__KAFKA__CLIENT__{}", key.replace('.', "_").to_ascii_uppercase());
            command.env(name, value);
        }
        command
            .env("TRACEWARDEN__KAFKA__BROKERS", &broker.brokers)
            .env("TRACEWARDEN__KAFKA__GROUP_ID", broker.topic("group"))
            .env("TRACEWARDEN__KAFKA__INPUT_TOPICS", broker.topic("in"))
            .env("TRACEWARDEN__KAFKA__OUTPUT_TOPIC", broker.topic("out"))
            .env("TRACEWARDEN__KAFKA__DEAD_LETTER_TOPIC", broker.topic("dlq"))
            .env("TRACEWARDEN__KAFKA__COMMIT_INTERVAL", "200ms")
            .env("TRACEWARDEN__KAFKA__CLIENT__SESSION_TIMEOUT_MS", SESSION_TIMEOUT.as_millis().to_string())
            .env("TRACEWARDEN__KAFKA__CLIENT__HEARTBEAT_INTERVAL_MS", "500")
            // One record per batch, as every producer here (see the module header).
            .env("TRACEWARDEN__KAFKA__CLIENT__BATCH_NUM_MESSAGES", "1")
            .env("TRACEWARDEN__WINDOW__DECISION_WAIT", "500ms")
            .env("TRACEWARDEN__WINDOW__MAX_TRACE_AGE", "10s")
            .env("TRACEWARDEN__WINDOW__MAX_BUFFERED_SPANS", "50000")
            // Two workers per process: kill -9, rebalance and repartition guarantees hold per worker.
            .env("TRACEWARDEN__WORKERS", "2")
            .env("TRACEWARDEN__HTTP__LISTEN", &http)
            .env("TRACEWARDEN__LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra {
            command.env(k, v);
        }
        let instance = Instance { child: command.spawn().unwrap(), http, log };
        let what = format!("{label} to serve /healthz: see {}", instance.log.display());
        wait_for(what, Duration::from_secs(30), || instance.get("/healthz").is_some());
        instance
    }

    pub fn get(&self, path: &str) -> Option<String> {
        http::get(&self.http, path).map(|(_, body)| body)
    }

    /// The sum of a metric family's samples.
    pub fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to end by itself, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let what = format!("the process to end: see {}", self.log.display());
        wait_until(what, deadline, || self.child.try_wait().unwrap())
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        let mut log = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut log));
        assert!(status.success(), "SIGTERM is a clean exit, got {status:?}:\n{log}");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// One instance on `broker` (topics made here), fed 50 PetClinic traces: every one comes out of
/// the output topic whole, and the instance is ready. Returns the instance for further checks.
pub fn one_instance_forwards_every_trace(broker: &Broker) -> Instance {
    for role in ["in", "out"] {
        broker.create_topic(&broker.topic(role), 2);
    }
    broker.create_topic(&broker.topic("dlq"), 1);
    let view = broker.group_view_settings("");
    let instance = Instance::spawn(broker, "instance", &settings(&[], &view));
    let sent = produce_traffic(broker, 50, 100, true).join().unwrap();
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let out = broker.read_until(&broker.topic("out"), &expected, Duration::from_secs(90));
    let forwarded: BTreeSet<String> = out.into_iter().map(|(key, _)| key).collect();
    let missing = expected.difference(&forwarded).count();
    assert_eq!(missing, 0, "{missing} of {} traces never came out: see {}", expected.len(), instance.log.display());
    let ready = instance.get("/readyz").unwrap_or_default();
    assert!(ready.contains("\"ready\""), "ready: {ready} (see {})", instance.log.display());
    instance
}

/// Whether the group has settled: `partitions` partitions held in all, by every instance
/// (`/readyz` lists what an instance holds).
pub fn is_settled(instances: &[impl std::borrow::Borrow<Instance>], partitions: usize) -> bool {
    let held: Vec<usize> = instances
        .iter()
        .map(|i| {
            let i = i.borrow();
            let ready = i.get("/readyz").and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            ready.and_then(|r| r["partitions"].as_array().map(Vec::len)).unwrap_or(0)
        })
        .collect();
    held.iter().sum::<usize>() == partitions && held.iter().all(|&n| n > 0)
}

/// Waits (up to a minute) until [`is_settled`].
pub fn wait_until_settled(instances: &[impl std::borrow::Borrow<Instance>], partitions: usize) {
    let logs: Vec<_> = instances.iter().map(|i| i.borrow().log.display().to_string()).collect();
    let what = format!("the group to settle on {partitions} partitions: see {logs:?}");
    wait_for(what, Duration::from_secs(60), || is_settled(instances, partitions));
}

/// PetClinic traffic, produced in the background: per trace, one message per service, the root
/// service's last (an SDK exports a root span when it ends, after its children). Returns the
/// span count of every trace by 32-hex id.
pub fn produce_traffic(
    broker: &Broker,
    traces: usize,
    per_second: usize,
    keyed: bool,
) -> std::thread::JoinHandle<BTreeMap<String, usize>> {
    spawn_traffic(broker, per_second, keyed, move |i| i < traces)
}

/// The same traffic until `stop` is set.
pub fn produce_traffic_until(
    broker: &Broker,
    per_second: usize,
    keyed: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<String, usize>> {
    spawn_traffic(broker, per_second, keyed, move |_| !stop.load(Ordering::SeqCst))
}

/// Produces the `i`th trace while `more(i)`, `per_second` at most.
fn spawn_traffic(
    broker: &Broker,
    per_second: usize,
    keyed: bool,
    more: impl Fn(usize) -> bool + Send + 'static,
) -> std::thread::JoinHandle<BTreeMap<String, usize>> {
    let (client, topic) = (broker.client(), broker.topic("in"));
    std::thread::spawn(move || {
        let producer = producer_with(client);
        let mut clinic = PetClinic::new(11, TrafficProfile::default());
        let mut sent = BTreeMap::new();
        let started = Instant::now();
        let mut i = 0;
        while more(i) {
            while started.elapsed().as_secs_f64() * (per_second as f64) < i as f64 {
                // Pacing the traffic at its rate: the wait is what is produced, not a synchronisation.
                std::thread::sleep(Duration::from_millis(2));
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            let trace = clinic.trace(now, Encoding::OTLP_PROTO);
            let key = hex::encode(trace.trace_id);
            for (m, payload) in trace.messages.iter().enumerate().rev() {
                let record_key = if keyed { key.clone() } else { format!("{key}-{m}") };
                let mut record = BaseRecord::to(&topic).key(&record_key).payload(&payload[..]);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, returned)) => {
                            record = returned;
                            // The producer's queue is full: a moment for it to drain, then again.
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            }
            sent.insert(key, trace.spans);
            i += 1;
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        sent
    })
}

/// Checks the output holds every input trace, each record whole; returns the duplicate count.
pub fn check_output(broker: &Broker, sent: &BTreeMap<String, usize>) -> usize {
    check_output_with(broker, sent, false)
}

/// As [`check_output`]; with `early_decisions`, a trace decided early by memory pressure may leave
/// in two records — the spans buffered when it was decided, then its late spans, which follow the
/// decision (sampling.md) — as long as every span of it arrives exactly once.
pub fn check_output_with(broker: &Broker, sent: &BTreeMap<String, usize>, early_decisions: bool) -> usize {
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let records = broker.read_until(&broker.topic("out"), &expected, Duration::from_secs(120));
    let seen: BTreeSet<String> = records.iter().map(|(k, _)| k.clone()).collect();
    let missing: Vec<&String> = expected.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} traces never reached the output, e.g. {missing:?}",
        expected.len() - expected.intersection(&seen).count(),
        expected.len()
    );
    assert_eq!(seen.len(), expected.len(), "no trace that was not in the input");
    let mut forwarded: BTreeMap<&String, usize> = BTreeMap::new();
    for (key, payload) in &records {
        let data = TracesData::decode(&payload[..]).expect("forwarded protobuf");
        let spans: usize = data.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        if early_decisions {
            *forwarded.entry(key).or_default() += spans;
        } else {
            assert_eq!(spans, sent[key], "trace {key} forwarded whole, not split");
        }
    }
    if early_decisions {
        for (key, spans) in forwarded {
            assert_eq!(spans, sent[key], "every span of trace {key} forwarded exactly once");
        }
        return 0;
    }
    records.len() - seen.len()
}

/// A group evaluating [`tracewarden::testing::SHOP_AVAILABILITY_SLO`]: its configuration file and
/// the settings naming its SLO topics.
pub struct SloGroup {
    pub config: PathBuf,
    settings: Vec<(&'static str, String)>,
}

impl SloGroup {
    /// Creates the input and output (`partitions` each), dead-letter and alerts topics; the
    /// aggregates and state topics are created by tracewarden itself (the state compacted).
    pub fn new(broker: &Broker, partitions: i32) -> SloGroup {
        broker.create_topic(&broker.topic("in"), partitions);
        broker.create_topic(&broker.topic("out"), partitions);
        broker.create_topic(&broker.topic("dlq"), 1);
        broker.create_topic(&broker.topic("alerts"), 1);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&broker.name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("slo.toml");
        std::fs::write(&config, tracewarden::testing::SHOP_AVAILABILITY_SLO).unwrap();
        let settings = vec![
            ("TRACEWARDEN__KAFKA__ALERTS_TOPIC", broker.topic("alerts")),
            ("TRACEWARDEN__KAFKA__AGGREGATES_TOPIC", broker.topic("aggregates")),
            ("TRACEWARDEN__KAFKA__SLO_STATE_TOPIC", broker.topic("state")),
        ];
        SloGroup { config, settings }
    }

    /// An instance of the group, with `extra` settings.
    pub fn spawn(&self, broker: &Broker, label: &str, extra: &[(&str, &str)]) -> Instance {
        let mut settings: Vec<(&str, &str)> = self.settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        settings.extend_from_slice(extra);
        Instance::spawn_with_config(broker, label, &settings, Some(&self.config))
    }
}

/// A broker of this test's own (Tansu, in memory), so that it can be paused without disturbing
/// the other tests' broker.
pub struct OwnBroker {
    process: Child,
    /// Where clients reach it: its own address, or the one it advertises.
    pub brokers: String,
    listen: String,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        Self::advertising(None)
    }

    /// A broker that tells clients to reach it at `advertised` (a proxy's address) when given.
    pub fn advertising(advertised: Option<&str>) -> OwnBroker {
        Self::launch(advertised, false)
    }

    /// A broker that requires SASL authentication (Tansu's `--authentication`: SCRAM-SHA-256 and
    /// SCRAM-SHA-512 checked against `users`, each `(user, password, mechanism)`), told clients
    /// at `advertised` when given. The users are made as an operator makes them, with `tansu user
    /// create`, on the broker first started without authentication; it then restarts with
    /// authentication on the same storage (SQLite in a directory of its own).
    pub fn authenticating(advertised: Option<&str>, users: &[(&str, &str, &str)]) -> OwnBroker {
        let port = free_port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tansu-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut open = Self::launch_on(port, advertised, false, Some(&dir));
        for (user, password, mechanism) in users {
            let made = Command::new("tansu")
                .args(["user", "create", "--broker", &format!("tcp://{}", open.listen), user, password])
                .args(["--mechanism", if *mechanism == "SCRAM-SHA-256" { "scram256" } else { "scram512" }])
                .output()
                .unwrap();
            assert!(made.status.success(), "tansu user create {user}: {}", String::from_utf8_lossy(&made.stderr));
        }
        let _ = open.process.kill();
        let _ = open.process.wait();
        Self::launch_on(port, advertised, true, Some(&dir))
    }

    fn launch(advertised: Option<&str>, authentication: bool) -> OwnBroker {
        Self::launch_on(free_port(), advertised, authentication, None)
    }

    /// Tansu on `port`; with `storage_dir`, on SQLite there, else in memory.
    fn launch_on(
        port: u16,
        advertised: Option<&str>,
        authentication: bool,
        storage_dir: Option<&PathBuf>,
    ) -> OwnBroker {
        let listen = format!("127.0.0.1:{port}");
        let url = format!("tcp://{listen}");
        let advertised_url = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let mut command = Command::new("tansu");
        command.args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised_url]);
        match storage_dir {
            Some(dir) => command.current_dir(dir).args(["--storage-engine", "sqlite://tansu.db"]),
            None => command.args(["--storage-engine", "memory://tansu/"]),
        };
        let process = command
            .args(authentication.then_some("--authentication"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("needs the tansu binary on PATH (scripts/broker.sh installs it)");
        wait_for(format!("Tansu to listen on {listen}"), Duration::from_secs(10), || {
            TcpStream::connect(&listen).is_ok()
        });
        OwnBroker { process, brokers: advertised.map_or_else(|| listen.clone(), String::from), listen }
    }

    /// The address it listens on (what a proxy in front of it forwards to).
    pub fn listen_addr(&self) -> String {
        self.listen.clone()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.process.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
