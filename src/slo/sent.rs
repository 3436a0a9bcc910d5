//! The alerts recently written to `kafka.alerts_topic`, read back when an instance takes SLOs
//! over, so that it continues from what the alerts' readers last heard.
//!
//! An owner writes an evaluation's alerts before the checkpoint that records their state
//! (`exchange.rs`). Killed between the two, its alerts are on the topic and its state is not: a
//! new owner restoring the older checkpoint would send the same transition again (kafka.md: one
//! owner per SLO, no duplicate alerts). So the new owner reads what was written in the last
//! [`LOOK_BACK`] of wall time (among the newest [`MAX_RECORDS_PER_PARTITION`] records of each
//! partition: what it reads does not grow with the topic) and applies each SLO's alerts on top of
//! its checkpoint, in the order written. A
//! fingerprint's alerts share a partition (the fingerprint is the key), so the last one applied
//! is the last one sent; alerts the checkpoint already holds apply again without changing it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};
use serde::Deserialize;

use super::budget::Seconds;
use super::state::{reader_of, StateError};
use crate::kafka_client::KafkaSession;

/// How far back (wall time, by record timestamp) the alerts are read: far more than the time
/// between an evaluation's alerts and its checkpoint, with room for clocks that disagree.
pub const LOOK_BACK: Duration = Duration::from_secs(15 * 60);
/// At most this many of the newest records are read per partition (the bound on what a takeover
/// reads, whatever the topic's size).
pub const MAX_RECORDS_PER_PARTITION: i64 = 2_000;

/// An alert as written (the fields the state machine needs; other messages on the topic, such
/// as deployment alerts, do not read as one and are passed over).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SentAlert {
    pub status: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, whole seconds.
    pub starts_at: String,
}

impl SentAlert {
    /// When the alert started firing, in Unix seconds (`None` when unreadable).
    pub fn starts_at_seconds(&self) -> Option<Seconds> {
        let at = humantime::parse_rfc3339(&self.starts_at).ok()?;
        Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs() as Seconds)
    }

    pub fn is_firing(&self) -> bool {
        self.status == "firing"
    }
}

/// The SLO alerts written to `topic` since `LOOK_BACK` before now, in the order written (per
/// partition), by SLO name (the `slo` label).
pub fn read_sent(
    client: ClientConfig,
    session: &Arc<KafkaSession>,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<String, Vec<SentAlert>>, StateError> {
    let (consumer, partitions) = reader_of(client, session, topic, timeout)?;
    let metadata_error = |source| StateError::Metadata { topic: topic.into(), source };
    let since = SystemTime::now().checked_sub(LOOK_BACK).unwrap_or(UNIX_EPOCH);
    let since_ms = since.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let deadline = Instant::now() + timeout;
    // The last records of each partition, those written since `since` kept: a timestamp index
    // is not served by every broker (librdkafka's mock cluster answers "end"), and the alerts an
    // owner left behind are the newest.
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).map_err(metadata_error)?;
        let start = low.max(high - MAX_RECORDS_PER_PARTITION);
        if start < high {
            let _ = assignment.add_partition_offset(topic, partition, Offset::Offset(start));
            ends.insert(partition, (start, high));
        }
    }
    let mut sent: HashMap<String, Vec<SentAlert>> = HashMap::new();
    if ends.is_empty() {
        return Ok(sent);
    }
    consumer.assign(&assignment).map_err(metadata_error)?;
    while ends.values().any(|(next, high)| next < high) {
        if Instant::now() > deadline {
            return Err(StateError::Timeout { topic: topic.into(), timeout });
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        if let Some((next, _)) = ends.get_mut(&message.partition()) {
            *next = message.offset() + 1;
        }
        if message.timestamp().to_millis().is_some_and(|at| at < since_ms) {
            continue;
        }
        let Some(alert) = message.payload().and_then(|p| serde_json::from_slice::<SentAlert>(p).ok()) else { continue };
        if let Some(slo) = alert.labels.get("slo").cloned() {
            sent.entry(slo).or_default().push(alert);
        }
    }
    Ok(sent)
}
