//! Source: the Kafka consumer-group member that feeds the pipeline.
//!
//! [`run`] subscribes to `kafka.input_topics`, hands every message to a [`MessageHandler`] and
//! commits the offsets the handler says are done. With SLOs, a second member of the group
//! `{group_id}-owners`, polled by the same thread, consumes the aggregates topic: Kafka balances
//! SLO ownership among the instances on its own, never at the expense of the input partitions
//! (one sticky assignment over both would happily give one instance every input partition).
//! Invariants (kafka.md "Delivery"):
//! - auto-commit is off: the only offsets committed are the handler's committable ones, every
//!   `kafka.commit_interval`, on revocation (synchronously, inside the rebalance callback, after the
//!   handler has decided and flushed the revoked partitions' traces) and on shutdown;
//! - the consumers are polled from one thread; rebalance callbacks run inside those polls, so
//!   the handler is never entered twice at once; each position is committed by the member that
//!   consumes its topic;
//! - while the brokers cannot be reached the metadata check retries (readiness stays 503), and
//!   librdkafka's connection errors become one line every few seconds ([`ClientLog`]); only what
//!   retrying cannot fix (a missing input topic, failed authentication) is returned as an error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext, Message};

use crate::clock::SharedClock;
use crate::delivery::{classify, ErrorClass};
use crate::kafka_client::ClientLog;
use crate::telemetry::events::PipelineEvent;
use crate::telemetry::PipelineMetrics;

/// Whether this instance is a consuming member of its group, and what it holds (`/readyz`).
#[derive(Default)]
pub struct Readiness {
    joined: AtomicBool,
    assignment: Mutex<std::collections::BTreeSet<(String, i32)>>,
}

impl Readiness {
    /// Ready once the consumer has joined its group (an assignment arrived, even an empty one),
    /// until shutdown starts.
    pub fn is_ready(&self) -> bool {
        self.joined.load(Ordering::SeqCst)
    }

    /// The partitions this instance holds now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment.lock().expect("assignment lock").iter().cloned().collect()
    }

    fn assign(&self, partitions: &[(String, i32)]) {
        self.assignment.lock().expect("assignment lock").extend(partitions.iter().cloned());
        self.joined.store(true, Ordering::SeqCst);
    }

    fn revoke(&self, partitions: &[(String, i32)]) {
        let mut assignment = self.assignment.lock().expect("assignment lock");
        for p in partitions {
            assignment.remove(p);
        }
    }

    fn leave(&self) {
        self.joined.store(false, Ordering::SeqCst);
        self.assignment.lock().expect("assignment lock").clear();
    }
}

pub use crate::position::Commit;

/// What the consumer loop drives.
pub trait MessageHandler: Send + 'static {
    /// One consumed message (`payload` empty for a tombstone).
    fn message(&mut self, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]);
    /// Periodic work: decisions whose time came, delivery reports, gauges.
    fn tick(&mut self);
    /// Positions that moved since the last call.
    fn commits(&mut self) -> Vec<Commit>;
    /// Partitions were assigned (before any of their messages is delivered).
    fn assign(&mut self, partitions: &[(String, i32)]);
    /// Whether downstream is not keeping up: consumption pauses (back-pressure).
    fn saturated(&self) -> bool;
    /// Whether a saturated downstream has caught up: consumption resumes.
    fn relieved(&self) -> bool;
    /// Partitions to pause until their pending writes are retried (others go on).
    fn waiting_partitions(&self) -> BTreeSet<(String, i32)>;
    /// The partitions are being revoked (`leaving`: because this instance leaves the group):
    /// settle their traces and forwards; return their positions.
    fn revoke(&mut self, partitions: &[(String, i32)], leaving: bool) -> Vec<Commit>;
    /// The process is stopping, its partitions already revoked: decide and flush what is left;
    /// return every position.
    fn shutdown(&mut self) -> Vec<Commit>;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot read metadata of the input topics from {brokers}: {source}")]
    Metadata {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("input topic(s) {0} do not exist: create them, or fix kafka.input_topics")]
    MissingTopics(String),
    #[error("cannot create {topics} ({reason}): create it with as many partitions as the input")]
    CreateTopics { topics: String, reason: String },
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe {
        topics: String,
        #[source]
        source: KafkaError,
    },
}

/// Settings of the consumer loop.
pub struct SourceSettings {
    pub client: ClientConfig,
    pub brokers: String,
    pub topics: Vec<String>,
    /// The second member's client (group `{group_id}-owners`), when it has topics.
    pub owners_client: ClientConfig,
    /// Topics consumed by a second member, in group `{group_id}-owners` (the SLO aggregates):
    /// Kafka balances them among the instances on their own, not against the input partitions.
    pub owner_topics: Vec<String>,
    pub commit_interval: Duration,
    /// Topics consumed besides the inputs, created before subscribing when missing (the
    /// repartition topic).
    pub required_topics: Vec<String>,
    /// Client settings for creating `output_topics` when missing.
    pub admin: ClientConfig,
    /// Topics this instance writes to, created at start when missing.
    pub output_topics: Vec<String>,
    /// Compacted topics this instance writes and reads back (SLO state), created before
    /// subscribing when missing.
    pub compacted_topics: Vec<String>,
    /// Where librdkafka's logs go (an unreachable cluster is told once every few seconds).
    pub client_log: Arc<ClientLog>,
    /// The injected clock (events are stamped with it).
    pub clock: SharedClock,
}

struct SourceContext<H: MessageHandler> {
    handler: Arc<Mutex<H>>,
    ready: Arc<Readiness>,
    telemetry: Arc<PipelineMetrics>,
    leaving: AtomicBool,
    log: Arc<ClientLog>,
}

fn partitions_of(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

fn commit_list(commits: &[Commit]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in commits {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    list
}

impl<H: MessageHandler> ClientContext for SourceContext<H> {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.telemetry.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(p.consumer_lag);
                }
            }
        }
    }
}

impl<H: MessageHandler> ConsumerContext for SourceContext<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = partitions_of(list);
            tracing::info!(partitions = ?partitions, "partitions revoked: deciding their traces");
            let leaving = self.leaving.load(Ordering::SeqCst);
            let commits = self.handler.lock().expect("handler lock").revoke(&partitions, leaving);
            if !commits.is_empty() {
                if let Err(e) = consumer.commit(&commit_list(&commits), CommitMode::Sync) {
                    tracing::warn!(error = %e, "commit on revocation failed");
                }
            }
            for (topic, partition) in &partitions {
                let _ = self.telemetry.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
            }
            self.ready.revoke(&partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                tracing::info!(partitions = ?partitions, "partitions assigned");
                self.handler.lock().expect("handler lock").assign(&partitions);
                self.ready.assign(&partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Consumes until `shutdown` is set, then shuts the handler down and commits.
pub fn run<H: MessageHandler>(
    settings: SourceSettings,
    handler: Arc<Mutex<H>>,
    telemetry: Arc<PipelineMetrics>,
    ready: Arc<Readiness>,
    shutdown: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let context = || SourceContext {
        handler: handler.clone(),
        ready: ready.clone(),
        telemetry: telemetry.clone(),
        leaving: AtomicBool::new(false),
        log: settings.client_log.clone(),
    };
    let consumer: BaseConsumer<SourceContext<H>> =
        settings.client.create_with_context(context()).map_err(SourceError::Create)?;
    let Some(check) = wait_for_brokers(&consumer, &settings, &shutdown)? else {
        return Ok(());
    };
    if !check.missing_required.is_empty() {
        let names: Vec<&str> = check.missing_required.iter().map(String::as_str).collect();
        crate::delivery::topics::create_topics(&settings.admin, &names, check.partitions)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_required.join(", "), reason })?;
    }
    if !check.missing_compacted.is_empty() {
        let names: Vec<&str> = check.missing_compacted.iter().map(String::as_str).collect();
        let compacted = [("cleanup.policy", "compact"), ("segment.ms", "3600000")];
        crate::delivery::topics::create_topics_with(&settings.admin, &names, 1, &compacted)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_compacted.join(", "), reason })?;
    }
    crate::delivery::topics::create_missing_topics(settings.admin.clone(), check.missing_outputs, check.partitions);
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| SourceError::Subscribe { topics: settings.topics.join(","), source })?;
    let owners: Option<BaseConsumer<SourceContext<H>>> = if settings.owner_topics.is_empty() {
        None
    } else {
        let owners: BaseConsumer<SourceContext<H>> =
            settings.owners_client.create_with_context(context()).map_err(SourceError::Create)?;
        let topics: Vec<&str> = settings.owner_topics.iter().map(String::as_str).collect();
        owners
            .subscribe(&topics)
            .map_err(|source| SourceError::Subscribe { topics: settings.owner_topics.join(","), source })?;
        Some(owners)
    };
    let consumers: Vec<&BaseConsumer<SourceContext<H>>> = std::iter::once(&consumer).chain(owners.as_ref()).collect();

    let mut last_commit = Instant::now();
    let mut last_error: Option<Instant> = None;
    // While paused the consumer is still polled (group membership, rebalances); partitions
    // assigned meanwhile are paused on the next pass.
    let mut paused_at: Option<Instant> = None;
    // Partitions paused while a record holding their messages waits for its retry.
    let mut waiting: BTreeSet<(String, i32)> = BTreeSet::new();
    while !shutdown.load(Ordering::SeqCst) {
        for (i, member) in consumers.iter().enumerate() {
            match member.poll(Duration::from_millis(if i == 0 { 20 } else { 0 })) {
                Some(Ok(message)) => deliver(&handler, &message),
                // Transient consumer errors (broker down) repeat quickly: log rarely.
                Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                    tracing::warn!(error = %e, "consumer error");
                    last_error = Some(Instant::now());
                }
                Some(Err(_)) | None => {}
            }
        }
        let mut handler = handler.lock().expect("handler lock");
        handler.tick();
        let (saturated, relieved) = (handler.saturated(), handler.relieved());
        match paused_at {
            None if saturated => {
                pause_all(&consumer, true);
                telemetry.emit(PipelineEvent::Consumption { paused: true }, settings.clock.now());
                paused_at = Some(Instant::now());
            }
            Some(_) if relieved => {
                pause_all(&consumer, false);
                telemetry.emit(PipelineEvent::Consumption { paused: false }, settings.clock.now());
                paused_at = None;
                // Still waiting for a retry: paused again below.
                waiting.clear();
            }
            Some(at) if at.elapsed() > Duration::from_millis(200) => {
                pause_all(&consumer, true);
                paused_at = Some(Instant::now());
            }
            _ => {}
        }
        let now_waiting = handler.waiting_partitions();
        if now_waiting != waiting {
            let owned = |topic: &str| settings.owner_topics.iter().any(|t| t == topic);
            let member = |topic: &str| match owners.as_ref() {
                Some(owners) if owned(topic) => owners,
                _ => &consumer,
            };
            for (topic, partition) in now_waiting.difference(&waiting) {
                pause_partition(member(topic), topic, *partition, true);
            }
            for (topic, partition) in waiting.difference(&now_waiting) {
                // An input partition stays paused while all of consumption is (back-pressure).
                if paused_at.is_none() || owned(topic) {
                    pause_partition(member(topic), topic, *partition, false);
                }
            }
            let partitions: Vec<&(String, i32)> = now_waiting.iter().collect();
            telemetry.emit(PipelineEvent::PartitionsWaiting { partitions: &partitions }, settings.clock.now());
            waiting = now_waiting;
        }
        if last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            let commits = handler.commits();
            drop(handler);
            commit_each(&consumer, owners.as_ref(), &settings.owner_topics, &commits, CommitMode::Async);
        }
    }

    tracing::info!("shutting down: leaving the group, settling buffered traces and forwards");
    ready.leave();
    // Leaving the group revokes every partition: the rebalance callback, served by these polls,
    // settles their traces and commits, as on any revocation.
    for member in &consumers {
        member.context().leaving.store(true, Ordering::SeqCst);
        member.unsubscribe();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumers.iter().any(|c| c.assignment().is_ok_and(|a| a.count() > 0)) && Instant::now() < deadline {
        for member in &consumers {
            if let Some(Ok(message)) = member.poll(Duration::from_millis(50)) {
                deliver(&handler, &message);
            }
        }
    }
    let commits = handler.lock().expect("handler lock").shutdown();
    commit_each(&consumer, owners.as_ref(), &settings.owner_topics, &commits, CommitMode::Sync);
    Ok(())
}

/// Commits each position through the member that consumes its topic.
fn commit_each<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    owners: Option<&BaseConsumer<C>>,
    owner_topics: &[String],
    commits: &[Commit],
    mode: CommitMode,
) {
    let (owned, inputs): (Vec<Commit>, Vec<Commit>) =
        commits.iter().cloned().partition(|(topic, _, _)| owner_topics.contains(topic));
    for (member, commits) in [(Some(consumer), inputs), (owners, owned)] {
        let Some(member) = member.filter(|_| !commits.is_empty()) else { continue };
        if let Err(e) = member.commit(&commit_list(&commits), mode) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

fn deliver<H: MessageHandler>(handler: &Mutex<H>, message: &rdkafka::message::BorrowedMessage<'_>) {
    let payload = message.payload().unwrap_or_default();
    handler.lock().expect("handler lock").message(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        payload,
    );
}

/// Pauses (or resumes) one partition.
fn pause_partition<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32, pause: bool) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let result = if pause { consumer.pause(&list) } else { consumer.resume(&list) };
    if let Err(e) = result {
        tracing::warn!(error = %e, topic, partition, pause, "cannot pause or resume a partition");
    }
}

/// Pauses (or resumes) every partition currently assigned.
fn pause_all<C: ConsumerContext>(consumer: &BaseConsumer<C>, pause: bool) {
    let Ok(assignment) = consumer.assignment() else { return };
    let result = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "cannot pause or resume partitions");
    }
}

/// How long one metadata request waits for the brokers.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two metadata requests while the brokers do not answer.
const METADATA_RETRY: Duration = Duration::from_secs(2);

/// Reads the topics' metadata, retrying while the brokers cannot be reached (readiness stays
/// 503 meanwhile); `None` when shutdown was asked first. Errors that retrying cannot fix (a
/// missing input topic, failed authentication) are returned.
fn wait_for_brokers<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
    shutdown: &AtomicBool,
) -> Result<Option<TopicCheck>, SourceError> {
    loop {
        match check_topics(consumer, settings) {
            Ok(check) => return Ok(Some(check)),
            Err(SourceError::Metadata { source, .. }) if classify(&source) == ErrorClass::Retriable => {
                settings.client_log.unreachable(&source.to_string());
                let resume = Instant::now() + METADATA_RETRY;
                while Instant::now() < resume {
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(error) => return Err(error),
        }
        if shutdown.load(Ordering::SeqCst) {
            return Ok(None);
        }
    }
}

/// What the broker's metadata says of the topics this instance needs.
struct TopicCheck {
    /// The largest partition count among the input topics.
    partitions: i32,
    /// Output topics that do not exist yet (created in the background).
    missing_outputs: Vec<String>,
    /// Topics this instance also consumes (the repartition topic) that do not exist yet.
    missing_required: Vec<String>,
    /// Compacted topics that do not exist yet.
    missing_compacted: Vec<String>,
}

/// Checks the input topics exist and lists the topics to create.
fn check_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
) -> Result<TopicCheck, SourceError> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|source| SourceError::Metadata { brokers: settings.brokers.clone(), source })?;
    let exists = |topic: &str| metadata.topics().iter().any(|m| m.name() == topic && m.error().is_none());
    let inputs = settings.topics.iter().filter(|t| !settings.required_topics.contains(t));
    let missing: Vec<&str> = inputs.clone().filter(|t| !exists(t)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(SourceError::MissingTopics(missing.join(", ")));
    }
    let partitions = metadata
        .topics()
        .iter()
        .filter(|m| inputs.clone().any(|t| t == m.name()))
        .map(|m| m.partitions().len() as i32)
        .max()
        .unwrap_or(1);
    let missing_of = |topics: &[String]| topics.iter().filter(|t| !exists(t)).cloned().collect::<Vec<_>>();
    Ok(TopicCheck {
        partitions,
        missing_outputs: missing_of(&settings.output_topics),
        missing_required: missing_of(&settings.required_topics),
        missing_compacted: missing_of(&settings.compacted_topics),
    })
}
