//! Partial SLO counts across a consumer group (kafka.md "Scale-out", slo.md "State and scale-out").
//!
//! Every instance counts the entry spans of the messages it reads — per SLO, per event-time
//! bucket, per source message — and publishes them in an [`AggregateRecord`] to
//! `kafka.aggregates_topic`, keyed by SLO name, on the partition that [`owner_partition`] gives the
//! SLO. The instance the group assigned that partition owns the SLO: it merges the records of all
//! instances into one series, evaluates it, and checkpoints it with its [`Ledger`].
//!
//! Invariants:
//! - a source message's counts are a pure function of its bytes, so a replay publishes the same
//!   counts for the same `(topic, partition, offset)`;
//! - the [`Ledger`] admits an offset once: it remembers the offsets merged at or above the
//!   publisher's *floor* (every offset under the floor was published and acknowledged before the
//!   record carrying that floor was written, so the owner has seen it, or it held nothing), and
//!   forgets what falls under it: memory stays bounded by the records in flight;
//! - a message's offset is committed only after its records are acknowledged, so a crash loses no
//!   count, and the ledger makes the replay count nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use serde::{Deserialize, Serialize};

use super::budget::{Counts, Seconds};
use super::history::HistoryPoint;
use crate::record::MAX_MESSAGE_BYTES;

/// The aggregates partition that owns an SLO: FNV-1a of its name modulo the partition count.
pub fn owner_partition(slo: &str, partitions: i32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in slo.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % partitions.max(1) as u64) as i32
}

/// One bucket of one message: (bucket start, good, total, latency sum in µs).
pub type BucketCounts = (Seconds, u64, u64, u64);

/// Counts of one SLO from one instance, as written to the aggregates topic (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateRecord {
    pub slo: String,
    pub sources: Vec<SourceCounts>,
}

/// The counts taken from one source partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCounts {
    pub topic: String,
    pub partition: i32,
    /// Every offset under this was published and acknowledged by this instance.
    pub floor: i64,
    /// Per source message (offset): its buckets.
    pub offsets: Vec<(i64, Vec<BucketCounts>)>,
}

/// What the owner of an SLO has merged from one source partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLedger {
    pub topic: String,
    pub partition: i32,
    /// Offsets under this are merged or will never come.
    pub floor: i64,
    /// Offsets at or above the floor already merged.
    pub merged: BTreeSet<i64>,
}

/// The offsets an SLO's owner has merged, per source partition: the idempotence of the merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    sources: BTreeMap<(String, i32), SourceLedger>,
}

impl Ledger {
    pub fn from_entries(entries: Vec<SourceLedger>) -> Self {
        Self { sources: entries.into_iter().map(|e| ((e.topic.clone(), e.partition), e)).collect() }
    }

    pub fn entries(&self) -> Vec<SourceLedger> {
        self.sources.values().cloned().collect()
    }

    /// Merges a record's counts into `add` (bucket, counts) for every offset not merged before;
    /// returns how many source messages were new.
    pub fn admit(&mut self, record: &AggregateRecord, mut add: impl FnMut(Seconds, Counts)) -> usize {
        let mut admitted = 0;
        for source in &record.sources {
            let ledger = self.sources.entry((source.topic.clone(), source.partition)).or_insert_with(|| SourceLedger {
                topic: source.topic.clone(),
                partition: source.partition,
                floor: i64::MIN,
                merged: BTreeSet::new(),
            });
            for (offset, buckets) in &source.offsets {
                if *offset < ledger.floor || !ledger.merged.insert(*offset) {
                    continue;
                }
                admitted += 1;
                for &(at, good, total, latency_us) in buckets {
                    add(at, Counts { good, total, latency_us });
                }
            }
            if source.floor > ledger.floor {
                ledger.floor = source.floor;
                ledger.merged = ledger.merged.split_off(&source.floor);
            }
        }
        admitted
    }
}

/// An open alert as checkpointed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCheckpoint {
    /// The tier's name, or `budget` for the budget family.
    pub alert: String,
    /// `WARNING` or `BREACHED` for the budget family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: Seconds,
}

/// The state of one SLO in `kafka.slo_state_topic` (key = SLO name; see [`Checkpoint::encode`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    pub slo: String,
    /// The owner's clock when written.
    pub written_at: Seconds,
    pub buckets: Vec<BucketCounts>,
    pub alerts: Vec<AlertCheckpoint>,
    pub ledger: Vec<SourceLedger>,
    /// The evaluations of the last hour, at most one per [`CHECKPOINT_HISTORY_STEP`] (the newest
    /// of each step): what `/api/slos/{name}/history` shows, so a new owner shows it too.
    /// Absent in checkpoints written before it was kept.
    #[serde(default)]
    pub history: Vec<HistoryPoint>,
}

/// Why a state topic value is not a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a gzip stream: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("not a checkpoint: {0}")]
    Json(#[source] serde_json::Error),
}

impl Checkpoint {
    /// The value written to `kafka.slo_state_topic`: the JSON, gzip-compressed (minute buckets
    /// compress several-fold). At the configuration's bounds it stays under
    /// [`MAX_MESSAGE_BYTES`]; should it not, the history (only a chart) is left out rather than the
    /// state.
    pub fn encode(&self) -> Vec<u8> {
        let gzip = |checkpoint: &Checkpoint| {
            let json = serde_json::to_vec(checkpoint).expect("checkpoints serialise");
            let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
            encoder.write_all(&json).and_then(|_| encoder.finish()).expect("gzip into memory")
        };
        let encoded = gzip(self);
        if encoded.len() <= MAX_MESSAGE_BYTES {
            return encoded;
        }
        tracing::warn!(slo = self.slo, bytes = encoded.len(), "SLO checkpoint too large: written without its history");
        gzip(&Checkpoint { history: Vec::new(), ..self.clone() })
    }

    /// Reads a state topic value: gzip-compressed JSON, or the plain JSON of earlier versions.
    pub fn decode(value: &[u8]) -> Result<Checkpoint, CheckpointError> {
        if value.starts_with(&[0x1f, 0x8b]) {
            let mut json = Vec::new();
            GzDecoder::new(value).read_to_end(&mut json).map_err(CheckpointError::Gzip)?;
            serde_json::from_slice(&json).map_err(CheckpointError::Json)
        } else {
            serde_json::from_slice(value).map_err(CheckpointError::Json)
        }
    }
}

/// A checkpoint keeps one evaluation per this many seconds of the last hour (evaluations come
/// every 10 s), which bounds its history to 360 points.
pub const CHECKPOINT_HISTORY_STEP: Seconds = 10;

pub const CHECKPOINT_VERSION: u32 = 1;

/// Counts gathered since the last publication, per SLO and source message. The caller holds a
/// reference on each message until its records are acknowledged.
#[derive(Debug, Default)]
pub struct AggregateBatch<S> {
    /// Per SLO index: per source message, its buckets.
    per_slo: Vec<Vec<(S, Vec<BucketCounts>)>>,
    /// The messages with counts, each once.
    messages: Vec<S>,
    entries: usize,
}

impl<S: Copy + PartialEq> AggregateBatch<S> {
    pub fn new(slos: usize) -> Self {
        Self { per_slo: (0..slos).map(|_| Vec::new()).collect(), messages: Vec::new(), entries: 0 }
    }

    /// Adds one message's counts (`tally` holds (SLO index, bucket, counts), any order); returns
    /// whether it held any.
    pub fn add(&mut self, source: S, tally: &mut Vec<(usize, Seconds, Counts)>) -> bool {
        if tally.is_empty() {
            return false;
        }
        tally.sort_unstable_by_key(|(slo, at, _)| (*slo, *at));
        for group in tally.chunk_by(|a, b| a.0 == b.0) {
            let mut buckets: Vec<BucketCounts> = Vec::with_capacity(group.len());
            for &(_, at, c) in group {
                match buckets.last_mut() {
                    Some(last) if last.0 == at => {
                        last.1 += c.good;
                        last.2 += c.total;
                        last.3 += c.latency_us;
                    }
                    _ => buckets.push((at, c.good, c.total, c.latency_us)),
                }
            }
            self.entries += buckets.len();
            self.per_slo[group[0].0].push((source, buckets));
        }
        self.messages.push(source);
        tally.clear();
        true
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Buckets waiting (of every message and SLO): what the size of the records grows with.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Takes everything: per SLO index with counts, its entries; and the messages held.
    #[allow(clippy::type_complexity)]
    pub fn take(&mut self) -> (Vec<(usize, Vec<(S, Vec<BucketCounts>)>)>, Vec<S>) {
        let per_slo = self
            .per_slo
            .iter_mut()
            .enumerate()
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(i, entries)| (i, std::mem::take(entries)))
            .collect();
        self.entries = 0;
        (per_slo, std::mem::take(&mut self.messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(floor: i64, offsets: &[i64]) -> AggregateRecord {
        AggregateRecord {
            slo: "s".into(),
            sources: vec![SourceCounts {
                topic: "spans".into(),
                partition: 0,
                floor,
                offsets: offsets.iter().map(|&o| (o, vec![(60, 1, 2, 10)])).collect(),
            }],
        }
    }

    #[test]
    fn owner_partitions_spread_and_are_stable() {
        assert_eq!(owner_partition("checkout-availability", 6), owner_partition("checkout-availability", 6));
        let used: BTreeSet<i32> = (0..40).map(|i| owner_partition(&format!("slo-{i}"), 4)).collect();
        assert_eq!(used.len(), 4, "40 names use every one of 4 partitions");
        assert_eq!(owner_partition("x", 1), 0);
    }

    #[test]
    fn an_offset_counts_once_and_memory_follows_the_floor() {
        let mut ledger = Ledger::default();
        let mut total = 0;
        let mut add = |_: Seconds, c: Counts| total += c.total;
        assert_eq!(ledger.admit(&record(0, &[0, 1, 2]), &mut add), 3);
        assert_eq!(ledger.admit(&record(0, &[2, 3]), &mut add), 1, "2 is merged already");
        assert_eq!(ledger.admit(&record(3, &[3, 4]), &mut add), 1);
        assert_eq!(ledger.entries()[0].merged, BTreeSet::from([3, 4]), "under the floor is forgotten");
        assert_eq!(ledger.admit(&record(0, &[1, 2]), &mut add), 0, "a replay under the floor");
        assert_eq!(total, 10);
    }

    #[test]
    fn records_round_trip_as_json() {
        let r = record(7, &[7, 9]);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"slo":"s","sources":[{"topic":"spans","partition":0,"floor":7,"offsets":[[7,[[60,1,2,10]]],[9,[[60,1,2,10]]]]}]}"#
        );
        assert_eq!(serde_json::from_str::<AggregateRecord>(&json).unwrap(), r);
    }

    #[test]
    fn a_batch_groups_by_slo_and_bucket() {
        let mut batch = AggregateBatch::new(2);
        let c = |good, total| Counts { good, total, latency_us: 5 };
        let mut tally = vec![(1, 120, c(1, 1)), (0, 60, c(0, 1)), (1, 120, c(0, 1)), (1, 60, c(1, 1))];
        assert!(batch.add(7u8, &mut tally));
        assert!(!batch.add(8u8, &mut tally), "the tally was emptied");
        let (per_slo, messages) = batch.take();
        assert_eq!(messages, vec![7]);
        assert_eq!(
            per_slo,
            vec![(0, vec![(7, vec![(60, 0, 1, 5)])]), (1, vec![(7, vec![(60, 1, 1, 5), (120, 1, 2, 10)])])]
        );
        assert!(batch.is_empty());
    }

    proptest! {
        /// However an instance's publications are replayed after crashes — any prefix again, from
        /// any committed offset, with floors as a publisher computes them — every message counts
        /// exactly once.
        #[test]
        fn replays_never_count_twice(
            messages in 1usize..60,
            batch in 1usize..8,
            crashes in proptest::collection::vec((0usize..60, 0usize..60), 0..4),
        ) {
            // A run publishes messages from `start` in batches; its floor is the first offset of
            // the batch (everything before was acknowledged). A crash stops it after `published`
            // messages; the next run restarts from an earlier committed offset.
            let mut ledger = Ledger::default();
            let mut counted = vec![0u64; messages];
            let mut runs: Vec<(usize, usize)> = crashes
                .iter()
                .map(|&(a, b)| {
                    let start = a % messages;
                    (start, start + 1 + b % (messages - start))
                })
                .collect();
            runs.push((runs.last().map_or(0, |r| r.0), messages));
            let mut committed = 0usize;
            for (start, stop) in runs {
                let start = start.min(committed);
                let mut offset = start;
                while offset < stop {
                    let end = (offset + batch).min(stop);
                    let r = AggregateRecord {
                        slo: "s".into(),
                        sources: vec![SourceCounts {
                            topic: "t".into(),
                            partition: 0,
                            floor: offset as i64,
                            offsets: (offset..end).map(|o| (o as i64, vec![(o as i64 * 60, 1, 1, 0)])).collect(),
                        }],
                    };
                    ledger.admit(&r, |at, c| counted[(at / 60) as usize] += c.total);
                    offset = end;
                }
                committed = committed.max(start + (stop - start) / 2);
            }
            prop_assert!(counted.iter().all(|&c| c == 1), "{:?}", counted);
        }
    }
}
