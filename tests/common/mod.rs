//! Shared harness of the Kafka integration tests: librdkafka's mock cluster (the real Kafka
//! protocol, in process), a pipeline driven by a manual clock, and helpers to produce and read.
#![allow(dead_code)]

#[path = "../support/http.rs"]
pub mod http;
#[path = "../support/tls.rs"]
pub mod tls;
#[path = "../support/wait.rs"]
pub mod wait;

#[allow(unused_imports)]
pub use wait::{explained, held_within, wait_for, wait_until};

use tls::TlsListener;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

use tracewarden::clock::{ManualClock, Nanos};
use tracewarden::config::{Config, HumanDuration};
use tracewarden::pipeline::Pipeline;

pub const INPUT: &str = "otlp_spans";
pub const PARTITIONS: i32 = 3;
pub const T0: Nanos = Nanos(1_800_000_000_000_000_000);

pub struct Harness {
    /// The client that owns the mock cluster (`test.mock.num.brokers`): [`Harness::cluster`].
    owner: BaseProducer,
    pub brokers: String,
    /// librdkafka properties every client of the test sets (TLS: [`Harness::over_tls`]).
    pub security: Vec<(String, String)>,
    /// The TLS listeners in front of the brokers, when over TLS.
    listeners: Vec<TlsListener>,
    pub config: Config,
    pub clock: Arc<ManualClock>,
    producer: ThreadedProducer<DefaultProducerContext>,
}

/// A read-back record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Harness {
    pub fn new(group: &str) -> Self {
        Self::with_brokers(group, 1)
    }

    /// A cluster of `brokers` brokers; the input topic's partitions are led by broker 1.
    pub fn with_brokers(group: &str, brokers: i32) -> Self {
        // TEST_LOG=info shows the pipeline's logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
            .with_test_writer()
            .try_init();
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .create()
            .expect("the mock cluster's owner");
        let cluster = owner.client().mock_cluster().expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic(INPUT, PARTITIONS, 1).expect("input topic");
        // The mock cluster does not serve CreateTopics: the SLO topics are made here.
        cluster.create_topic("tracewarden_aggregates", PARTITIONS, 1).expect("aggregates topic");
        cluster.create_topic("tracewarden_slo_state", 1, 1).expect("state topic");
        // The group view's topics (few partitions: the mock broker is slow with many).
        cluster.create_topic("tracewarden_points", 8, 1).expect("points topic");
        cluster.create_topic("tracewarden_timeline", 8, 1).expect("timeline topic");
        cluster.create_topic("tracewarden_rollups", 1, 1).expect("rollups topic");
        for p in 0..PARTITIONS {
            cluster.partition_leader(INPUT, p, Some(1)).expect("input leader");
        }
        let mut config = Config::default();
        config.kafka.brokers = brokers.clone();
        config.kafka.group_id = group.into();
        config.kafka.commit_interval = HumanDuration(Duration::from_millis(50));
        config.kafka.points_partitions = 8;
        // Two workers per process, whatever the machine: every guarantee holds per worker.
        config.workers = tracewarden::config::Workers(2);
        config.window.decision_wait = HumanDuration(Duration::from_secs(5));
        config.window.max_trace_age = HumanDuration(Duration::from_secs(30));
        // Fast failover, as a test of restarts needs (librdkafka's default is 45 s).
        config.kafka.client.insert("session.timeout.ms".into(), "6000".into());
        config.kafka.client.insert("heartbeat.interval.ms".into(), "500".into());
        drop(cluster);
        let producer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
        let clock = Arc::new(ManualClock::new(T0));
        Self { owner, brokers, security: Vec::new(), listeners: Vec::new(), config, clock, producer }
    }

    /// The mock cluster.
    pub fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.owner.client().mock_cluster().expect("mock cluster")
    }

    /// [`Harness::with_brokers`] with every client — the pipeline's and the test's — reaching the
    /// brokers only through a real TLS listener (stunnel4) with certificates made in `dir`: each
    /// mock broker is advertised at `localhost:{its listener's port}`.
    pub fn over_tls(group: &str, brokers: i32, dir: &std::path::Path) -> Self {
        let mut harness = Self::with_brokers(group, brokers);
        let pki = tls::certificates(&dir.join("pki"));
        let cluster_ptr =
            unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(harness.owner.client().native_ptr()) };
        let mut advertised = Vec::new();
        for (index, plain) in harness.brokers.split(',').enumerate() {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let accept = format!("127.0.0.1:{port}");
            let listener = TlsListener::start(&dir.join(format!("broker-{index}")), &accept, plain, &pki.server, None);
            harness.listeners.push(listener);
            let host = std::ffi::CString::new("localhost").unwrap();
            // SAFETY: the cluster lives as long as its owner, which the harness holds; librdkafka
            // copies the host name. Broker ids are 1..=n in the bootstrap list's order.
            unsafe {
                rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                    cluster_ptr,
                    index as i32 + 1,
                    host.as_ptr(),
                    port as i32,
                )
            };
            advertised.push(format!("localhost:{port}"));
        }
        harness.brokers = advertised.join(",");
        harness.security = vec![
            ("security.protocol".into(), "SSL".into()),
            ("ssl.ca.location".into(), pki.ca.display().to_string()),
            // `localhost` may resolve to ::1 first, where nothing listens.
            ("broker.address.family".into(), "v4".into()),
        ];
        harness.config.kafka.brokers = harness.brokers.clone();
        for (key, value) in &harness.security {
            harness.config.kafka.client.insert(key.clone(), value.clone());
        }
        harness.producer = harness.client().create().expect("producer over TLS");
        harness
    }

    /// The TLS connections the brokers' listeners accepted (over TLS), else `None`.
    pub fn tls_connections(&self) -> Option<usize> {
        (!self.listeners.is_empty()).then(|| self.listeners.iter().map(TlsListener::accepted).sum())
    }

    /// A client configuration reaching the brokers as every client of the test does.
    pub fn client(&self) -> ClientConfig {
        tls::client_config(&self.brokers, &self.security)
    }

    pub fn start(&self) -> Pipeline {
        let pipeline = tracewarden::pipeline::start(&self.config, self.clock.clone()).expect("pipeline starts");
        wait_for("the pipeline to join the group", WAIT, || pipeline.handles.ready.is_ready());
        pipeline
    }

    /// Produces one message to the input topic (key = 32-hex trace id) and waits for the ack.
    pub fn produce(&self, key: &str, payload: &[u8]) {
        self.produce_topic(INPUT, key, payload);
    }

    /// Produces one message to `topic` and waits for the ack.
    pub fn produce_topic(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer.send(BaseRecord::to(topic).key(key).payload(payload)).expect("queued");
        self.producer.flush(Duration::from_secs(10)).expect("acknowledged");
    }

    /// Produces one message to the given input partition and waits for the ack.
    pub fn produce_to(&self, partition: i32, key: &str, payload: &[u8]) {
        self.producer.send(BaseRecord::to(INPUT).partition(partition).key(key).payload(payload)).expect("queued");
        self.producer.flush(Duration::from_secs(10)).expect("acknowledged");
    }

    /// Produces one message to `partition` of `topic` and waits for the ack.
    pub fn produce_topic_to(&self, topic: &str, partition: i32, key: &str, payload: &[u8]) {
        self.producer.send(BaseRecord::to(topic).partition(partition).key(key).payload(payload)).expect("queued");
        self.producer.flush(Duration::from_secs(10)).expect("acknowledged");
    }

    /// The group's committed offsets on `partitions` partitions of `topic` (-1001 = none).
    pub fn committed_on(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer =
            self.client().set("group.id", &self.config.kafka.group_id).create().expect("offset reader");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(5)).expect("committed offsets");
        (0..partitions)
            .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1001,
            })
            .collect()
    }

    /// Produces many messages, waiting once for all acknowledgements.
    pub fn produce_all(&self, messages: &[(String, Bytes)]) {
        for (key, payload) in messages {
            self.producer.send(BaseRecord::to(INPUT).key(key).payload(&payload[..])).expect("queued");
        }
        self.producer.flush(Duration::from_secs(30)).expect("acknowledged");
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Every record of `topic` (waits until at least `expected` are there).
    pub fn read_all(&self, topic: &str, expected: usize) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("reader-{}", rand_suffix()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let partitions = || {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
            metadata.topics().first().map_or(0, |t| t.partitions().len() as i32)
        };
        // A topic nothing was written to yet may not exist: nothing to read when none is expected.
        let partitions = match partitions() {
            0 if expected == 0 => return Vec::new(),
            0 => wait_until(format!("{topic} to exist"), Duration::from_secs(20), || {
                let n = partitions();
                (n > 0).then_some(n)
            }),
            n => n,
        };
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&list).unwrap();
        // Read until `expected` records are there, and at least 700 ms (more may follow them).
        let deadline = Instant::now() + Duration::from_secs(20);
        let quiet_until = Instant::now() + Duration::from_millis(700);
        let mut records = Vec::new();
        while (Instant::now() < quiet_until || records.len() < expected) && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        records
    }

    /// The group's committed offsets on the input topic, per partition (-1001 = none).
    pub fn committed(&self) -> Vec<i64> {
        self.committed_on(INPUT, PARTITIONS)
    }

    /// Whether the group's committed offsets reached the end of every partition that has
    /// messages (an empty partition has nothing to commit).
    pub fn committed_to_end(&self) -> bool {
        let committed = self.committed();
        self.end_offsets().iter().enumerate().all(|(p, &end)| committed[p] == if end == 0 { -1001 } else { end })
    }

    /// The input partitions that hold messages.
    pub fn partitions_with_messages(&self) -> Vec<i32> {
        (0..PARTITIONS).filter(|&p| self.end_offsets()[p as usize] > 0).collect()
    }

    /// The end offset (high watermark) of each input partition.
    pub fn end_offsets(&self) -> Vec<i64> {
        let consumer: BaseConsumer = self.client().create().expect("watermark reader");
        (0..PARTITIONS)
            .map(|p| consumer.fetch_watermarks(INPUT, p, Duration::from_secs(5)).expect("watermarks").1)
            .collect()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// `GET path` on a local HTTP server: status and body; `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http::get(addr, path)
}

/// How long a test waits for what the pipeline reports before failing: far more than anything
/// takes on a loaded machine, so that only a hang fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A counter or gauge value from the pipeline's registry, by name and label values.
pub fn metric(pipeline: &Pipeline, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = pipeline.handles.telemetry.registry.gather();
    let family = families.iter().find(|f| f.name() == name)?;
    family
        .get_metric()
        .iter()
        .find(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map(|m| {
            if m.get_counter().get_value() != 0.0 || family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        })
}

/// Waits until the consumers holding `partitions` of `topic` have each been polled twice since
/// the call. Each poll serves librdkafka's statistics report (every second), which sets
/// `tracewarden_consumer_lag` of every partition the consumer holds: the gauge is set to a value
/// no report gives, then awaited back, twice — the second report proves that a whole turn of the
/// worker's loop (poll, then the worker's own tick) came after the call. A partition is reported
/// once its group has committed an offset on it.
pub fn wait_for_polls(pipeline: &Pipeline, topic: &str, partitions: impl IntoIterator<Item = i32> + Clone) {
    const UNREPORTED: i64 = i64::MIN;
    let lag = &pipeline.handles.telemetry.consumer_lag;
    for round in ["a", "another"] {
        for p in partitions.clone() {
            lag.with_label_values(&[topic, &p.to_string()]).set(UNREPORTED);
        }
        for p in partitions.clone() {
            wait_for(format!("{round} statistics report on {topic}/{p} (its consumer polled)"), WAIT, || {
                lag.with_label_values(&[topic, &p.to_string()]).get() != UNREPORTED
            });
        }
    }
}

pub fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// A self-signed certificate for 127.0.0.1 and its key (PEM files in `dir`), made by the
/// `openssl` command as an operator would.
pub fn self_signed_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=tracewarden-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian: apt-get install openssl)");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}
