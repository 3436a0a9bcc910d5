//! Back-pressure on the consumer: all of consumption pauses while the handler is saturated and
//! resumes once it is relieved; single partitions pause while a write holding their messages waits
//! for its retry. A paused consumer is still polled (group membership, rebalances); partitions
//! assigned meanwhile are paused again on a later pass.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::MessageHandler;
use crate::clock::SharedClock;
use crate::telemetry::events::PipelineEvent;
use crate::telemetry::PipelineMetrics;

/// How often a paused consumer pauses its assignment again (partitions assigned meanwhile).
const PAUSE_AGAIN: Duration = Duration::from_millis(200);

/// What is paused now.
#[derive(Default)]
pub(super) struct BackPressure {
    /// Since when all of consumption has been paused.
    paused_at: Option<Instant>,
    /// Partitions paused while a record holding their messages waits for its retry.
    waiting: BTreeSet<(String, i32)>,
}

impl BackPressure {
    /// Pauses or resumes as `handler` says: all of `inputs` by saturation, single partitions (of
    /// `inputs`, or of `owners` for `owner_topics`) by pending retries.
    pub(super) fn update<H: MessageHandler, C: ConsumerContext>(
        &mut self,
        handler: &H,
        inputs: &BaseConsumer<C>,
        owners: Option<&BaseConsumer<C>>,
        owner_topics: &[String],
        telemetry: &PipelineMetrics,
        clock: &SharedClock,
    ) {
        let (saturated, relieved) = (handler.saturated(), handler.relieved());
        match self.paused_at {
            None if saturated => {
                pause_all(inputs, true);
                telemetry.emit(PipelineEvent::Consumption { paused: true }, clock.now());
                self.paused_at = Some(Instant::now());
            }
            Some(_) if relieved => {
                pause_all(inputs, false);
                telemetry.emit(PipelineEvent::Consumption { paused: false }, clock.now());
                self.paused_at = None;
                // Still waiting for a retry: paused again below (and counted again).
                telemetry.partitions_waiting.sub(self.waiting.len() as i64);
                self.waiting.clear();
            }
            Some(at) if at.elapsed() > PAUSE_AGAIN => {
                pause_all(inputs, true);
                self.paused_at = Some(Instant::now());
            }
            _ => {}
        }
        let now_waiting = handler.waiting_partitions();
        if now_waiting == self.waiting {
            return;
        }
        let owned = |topic: &str| owner_topics.iter().any(|t| t == topic);
        let member = |topic: &str| match owners {
            Some(owners) if owned(topic) => owners,
            _ => inputs,
        };
        for (topic, partition) in now_waiting.difference(&self.waiting) {
            pause_partition(member(topic), topic, *partition, true);
        }
        for (topic, partition) in self.waiting.difference(&now_waiting) {
            // An input partition stays paused while all of consumption is (back-pressure).
            if self.paused_at.is_none() || owned(topic) {
                pause_partition(member(topic), topic, *partition, false);
            }
        }
        let partitions: Vec<&(String, i32)> = now_waiting.iter().collect();
        let before = self.waiting.len();
        telemetry.emit(PipelineEvent::PartitionsWaiting { partitions: &partitions, before }, clock.now());
        self.waiting = now_waiting;
    }
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
pub(super) fn pause_all<C: ConsumerContext>(consumer: &BaseConsumer<C>, pause: bool) {
    let Ok(assignment) = consumer.assignment() else { return };
    let result = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "cannot pause or resume partitions");
    }
}
