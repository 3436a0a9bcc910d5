//! Publishing the points measured here — the group view's input — through a worker's delivery
//! ledger, so that they are part of the at-least-once path (kafka.md "Delivery").
//!
//! Invariants:
//! - each worker publishes its own lane of the signal store's open points: the points of the
//!   traces it released, which came from its own messages only;
//! - the signal store keeps a hold on every message whose spans are in a lane's open points
//!   ([`SignalStore::keep_holds`]); a flush hands the lane's points over with those holds, and
//!   every record of the publication carries them all, so no message is committed before every
//!   point it added to is acknowledged by the broker: a crash loses no point, and a replay may
//!   count one twice (as it may any process-local figure), with `kafka.exactly_once` too (the
//!   delivery module's header says why);
//! - nothing is flushed while the points topic's partition count is unknown: the points and
//!   their holds wait in the store;
//! - one record per points partition and publication (split to stay under
//!   [`MAX_MESSAGE_BYTES`]), keyed by the partition, so the broker sees a few large records every
//!   [`PUBLISH_EVERY`], not one per series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::position::Hold;
use crate::record::{Destination, Record};
use crate::signals::{Lane, SignalStore};
use crate::telemetry::PipelineMetrics;

use super::wire::{points_payloads, series_partition, PointWire, MAX_MESSAGE_BYTES};
use super::GroupView;

/// How often the points measured here are published (wall time: a transport matter).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);

/// Turns one lane of the signal store's open points into records for the points topic.
pub struct PointsPublisher {
    lane: Lane,
    signals: Arc<Mutex<SignalStore>>,
    view: Arc<GroupView>,
    telemetry: Arc<PipelineMetrics>,
    last: Instant,
}

impl PointsPublisher {
    pub fn new(
        lane: Lane,
        signals: Arc<Mutex<SignalStore>>,
        view: Arc<GroupView>,
        telemetry: Arc<PipelineMetrics>,
    ) -> Self {
        Self { lane, signals, view, telemetry, last: Instant::now() }
    }

    /// Whether a periodic publication is due.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= PUBLISH_EVERY
    }

    /// Flushes the lane's open points into records, each holding every message the points came
    /// from; none while the points topic is not known yet.
    pub fn records(&mut self) -> Vec<Record> {
        self.last = Instant::now();
        let Some(count) = self.view.ownership().partition_count else { return Vec::new() };
        let (points, holds) = {
            let mut store = self.signals.lock().expect("signal store lock");
            let keys = store.table_keys();
            let (flushed, holds) = store.flush_points_held(self.lane);
            let points: Vec<(i32, PointWire)> =
                flushed.iter().map(|f| (series_partition(&f.series, count), PointWire::of(f, &keys))).collect();
            (points, holds)
        };
        let mut by_partition: BTreeMap<i32, Vec<PointWire>> = BTreeMap::new();
        for (partition, point) in points {
            by_partition.entry(partition).or_default().push(point);
        }
        let mut records = Vec::new();
        for (partition, points) in by_partition {
            for payload in points_payloads(points, MAX_MESSAGE_BYTES) {
                let key = partition.to_string();
                self.telemetry
                    .group_view_bytes
                    .with_label_values(&["published"])
                    .inc_by((key.len() + payload.len()) as u64);
                records.push(Record {
                    destination: Destination::Points,
                    partition: Some(partition),
                    key: Bytes::from(key),
                    payload: Bytes::from(payload),
                    dead_letter: None,
                    encoding: None,
                    holds: holds.iter().map(Hold::share).collect(),
                    spans: 0,
                });
            }
        }
        records
    }
}
