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
//! - an asynchronous commit the broker refuses is reported back ([`commit_async`]) and made again
//!   at the next interval, even if its partition has gone quiet since;
//! - the consumers are polled from one thread; rebalance callbacks run inside those polls, so
//!   the handler is never entered twice at once; each position is committed by the member that
//!   consumes its topic;
//! - while the brokers cannot be reached the metadata check retries (readiness stays 503), and
//!   librdkafka's connection errors become one line every few seconds ([`KafkaSession`]); only what
//!   retrying cannot fix (a missing input topic, failed authentication) is returned as an error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Headers;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext, Message as _};

use crate::clock::SharedClock;
use crate::delivery::{classify, ErrorClass, TransactionGroups};
use crate::kafka_client::{redact, KafkaSession};
use crate::record::{Message, ENCODING_HEADER};
use crate::telemetry::events::PipelineEvent;
use crate::telemetry::PipelineMetrics;

/// Whether every worker of this instance is a consuming member of its group, in touch with its
/// group coordinator, and what they hold (`/readyz`).
pub struct Readiness {
    /// The group members of this instance (its workers).
    members: usize,
    /// The members that have joined (an assignment arrived, even an empty one).
    joined: Mutex<BTreeSet<usize>>,
    assignment: Mutex<BTreeSet<(String, i32)>>,
    /// Each member's group state as librdkafka last reported it (`/readyz` shows it).
    states: Mutex<Vec<GroupState>>,
    /// Where a recent refusal by the brokers (TLS, SASL) is found, to say why.
    kafka_session: Option<Arc<KafkaSession>>,
}

/// A member's group state from librdkafka's statistics (empty before the first).
#[derive(Clone, Debug, Default)]
pub struct GroupState {
    /// `steady` once settled in the group.
    pub join_state: String,
    /// The link to the group coordinator: `up`, or `query-coord`, `wait-coord`, … while it is
    /// being found again (the network or the broker is failing).
    pub coordinator: String,
}

impl GroupState {
    /// Whether the member is in touch with its coordinator (or has not reported yet).
    fn connected(&self) -> bool {
        matches!(self.coordinator.as_str(), "" | "up")
    }
}

/// One member as `/readyz` shows it.
pub struct MemberReadiness {
    pub worker: usize,
    pub joined: bool,
    pub state: GroupState,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Readiness {
    pub fn new(members: usize) -> Self {
        Self {
            members,
            joined: Mutex::default(),
            assignment: Mutex::default(),
            states: Mutex::new(vec![GroupState::default(); members]),
            kafka_session: None,
        }
    }

    /// Says, while not ready, why the brokers refuse this instance when they do.
    pub fn with_kafka_session(mut self, kafka_session: Arc<KafkaSession>) -> Self {
        self.kafka_session = Some(kafka_session);
        self
    }

    /// Each member (worker): whether it has joined, and its group state.
    pub fn members(&self) -> Vec<MemberReadiness> {
        let joined = self.joined.lock().expect("joined lock");
        let states = self.states.lock().expect("group states lock");
        (0..self.members)
            .map(|m| MemberReadiness {
                worker: m,
                joined: joined.contains(&m),
                state: states.get(m).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn set_group_state(&self, member: usize, join_state: &str, coordinator: &str) {
        if let Some(slot) = self.states.lock().expect("group states lock").get_mut(member) {
            slot.join_state.clear();
            slot.join_state.push_str(join_state);
            slot.coordinator.clear();
            slot.coordinator.push_str(coordinator);
        }
    }

    /// Why the instance is not ready, if it is not: a member has not joined its group (or has
    /// left it: shutdown), or has lost its group coordinator.
    pub fn not_ready(&self) -> Option<String> {
        let reason = self.membership()?;
        match self.kafka_session.as_ref().and_then(|log| log.refusal()) {
            Some(refusal) => Some(format!("{reason}; {refusal}")),
            None => Some(reason),
        }
    }

    fn membership(&self) -> Option<String> {
        let joined = self.joined.lock().expect("joined lock");
        if let Some(m) = (0..self.members).find(|m| !joined.contains(m)) {
            return Some(format!("worker {m} is not (or no longer) a member of the consumer group"));
        }
        let states = self.states.lock().expect("group states lock");
        states.iter().enumerate().find(|(_, s)| !s.connected()).map(|(m, s)| {
            format!("worker {m} has lost its group coordinator ({}): the brokers are unreachable", s.coordinator)
        })
    }

    /// Ready once every member has joined its group, while each is in touch with its
    /// coordinator, until shutdown starts.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// The partitions this instance holds now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment.lock().expect("assignment lock").iter().cloned().collect()
    }

    fn assign(&self, member: usize, partitions: &[(String, i32)]) {
        self.assignment.lock().expect("assignment lock").extend(partitions.iter().cloned());
        self.joined.lock().expect("joined lock").insert(member);
    }

    fn revoke(&self, partitions: &[(String, i32)]) {
        let mut assignment = self.assignment.lock().expect("assignment lock");
        for p in partitions {
            assignment.remove(p);
        }
    }

    /// A member leaves (the instance shuts down): not ready from now on.
    fn leave(&self, member: usize) {
        self.joined.lock().expect("joined lock").remove(&member);
    }
}

/// Opens when the first member has checked and created the topics: the others subscribe only
/// then, so none subscribes to a topic that does not exist yet (it would not see it until its
/// next metadata refresh, minutes later).
#[derive(Default)]
pub struct TopicsPrepared {
    done: Mutex<bool>,
    opened: Condvar,
}

impl TopicsPrepared {
    fn open(&self) {
        *self.done.lock().expect("topics gate lock") = true;
        self.opened.notify_all();
    }

    /// Waits until the topics are prepared (`true`) or shutdown is asked (`false`).
    fn wait(&self, shutdown: &AtomicBool) -> bool {
        let mut done = self.done.lock().expect("topics gate lock");
        while !*done {
            if shutdown.load(Ordering::SeqCst) {
                return false;
            }
            done = self.opened.wait_timeout(done, Duration::from_millis(100)).expect("topics gate lock").0;
        }
        true
    }
}

/// How long a settled member waits for the others before leaving the group anyway (one that
/// ended on a fatal error never arrives).
const LEAVE_TOGETHER_TIMEOUT: Duration = Duration::from_secs(10);

/// The members of one instance leave the group together, each once it has settled.
pub struct LeaveTogether {
    members: usize,
    settled: Mutex<usize>,
    all_settled: Condvar,
}

impl LeaveTogether {
    pub fn new(members: usize) -> Self {
        Self { members, settled: Mutex::new(0), all_settled: Condvar::new() }
    }

    /// Counts this member settled and waits (up to `timeout`) for every other.
    fn arrive_and_wait(&self, timeout: Duration) {
        let mut settled = self.settled.lock().expect("leave lock");
        *settled += 1;
        self.all_settled.notify_all();
        let deadline = Instant::now() + timeout;
        while *settled < self.members {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    settled = *settled,
                    members = self.members,
                    "leaving the group before every worker settled"
                );
                return;
            }
            settled = self.all_settled.wait_timeout(settled, left).expect("leave lock").0;
        }
    }
}

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

struct SourceContext<H: MessageHandler> {
    member: usize,
    handler: Arc<Mutex<H>>,
    ready: Arc<Readiness>,
    telemetry: Arc<PipelineMetrics>,
    leaving: AtomicBool,
    log: Arc<KafkaSession>,
    /// librdkafka's join state of this member (from its statistics) and since when.
    join: Mutex<JoinState>,
    /// Whether this is the second member, of `{group_id}-owners`.
    owners: bool,
    /// The topics the second member consumes (a transaction commits them through its group).
    owner_topics: Vec<String>,
    /// When a refused commit was last logged (during a rebalance every attempt is refused: one
    /// line every few seconds says it).
    refusal_logged: Mutex<Option<Instant>>,
}

/// A member's join state as librdkafka reports it, and when it last changed.
struct JoinState {
    state: String,
    since: Instant,
}

/// How long a member may stay in a join state other than `steady` or `wait-join` (waiting for the
/// coordinator, which legitimately lasts up to a session timeout) before it joins again. Seen on
/// the mock cluster: a member stuck for good in `wait-metadata`, its partitions never read.
const JOIN_WATCHDOG: Duration = Duration::from_secs(15);

impl<H: MessageHandler> SourceContext<H> {
    /// Whether this member has been stuck joining for longer than [`JOIN_WATCHDOG`].
    fn stuck_joining(&self) -> Option<String> {
        let join = self.join.lock().expect("join lock");
        let waiting = !matches!(join.state.as_str(), "steady" | "wait-join" | "");
        (waiting && join.since.elapsed() > JOIN_WATCHDOG).then(|| join.state.clone())
    }
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
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.log.oauth_token()
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(group) = &statistics.cgrp {
            let mut join = self.join.lock().expect("join lock");
            if join.state != group.join_state {
                join.state.clone_from(&group.join_state);
                join.since = Instant::now();
            }
            // The owners' member (SLO side) shares the worker's number: only the input member reports.
            if !self.owners {
                self.ready.set_group_state(self.member, &group.join_state, &group.state);
            }
        }
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
            let metadata = consumer.group_metadata();
            let groups = if self.owners {
                TransactionGroups { inputs: None, owners: metadata.as_ref(), owner_topics: &self.owner_topics }
            } else {
                TransactionGroups { inputs: metadata.as_ref(), owners: None, owner_topics: &self.owner_topics }
            };
            let commits = self.handler.lock().expect("handler lock").revoke(&partitions, leaving, &groups);
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

    /// The answer to an asynchronous commit ([`commit_async`]): refused positions are due again.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let refused: Vec<Commit> = offsets
            .elements()
            .iter()
            .filter(|e| result.is_err() || e.error().is_err())
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.topic().to_string(), e.partition(), offset)),
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            return;
        }
        let mut logged = self.refusal_logged.lock().expect("refusal log lock");
        if logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            *logged = Some(Instant::now());
            let error = result.err().or_else(|| offsets.elements().iter().find_map(|e| e.error().err()));
            tracing::warn!(error = ?error.map(|e| e.to_string()), partitions = refused.len(), "offset commit refused: committing again at the next interval");
        }
        drop(logged);
        self.handler.lock().expect("handler lock").commit_refused(&refused);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                tracing::info!(partitions = ?partitions, "partitions assigned");
                self.handler.lock().expect("handler lock").assign(&partitions);
                self.ready.assign(self.member, &partitions);
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
    let consumer: BaseConsumer<SourceContext<H>> =
        settings.client.create_with_context(context(false)).map_err(|e| SourceError::Create(redact(e)))?;
    if settings.member == 0 {
        let Some(check) = wait_for_brokers(&consumer, &settings, &shutdown)? else {
            return Ok(());
        };
        prepare_topics(&settings, check)?;
        settings.topics_prepared.open();
    } else if !settings.topics_prepared.wait(&shutdown) {
        return Ok(());
    }
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    crate::kafka_client::await_topic_metadata(&consumer, &topics);
    consumer
        .subscribe(&topics)
        .map_err(|source| SourceError::Subscribe { topics: settings.topics.join(","), source })?;
    let owners: Option<BaseConsumer<SourceContext<H>>> = if settings.owner_topics.is_empty() {
        None
    } else {
        let owners: BaseConsumer<SourceContext<H>> =
            settings.owners_client.create_with_context(context(true)).map_err(|e| SourceError::Create(redact(e)))?;
        let topics: Vec<&str> = settings.owner_topics.iter().map(String::as_str).collect();
        crate::kafka_client::await_topic_metadata(&owners, &topics);
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
        for (member, topics) in consumers.iter().zip([&settings.topics, &settings.owner_topics]) {
            if let Some(state) = member.context().stuck_joining() {
                tracing::warn!(member = settings.member, join_state = %state, waited = ?JOIN_WATCHDOG, "group join stuck: joining again");
                member.unsubscribe();
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                if let Err(e) = member.subscribe(&topics) {
                    tracing::warn!(error = %e, "cannot subscribe again");
                }
                let mut join = member.context().join.lock().expect("join lock");
                join.state.clear();
                join.since = Instant::now();
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
                // Still waiting for a retry: paused again below (and counted again).
                telemetry.partitions_waiting.sub(waiting.len() as i64);
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
            let before = waiting.len();
            telemetry.emit(PipelineEvent::PartitionsWaiting { partitions: &partitions, before }, settings.clock.now());
            waiting = now_waiting;
        }
        if last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            let metadata = MemberGroups::of(&consumer, owners.as_ref());
            let commits = handler.commits(&metadata.groups(&settings.owner_topics));
            drop(handler);
            commit_each(&consumer, owners.as_ref(), &settings.owner_topics, &commits, CommitMode::Async);
        }
    }

    tracing::info!("shutting down: settling buffered traces and forwards, then leaving the group");
    ready.leave(settings.member);
    // Settle and commit while the group is stable: once one worker of this instance leaves, the
    // group rebalances and the others' commits would be refused (rebalance in progress). Every
    // worker settles, they wait for each other, then all leave.
    let held: Vec<(String, i32)> =
        consumers.iter().filter_map(|c| c.assignment().ok()).flat_map(|list| partitions_of(&list)).collect();
    for member in &consumers {
        pause_all(member, true);
    }
    let metadata = MemberGroups::of(&consumer, owners.as_ref());
    let commits = handler.lock().expect("handler lock").revoke(&held, true, &metadata.groups(&settings.owner_topics));
    commit_each(&consumer, owners.as_ref(), &settings.owner_topics, &commits, CommitMode::Sync);
    settings.leave_together.arrive_and_wait(LEAVE_TOGETHER_TIMEOUT);
    // Leaving the group revokes every partition: the rebalance callback, served by these polls,
    // settles what is left (nothing, normally) and commits, as on any revocation.
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
    let metadata = MemberGroups::of(&consumer, owners.as_ref());
    let commits = handler.lock().expect("handler lock").shutdown(&metadata.groups(&settings.owner_topics));
    commit_each(&consumer, owners.as_ref(), &settings.owner_topics, &commits, CommitMode::Sync);
    Ok(())
}

/// Creates the topics this instance consumes or writes that do not exist yet.
fn prepare_topics(settings: &SourceSettings, check: TopicCheck) -> Result<(), SourceError> {
    if !check.missing_required.is_empty() {
        let names: Vec<&str> = check.missing_required.iter().map(String::as_str).collect();
        crate::delivery::topics::create_topics(&settings.admin, &settings.kafka_session, &names, check.partitions)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_required.join(", "), reason })?;
    }
    if !check.missing_compacted.is_empty() {
        let names: Vec<&str> = check.missing_compacted.iter().map(String::as_str).collect();
        let compacted = [("cleanup.policy", "compact"), ("segment.ms", "3600000")];
        crate::delivery::topics::create_topics_with(&settings.admin, &settings.kafka_session, &names, 1, &compacted)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_compacted.join(", "), reason })?;
    }
    crate::delivery::topics::create_missing_topics(
        settings.admin.clone(),
        settings.kafka_session.clone(),
        check.missing_outputs,
        check.partitions,
    );
    Ok(())
}

/// Each member's group metadata, for a transaction's offsets (`kafka.exactly_once`).
struct MemberGroups {
    inputs: Option<ConsumerGroupMetadata>,
    owners: Option<ConsumerGroupMetadata>,
}

impl MemberGroups {
    fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>, owners: Option<&BaseConsumer<C>>) -> Self {
        Self { inputs: consumer.group_metadata(), owners: owners.and_then(|o| o.group_metadata()) }
    }

    fn groups<'a>(&'a self, owner_topics: &'a [String]) -> TransactionGroups<'a> {
        TransactionGroups { inputs: self.inputs.as_ref(), owners: self.owners.as_ref(), owner_topics }
    }
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
        let list = commit_list(&commits);
        let result = match mode {
            CommitMode::Sync => member.commit(&list, mode),
            CommitMode::Async => commit_async(member, &list),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

/// Commits without waiting; the broker's answer comes back through the consumer's own queue,
/// where [`BaseConsumer::poll`] hands it to [`ConsumerContext::commit_callback`].
///
/// `Consumer::commit(.., Async)` calls `rd_kafka_commit`, which reports the outcome only to an
/// `offset_commit_cb` (never set by the event API this consumer uses): a refused commit would go
/// unnoticed, and a partition that then went quiet would stay committed behind for good.
fn commit_async<C: ConsumerContext>(consumer: &BaseConsumer<C>, list: &TopicPartitionList) -> KafkaResult<()> {
    use rdkafka::bindings as rdsys;
    let client = consumer.client().native_ptr();
    // SAFETY: `client` and `list` are live for the whole block (borrowed from the caller);
    // librdkafka copies `list`. The queue handle from `rd_kafka_queue_get_consumer` is ours to
    // destroy, which only releases the handle: the queue lives as long as the consumer, and
    // the answer is enqueued by librdkafka's own reference to it.
    let error = unsafe {
        let queue = rdsys::rd_kafka_queue_get_consumer(client);
        if queue.is_null() {
            return consumer.commit(list, CommitMode::Async);
        }
        let error = rdsys::rd_kafka_commit_queue(client, list.ptr(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        error
    };
    if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(error.into()))
    }
}

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
/// How long the brokers may refuse the SASL authentication before `run` gives up: long enough
/// for credentials made a moment ago to reach every broker (SCRAM users propagate), short
/// enough that a wrong password is said by a restart loop, not by a pod that never gets ready.
const AUTHENTICATION_GIVE_UP: Duration = Duration::from_secs(15);

/// Reads the topics' metadata, retrying while the brokers cannot be reached (readiness stays
/// 503 meanwhile); `None` when shutdown was asked first. Errors that retrying cannot fix (a
/// missing input topic, failed authentication) are returned.
fn wait_for_brokers<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
    shutdown: &AtomicBool,
) -> Result<Option<TopicCheck>, SourceError> {
    // Since when every attempt has met a refused SASL authentication.
    let mut refused_since: Option<Instant> = None;
    loop {
        match check_topics_serving_events(consumer, settings) {
            Ok(check) => return Ok(Some(check)),
            Err(SourceError::Metadata { source, .. }) if classify(&source) == ErrorClass::Retriable => {
                let resume = Instant::now() + METADATA_RETRY;
                while Instant::now() < resume {
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    // Serves the client's logs and errors (nothing is subscribed yet): why the
                    // brokers do not answer — a refused TLS handshake or SASL authentication —
                    // reaches the KafkaSession only through them.
                    let _ = consumer.poll(Duration::from_millis(50));
                }
                match settings.kafka_session.authentication_refusal() {
                    Some(said) => {
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= AUTHENTICATION_GIVE_UP {
                            return Err(SourceError::Authentication(said));
                        }
                    }
                    None => refused_since = None,
                }
                settings.kafka_session.unreachable(&source.to_string());
            }
            Err(error) => return Err(error),
        }
        if shutdown.load(Ordering::SeqCst) {
            return Ok(None);
        }
    }
}

/// [`check_topics`], with the client's events served meanwhile (nothing is subscribed yet, so
/// nothing else polls it): an OAUTHBEARER token is asked for when the client is made, and the
/// metadata request cannot connect before it is there; refusals are logged as they come.
fn check_topics_serving_events<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
) -> Result<TopicCheck, SourceError> {
    let checked = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !checked.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(50));
            }
        });
        let result = check_topics(consumer, settings);
        checked.store(true, Ordering::SeqCst);
        result
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_worker_joined_and_in_touch_with_its_coordinator() {
        let ready = Readiness::new(2);
        assert!(ready.not_ready().is_some_and(|r| r.contains("worker 0")), "nobody joined yet");
        ready.assign(0, &[("in".into(), 0)]);
        assert!(ready.not_ready().is_some_and(|r| r.contains("worker 1")), "worker 1 has not joined");
        ready.assign(1, &[]);
        assert_eq!(ready.not_ready(), None, "joined, no statistics yet");
        ready.set_group_state(1, "steady", "up");
        assert!(ready.is_ready());
        // The network fails: librdkafka looks for the coordinator again.
        ready.set_group_state(1, "steady", "query-coord");
        let reason = ready.not_ready().expect("not ready while the coordinator is lost");
        assert!(reason.contains("worker 1") && reason.contains("query-coord"), "{reason}");
        ready.set_group_state(1, "steady", "up");
        assert!(ready.is_ready(), "ready again once the link is back");
        ready.leave(0);
        assert!(!ready.is_ready(), "not ready once shutdown starts");
    }
}
