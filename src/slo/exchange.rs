//! The SLO side of the span path: count, publish, merge, evaluate, checkpoint, take over.
//!
//! ```text
//! input message ─ count ─▶ AggregateBatch ─ publish ─▶ aggregates topic (partition = owner of the SLO)
//! aggregates topic ─ merge (ledger: once per source message) ─▶ SloEngine ─ evaluate ─▶ alerts topic
//!                                                                  └──── checkpoint ───▶ slo state topic
//! ```
//! Invariants (with the [`DeliveryLedger`]'s holds):
//! - an input message with counts stays held until every record carrying them is acknowledged
//!   (each record holds a share of the message's hold, and of its *count hold*, which the
//!   publication floors are read from);
//! - an aggregates message stays held until a checkpoint of its SLO written after its merge is
//!   acknowledged, so the owner's committed position never passes counts its checkpoint lacks;
//! - alerts of an evaluation are written before the checkpoint that records their state;
//! - an SLO is taken over only after the state topic was read to its end, and given up only after
//!   its final checkpoint was sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;

use super::aggregate::{owner_partition, AggregateBatch, AggregateRecord, Checkpoint, SourceCounts};
use super::budget::{Counts, Seconds};
use super::engine::{AlertMessage, SloEngine};
use super::sent::read_sent;
use super::state::{StateError, StateReader};
use crate::delivery::{DeliveryLedger, Transport};
use crate::kafka_client::KafkaSession;
use crate::position::{Hold, PendingOffsets, SourceRef};
use crate::record::{Destination, Record};
use crate::telemetry::PipelineMetrics;

/// How often gathered counts are published (wall time: a transport matter, not event time).
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// Buckets (of any message and SLO) that trigger a publication earlier, bounding record size:
/// a record holds fewer than this plus one message's buckets (a bucket is about 45 bytes of JSON;
/// one message, at most 1 MB of spans, reaches at most a few thousand minutes), under
/// [`MAX_MESSAGE_BYTES`](crate::record::MAX_MESSAGE_BYTES).
const PUBLISH_ENTRIES: usize = 2_000;
/// How often a failed state reader creation is retried.
const READER_RETRY: Duration = Duration::from_secs(5);
/// How long a takeover waits to read the state topic to its end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SloExchange {
    engine: Arc<Mutex<SloEngine>>,
    names: Vec<String>,
    aggregates_topic: String,
    state_topic: String,
    /// Where alerts are written (read back at a takeover: [`super::sent`]).
    alerts_topic: String,
    /// Consumer settings for the state reader.
    reader_client: ClientConfig,
    /// The clients' shared session (logs, OAUTHBEARER tokens), for the state reader.
    kafka_session: Arc<KafkaSession>,
    reader: Option<StateReader>,
    /// Partitions of the aggregates topic (known once the reader exists).
    partitions: Option<i32>,
    batch: AggregateBatch<SourceRef>,
    /// The batch's holds on each message with counts: its hold, and its count hold.
    batch_holds: HashMap<SourceRef, (Hold, Hold)>,
    /// Messages whose counts are not acknowledged yet (held by the batch and by each record
    /// carrying them), by the ledger's partition indices: the floors of the records.
    unpublished: PendingOffsets,
    /// Per SLO: holds on merged aggregates messages waiting for a checkpoint.
    awaiting_checkpoint: Vec<Vec<Hold>>,
    last_publish: Instant,
    last_reader_attempt: Instant,
    telemetry: Arc<PipelineMetrics>,
}

impl SloExchange {
    pub fn new(
        engine: Arc<Mutex<SloEngine>>,
        aggregates_topic: &str,
        state_topic: &str,
        alerts_topic: &str,
        reader_client: ClientConfig,
        kafka_session: Arc<KafkaSession>,
        telemetry: Arc<PipelineMetrics>,
    ) -> Self {
        let names = engine.lock().expect("slo engine lock").names();
        Self {
            engine,
            batch: AggregateBatch::new(names.len()),
            batch_holds: HashMap::new(),
            awaiting_checkpoint: (0..names.len()).map(|_| Vec::new()).collect(),
            names,
            aggregates_topic: aggregates_topic.into(),
            state_topic: state_topic.into(),
            alerts_topic: alerts_topic.into(),
            reader_client,
            kafka_session,
            reader: None,
            partitions: None,
            unpublished: PendingOffsets::new(),
            last_publish: Instant::now(),
            last_reader_attempt: Instant::now(),
            telemetry,
        }
    }

    pub fn is_aggregates(&self, topic: &str) -> bool {
        topic == self.aggregates_topic
    }

    /// Gathers an input message's SLO counts (drained from `tally`, as the span path produced
    /// them); the message stays held until they are published and acknowledged.
    pub fn count(&mut self, message: &Hold, tally: &mut Vec<(usize, Seconds, Counts)>) {
        let source = message.source();
        if self.batch.add(source, tally) {
            let counted = self.unpublished.begin(source);
            self.batch_holds.insert(source, (message.share(), counted));
        }
    }

    /// Whether gathered counts are due for publication.
    pub fn publish_due(&self) -> bool {
        !self.batch.is_empty()
            && (self.last_publish.elapsed() >= PUBLISH_EVERY || self.batch.entries() >= PUBLISH_ENTRIES)
    }

    /// Publishes gathered counts: one record per SLO to its owner's partition.
    pub fn publish<T: Transport>(&mut self, delivery: &mut DeliveryLedger<T>) {
        self.last_publish = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        if self.partitions.is_none() && self.last_reader_attempt.elapsed() >= READER_RETRY {
            if let Err(error) = self.ensure_reader() {
                tracing::warn!(%error, "SLO counts wait: cannot read the aggregates and state topics");
            }
        }
        let Some(partitions) = self.partitions else {
            // The aggregates topic is not known yet: the counts (and their offsets) wait.
            return;
        };
        let (per_slo, _messages) = self.batch.take();
        let mut records = Vec::with_capacity(per_slo.len());
        for (slo, entries) in per_slo {
            let mut sources: BTreeMap<u32, SourceCounts> = BTreeMap::new();
            let mut holds = Vec::with_capacity(entries.len() * 2);
            for (source, buckets) in entries {
                let counts = sources.entry(source.partition).or_insert_with(|| {
                    let (topic, partition) = delivery.positions().topic_partition(source.partition);
                    SourceCounts { topic: topic.into(), partition, floor: 0, offsets: Vec::new() }
                });
                counts.offsets.push((source.offset, buckets));
                let (message, counted) = &self.batch_holds[&source];
                holds.extend([message.share(), counted.share()]);
            }
            for (index, counts) in sources.iter_mut() {
                counts.floor = self.floor(*index, delivery.positions());
            }
            let record = AggregateRecord { slo: self.names[slo].clone(), sources: sources.into_values().collect() };
            records.push(Record {
                destination: Destination::Aggregates,
                partition: Some(owner_partition(&record.slo, partitions)),
                key: Bytes::from(record.slo.clone()),
                payload: Bytes::from(serde_json::to_vec(&record).expect("aggregate records serialise")),
                dead_letter: None,
                encoding: None,
                holds,
                spans: 0,
            });
        }
        // The records hold what the batch held.
        self.batch_holds.clear();
        for record in records {
            delivery.send(record);
        }
    }

    /// Every offset under the floor of a partition had its counts acknowledged (or had none).
    fn floor(&mut self, index: u32, positions: &PendingOffsets) -> i64 {
        let next = positions.next_read(index).unwrap_or(0);
        self.unpublished.lowest_held(index).map_or(next, |lowest| lowest.min(next))
    }

    /// Merges an aggregates message into the SLO it is for, when this instance owns it.
    pub fn merge(&mut self, message: &Hold, payload: &[u8]) {
        let record = match serde_json::from_slice::<AggregateRecord>(payload) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, offset = message.source().offset, "unreadable aggregates record skipped");
                return;
            }
        };
        let merged = self.engine.lock().expect("slo engine lock").merge(&record);
        if let Some((slo, admitted)) = merged {
            self.awaiting_checkpoint[slo].push(message.share());
            let messages: usize = record.sources.iter().map(|s| s.offsets.len()).sum();
            let merged = &self.telemetry.slo_counts_merged;
            merged.with_label_values(&["new"]).inc_by(admitted as u64);
            merged.with_label_values(&["duplicate"]).inc_by((messages - admitted) as u64);
        }
    }

    /// Evaluates the owned SLOs: alert state changes, then checkpoints of what changed.
    pub fn evaluate<T: Transport>(&mut self, now: Seconds, delivery: &mut DeliveryLedger<T>) {
        let (messages, checkpoints) = {
            let mut engine = self.engine.lock().expect("slo engine lock");
            let messages = engine.evaluate(now);
            let checkpoints: Vec<(usize, Checkpoint)> = (0..self.names.len())
                .filter_map(|i| Some((i, engine.checkpoint(i, now, !self.awaiting_checkpoint[i].is_empty())?)))
                .collect();
            (messages, checkpoints)
        };
        for message in messages {
            send_alert(message, delivery);
        }
        for (slo, checkpoint) in checkpoints {
            self.send_checkpoint(slo, &checkpoint, delivery);
        }
    }

    fn send_checkpoint<T: Transport>(&mut self, slo: usize, checkpoint: &Checkpoint, delivery: &mut DeliveryLedger<T>) {
        delivery.send(Record {
            destination: Destination::SloState,
            partition: None,
            key: Bytes::from(checkpoint.slo.clone()),
            payload: Bytes::from(checkpoint.encode()),
            dead_letter: None,
            encoding: None,
            holds: std::mem::take(&mut self.awaiting_checkpoint[slo]),
            spans: 0,
        });
    }

    /// The SLOs whose aggregates partition is among `partitions`.
    fn owned_by(&self, partitions: &[(String, i32)]) -> Vec<usize> {
        let Some(count) = self.partitions else { return Vec::new() };
        let mine: Vec<i32> = partitions.iter().filter(|(t, _)| self.is_aggregates(t)).map(|(_, p)| *p).collect();
        (0..self.names.len()).filter(|&i| mine.contains(&owner_partition(&self.names[i], count))).collect()
    }

    /// Creates the state reader and learns the aggregates partition count, once.
    fn ensure_reader(&mut self) -> Result<(), StateError> {
        if self.reader.is_none() {
            self.last_reader_attempt = Instant::now();
            let reader = StateReader::new(self.reader_client.clone(), &self.kafka_session, &self.state_topic)?;
            self.partitions = Some(reader.partition_count(&self.aggregates_topic)?);
            self.reader = Some(reader);
        }
        Ok(())
    }

    /// Partitions were assigned: take over the SLOs of the aggregates partitions among them.
    /// Without the state topic's end the SLOs are still taken over (from the newest checkpoint
    /// read, if any): their counts must be merged somewhere; the error says what was missed.
    pub fn assign(&mut self, partitions: &[(String, i32)]) -> Result<(), StateError> {
        self.ensure_reader()?;
        let taken = self.owned_by(partitions);
        if taken.is_empty() {
            return Ok(());
        }
        let reader = self.reader.as_mut().expect("reader created above");
        let caught_up = reader.catch_up(CATCH_UP_TIMEOUT);
        // What the previous owners sent after their last checkpoints; without it an alert may be
        // sent twice, so a takeover goes on (its counts must be merged somewhere) and says so.
        let sent = read_sent(self.reader_client.clone(), &self.kafka_session, &self.alerts_topic, CATCH_UP_TIMEOUT)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the alerts sent lately: an alert the previous owner sent after its last checkpoint may be sent again");
                HashMap::new()
            });
        let mut engine = self.engine.lock().expect("slo engine lock");
        for slo in taken {
            let checkpoint = reader.latest(&self.names[slo]);
            let sent = sent.get(&self.names[slo]).map_or(&[][..], Vec::as_slice);
            tracing::info!(slo = %self.names[slo], restored = checkpoint.is_some(), alerts_sent_since = sent.len(), "evaluating SLO here");
            engine.take_over(slo, checkpoint, sent);
        }
        caught_up
    }

    /// Partitions are being revoked: publish what is gathered, checkpoint the SLOs of revoked
    /// aggregates partitions and stop evaluating them (the caller flushes and commits).
    pub fn revoke<T: Transport>(
        &mut self,
        partitions: &[(String, i32)],
        now: Seconds,
        delivery: &mut DeliveryLedger<T>,
    ) {
        self.publish(delivery);
        for slo in self.owned_by(partitions) {
            // Settled already (an instance settles before it leaves, then is revoked).
            if !self.engine.lock().expect("slo engine lock").is_owned(slo) {
                continue;
            }
            let checkpoint = self.engine.lock().expect("slo engine lock").checkpoint(slo, now, true);
            if let Some(checkpoint) = checkpoint {
                self.send_checkpoint(slo, &checkpoint, delivery);
            }
            self.engine.lock().expect("slo engine lock").release(slo);
            tracing::info!(slo = %self.names[slo], "SLO handed over");
        }
    }

    /// A revoked input partition: its unpublished offsets are read again by the next owner.
    pub fn forget(&mut self, index: u32) {
        self.unpublished.forget(index);
    }
}

/// Writes one alert message to the alerts topic, keyed by fingerprint.
fn send_alert<T: Transport>(message: AlertMessage, delivery: &mut DeliveryLedger<T>) {
    tracing::info!(alert = %message.labels.get("alertname").map(String::as_str).unwrap_or(""), slo = %message.labels.get("slo").map(String::as_str).unwrap_or(""), status = message.status, summary = %message.annotations["summary"], "SLO alert");
    delivery.send(Record {
        destination: Destination::Alerts,
        partition: None,
        key: Bytes::from(message.fingerprint.clone()),
        payload: Bytes::from(serde_json::to_vec(&message).expect("alert messages serialise")),
        dead_letter: None,
        encoding: None,
        holds: Vec::new(),
        spans: 0,
    });
}
