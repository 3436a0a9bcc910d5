//! Reads SLO checkpoints back from the compacted `kafka.slo_state_topic`.
//!
//! A [`StateReader`] is a group-less consumer assigned every partition of the state topic from
//! the beginning; it keeps the newest checkpoint of each SLO (key = SLO name; an empty value is a
//! tombstone). Before an instance takes SLOs over it [`catches up`](StateReader::catch_up) to the
//! partitions' current ends, so it sees the checkpoint the previous owner wrote on its way out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};

use super::aggregate::Checkpoint;
use crate::kafka_client::{KafkaSession, LoggedContext};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the SLO state reader: {0}")]
    Create(#[source] KafkaError),
    #[error("cannot read the partitions of {topic}: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic} does not exist")]
    Missing { topic: String },
    #[error("cannot read {topic} to its end within {timeout:?}")]
    Timeout { topic: String, timeout: Duration },
}

/// A group-less consumer of `topic` (a group id is needed to consume at all; it never joins:
/// assign, not subscribe; and never commits) and the topic's partitions.
pub(super) fn reader_of(
    mut client: ClientConfig,
    session: &Arc<KafkaSession>,
    topic: &str,
    timeout: Duration,
) -> Result<(BaseConsumer<LoggedContext>, Vec<i32>), StateError> {
    let group = format!("{topic}-reader");
    client.set("enable.auto.commit", "false").set("enable.partition.eof", "false").set("group.id", group);
    let consumer: BaseConsumer<LoggedContext> = client
        .create_with_context(LoggedContext(session.clone()))
        .map_err(|e| StateError::Create(crate::kafka_client::redact(e)))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| StateError::Metadata { topic: topic.into(), source })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(StateError::Missing { topic: topic.into() });
    }
    Ok((consumer, partitions))
}

pub struct StateReader {
    consumer: BaseConsumer<LoggedContext>,
    topic: String,
    /// Per partition: the next offset to read.
    next: HashMap<i32, i64>,
    latest: HashMap<String, Checkpoint>,
}

impl StateReader {
    /// `client` carries the brokers and `[kafka.client]` properties of a consumer.
    pub fn new(client: ClientConfig, session: &Arc<KafkaSession>, topic: &str) -> Result<Self, StateError> {
        let (consumer, partitions) = reader_of(client, session, topic, Duration::from_secs(10))?;
        let mut list = TopicPartitionList::new();
        for &p in &partitions {
            let _ = list.add_partition_offset(topic, p, Offset::Beginning);
        }
        consumer.assign(&list).map_err(|source| StateError::Metadata { topic: topic.into(), source })?;
        Ok(Self {
            consumer,
            topic: topic.into(),
            next: partitions.iter().map(|&p| (p, 0)).collect(),
            latest: HashMap::new(),
        })
    }

    /// Reads every partition up to the end it has now.
    pub fn catch_up(&mut self, timeout: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + timeout;
        let mut ends = HashMap::new();
        for &partition in self.next.keys() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, partition, timeout)
                .map_err(|source| StateError::Metadata { topic: self.topic.clone(), source })?;
            ends.insert(partition, (low, high));
        }
        // Records under the low watermark are gone: nothing to wait for there.
        for (partition, (low, _)) in &ends {
            if let Some(next) = self.next.get_mut(partition) {
                *next = (*next).max(*low);
            }
        }
        while ends.iter().any(|(p, (_, high))| self.next.get(p).is_some_and(|next| next < high)) {
            if Instant::now() > deadline {
                return Err(StateError::Timeout { topic: self.topic.clone(), timeout });
            }
            let Some(result) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let Ok(message) = result else { continue };
            self.next.insert(message.partition(), message.offset() + 1);
            let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
            match message.payload().filter(|p| !p.is_empty()) {
                None => {
                    self.latest.remove(key);
                }
                Some(payload) => match Checkpoint::decode(payload) {
                    Ok(checkpoint) => {
                        self.latest.insert(key.to_string(), checkpoint);
                    }
                    Err(error) => {
                        tracing::warn!(slo = key, %error, offset = message.offset(), "unreadable SLO checkpoint ignored")
                    }
                },
            }
        }
        Ok(())
    }

    /// How many partitions `topic` has.
    pub fn partition_count(&self, topic: &str) -> Result<i32, StateError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|source| StateError::Metadata { topic: topic.into(), source })?;
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32)
            .ok_or_else(|| StateError::Missing { topic: topic.into() })
    }

    /// The newest checkpoint of an SLO read so far.
    pub fn latest(&self, slo: &str) -> Option<Checkpoint> {
        self.latest.get(slo).cloned()
    }
}
