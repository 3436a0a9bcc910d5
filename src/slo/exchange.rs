//! The SLO side of the span path: count, publish, merge, evaluate, checkpoint, take over.
//!
//! ```text
//! input message ─ count ─▶ AggregateBatch ─ publish ─▶ aggregates topic (partition = owner of the SLO)
//! aggregates topic ─ merge (ledger: once per source message) ─▶ SloEngine ─ evaluate ─▶ alerts topic
//!                                                                  └──── checkpoint ───▶ slo state topic
//! ```
//! Invariants (with the [`OffsetTracker`] of the stage):
//! - an input message with counts stays pending until every record carrying them is acknowledged;
//! - an aggregates message stays pending until a checkpoint of its SLO written after its merge is
//!   acknowledged, so the owner's committed position never passes counts its checkpoint lacks;
//! - alerts of an evaluation are written before the checkpoint that records their state;
//! - an SLO is taken over only after the state topic was read to its end, and given up only after
//!   its final checkpoint was sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;

use super::aggregate::{owner_partition, AggregateBatch, AggregateRecord, Checkpoint, SourceCounts};
use super::budget::{Counts, Seconds};
use super::engine::{AlertMessage, SloCounter, SloEngine};
use super::state::{StateError, StateReader};
use crate::assemble::SourceRef;
use crate::model::Span;
use crate::sink::{Completion, Delivery, Destination, Forwarder};
use crate::source::offsets::OffsetTracker;
use crate::telemetry::PipelineMetrics;

/// How often gathered counts are published (wall time: a transport matter, not event time).
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// Entries (message × SLO) that trigger a publication earlier, bounding record size.
const PUBLISH_ENTRIES: usize = 2_000;
/// How often a failed state reader creation is retried.
const READER_RETRY: Duration = Duration::from_secs(5);
/// How long a takeover waits to read the state topic to its end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SloExchange {
    engine: Arc<Mutex<SloEngine>>,
    counter: SloCounter,
    names: Vec<String>,
    aggregates_topic: String,
    state_topic: String,
    /// Consumer settings for the state reader.
    reader_client: ClientConfig,
    reader: Option<StateReader>,
    /// Partitions of the aggregates topic (known once the reader exists).
    partitions: Option<i32>,
    batch: AggregateBatch<SourceRef>,
    tally: Vec<(usize, Seconds, Counts)>,
    /// Messages whose counts are not acknowledged yet (the batch's hold and one per record), by
    /// the stage's partition indices: the floors of the records.
    unpublished: OffsetTracker,
    /// Per SLO: merged aggregates messages waiting for a checkpoint.
    awaiting_checkpoint: Vec<Vec<SourceRef>>,
    last_publish: Instant,
    last_reader_attempt: Instant,
    telemetry: Arc<PipelineMetrics>,
}

impl SloExchange {
    pub fn new(
        engine: Arc<Mutex<SloEngine>>,
        aggregates_topic: &str,
        state_topic: &str,
        reader_client: ClientConfig,
        telemetry: Arc<PipelineMetrics>,
    ) -> Self {
        let (counter, names) = {
            let engine = engine.lock().expect("slo engine lock");
            (engine.counter(), engine.names())
        };
        Self {
            engine,
            batch: AggregateBatch::new(names.len()),
            awaiting_checkpoint: vec![Vec::new(); names.len()],
            counter,
            names,
            aggregates_topic: aggregates_topic.into(),
            state_topic: state_topic.into(),
            reader_client,
            reader: None,
            partitions: None,
            tally: Vec::new(),
            unpublished: OffsetTracker::new(),
            last_publish: Instant::now(),
            last_reader_attempt: Instant::now(),
            telemetry,
        }
    }

    pub fn is_aggregates(&self, topic: &str) -> bool {
        topic == self.aggregates_topic
    }

    /// Counts an input message's spans; the message stays pending until they are published.
    pub fn count(&mut self, source: SourceRef, spans: &[Span], offsets: &mut OffsetTracker) {
        self.counter.count(spans, &mut self.tally);
        if self.batch.add(source, &mut self.tally) {
            offsets.acquire(source, 1);
            self.unpublished.begin(source);
        }
    }

    /// Whether gathered counts are due for publication.
    pub fn publish_due(&self) -> bool {
        !self.batch.is_empty()
            && (self.last_publish.elapsed() >= PUBLISH_EVERY || self.batch.entries() >= PUBLISH_ENTRIES)
    }

    /// Publishes gathered counts: one record per SLO to its owner's partition.
    pub fn publish(
        &mut self,
        offsets: &mut OffsetTracker,
        forwarder: &mut Forwarder,
        completions: &mut Vec<Completion>,
    ) {
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
        let (per_slo, messages) = self.batch.take();
        for (slo, entries) in per_slo {
            let mut sources: BTreeMap<u32, SourceCounts> = BTreeMap::new();
            let mut refs = Vec::with_capacity(entries.len());
            for (source, buckets) in entries {
                let counts = sources.entry(source.partition).or_insert_with(|| {
                    let (topic, partition) = offsets.topic_partition(source.partition);
                    SourceCounts { topic: topic.into(), partition, floor: 0, offsets: Vec::new() }
                });
                counts.offsets.push((source.offset, buckets));
                offsets.acquire(source, 1);
                self.unpublished.acquire(source, 1);
                refs.push(source);
            }
            for (index, counts) in sources.iter_mut() {
                counts.floor = self.floor(*index, offsets);
            }
            let record = AggregateRecord { slo: self.names[slo].clone(), sources: sources.into_values().collect() };
            let delivery = Delivery {
                destination: Destination::Aggregates,
                partition: Some(owner_partition(&record.slo, partitions)),
                key: Bytes::from(record.slo.clone()),
                payload: Bytes::from(serde_json::to_vec(&record).expect("aggregate records serialise")),
                dead_letter: None,
                sources: refs,
                spans: 0,
                attempts: 1,
            };
            forwarder.send(Box::new(delivery), completions);
        }
        // The batch's own hold on each message.
        for source in messages {
            self.published(&[source]);
            offsets.release(source);
        }
    }

    /// Every offset under the floor of a partition had its counts acknowledged (or had none).
    fn floor(&self, index: u32, offsets: &OffsetTracker) -> i64 {
        let next = offsets.next_read(index).unwrap_or(0);
        match self.unpublished.pending(index) {
            0 => next,
            _ => self.unpublished.committable(index).map_or(next, |p| p.min(next)),
        }
    }

    /// Records carrying these messages' counts were acknowledged (or abandoned).
    pub fn published(&mut self, sources: &[SourceRef]) {
        for &source in sources {
            self.unpublished.release(source);
        }
    }

    /// Merges an aggregates message into the SLO it is for, when this instance owns it.
    pub fn merge(&mut self, source: SourceRef, payload: &[u8], offsets: &mut OffsetTracker) {
        let record = match serde_json::from_slice::<AggregateRecord>(payload) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, offset = source.offset, "unreadable aggregates record skipped");
                return;
            }
        };
        let merged = self.engine.lock().expect("slo engine lock").merge(&record);
        if let Some((slo, admitted)) = merged {
            offsets.acquire(source, 1);
            self.awaiting_checkpoint[slo].push(source);
            let messages: usize = record.sources.iter().map(|s| s.offsets.len()).sum();
            let merged = &self.telemetry.slo_counts_merged;
            merged.with_label_values(&["new"]).inc_by(admitted as u64);
            merged.with_label_values(&["duplicate"]).inc_by((messages - admitted) as u64);
        }
    }

    /// Evaluates the owned SLOs: alert state changes, then checkpoints of what changed.
    pub fn evaluate(&mut self, now: Seconds, forwarder: &mut Forwarder, completions: &mut Vec<Completion>) {
        let (messages, checkpoints) = {
            let mut engine = self.engine.lock().expect("slo engine lock");
            let messages = engine.evaluate(now);
            let checkpoints: Vec<(usize, Checkpoint)> = (0..self.names.len())
                .filter_map(|i| Some((i, engine.checkpoint(i, now, !self.awaiting_checkpoint[i].is_empty())?)))
                .collect();
            (messages, checkpoints)
        };
        for message in messages {
            send_alert(message, forwarder, completions);
        }
        for (slo, checkpoint) in checkpoints {
            self.send_checkpoint(slo, &checkpoint, forwarder, completions);
        }
    }

    fn send_checkpoint(
        &mut self,
        slo: usize,
        checkpoint: &Checkpoint,
        forwarder: &mut Forwarder,
        completions: &mut Vec<Completion>,
    ) {
        let delivery = Delivery {
            destination: Destination::SloState,
            partition: None,
            key: Bytes::from(checkpoint.slo.clone()),
            payload: Bytes::from(serde_json::to_vec(checkpoint).expect("checkpoints serialise")),
            dead_letter: None,
            sources: std::mem::take(&mut self.awaiting_checkpoint[slo]),
            spans: 0,
            attempts: 1,
        };
        forwarder.send(Box::new(delivery), completions);
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
            let reader = StateReader::new(self.reader_client.clone(), &self.state_topic)?;
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
        let mut engine = self.engine.lock().expect("slo engine lock");
        for slo in taken {
            let checkpoint = reader.latest(&self.names[slo]);
            tracing::info!(slo = %self.names[slo], restored = checkpoint.is_some(), "evaluating SLO here");
            engine.take_over(slo, checkpoint);
        }
        caught_up
    }

    /// Partitions are being revoked: publish what is gathered, checkpoint the SLOs of revoked
    /// aggregates partitions and stop evaluating them (the caller flushes and commits).
    pub fn revoke(
        &mut self,
        partitions: &[(String, i32)],
        now: Seconds,
        offsets: &mut OffsetTracker,
        forwarder: &mut Forwarder,
        completions: &mut Vec<Completion>,
    ) {
        self.publish(offsets, forwarder, completions);
        for slo in self.owned_by(partitions) {
            let checkpoint = self.engine.lock().expect("slo engine lock").checkpoint(slo, now, true);
            if let Some(checkpoint) = checkpoint {
                self.send_checkpoint(slo, &checkpoint, forwarder, completions);
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
fn send_alert(message: AlertMessage, forwarder: &mut Forwarder, completions: &mut Vec<Completion>) {
    tracing::info!(alert = %message.labels.get("alertname").map(String::as_str).unwrap_or(""), slo = %message.labels.get("slo").map(String::as_str).unwrap_or(""), status = message.status, summary = %message.annotations["summary"], "SLO alert");
    let delivery = Delivery {
        destination: Destination::Alerts,
        partition: None,
        key: Bytes::from(message.fingerprint.clone()),
        payload: Bytes::from(serde_json::to_vec(&message).expect("alert messages serialise")),
        dead_letter: None,
        sources: Vec::new(),
        spans: 0,
        attempts: 1,
    };
    forwarder.send(Box::new(delivery), completions);
}
