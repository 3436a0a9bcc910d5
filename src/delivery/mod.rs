//! Delivery: the one owner of at-least-once (kafka.md "Delivery").
//!
//! [`DeliveryLedger`] issues a [`Hold`] for every message consumed, sends the records the span
//! path and the SLO exchange produce (kept traces, dead letters, re-keyed spans, SLO counts,
//! alerts, checkpoints) through its [`Transport`], applies the broker's answers, retries, applies
//! back-pressure, and says which offsets may be committed.
//!
//! **The invariant.** A committed offset never passes a message whose spans are not counted and
//! decided, and whose kept traces and SLO counts are not acknowledged. It holds because:
//! - the consumer's hold on a message lives until the span path has decoded, counted and buffered
//!   it; every buffered trace, every record in flight or waiting for a retry, and every SLO count
//!   not yet acknowledged keeps a share of the holds of the messages it came from;
//! - a share is dropped only when its work is done: a trace dropped by a rule, a record
//!   acknowledged by the broker, or a record abandoned after an error that retrying cannot fix
//!   (reported and counted in `tracewarden_forward_failures_total{destination}`);
//! - the committable offset of a partition is the lowest offset still held ([`PendingOffsets`]).
//!
//! **Retries never spin.** A retriable failure waits `retry_backoff` × 2^(attempt − 1), at most
//! `max_retry_backoff`, read from the injected clock, and the partitions whose messages it holds
//! pause meanwhile ([`DeliveryLedger::waiting_partitions`]). An error that retrying cannot fix — too large after
//! splitting, unknown topic, not authorized — is reported once per destination and error (again
//! at most once a minute with the count, [`PipelineEvent::RecordAbandoned`]), its record
//! abandoned: the partition never stalls on it.
//!
//! **Back-pressure.** When the records in flight reach 80% of the producer queue (records or
//! bytes), [`DeliveryLedger::saturated`] asks the consumer to pause; it resumes at half.
//!
//! **Exactly-once** ([`DeliveryLedger::exactly_once`], `kafka.exactly_once`). Records are staged,
//! not sent, and [`DeliveryLedger::transact`] writes them in one Kafka transaction with the
//! consumer offsets, committed by the same transaction. Invariant: *a record is written in the
//! transaction that commits past every message it holds*, and never in another. Then a crash
//! re-reads, from the committed offsets, exactly the messages whose records no committed
//! transaction holds, and a `read_committed` consumer sees each record once. A transaction's
//! offset for a partition is the lowest message held by anything but a staged record (an
//! undecided trace, unpublished SLO counts); a staged record holding a message at or past it
//! waits for a later transaction, and lowers the offset to its own lowest message on that
//! partition (repeated until nothing changes, [`DeliveryLedger::plan_transaction`]). SLO counts
//! are the exception: the owner merges each source message's counts once, so they go in the next
//! transaction whatever they hold (else they would wait for every trace of their messages). So
//! are the group view's points, at-least-once: a points record sums the traces of every partition
//! of its worker, so it cannot follow the invariant across a revocation (its kept partitions'
//! traces may stay undecided, and it cannot be split by partition afterwards); a crash may count
//! a replayed message's spans in the points twice, never lose them. A failed
//! transaction is aborted and its records staged again (retried after a backoff, as records
//! are); records of partitions revoked before they could be committed are dropped, since the
//! partition's next owner reads their messages again.

mod forwarder;
pub mod topics;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transaction_tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use forwarder::{classify, Forwarder, ForwarderError, QUEUE_MAX_KBYTES, QUEUE_MAX_MESSAGES};
use rdkafka::consumer::ConsumerGroupMetadata;

use crate::clock::{Nanos, SharedClock};
use crate::position::{Commit, Hold, PendingOffsets, SourceRef};
pub use crate::record::{Destination, Record};
use crate::telemetry::events::PipelineEvent;
use crate::telemetry::PipelineMetrics;

/// The topic of each [`Destination`].
#[derive(Clone, Debug)]
pub struct Topics {
    pub output: String,
    pub dead_letter: String,
    pub repartition: String,
    pub alerts: String,
    pub aggregates: String,
    pub slo_state: String,
    pub points: String,
}

impl Topics {
    pub fn of(&self, destination: Destination) -> &str {
        match destination {
            Destination::Output => &self.output,
            Destination::DeadLetter => &self.dead_letter,
            Destination::Repartition => &self.repartition,
            Destination::Alerts => &self.alerts,
            Destination::Aggregates => &self.aggregates,
            Destination::Points => &self.points,
            Destination::SloState => &self.slo_state,
        }
    }
}

/// A record on its way, with how many times it was sent.
#[derive(Debug)]
pub struct Attempt {
    pub record: Record,
    pub attempts: u32,
}

/// How a Kafka error should be handled: decided once, by [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: try again later (timeouts, leadership changes, broker down).
    Retriable,
    /// Retrying cannot fix it (too large, unknown topic, not authorized, invalid).
    Permanent,
}

/// Why a record was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub class: ErrorClass,
    /// The error's name, stable enough to group reports by (librdkafka's code).
    pub code: String,
    /// The error as the client library reports it.
    pub message: String,
}

/// The broker's answer for one record.
#[derive(Debug)]
pub enum Report {
    Delivered(Box<Attempt>),
    Failed(Box<Attempt>, SendError),
}

/// What writes records: the Kafka producer ([`Forwarder`]), or a scripted one in tests.
pub trait Transport {
    /// Queues a record. A record refused before queueing comes back at once as
    /// [`Report::Failed`] in `reports`. When the queue is full, serves reports until there is
    /// room: the caller stalls rather than drop anything.
    fn send(&mut self, attempt: Box<Attempt>, reports: &mut Vec<Report>);
    /// Serves the broker's answers, waiting up to `timeout` for the first.
    fn poll(&mut self, timeout: Duration, reports: &mut Vec<Report>);
    /// Writes `records` and commits `offsets` (each through the group of its topic) in one
    /// transaction. Every record comes back in `reports`: delivered when the transaction
    /// committed; when it failed, the transaction is aborted and each record comes back as
    /// failed (or delivered, if it reached the log before the abort).
    // Boxed: each attempt travels through librdkafka as its record's delivery opaque.
    #[allow(clippy::vec_box)]
    fn transact(
        &mut self,
        records: Vec<Box<Attempt>>,
        offsets: &[Commit],
        groups: &TransactionGroups<'_>,
        reports: &mut Vec<Report>,
    ) -> Result<(), TransactionError>;
}

/// The consumer groups a transaction commits offsets for: the input member's, and the SLO
/// owners' member's with the topics it consumes (a transaction commits a partition's offset
/// only through the group its consumer belongs to, so the broker can fence a zombie by it).
#[derive(Default)]
pub struct TransactionGroups<'a> {
    /// The group of every topic not in `owner_topics`.
    pub inputs: Option<&'a ConsumerGroupMetadata>,
    /// The group `{group_id}-owners`.
    pub owners: Option<&'a ConsumerGroupMetadata>,
    /// The topics the owners' member consumes.
    pub owner_topics: &'a [String],
}

impl TransactionGroups<'_> {
    /// Whether offsets of `topic` can be committed (its group is known).
    pub fn covers(&self, topic: &str) -> bool {
        if self.owner_topics.iter().any(|t| t == topic) {
            self.owners.is_some()
        } else {
            self.inputs.is_some()
        }
    }
}

/// Why a transaction did not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransactionError {
    /// The error's name (librdkafka's code).
    pub code: String,
    pub message: String,
    /// The producer cannot go on (fenced by another with its `transactional.id`, or
    /// misconfigured): the process must restart.
    pub fatal: bool,
}

/// Limits of the ledger, from the producer's settings.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Records in flight at which consumption pauses (80% of `queue.buffering.max.messages`).
    pub high_records: usize,
    /// Bytes in flight at which consumption pauses (80% of `queue.buffering.max.kbytes`).
    pub high_bytes: usize,
    /// The first retry's wait; each further attempt doubles it.
    pub retry_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_retry_backoff: Duration,
}

impl DeliverySettings {
    /// The limits of a producer configured with `client` (its queue sizes, or librdkafka's).
    pub fn from_producer(client: &rdkafka::ClientConfig) -> Self {
        let defaults = Self::default();
        let limit = |key: &str| client.get(key).and_then(|v| v.parse::<usize>().ok());
        Self {
            high_records: limit("queue.buffering.max.messages").map_or(defaults.high_records, |n| (n * 4 / 5).max(1)),
            high_bytes: limit("queue.buffering.max.kbytes")
                .map_or(defaults.high_bytes, |kb| (kb * 1024 * 4 / 5).max(1)),
            ..defaults
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            high_records: forwarder::QUEUE_MAX_MESSAGES * 4 / 5,
            high_bytes: forwarder::QUEUE_MAX_KBYTES * 1024 * 4 / 5,
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(10),
        }
    }
}

/// The owner of offsets, forwards, retries and back-pressure (see the module header).
pub struct DeliveryLedger<T: Transport = Forwarder> {
    positions: PendingOffsets,
    transport: T,
    topics: Topics,
    settings: DeliverySettings,
    in_flight: usize,
    in_flight_bytes: usize,
    /// Records waiting for their retry, with the time it is due.
    retries: Vec<(Nanos, Box<Attempt>)>,
    reports: Vec<Report>,
    telemetry: Arc<PipelineMetrics>,
    clock: SharedClock,
    /// Exactly-once: the records waiting for the next transaction (`None`: at-least-once).
    staged: Option<Vec<Record>>,
    /// After a failed transaction: when the next may be tried, and how many failed in a row.
    transaction_retry: Option<(Nanos, u32)>,
}

/// What the next transaction writes and commits.
struct TransactionPlan {
    /// Indices into the staged records.
    records: Vec<usize>,
    /// Partition index → offset to commit.
    offsets: Vec<(u32, i64)>,
}

impl<T: Transport> DeliveryLedger<T> {
    pub fn new(
        transport: T,
        topics: Topics,
        settings: DeliverySettings,
        telemetry: Arc<PipelineMetrics>,
        clock: SharedClock,
    ) -> Self {
        Self {
            positions: PendingOffsets::new(),
            transport,
            topics,
            settings,
            in_flight: 0,
            in_flight_bytes: 0,
            retries: Vec::new(),
            reports: Vec::new(),
            telemetry,
            clock,
            staged: None,
            transaction_retry: None,
        }
    }

    /// Exactly-once mode: records are staged and written by [`Self::transact`] (see the module
    /// header); the transport must be transactional.
    pub fn exactly_once(mut self) -> Self {
        self.staged = Some(Vec::new());
        self
    }

    /// Whether records go out in transactions.
    pub fn is_exactly_once(&self) -> bool {
        self.staged.is_some()
    }

    /// A message was consumed: it stays uncommitted while the returned hold, or a share of it,
    /// lives.
    pub fn receive(&mut self, topic: &str, partition: i32, offset: i64) -> Hold {
        let index = self.positions.index(topic, partition);
        self.positions.begin(SourceRef { partition: index, offset })
    }

    /// Every message read and held (the SLO exchange reads publication floors from it).
    pub fn positions(&self) -> &PendingOffsets {
        &self.positions
    }

    /// The stable index of a topic-partition.
    pub fn index(&mut self, topic: &str, partition: i32) -> u32 {
        self.positions.index(topic, partition)
    }

    /// Sends a record; its holds are released when the broker acknowledges it. Exactly-once:
    /// stages it for a transaction.
    pub fn send(&mut self, record: Record) {
        if let Some(staged) = &mut self.staged {
            self.in_flight += 1;
            self.in_flight_bytes += record.payload.len();
            staged.push(record);
            return;
        }
        self.transmit(Box::new(Attempt { record, attempts: 1 }));
    }

    /// Exactly-once: writes the staged records that may go and commits the offsets past them,
    /// in one transaction (see the module header); returns the positions committed. After a
    /// failed transaction, nothing is tried before its backoff has passed.
    pub fn transact(&mut self, groups: &TransactionGroups<'_>) -> Result<Vec<Commit>, TransactionError> {
        let now = self.clock.now();
        if self.transaction_retry.is_some_and(|(due, _)| now < due) {
            return Ok(Vec::new());
        }
        let Some(plan) = self.plan_transaction(groups) else { return Ok(Vec::new()) };
        if plan.records.is_empty() && plan.offsets.is_empty() {
            return Ok(Vec::new());
        }
        let staged = self.staged.take().unwrap_or_default();
        let (mut records, mut waiting) = (Vec::with_capacity(plan.records.len()), Vec::new());
        let mut chosen = plan.records.iter().copied().peekable();
        for (i, record) in staged.into_iter().enumerate() {
            if chosen.peek() == Some(&i) {
                chosen.next();
                records.push(Box::new(Attempt { record, attempts: 1 }));
            } else {
                waiting.push(record);
            }
        }
        self.staged = Some(waiting);
        let offsets: Vec<Commit> = plan
            .offsets
            .iter()
            .map(|&(index, offset)| {
                let (topic, partition) = self.positions.topic_partition(index);
                (topic.to_string(), partition, offset)
            })
            .collect();
        let (count, mut reports) = (records.len(), Vec::with_capacity(records.len()));
        let result = self.transport.transact(records, &offsets, groups, &mut reports);
        for report in reports {
            let attempt = match &report {
                Report::Delivered(a) | Report::Failed(a, _) => a,
            };
            self.in_flight = self.in_flight.saturating_sub(1);
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(attempt.record.payload.len());
            match report {
                Report::Delivered(attempt) if result.is_ok() => self.delivered(attempt.record),
                Report::Failed(attempt, error) if error.class == ErrorClass::Permanent => self.failed(attempt, error),
                // Aborted with its transaction (a committed one has every record delivered).
                Report::Delivered(attempt) | Report::Failed(attempt, _) => self.send(attempt.record),
            }
        }
        match result {
            Ok(()) => {
                for &(index, offset) in &plan.offsets {
                    self.positions.mark_committed(index, offset);
                }
                self.transaction_retry = None;
                let event = PipelineEvent::TransactionCommitted { records: count, partitions: offsets.len() };
                self.telemetry.emit(event, now);
                Ok(offsets)
            }
            Err(error) => {
                let attempts = self.transaction_retry.map_or(1, |(_, n)| n + 1);
                let wait = self.backoff(attempts);
                self.transaction_retry = Some((now.saturating_add(wait), attempts));
                let event =
                    PipelineEvent::TransactionAborted { code: &error.code, error: &error.message, attempts, wait };
                self.telemetry.emit(event, now);
                Err(error)
            }
        }
    }

    /// Which staged records the next transaction writes, and the offsets it commits (see the
    /// module header); `None` in at-least-once mode.
    fn plan_transaction(&mut self, groups: &TransactionGroups<'_>) -> Option<TransactionPlan> {
        let staged = self.staged.as_ref()?;
        let mut by_staged: HashMap<SourceRef, usize> = HashMap::new();
        for record in staged {
            for hold in &record.holds {
                *by_staged.entry(hold.source()).or_default() += 1;
            }
        }
        let mut limits: HashMap<u32, i64> = HashMap::new();
        for index in self.positions.partition_indices() {
            if !groups.covers(self.positions.topic_partition(index).0) {
                continue;
            }
            if let Some(limit) = self.positions.lowest_held_beyond(index, &by_staged) {
                limits.insert(index, limit);
            }
        }
        // Alerts go only with their checkpoint: in a transaction that can commit the SLO side.
        let slo_side = groups.owners.is_some() || groups.owner_topics.is_empty();
        let mut included: Vec<bool> = staged
            .iter()
            .map(|r| slo_side || !matches!(r.destination, Destination::Alerts | Destination::SloState))
            .collect();
        loop {
            let mut changed = false;
            for (i, record) in staged.iter().enumerate() {
                if !included[i] {
                    continue;
                }
                let below = |h: &Hold| limits.get(&h.source().partition).is_some_and(|&l| h.source().offset < l);
                // SLO counts and points go in any transaction (module header).
                let counts = matches!(record.destination, Destination::Aggregates | Destination::Points);
                if counts || record.holds.iter().all(below) {
                    continue;
                }
                included[i] = false;
                changed = true;
                for hold in &record.holds {
                    let source = hold.source();
                    if let Some(limit) = limits.get_mut(&source.partition) {
                        *limit = (*limit).min(source.offset);
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut offsets: Vec<(u32, i64)> =
            limits.into_iter().filter(|&(index, offset)| self.positions.committed(index) != Some(offset)).collect();
        offsets.sort_unstable();
        let records = (0..staged.len()).filter(|&i| included[i]).collect();
        Some(TransactionPlan { records, offsets })
    }

    /// Exactly-once: transactions until every staged record that may go has gone, waiting up to
    /// `timeout` of real time (failed ones are tried again without their backoff). Returns
    /// whether the last one committed.
    pub fn flush_transactions(&mut self, groups: &TransactionGroups<'_>, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.transaction_retry = None;
            match self.transact(groups) {
                Ok(_) => return true,
                Err(error) if error.fatal => return false,
                Err(_) if std::time::Instant::now() >= deadline => {
                    tracing::error!("transactions failed until the deadline; the offsets they hold stay uncommitted");
                    return false;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn transmit(&mut self, attempt: Box<Attempt>) {
        self.in_flight += 1;
        self.in_flight_bytes += attempt.record.payload.len();
        self.transport.send(attempt, &mut self.reports);
        self.apply_reports();
    }

    /// Serves the broker's answers without waiting, and sends the retries that are due.
    pub fn serve_answers(&mut self) {
        self.poll(Duration::ZERO);
    }

    /// As [`DeliveryLedger::serve_answers`], waiting up to `timeout` for the first answer.
    pub fn poll(&mut self, timeout: Duration) {
        self.transport.poll(timeout, &mut self.reports);
        self.apply_reports();
        let now = self.clock.now();
        if self.retries.iter().any(|(due, _)| *due <= now) {
            let (due, waiting): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.retries).into_iter().partition(|(d, _)| *d <= now);
            self.retries = waiting;
            for (_, attempt) in due {
                self.transmit(attempt);
            }
        }
    }

    fn apply_reports(&mut self) {
        while !self.reports.is_empty() {
            for report in std::mem::take(&mut self.reports) {
                let attempt = match &report {
                    Report::Delivered(a) | Report::Failed(a, _) => a,
                };
                self.in_flight = self.in_flight.saturating_sub(1);
                self.in_flight_bytes = self.in_flight_bytes.saturating_sub(attempt.record.payload.len());
                match report {
                    Report::Delivered(attempt) => self.delivered(attempt.record),
                    Report::Failed(attempt, error) => self.failed(attempt, error),
                }
            }
        }
    }

    /// The record is in Kafka: its holds are dropped with it.
    fn delivered(&mut self, record: Record) {
        let event = PipelineEvent::RecordDelivered { destination: record.destination, spans: record.spans };
        self.telemetry.emit(event, self.clock.now());
    }

    fn failed(&mut self, mut attempt: Box<Attempt>, error: SendError) {
        let now = self.clock.now();
        let destination = attempt.record.destination;
        let topic = self.topics.of(destination);
        let (code, message) = (&error.code, &error.message);
        match error.class {
            ErrorClass::Retriable => {
                let (wait, attempts) = (self.backoff(attempt.attempts), attempt.attempts);
                let event = PipelineEvent::RetryScheduled { destination, topic, code, error: message, attempts, wait };
                self.telemetry.emit(event, now);
                attempt.attempts += 1;
                self.retries.push((now.saturating_add(wait), attempt));
            }
            ErrorClass::Permanent => {
                let bytes = attempt.record.payload.len();
                let event = PipelineEvent::RecordAbandoned { destination, topic, code, error: message, bytes };
                self.telemetry.emit(event, now);
                // Dropping the record drops its holds: the partition never stalls on it.
            }
        }
    }

    /// The wait before attempt `attempts + 1`.
    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.settings.retry_backoff.saturating_mul(1 << doublings).min(self.settings.max_retry_backoff)
    }

    /// Records sent and not yet answered, plus those waiting for a retry.
    pub fn unsettled(&self) -> usize {
        self.in_flight + self.retries.len()
    }

    /// Whether consumption should pause: forwarding does not keep up.
    pub fn saturated(&self) -> bool {
        self.in_flight >= self.settings.high_records || self.in_flight_bytes >= self.settings.high_bytes
    }

    /// Whether a saturated ledger has caught up enough to consume again (hysteresis: half).
    pub fn relieved(&self) -> bool {
        self.in_flight < self.settings.high_records / 2 && self.in_flight_bytes < self.settings.high_bytes / 2
    }

    /// The partitions whose messages a record waiting for its retry holds: they pause until it
    /// is delivered or abandoned.
    pub fn waiting_partitions(&self) -> BTreeSet<(String, i32)> {
        let indices: BTreeSet<u32> =
            self.retries.iter().flat_map(|(_, a)| a.record.holds.iter().map(|h| h.source().partition)).collect();
        indices
            .into_iter()
            .map(|index| {
                let (topic, partition) = self.positions.topic_partition(index);
                (topic.to_string(), partition)
            })
            .collect()
    }

    /// Waits, up to `timeout` of real time, until every record is answered; retries are sent
    /// without their backoff (the flush is bounded by the deadline). Returns whether all were.
    pub fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.unsettled() > 0 && std::time::Instant::now() < deadline {
            for (_, attempt) in std::mem::take(&mut self.retries) {
                self.transmit(attempt);
            }
            self.poll(Duration::from_millis(100));
        }
        if self.unsettled() > 0 {
            tracing::error!(
                unsettled = self.unsettled(),
                "records not acknowledged in time; the offsets they hold stay uncommitted"
            );
        }
        self.unsettled() == 0
    }

    /// Committable positions that moved since they were last returned (restricted to the
    /// partition indices `only` when given).
    pub fn commits(&mut self, only: Option<&[u32]>) -> Vec<Commit> {
        let due = self.positions.due(only);
        due.into_iter()
            .map(|(index, offset)| {
                self.positions.mark_committed(index, offset);
                let (topic, partition) = self.positions.topic_partition(index);
                (topic.to_string(), partition, offset)
            })
            .collect()
    }

    /// Commits the broker refused: each position is due again at the next [`Self::commits`],
    /// even if its partition has gone quiet (else its committed offset would stay behind for
    /// good, and the next owner would replay what was long forwarded).
    pub fn commit_refused(&mut self, refused: &[Commit]) {
        for (topic, partition, offset) in refused {
            if let Some(index) = self.positions.known_index(topic, *partition) {
                self.positions.commit_refused(index, *offset);
            }
        }
    }

    /// Forgets revoked partitions: their messages are read again by the next owner from the
    /// committed offsets. Exactly-once: staged records holding only their messages are dropped
    /// (the next owner writes them); one that also holds a kept partition's (a trace that came
    /// through two input topics) is kept without its holds on the revoked ones, lest the kept
    /// partition commit past spans never written — its spans of the revoked partitions may then
    /// be written twice, the one exception to exactly-once.
    pub fn forget(&mut self, indices: &[u32]) {
        for &index in indices {
            self.positions.forget(index);
        }
        if let Some(staged) = &mut self.staged {
            let revoked = |h: &Hold| indices.contains(&h.source().partition);
            let (before, bytes_before) = (staged.len(), staged.iter().map(|r| r.payload.len()).sum::<usize>());
            staged.retain(|record| record.holds.is_empty() || !record.holds.iter().all(revoked));
            for record in staged.iter_mut() {
                record.holds.retain(|h| !revoked(h));
            }
            let bytes_after: usize = staged.iter().map(|r| r.payload.len()).sum();
            self.in_flight = self.in_flight.saturating_sub(before - staged.len());
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes_before - bytes_after);
        }
    }

    /// Messages read and still held.
    pub fn pending_messages(&self) -> usize {
        self.positions.total_pending()
    }
}
