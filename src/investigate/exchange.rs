//! The snapshot exchange: how every instance of a group answers for the whole group
//! (investigation.md "One view per consumer group").
//!
//! One thread per instance. Every [`PUBLISH_EVERY`] it refreshes the timeline (flushing the
//! signal store's open points), and publishes to `kafka.snapshots_topic` what was measured here
//! since the last time: the points and the summaries of the traces decided here. It reads every
//! partition of the topic from `investigation.history` ago, and merges the other instances'
//! messages into the timeline and the trace index. Its own messages are recognised by the
//! instance id (new at every start: a restarted instance's earlier messages are merged like any
//! other instance's).
//!
//! Invariants:
//! - a point is merged into this instance's timeline once: its own points when flushed, the
//!   others' when read (merging is additive, so arrival order does not matter);
//! - the exchange is best effort: the figures it carries are views, not the at-least-once data
//!   path, so a message that cannot be sent or read is logged (once a minute) and skipped, never
//!   retried in a loop or allowed to hold up the span path;
//! - a message is published even when nothing was measured: it tells the others this instance
//!   (and the spans it holds) is alive ([`Peers::is_alive`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::clock::{Nanos, SharedClock};
use crate::signals::SignalStore;
use crate::slo::budget::Seconds;
use crate::slo::engine::SloEngine;
use crate::telemetry::RateLimitedWarning;

use super::snapshot::{
    point_of, point_wire, summary_of, summary_wire, SloWire, SnapshotMessage, MAX_MESSAGE_BYTES, POINTS_PER_MESSAGE,
    SUMMARIES_PER_MESSAGE, VERSION,
};
use super::{GroupTimeline, TraceStore};

/// How often an instance publishes (wall time: a transport matter).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// An instance not heard of for this long is gone: its traces' spans cannot be read from it.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the topic's messages are kept beyond the history (set when this instance creates it).
const RETENTION_BEYOND_HISTORY: Duration = Duration::from_secs(3600);
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot create the snapshot {client}: {source}")]
    Client {
        client: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot start the snapshot exchange thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// This instance and the others the exchange has heard of.
pub struct Peers {
    /// This process's id (random, new at every start).
    pub instance: String,
    /// This instance's `http.advertised_url`, once known.
    url: RwLock<Option<Arc<str>>>,
    /// When each other instance (by URL) was last heard of.
    last_heard: Mutex<HashMap<Arc<str>, Nanos>>,
}

impl Peers {
    pub fn new() -> Self {
        Self {
            instance: format!("{:032x}", rand::random::<u128>()),
            url: RwLock::new(None),
            last_heard: Mutex::default(),
        }
    }

    /// Where this instance's API is reached (`http.advertised_url`, else the bound address).
    pub fn set_url(&self, url: &str) {
        *self.url.write().expect("url lock") = Some(Arc::from(url.trim_end_matches('/')));
    }

    pub fn url(&self) -> Option<Arc<str>> {
        self.url.read().expect("url lock").clone()
    }

    fn heard(&self, url: &Arc<str>, now: Nanos) {
        self.last_heard.lock().expect("peers lock").insert(url.clone(), now);
    }

    /// Whether the instance at `url` published within [`PEER_TIMEOUT`] of `now`.
    pub fn is_alive(&self, url: &str, now: Nanos) -> bool {
        self.last_heard.lock().expect("peers lock").get(url).is_some_and(|&heard| now.since(heard) < PEER_TIMEOUT)
    }
}

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

/// What the exchange works with.
pub struct Exchange {
    pub topic: String,
    /// Client settings of its producer (brokers and the producer's `[kafka.client]` properties).
    pub producer_client: ClientConfig,
    /// Client settings of its consumer (brokers and the consumer's `[kafka.client]` properties).
    pub consumer_client: ClientConfig,
    /// Admin client settings, to create the topic when missing.
    pub admin: ClientConfig,
    pub history: Duration,
    pub signals: Arc<Mutex<SignalStore>>,
    pub timeline: Arc<GroupTimeline>,
    pub traces: Arc<Mutex<TraceStore>>,
    /// Reports and history of the SLOs owned here go out; the owners' of the others come in.
    pub slos: Arc<Mutex<SloEngine>>,
    pub peers: Arc<Peers>,
    pub clock: SharedClock,
}

impl Exchange {
    /// Starts the exchange thread; it ends once `shutdown` is set, after a last publication.
    pub fn start(self, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, ExchangeError> {
        let producer: BaseProducer =
            self.producer_client.clone().set("compression.type", "lz4").set("linger.ms", "20").create().map_err(
                |source| ExchangeError::Client { client: "producer", source: crate::kafka_client::redact(source) },
            )?;
        let consumer: BaseConsumer = self
            .consumer_client
            .clone()
            .set("group.id", format!("tracewarden-snapshots-{}", self.peers.instance))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|source| ExchangeError::Client {
                client: "consumer",
                source: crate::kafka_client::redact(source),
            })?;
        self.timeline.start_publishing();
        self.traces.lock().expect("trace store lock").start_publishing();
        let thread = std::thread::Builder::new()
            .name("tracewarden-snapshots".into())
            .spawn(move || self.run(producer, consumer, shutdown))?;
        Ok(thread)
    }

    fn run(self, producer: BaseProducer, consumer: BaseConsumer, shutdown: Arc<AtomicBool>) {
        let mut warning = RateLimitedWarning::new(LOG_EVERY);
        let mut assigned = false;
        let mut last_publish = Instant::now();
        // Per SLO owned here: the time of the last evaluation published.
        let mut published_evaluations: HashMap<String, Seconds> = HashMap::new();
        while !shutdown.load(Ordering::Relaxed) {
            if !assigned {
                match self.assign(&consumer) {
                    Ok(()) => assigned = true,
                    Err(reason) => {
                        if let Some(suppressed) = warning.admit(self.clock.now()) {
                            tracing::warn!(topic = %self.topic, %reason, suppressed, "snapshot topic not readable yet; the views answer for this instance alone");
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            if assigned {
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    match message {
                        Ok(message) => self.merge(message.payload().unwrap_or_default(), &mut warning),
                        Err(error) => {
                            if let Some(suppressed) = warning.admit(self.clock.now()) {
                                tracing::warn!(topic = %self.topic, %error, suppressed, "cannot read snapshots");
                            }
                        }
                    }
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                last_publish = Instant::now();
                self.publish(&producer, &mut published_evaluations, &mut warning);
            }
            producer.poll(Duration::ZERO);
        }
        self.publish(&producer, &mut published_evaluations, &mut warning);
        let _ = producer.flush(Duration::from_secs(2));
    }

    /// Assigns every partition of the topic from `history` ago, creating the topic if missing.
    fn assign(&self, consumer: &BaseConsumer) -> Result<(), String> {
        let metadata = consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        if partitions == 0 {
            let retention = (self.history + RETENTION_BEYOND_HISTORY).as_millis().to_string();
            crate::delivery::topics::create_topics_with(
                &self.admin,
                &[&self.topic],
                1,
                &[("retention.ms", &retention)],
            )?;
            return Err("created; reading it from the next attempt".into());
        }
        let since = self.clock.now().saturating_sub(self.history).0 / 1_000_000;
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            wanted
                .add_partition_offset(&self.topic, partition, Offset::Offset(since as i64))
                .map_err(|e| e.to_string())?;
        }
        // From the first message of the history on; where the broker cannot look up times,
        // from the beginning (the timeline ignores what is older than its history anyway).
        let start = consumer.offsets_for_times(wanted, Duration::from_secs(5)).unwrap_or_else(|_| {
            let mut all = TopicPartitionList::new();
            for partition in 0..partitions as i32 {
                let _ = all.add_partition_offset(&self.topic, partition, Offset::Beginning);
            }
            all
        });
        consumer.assign(&start).map_err(|e| e.to_string())
    }

    /// Merges another instance's message.
    fn merge(&self, payload: &[u8], warning: &mut RateLimitedWarning) {
        let now = self.clock.now();
        let message: SnapshotMessage = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(error) => {
                if let Some(suppressed) = warning.admit(now) {
                    tracing::warn!(topic = %self.topic, %error, suppressed, "skipping a snapshot that cannot be read");
                }
                return;
            }
        };
        if message.version != VERSION || message.instance == self.peers.instance {
            return;
        }
        let url: Option<Arc<str>> = message.url.as_deref().map(Arc::from);
        if let Some(url) = &url {
            self.peers.heard(url, now);
        }
        let dimensions = &self.timeline.dimensions;
        let points: Vec<_> = message.points.into_iter().map(|p| point_of(p, &message.dimensions, dimensions)).collect();
        self.timeline.merge_remote(&points, now);
        if !message.slos.is_empty() {
            let mut engine = self.slos.lock().expect("slo engine lock");
            for slo in message.slos {
                engine.merge_remote_history(&slo.report.name, slo.history);
                engine.set_remote_report(slo.report);
            }
        }
        if !message.traces.is_empty() {
            let mut traces = self.traces.lock().expect("trace store lock");
            for summary in message.traces.into_iter().filter_map(|s| summary_of(s, url.clone())) {
                traces.index.insert(summary);
            }
        }
    }

    /// The SLOs owned here: their reports now, and their evaluations since the last publication.
    fn owned_slos(&self, now: Nanos, published: &mut HashMap<String, Seconds>) -> Vec<SloWire> {
        let engine = self.slos.lock().expect("slo engine lock");
        let owned = engine.owned_names();
        published.retain(|name, _| owned.contains(name));
        let reports = engine.reports(now.unix_seconds());
        reports
            .into_iter()
            .map(|report| {
                let after = published.get(&report.name).copied().unwrap_or(Seconds::MIN);
                let history = engine.history_since(&report.name, after);
                if let Some(last) = history.last() {
                    published.insert(report.name.clone(), last.at);
                }
                SloWire { report, history }
            })
            .collect()
    }

    /// Publishes what was measured here since the last publication.
    fn publish(
        &self,
        producer: &BaseProducer,
        published_evaluations: &mut HashMap<String, Seconds>,
        warning: &mut RateLimitedWarning,
    ) {
        let now = self.clock.now();
        let mut slos = self.owned_slos(now, published_evaluations);
        drop(self.timeline.refresh(&self.signals, now));
        let points = self.timeline.take_unpublished();
        let summaries = self.traces.lock().expect("trace store lock").take_unpublished();
        let url = self.peers.url().map(|u| u.to_string());
        let dimensions: Vec<String> = self.timeline.dimensions.iter().map(|d| d.to_string()).collect();
        let (mut points, mut summaries) = (points.chunks(POINTS_PER_MESSAGE), summaries.chunks(SUMMARIES_PER_MESSAGE));
        let mut first = true;
        loop {
            let (point_chunk, summary_chunk) = (points.next(), summaries.next());
            if point_chunk.is_none() && summary_chunk.is_none() && !first {
                break;
            }
            first = false;
            let message = SnapshotMessage {
                version: VERSION,
                instance: self.peers.instance.clone(),
                url: url.clone(),
                dimensions: dimensions.clone(),
                points: point_chunk.unwrap_or_default().iter().map(point_wire).collect(),
                traces: summary_chunk.unwrap_or_default().iter().map(summary_wire).collect(),
                slos: std::mem::take(&mut slos),
            };
            for payload in message.encode_within(MAX_MESSAGE_BYTES) {
                let record = BaseRecord::to(&self.topic).key(&self.peers.instance).payload(&payload);
                if let Err((error, _)) = producer.send(record) {
                    if let Some(suppressed) = warning.admit(now) {
                        tracing::warn!(topic = %self.topic, %error, suppressed, "cannot publish a snapshot; the others miss this instance's figures until it can");
                    }
                }
            }
        }
    }
}
