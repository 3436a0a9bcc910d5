//! Typed pipeline events: each one is logged and counted here, in one place, with enum labels,
//! so a log line and its counter never disagree. Repeated warnings go through one
//! [`RateLimitedWarning`] per kind (and per destination and error): the first is logged, later
//! ones at most once per interval with how many were not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{PipelineMetrics, RateLimitedWarning};
use crate::clock::Nanos;
use crate::format::{DecodeError, DecodeStats};
use crate::record::Destination;

/// Something the pipeline did that an operator may want to see or count.
#[derive(Debug)]
pub enum PipelineEvent<'a> {
    /// A message was decoded: its spans counted by encoding, its invalid spans by reason.
    MessageDecoded { stats: &'a DecodeStats },
    /// A message could not be decoded: it goes to the dead-letter topic unchanged.
    MessageUndecodable { topic: &'a str, partition: i32, offset: i64, error: &'a DecodeError },
    /// The broker acknowledged a record.
    RecordDelivered { destination: Destination, spans: usize },
    /// A record failed and will be sent again after `wait`.
    RetryScheduled {
        destination: Destination,
        topic: &'a str,
        code: &'a str,
        error: &'a str,
        attempts: u32,
        wait: Duration,
    },
    /// A record failed with an error retrying cannot fix: abandoned, its offsets move on.
    RecordAbandoned { destination: Destination, topic: &'a str, code: &'a str, error: &'a str, bytes: usize },
    /// A transaction (kafka.exactly_once) committed `records` records and the offsets of
    /// `partitions` partitions.
    TransactionCommitted { records: usize, partitions: usize },
    /// A transaction failed and was aborted: its records are sent again in the next one, after
    /// `wait`; `attempts` failed in a row.
    TransactionAborted { code: &'a str, error: &'a str, attempts: u32, wait: Duration },
    /// A worker's consumption paused (back-pressure, or a record waiting for its retry) or resumed.
    Consumption { paused: bool },
    /// These partitions of a worker (none when empty) are paused until a record holding their
    /// messages, waiting for its retry, is delivered or abandoned; `before` were paused so until
    /// now (the gauge sums the workers).
    PartitionsWaiting { partitions: &'a [&'a (String, i32)], before: usize },
    /// Root-less traces of revoked partitions were left to the partitions' next owner.
    TracesHandedOver { traces: usize },
}

/// Which repeated warning a limiter is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WarningKind {
    Undecodable,
    Retry(Destination, String),
    Abandoned(Destination, String),
    TransactionAborted(String),
}

/// How often each kind of repeated warning may be logged.
const UNDECODABLE_EVERY: Duration = Duration::from_secs(10);
const DELIVERY_EVERY: Duration = Duration::from_secs(60);

/// The rate limiters of repeated warnings.
#[derive(Default)]
pub struct EventLog {
    limiters: Mutex<HashMap<WarningKind, RateLimitedWarning>>,
}

impl EventLog {
    /// `Some(suppressed)` when this occurrence of `kind` is to be logged.
    fn admit(&self, kind: WarningKind, every: Duration, now: Nanos) -> Option<u64> {
        let mut limiters = self.limiters.lock().expect("event log lock");
        limiters.entry(kind).or_insert_with(|| RateLimitedWarning::new(every)).admit(now)
    }
}

impl PipelineMetrics {
    /// Counts and logs one event at time `now`.
    pub fn emit(&self, event: PipelineEvent<'_>, now: Nanos) {
        match event {
            PipelineEvent::MessageDecoded { stats } => {
                if let Some(encoding) = stats.encoding {
                    self.spans_received.with_label_values(&[encoding.as_str()]).inc_by(stats.accepted as u64);
                }
                if stats.invalid_id > 0 {
                    self.spans_rejected.with_label_values(&["invalid_id"]).inc_by(stats.invalid_id as u64);
                }
                if stats.invalid_time > 0 {
                    self.spans_rejected.with_label_values(&["invalid_time"]).inc_by(stats.invalid_time as u64);
                }
            }
            PipelineEvent::MessageUndecodable { topic, partition, offset, error } => {
                self.messages_rejected.with_label_values(&[error.reason()]).inc();
                if let Some(suppressed) = self.events.admit(WarningKind::Undecodable, UNDECODABLE_EVERY, now) {
                    tracing::warn!(%topic, partition, offset, %error, suppressed, "undecodable message sent to the dead-letter topic");
                }
            }
            PipelineEvent::RecordDelivered { destination, spans } => match destination {
                Destination::Output => {
                    self.spans_forwarded.inc_by(spans as u64);
                    self.traces_forwarded.inc();
                }
                Destination::DeadLetter => self.messages_dead_lettered.inc(),
                Destination::Repartition
                | Destination::Alerts
                | Destination::Aggregates
                | Destination::SloState
                | Destination::Points => {}
            },
            PipelineEvent::RetryScheduled { destination, topic, code, error, attempts, wait } => {
                // The data path's records; the group view's points are retried alike, uncounted.
                if destination != Destination::Points {
                    self.forward_retries.inc();
                }
                let kind = WarningKind::Retry(destination, code.to_string());
                if let Some(suppressed) = self.events.admit(kind, DELIVERY_EVERY, now) {
                    tracing::warn!(topic, destination = destination.as_str(), %error, attempts, retry_in = ?wait, suppressed, "produce failed, retrying later; consumption pauses meanwhile");
                }
            }
            PipelineEvent::RecordAbandoned { destination, topic, code, error, bytes } => {
                self.forward_failures.with_label_values(&[destination.as_str()]).inc();
                let kind = WarningKind::Abandoned(destination, code.to_string());
                if let Some(suppressed) = self.events.admit(kind, DELIVERY_EVERY, now) {
                    tracing::error!(topic, destination = destination.as_str(), %error, bytes, suppressed, "record abandoned: retrying cannot fix this; its offsets move on");
                }
            }
            PipelineEvent::TransactionCommitted { records, partitions } => {
                self.transactions.with_label_values(&["committed"]).inc();
                tracing::trace!(records, partitions, "transaction committed");
            }
            PipelineEvent::TransactionAborted { code, error, attempts, wait } => {
                self.transactions.with_label_values(&["aborted"]).inc();
                let kind = WarningKind::TransactionAborted(code.to_string());
                if let Some(suppressed) = self.events.admit(kind, DELIVERY_EVERY, now) {
                    tracing::warn!(%error, attempts, retry_in = ?wait, suppressed, "transaction aborted: its records and offsets go in the next one");
                }
            }
            PipelineEvent::Consumption { paused } => {
                if paused {
                    self.consumption_paused.inc();
                } else {
                    self.consumption_paused.dec();
                }
                if paused {
                    tracing::warn!("back-pressure: forwarding is not keeping up, pausing consumption");
                } else {
                    tracing::info!("back-pressure relieved: resuming consumption");
                }
            }
            PipelineEvent::PartitionsWaiting { partitions, before } => {
                self.partitions_waiting.add(partitions.len() as i64 - before as i64);
                if partitions.is_empty() {
                    tracing::info!("no write waits for a retry: every partition consumes again");
                } else {
                    tracing::warn!(
                        ?partitions,
                        "partitions paused while a write holding their messages waits for its retry"
                    );
                }
            }
            PipelineEvent::TracesHandedOver { traces } => {
                self.traces_handed_over.inc_by(traces as u64);
                if traces > 0 {
                    tracing::info!(traces, "root-less traces of revoked partitions left to their next owner");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_record_is_counted_every_time_and_logged_once_a_minute() {
        let metrics = PipelineMetrics::new();
        let t0 = Nanos(1_000_000_000_000);
        let abandoned = |at: Nanos| {
            let event = PipelineEvent::RecordAbandoned {
                destination: Destination::Output,
                topic: "sampled_spans",
                code: "MessageSizeTooLarge",
                error: "too large",
                bytes: 10,
            };
            metrics.emit(event, at);
        };
        abandoned(t0);
        abandoned(t0.saturating_add(Duration::from_secs(1)));
        assert_eq!(metrics.forward_failures.with_label_values(&["output"]).get(), 2, "every occurrence counts");
        let limiters = metrics.events.limiters.lock().unwrap();
        let kind = WarningKind::Abandoned(Destination::Output, "MessageSizeTooLarge".into());
        let mut limiter = limiters[&kind].clone();
        assert_eq!(limiter.admit(t0.saturating_add(Duration::from_secs(59))), None, "the second was not logged");
        assert_eq!(
            limiter.admit(t0.saturating_add(Duration::from_secs(60))),
            Some(2),
            "the next log says how many were not"
        );
    }
}
