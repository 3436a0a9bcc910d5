//! Committing positions: each through the member that consumes its topic, synchronously on
//! revocation and shutdown, asynchronously every `kafka.commit_interval` — with the broker's
//! answer delivered to the consumer's own queue ([`commit_async`]), so a refused commit is seen
//! and made again.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::Commit;
use crate::delivery::TransactionGroups;

pub(super) fn commit_list(commits: &[Commit]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in commits {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    list
}

/// Each member's group metadata, for a transaction's offsets (`kafka.exactly_once`).
pub(super) struct MemberGroups {
    inputs: Option<ConsumerGroupMetadata>,
    owners: Option<ConsumerGroupMetadata>,
}

impl MemberGroups {
    pub(super) fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>, owners: Option<&BaseConsumer<C>>) -> Self {
        Self { inputs: consumer.group_metadata(), owners: owners.and_then(|o| o.group_metadata()) }
    }

    pub(super) fn groups<'a>(&'a self, owner_topics: &'a [String]) -> TransactionGroups<'a> {
        TransactionGroups { inputs: self.inputs.as_ref(), owners: self.owners.as_ref(), owner_topics }
    }
}

/// Commits each position through the member that consumes its topic.
pub(super) fn commit_each<C: ConsumerContext>(
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
