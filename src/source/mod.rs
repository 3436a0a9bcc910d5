//! Source: the Kafka consumer-group member that feeds one worker of the pipeline.
//!
//! [`run`] subscribes to the input topics (`kafka.input_topics`, `[[kafka.inputs]]`), hands every message to a [`MessageHandler`] and
//! commits the offsets the handler says are done. An instance runs one per worker, each its own
//! group member; member 0 checks and creates the topics before the others subscribe
//! ([`TopicsPrepared`]), then all at once, so that they join in one rebalance. With SLOs, member
//! 0 also runs a second member of the group `{group_id}-owners`, polled by the same thread,
//! consumes the aggregates topic: Kafka balances
//! SLO ownership among the instances on its own, never at the expense of the input partitions
//! (one sticky assignment over both would happily give one instance every input partition).
//! Invariants (kafka.md "Delivery"):
//! - auto-commit is off: the only offsets committed are the handler's committable ones, every
//!   `kafka.commit_interval`, on revocation (synchronously, inside the rebalance callback, after the
//!   handler has decided and flushed the revoked partitions' traces) and on shutdown — where every
//!   member of the instance settles and commits while the group is stable, and they leave the
//!   group together ([`LeaveTogether`]): once one has left, the others' commits would be refused;
//! - an asynchronous commit the broker refuses is reported back (`commit::commit_async`) and made again
//!   at the next interval, even if its partition has gone quiet since;
//! - the consumers are polled from one thread; rebalance callbacks run inside those polls, so
//!   the handler is never entered twice at once; each position is committed by the member that
//!   consumes its topic;
//! - while the brokers cannot be reached the metadata check retries (readiness stays 503), and
//!   librdkafka's connection errors become one line every few seconds ([`KafkaSession`]); only what
//!   retrying cannot fix (a missing input topic, failed authentication) is returned as an error.
//!
//! The rooms: `readiness` (`/readyz`), `together` (the instance's members start and leave
//! together), `topics` (waiting for the brokers, checking and creating topics), `context`
//! (librdkafka's callbacks: rebalances, commit answers, statistics, the rejoin watchdog),
//! `commit` (positions to the broker), `back_pressure` (pausing and resuming consumption); here,
//! the poll loop and leaving the group.

mod back_pressure;
mod commit;
mod context;
mod readiness;
mod together;
mod topics;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message as _};

use back_pressure::{pause_all, BackPressure};
use commit::{commit_each, MemberGroups};
use context::{partitions_of, JoinState, SourceContext};
use together::LEAVE_TOGETHER_TIMEOUT;
use topics::{prepare_topics, wait_for_brokers};

use crate::clock::SharedClock;
use crate::delivery::TransactionGroups;
use crate::kafka_client::{redact, KafkaSession};
use crate::record::{Message, ENCODING_HEADER};
use crate::telemetry::PipelineMetrics;

pub use readiness::Readiness;
pub use together::{LeaveTogether, TopicsPrepared};

pub use crate::position::Commit;

/// What the consumer loop drives.
pub trait MessageHandler: Send + 'static {
    /// One consumed message (`payload` empty for a tombstone).
    fn message(&mut self, message: Message<'_>);
    /// Periodic work: decisions whose time came, delivery reports, gauges.
    fn tick(&mut self);
    /// Positions that moved since the last call, for the consumer to commit. With
    /// `kafka.exactly_once` the handler commits them itself, in a transaction through `groups`,
    /// and returns none.
    fn commits(&mut self, groups: &TransactionGroups<'_>) -> Vec<Commit>;
    /// The broker refused these commits (returned by [`MessageHandler::commits`]): return them
    /// again at the next call, moved or not.
    fn commit_refused(&mut self, refused: &[Commit]);
    /// Partitions were assigned (before any of their messages is delivered).
    fn assign(&mut self, partitions: &[(String, i32)]);
    /// Whether downstream is not keeping up: consumption pauses (back-pressure).
    fn saturated(&self) -> bool;
    /// Whether a saturated downstream has caught up: consumption resumes.
    fn relieved(&self) -> bool;
    /// Partitions to pause until their pending writes are retried (others go on).
    fn waiting_partitions(&self) -> BTreeSet<(String, i32)>;
    /// The partitions are being revoked (`leaving`: because this instance leaves the group):
    /// settle their traces and forwards; return their positions (as [`Self::commits`]).
    fn revoke(&mut self, partitions: &[(String, i32)], leaving: bool, groups: &TransactionGroups<'_>) -> Vec<Commit>;
    /// The process is stopping, its partitions already revoked: decide and flush what is left;
    /// return every position (as [`Self::commits`]).
    fn shutdown(&mut self, groups: &TransactionGroups<'_>) -> Vec<Commit>;
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
    #[error("input topic(s) {0} do not exist: create them, or fix kafka.input_topics / [[kafka.inputs]]")]
    MissingTopics(String),
    #[error("{0}; fix the credentials or the mechanism in [kafka.client]")]
    Authentication(String),
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
    /// Which of the instance's members (workers) this is. Member 0 checks and creates the
    /// topics and, with SLOs, runs the second member (`owner_topics`); the others wait for it.
    pub member: usize,
    /// Opened by member 0 once the topics exist.
    pub topics_prepared: Arc<TopicsPrepared>,
    /// Where the members wait for each other to have settled before leaving the group.
    pub leave_together: Arc<LeaveTogether>,
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
    pub kafka_session: Arc<KafkaSession>,
    /// The injected clock (events are stamped with it).
    pub clock: SharedClock,
}

/// Consumes until `shutdown` is set, then shuts the handler down and commits.
pub fn run<H: MessageHandler>(
    settings: SourceSettings,
    handler: Arc<Mutex<H>>,
    telemetry: Arc<PipelineMetrics>,
    ready: Arc<Readiness>,
    shutdown: Arc<AtomicBool>,
) -> Result<(), SourceError> {
    let context = |owners: bool| SourceContext {
        member: settings.member,
        handler: handler.clone(),
        ready: ready.clone(),
        telemetry: telemetry.clone(),
        leaving: AtomicBool::new(false),
        log: settings.kafka_session.clone(),
        join: Mutex::new(JoinState { state: String::new(), since: Instant::now() }),
        owners,
        owner_topics: settings.owner_topics.clone(),
        refusal_logged: Mutex::new(None),
    };
    let inputs: BaseConsumer<SourceContext<H>> =
        settings.client.create_with_context(context(false)).map_err(|e| SourceError::Create(redact(e)))?;
    if settings.member == 0 {
        let Some(check) = wait_for_brokers(&inputs, &settings, &shutdown)? else {
            return Ok(());
        };
        prepare_topics(&settings, check)?;
        settings.topics_prepared.open();
    } else if !settings.topics_prepared.wait(&shutdown) {
        return Ok(());
    }
    subscribe(&inputs, &settings.topics)?;
    let owners = if settings.owner_topics.is_empty() {
        None
    } else {
        let owners: BaseConsumer<SourceContext<H>> =
            settings.owners_client.create_with_context(context(true)).map_err(|e| SourceError::Create(redact(e)))?;
        subscribe(&owners, &settings.owner_topics)?;
        Some(owners)
    };
    let members = Members { inputs, owners, settings: &settings };
    consume(&members, &handler, &telemetry, &shutdown);
    leave(&members, &handler, &ready);
    Ok(())
}

fn subscribe<C: ConsumerContext>(consumer: &BaseConsumer<C>, topics: &[String]) -> Result<(), SourceError> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    crate::kafka_client::await_topic_metadata(consumer, &names);
    consumer.subscribe(&names).map_err(|source| SourceError::Subscribe { topics: topics.join(","), source })
}

/// This worker's consumers: the input member and, with SLOs, the owners' member, polled by the
/// same thread.
struct Members<'a, H: MessageHandler> {
    inputs: BaseConsumer<SourceContext<H>>,
    owners: Option<BaseConsumer<SourceContext<H>>>,
    settings: &'a SourceSettings,
}

impl<H: MessageHandler> Members<'_, H> {
    fn all(&self) -> impl Iterator<Item = &BaseConsumer<SourceContext<H>>> {
        std::iter::once(&self.inputs).chain(self.owners.as_ref())
    }

    /// Each member's group metadata now (for a transaction's offsets).
    fn groups(&self) -> MemberGroups {
        MemberGroups::of(&self.inputs, self.owners.as_ref())
    }

    /// Commits each position through the member that consumes its topic.
    fn commit(&self, commits: &[Commit], mode: CommitMode) {
        commit_each(&self.inputs, self.owners.as_ref(), &self.settings.owner_topics, commits, mode);
    }
}

/// The poll loop, until `shutdown`: messages to the handler, its periodic work, back-pressure,
/// the rejoin watchdog and a commit every `kafka.commit_interval`.
fn consume<H: MessageHandler>(
    members: &Members<'_, H>,
    handler: &Mutex<H>,
    telemetry: &PipelineMetrics,
    shutdown: &AtomicBool,
) {
    let settings = members.settings;
    let mut last_commit = Instant::now();
    let mut last_error: Option<Instant> = None;
    let mut back_pressure = BackPressure::default();
    while !shutdown.load(Ordering::SeqCst) {
        for (i, member) in members.all().enumerate() {
            match member.poll(Duration::from_millis(if i == 0 { 20 } else { 0 })) {
                Some(Ok(message)) => deliver(handler, &message),
                // Transient consumer errors (broker down) repeat quickly: log rarely.
                Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                    tracing::warn!(error = %e, "consumer error");
                    last_error = Some(Instant::now());
                }
                Some(Err(_)) | None => {}
            }
        }
        for (member, topics) in members.all().zip([&settings.topics, &settings.owner_topics]) {
            SourceContext::rejoin_if_stuck(member, settings.member, topics);
        }
        let mut handler = handler.lock().expect("handler lock");
        handler.tick();
        back_pressure.update(
            &*handler,
            &members.inputs,
            members.owners.as_ref(),
            &settings.owner_topics,
            telemetry,
            &settings.clock,
        );
        if last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            let groups = members.groups();
            let commits = handler.commits(&groups.groups(&settings.owner_topics));
            drop(handler);
            members.commit(&commits, CommitMode::Async);
        }
    }
}

/// Leaves the group. Settles and commits while the group is stable: once one worker of this
/// instance leaves, the group rebalances and the others' commits would be refused (rebalance in
/// progress). Every worker settles, they wait for each other, then all leave.
fn leave<H: MessageHandler>(members: &Members<'_, H>, handler: &Mutex<H>, ready: &Readiness) {
    let settings = members.settings;
    tracing::info!("shutting down: settling buffered traces and forwards, then leaving the group");
    ready.leave(settings.member);
    let held: Vec<(String, i32)> =
        members.all().filter_map(|c| c.assignment().ok()).flat_map(|list| partitions_of(&list)).collect();
    for member in members.all() {
        pause_all(member, true);
    }
    let groups = members.groups();
    let commits = handler.lock().expect("handler lock").revoke(&held, true, &groups.groups(&settings.owner_topics));
    members.commit(&commits, CommitMode::Sync);
    settings.leave_together.arrive_and_wait(LEAVE_TOGETHER_TIMEOUT);
    // Leaving the group revokes every partition: the rebalance callback, served by these polls,
    // settles what is left (nothing, normally) and commits, as on any revocation.
    for member in members.all() {
        member.context().leaving.store(true, Ordering::SeqCst);
        member.unsubscribe();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while members.all().any(|c| c.assignment().is_ok_and(|a| a.count() > 0)) && Instant::now() < deadline {
        for member in members.all() {
            if let Some(Ok(message)) = member.poll(Duration::from_millis(50)) {
                deliver(handler, &message);
            }
        }
    }
    let groups = members.groups();
    let commits = handler.lock().expect("handler lock").shutdown(&groups.groups(&settings.owner_topics));
    members.commit(&commits, CommitMode::Sync);
}

/// One consumed message to the handler.
fn deliver<H: MessageHandler>(handler: &Mutex<H>, message: &rdkafka::message::BorrowedMessage<'_>) {
    let payload = message.payload().unwrap_or_default();
    let encoding =
        message.headers().and_then(|headers| headers.iter().find(|h| h.key == ENCODING_HEADER).and_then(|h| h.value));
    handler.lock().expect("handler lock").message(Message {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key(),
        payload,
        encoding,
    });
}
