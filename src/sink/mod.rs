//! Sink: everything tracewarden writes to Kafka on the span path — kept traces to
//! `kafka.output_topic` and undecodable messages to `kafka.dead_letter_topic`.
//!
//! [`Forwarder`] wraps one producer. Each record carries a [`Delivery`] naming the source messages
//! it settles; the broker's acknowledgement comes back as a [`Completion`] from [`Forwarder::poll`],
//! and only then may the caller release those sources' offsets (kafka.md "Delivery").
//! Invariants: a full producer queue blocks the caller (back-pressure, nothing dropped); a
//! retriable failure is sent again; a permanent one is reported, never ignored.

pub mod encode;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::assemble::SourceRef;

/// Which topic a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Output,
    DeadLetter,
    /// The repartition topic (input not keyed by trace id).
    Repartition,
    /// SLO alert messages.
    Alerts,
    /// Partial SLO counts for the owner of each SLO (explicit partition).
    Aggregates,
    /// SLO state checkpoints (compacted, keyed by SLO name).
    SloState,
}

impl Destination {
    /// The name used in logs and in `tracewarden_forward_failures_total{destination}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Output => "output",
            Destination::DeadLetter => "dead_letter",
            Destination::Repartition => "repartition",
            Destination::Alerts => "alerts",
            Destination::Aggregates => "aggregates",
            Destination::SloState => "slo_state",
        }
    }
}

/// The topics a [`Forwarder`] writes to.
#[derive(Clone, Debug)]
pub struct SinkTopics {
    pub output: String,
    pub dead_letter: String,
    pub repartition: String,
    pub alerts: String,
    pub aggregates: String,
    pub slo_state: String,
}

/// One record to write, and the sources it settles.
#[derive(Debug)]
pub struct Delivery {
    pub destination: Destination,
    /// The partition to write to; `None` lets the partitioner pick by key.
    pub partition: Option<i32>,
    pub key: Bytes,
    pub payload: Bytes,
    /// `(tracewarden.error, tracewarden.source)` for dead letters.
    pub dead_letter: Option<(String, String)>,
    pub sources: Vec<SourceRef>,
    /// Spans in the record (for `tracewarden_spans_forwarded_total`).
    pub spans: usize,
    pub attempts: u32,
}

/// The broker's answer for one [`Delivery`].
pub enum Completion {
    Delivered(Box<Delivery>),
    Failed(Box<Delivery>, KafkaError),
}

/// How a Kafka error should be handled: the one place Kafka errors are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: try again (timeouts, leadership changes, full queues, broker down).
    Retriable,
    /// Will not succeed by retrying (too large, unauthorized, invalid).
    Permanent,
}

pub fn classify(error: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::InvalidRecord
            | C::InvalidRequiredAcks
            | C::UnsupportedVersion
            | C::InvalidTopic
            | C::Fatal
            | C::InvalidArgument
            | C::Authentication
            | C::SaslAuthenticationFailed,
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Retriable,
    }
}

/// Creates missing topics tracewarden writes to (kafka.md "Topics"), with the partition count of
/// the input and the broker's default replication, on a background thread: consumption never waits
/// for it. A topic that cannot be created is reported, not fatal: the broker may still create it on
/// first write.
pub fn create_missing_topics(client: rdkafka::ClientConfig, topics: Vec<String>, partitions: i32) {
    if topics.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("tracewarden-topics".into()).spawn(move || {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(reason) = create_topics(&client, &names, partitions) {
            tracing::warn!(topics = ?names, %reason, "cannot create topics; create them, or let the broker auto-create them");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the topic creation thread");
    }
}

/// Creates topics (the existing ones are left alone); `Err` names what failed.
pub fn create_topics(client: &rdkafka::ClientConfig, topics: &[&str], partitions: i32) -> Result<(), String> {
    create_topics_with(client, topics, partitions, &[])
}

/// Creates missing topics with topic-level settings (`cleanup.policy = compact` for the SLO state).
pub fn create_topics_with(
    client: &rdkafka::ClientConfig,
    topics: &[&str],
    partitions: i32,
    settings: &[(&str, &str)],
) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| format!("admin client: {e}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            settings
                .iter()
                .fold(NewTopic::new(t, partitions.max(1), TopicReplication::Fixed(-1)), |topic, (key, value)| {
                    topic.set(key, value)
                })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = runtime.block_on(admin.create_topics(&new_topics, &options)).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => failed.push(format!("{topic}: {code}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Routes delivery reports to the forwarder's completion queue.
pub struct DeliveryContext {
    completions: Mutex<Sender<Completion>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let completion = match result {
            Ok(_) => Completion::Delivered(delivery),
            Err((error, _)) => Completion::Failed(delivery, error.clone()),
        };
        // The receiver lives as long as the forwarder that owns this producer.
        let _ = self.completions.lock().expect("completion sender").send(completion);
    }
}

/// Writes kept traces and dead letters.
pub struct Forwarder {
    producer: BaseProducer<DeliveryContext>,
    completions: Receiver<Completion>,
    topics: SinkTopics,
    in_flight: usize,
    in_flight_bytes: usize,
    /// Back-pressure thresholds: 80% of the producer queue's message and byte limits.
    high_records: usize,
    high_bytes: usize,
}

/// librdkafka producer queue limits tracewarden sets unless `[kafka.client]` does: the message
/// count is librdkafka's default; the bytes are 64 MiB instead of 1 GiB, to bound memory.
pub const QUEUE_MAX_MESSAGES: usize = 100_000;
pub const QUEUE_MAX_KBYTES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
}

impl Forwarder {
    pub fn new(client: &rdkafka::ClientConfig, topics: SinkTopics) -> Result<Self, SinkError> {
        let limit = |key: &str, default: usize| client.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
        let high_records = limit("queue.buffering.max.messages", QUEUE_MAX_MESSAGES) * 4 / 5;
        let high_bytes = limit("queue.buffering.max.kbytes", QUEUE_MAX_KBYTES) * 1024 * 4 / 5;
        let (sender, completions) = channel();
        let producer = client
            .create_with_context(DeliveryContext { completions: Mutex::new(sender) })
            .map_err(SinkError::Create)?;
        Ok(Self {
            producer,
            completions,
            topics,
            in_flight: 0,
            in_flight_bytes: 0,
            high_records: high_records.max(1),
            high_bytes: high_bytes.max(1),
        })
    }

    /// Records sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the producer is not keeping up: the caller should stop consuming.
    pub fn saturated(&self) -> bool {
        self.in_flight >= self.high_records || self.in_flight_bytes >= self.high_bytes
    }

    /// Whether a saturated producer has caught up enough to consume again (hysteresis: half).
    pub fn relieved(&self) -> bool {
        self.in_flight < self.high_records / 2 && self.in_flight_bytes < self.high_bytes / 2
    }

    /// Queues one record. When the producer's queue is full, serves delivery reports into
    /// `completions` until there is room: the caller stalls rather than drop anything.
    pub fn send(&mut self, delivery: Box<Delivery>, completions: &mut Vec<Completion>) {
        let topics = &self.topics;
        let topic = match delivery.destination {
            Destination::Output => topics.output.clone(),
            Destination::DeadLetter => topics.dead_letter.clone(),
            Destination::Repartition => topics.repartition.clone(),
            Destination::Alerts => topics.alerts.clone(),
            Destination::Aggregates => topics.aggregates.clone(),
            Destination::SloState => topics.slo_state.clone(),
        };
        let partition = delivery.partition;
        let key = delivery.key.clone();
        let payload = delivery.payload.clone();
        let headers = delivery.dead_letter.as_ref().map(|(error, source)| {
            OwnedHeaders::new()
                .insert(Header { key: "tracewarden.error", value: Some(error.as_bytes()) })
                .insert(Header { key: "tracewarden.source", value: Some(source.as_bytes()) })
        });
        let mut record = BaseRecord::with_opaque_to(&topic, delivery).key(&key[..]).payload(&payload[..]);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.in_flight += 1;
                    self.in_flight_bytes += payload.len();
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    self.poll(Duration::from_millis(50), completions);
                }
                Err((error, returned)) => {
                    // Rejected before queueing (for example larger than message.max.bytes).
                    completions.push(Completion::Failed(returned.delivery_opaque, error));
                    return;
                }
            }
        }
    }

    /// Serves delivery reports, waiting up to `timeout` for the first.
    pub fn poll(&mut self, timeout: Duration, completions: &mut Vec<Completion>) {
        self.producer.poll(timeout);
        self.collect(completions);
    }

    fn collect(&mut self, completions: &mut Vec<Completion>) {
        while let Ok(completion) = self.completions.try_recv() {
            let delivery = match &completion {
                Completion::Delivered(d) | Completion::Failed(d, _) => d,
            };
            self.in_flight = self.in_flight.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(delivery.payload.len());
            completions.push(completion);
        }
    }

    /// Waits (up to `timeout`) until every queued record is acknowledged or failed.
    pub fn flush(&mut self, timeout: Duration, completions: &mut Vec<Completion>) {
        let _ = self.producer.flush(timeout);
        self.collect(completions);
    }
}
