//! The consumer's context: librdkafka's callbacks for one member. Rebalances (revoked
//! partitions are settled and committed synchronously inside the callback), the answers to
//! asynchronous commits (refused positions are due again), statistics (join state, consumer lag,
//! readiness), logs and OAUTHBEARER tokens (the [`KafkaSession`]), and the rejoin watchdog: a
//! member stuck joining for [`JOIN_WATCHDOG`] subscribes again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use super::commit::commit_list;
use super::{Commit, MessageHandler, Readiness};
use crate::delivery::TransactionGroups;
use crate::kafka_client::KafkaSession;
use crate::telemetry::PipelineMetrics;

pub(super) struct SourceContext<H: MessageHandler> {
    pub(super) member: usize,
    pub(super) handler: Arc<Mutex<H>>,
    pub(super) ready: Arc<Readiness>,
    pub(super) telemetry: Arc<PipelineMetrics>,
    pub(super) leaving: AtomicBool,
    pub(super) log: Arc<KafkaSession>,
    /// librdkafka's join state of this member (from its statistics) and since when.
    pub(super) join: Mutex<JoinState>,
    /// Whether this is the second member, of `{group_id}-owners`.
    pub(super) owners: bool,
    /// The topics the second member consumes (a transaction commits them through its group).
    pub(super) owner_topics: Vec<String>,
    /// When a refused commit was last logged (during a rebalance every attempt is refused: one
    /// line every few seconds says it).
    pub(super) refusal_logged: Mutex<Option<Instant>>,
}

/// A member's join state as librdkafka reports it, and when it last changed.
pub(super) struct JoinState {
    pub(super) state: String,
    pub(super) since: Instant,
}

/// How long a member may stay in a join state other than `steady` or `wait-join` (waiting for the
/// coordinator, which legitimately lasts up to a session timeout) before it joins again. Seen on
/// the mock cluster: a member stuck for good in `wait-metadata`, its partitions never read.
pub(super) const JOIN_WATCHDOG: Duration = Duration::from_secs(15);

impl<H: MessageHandler> SourceContext<H> {
    /// Whether this member has been stuck joining for longer than [`JOIN_WATCHDOG`].
    fn stuck_joining(&self) -> Option<String> {
        let join = self.join.lock().expect("join lock");
        let waiting = !matches!(join.state.as_str(), "steady" | "wait-join" | "");
        (waiting && join.since.elapsed() > JOIN_WATCHDOG).then(|| join.state.clone())
    }
}

pub(super) fn partitions_of(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
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
            tracing::info!(member = self.member, owners = self.owners, partitions = ?partitions, "partitions revoked: deciding their traces");
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
            self.ready.revoke(self.member, &partitions);
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
                tracing::info!(member = self.member, owners = self.owners, partitions = ?partitions, "partitions assigned");
                self.handler.lock().expect("handler lock").assign(&partitions);
                self.ready.assign(self.member, &partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl<H: MessageHandler> SourceContext<H> {
    /// Subscribes `member` to `topics` again when it has been stuck joining (see [`JOIN_WATCHDOG`]).
    pub(super) fn rejoin_if_stuck(member: &BaseConsumer<Self>, worker: usize, topics: &[String]) {
        let Some(state) = member.context().stuck_joining() else { return };
        tracing::warn!(member = worker, join_state = %state, waited = ?JOIN_WATCHDOG, "group join stuck: joining again");
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
