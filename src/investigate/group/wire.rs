//! The group view's messages (investigation.md "One view per consumer group"), in postcard (a
//! compact binary serde format), each payload led by [`VERSION`]:
//! - a [`PointWire`] is one partial 10 s point of one series; the instance that measured it
//!   publishes it to `kafka.points_topic`, in a record of the points of one partition
//!   ([`points_payloads`]; partition: [`series_partition`]);
//! - the owner of that partition checkpoints its merged points to `kafka.timeline_topic` (same
//!   partition, key: [`checkpoint_key`], value: a [`PointWire`]), and after each round one
//!   [`marker_key`] record per partition whose value is the points offset the round covers;
//! - a [`RollupMessage`] is an owner's `metrics.window` rollup of the series it owns, with what it
//!   owns and where it answers, to `kafka.rollups_topic`, read by every instance.
//!
//! Invariants: a point split in parts ([`split_point`]) merges back to the same point, since
//! merging is additive; every payload this module writes is at most [`MAX_MESSAGE_BYTES`] (a
//! single contributor row larger than that is the only exception, and cannot occur with the
//! configured dimension limits); a payload of another version or that cannot be read is
//! `None`, never a panic.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{RemoteKind, TraceId};
use crate::signals::contributors::{ContributorRow, ContributorTable, Profile};
use crate::signals::exception::{ExceptionGroup, ExceptionKey, ExceptionTable};
use crate::signals::point::{Counts, Examples, Point, TableKeys};
use crate::signals::sketch::LatencySketch;
use crate::signals::{DependencyKey, FlushedPoint, QueueKey, SeriesId, ServiceKey};

/// The format's version, the first byte of every payload; another version is skipped (2: points
/// carry their exception groups; 4: and their attribute rows).
pub const VERSION: u8 = 4;
/// The versions this one reads: version 3 only added series kinds ([`SeriesWire::Queue`]) and
/// key kinds ([`CheckpointKey::Alerted`]), so version 2's payloads read the same; version 4 only
/// added the attribute rows to points, so a point of 2 or 3 reads as one without
/// ([`PointWireV3`]) and everything else reads the same.
const READS: [u8; 3] = [2, 3, 4];
pub use crate::record::MAX_MESSAGE_BYTES;

/// The points partition of a series: FNV-1a of its service's name (so a service's operations,
/// dependencies and client edge share one owner) modulo the partition count.
pub fn series_partition(series: &SeriesId, partitions: i32) -> i32 {
    service_partition(service_of(series), partitions)
}

/// The points partition of a service's series.
pub fn service_partition(service: &str, partitions: i32) -> i32 {
    crate::slo::aggregate::owner_partition(service, partitions)
}

/// The service a series belongs to (the caller, for a dependency; for a queue edge, its source).
pub fn service_of(series: &SeriesId) -> &str {
    match series {
        SeriesId::Service(k) => &k.service,
        SeriesId::Dependency(k) => &k.service,
        SeriesId::Client { service, .. } => service,
        // A queue edge's owner is its source's: the producer of publishes, the queue of
        // deliveries (so a map edge is asked of its source, as every edge is).
        SeriesId::Queue(k) if k.deliveries => &k.queue,
        SeriesId::Queue(k) => &k.service,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeriesWire {
    Service {
        service: String,
        operation: String,
        environment: String,
    },
    Dependency {
        service: String,
        operation: String,
        environment: String,
        remote_service: String,
        remote_operation: String,
    },
    Client {
        service: String,
        environment: String,
    },
    Queue {
        service: String,
        queue: String,
        environment: String,
        deliveries: bool,
    },
}

impl SeriesWire {
    pub fn of(series: &SeriesId) -> Self {
        let text = |s: &Arc<str>| s.to_string();
        match series {
            SeriesId::Service(k) => Self::Service {
                service: text(&k.service),
                operation: text(&k.operation),
                environment: text(&k.environment),
            },
            SeriesId::Dependency(k) => Self::Dependency {
                service: text(&k.service),
                operation: text(&k.operation),
                environment: text(&k.environment),
                remote_service: text(&k.remote_service),
                remote_operation: text(&k.remote_operation),
            },
            SeriesId::Client { service, environment } => {
                Self::Client { service: text(service), environment: text(environment) }
            }
            SeriesId::Queue(k) => Self::Queue {
                service: text(&k.service),
                queue: text(&k.queue),
                environment: text(&k.environment),
                deliveries: k.deliveries,
            },
        }
    }

    pub fn series(self) -> SeriesId {
        let name = |s: String| -> Arc<str> { Arc::from(s) };
        match self {
            Self::Service { service, operation, environment } => SeriesId::Service(ServiceKey {
                service: name(service),
                operation: name(operation),
                environment: name(environment),
            }),
            Self::Dependency { service, operation, environment, remote_service, remote_operation } => {
                SeriesId::Dependency(DependencyKey {
                    service: name(service),
                    operation: name(operation),
                    remote_service: name(remote_service),
                    remote_operation: name(remote_operation),
                    environment: name(environment),
                })
            }
            Self::Client { service, environment } => {
                SeriesId::Client { service: name(service), environment: name(environment) }
            }
            Self::Queue { service, queue, environment, deliveries } => SeriesId::Queue(QueueKey {
                service: name(service),
                queue: name(queue),
                environment: name(environment),
                deliveries,
            }),
        }
    }
}

fn remote_kind_code(kind: RemoteKind) -> u8 {
    match kind {
        RemoteKind::Database => 1,
        RemoteKind::Queue => 2,
        RemoteKind::Aws => 3,
        RemoteKind::Remote => 0,
    }
}

fn remote_kind_of(code: u8) -> RemoteKind {
    match code {
        1 => RemoteKind::Database,
        2 => RemoteKind::Queue,
        3 => RemoteKind::Aws,
        _ => RemoteKind::Remote,
    }
}

/// One partial point of one series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointWire {
    pub series: SeriesWire,
    pub remote_kind: u8,
    pub step: u64,
    /// requests, faults, errors, throttles.
    pub counts: [u64; 4],
    pub latency: LatencySketch,
    /// (trace id, outcome severity).
    pub examples: Vec<(TraceId, u8)>,
    pub estimated: bool,
    /// The dimension names of the contributor rows' values, in order (instances configured
    /// with different dimension lists still merge what they share).
    pub dimensions: Vec<String>,
    pub contributors: Vec<RowWire>,
    pub exceptions: Vec<ExceptionWire>,
    pub exceptions_estimated: bool,
    /// The compared span attributes naming the attribute rows' values, in order.
    pub attribute_keys: Vec<String>,
    pub attributes: Vec<RowWire>,
    pub attributes_estimated: bool,
}

/// A point as versions 2 and 3 wrote it: without attribute rows.
#[derive(Deserialize)]
struct PointWireV3 {
    series: SeriesWire,
    remote_kind: u8,
    step: u64,
    counts: [u64; 4],
    latency: LatencySketch,
    examples: Vec<(TraceId, u8)>,
    estimated: bool,
    dimensions: Vec<String>,
    contributors: Vec<RowWire>,
    exceptions: Vec<ExceptionWire>,
    exceptions_estimated: bool,
}

impl From<PointWireV3> for PointWire {
    fn from(old: PointWireV3) -> Self {
        Self {
            series: old.series,
            remote_kind: old.remote_kind,
            step: old.step,
            counts: old.counts,
            latency: old.latency,
            examples: old.examples,
            estimated: old.estimated,
            dimensions: old.dimensions,
            contributors: old.contributors,
            exceptions: old.exceptions,
            exceptions_estimated: old.exceptions_estimated,
            attribute_keys: Vec::new(),
            attributes: Vec::new(),
            attributes_estimated: false,
        }
    }
}

/// One exception group of a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExceptionWire {
    pub type_name: String,
    pub message: String,
    pub frame: String,
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub versions: Vec<String>,
    pub instances: Vec<String>,
    pub examples: Vec<(TraceId, u8)>,
    pub example_message: String,
    pub example_stack: String,
}

impl ExceptionWire {
    fn of(group: &ExceptionGroup) -> Self {
        Self {
            type_name: group.key.type_name.clone(),
            message: group.key.message.clone(),
            frame: group.key.frame.clone(),
            count: group.count,
            first_seen: group.first_seen,
            last_seen: group.last_seen,
            versions: group.versions.clone(),
            instances: group.instances.clone(),
            examples: examples_wire(&group.examples),
            example_message: group.example_message.clone(),
            example_stack: group.example_stack.clone(),
        }
    }

    fn group(self) -> ExceptionGroup {
        ExceptionGroup {
            key: ExceptionKey { type_name: self.type_name, message: self.message, frame: self.frame },
            count: self.count,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            versions: self.versions,
            instances: self.instances,
            examples: examples_of(&self.examples),
            example_message: self.example_message,
            example_stack: self.example_stack,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowWire {
    pub values: Vec<Option<String>>,
    pub counts: [u64; 4],
    pub latency: LatencySketch,
    pub examples: Vec<(TraceId, u8)>,
    pub overcount: u64,
}

fn counts_wire(c: &Counts) -> [u64; 4] {
    [c.requests, c.faults, c.errors, c.throttles]
}

fn counts_of([requests, faults, errors, throttles]: [u64; 4]) -> Counts {
    Counts { requests, faults, errors, throttles }
}

fn examples_wire(examples: &Examples) -> Vec<(TraceId, u8)> {
    examples.iter_with_severity().collect()
}

fn examples_of(wire: &[(TraceId, u8)]) -> Examples {
    let mut examples = Examples::default();
    for (id, severity) in wire {
        examples.offer(id, *severity);
    }
    examples
}

/// A table's rows as published, with the names of their values (none for an empty table).
fn rows_wire(table: &ContributorTable, keys: &[Arc<str>]) -> (Vec<String>, Vec<RowWire>) {
    if table.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let rows = table
        .rows()
        .iter()
        .map(|row| RowWire {
            values: row.profile.values.iter().map(|v| v.as_deref().map(str::to_string)).collect(),
            counts: counts_wire(&row.counts),
            latency: row.latency.clone(),
            examples: examples_wire(&row.examples),
            overcount: row.overcount,
        })
        .collect();
    (keys.iter().map(|d| d.to_string()).collect(), rows)
}

/// Rows read back, their values put in the order of `local` (values of keys not configured here
/// are left out).
fn table_of(names: &[String], rows: Vec<RowWire>, estimated: bool, local: &[Arc<str>]) -> ContributorTable {
    let positions: Vec<Option<usize>> = local.iter().map(|d| names.iter().position(|t| **t == **d)).collect();
    let rows = rows
        .into_iter()
        .map(|row| {
            let values: Arc<[Option<Arc<str>>]> =
                positions.iter().map(|p| p.and_then(|p| row.values.get(p).cloned().flatten()).map(Arc::from)).collect();
            ContributorRow {
                profile: Profile::new(values),
                counts: counts_of(row.counts),
                latency: row.latency,
                examples: examples_of(&row.examples),
                overcount: row.overcount,
            }
        })
        .collect();
    ContributorTable::from_rows(rows, estimated)
}

impl PointWire {
    /// A flushed (or merged) point as published; `keys` name its rows' values.
    pub fn of(flushed: &FlushedPoint, keys: &TableKeys) -> Self {
        Self::from_parts(&flushed.series, flushed.remote_kind, flushed.step, &flushed.point, keys)
    }

    /// A point of `series` at `step` as published.
    pub fn from_parts(series: &SeriesId, remote_kind: RemoteKind, step: u64, point: &Point, keys: &TableKeys) -> Self {
        let (dimensions, contributors) = rows_wire(&point.contributors, &keys.dimensions);
        let (attribute_keys, attributes) = rows_wire(&point.attributes, &keys.attributes);
        Self {
            series: SeriesWire::of(series),
            remote_kind: remote_kind_code(remote_kind),
            step,
            counts: counts_wire(&point.counts),
            latency: point.latency.clone(),
            examples: examples_wire(&point.examples),
            estimated: point.contributors.estimated,
            dimensions,
            contributors,
            exceptions: point.exceptions.groups().iter().map(ExceptionWire::of).collect(),
            exceptions_estimated: point.exceptions.estimated,
            attribute_keys,
            attributes,
            attributes_estimated: point.attributes.estimated,
        }
    }

    /// The point, its rows' values put in the order of the `local` keys (values of keys not
    /// configured here are left out).
    pub fn point(self, local: &TableKeys) -> FlushedPoint {
        let point = Point {
            counts: counts_of(self.counts),
            latency: self.latency,
            examples: examples_of(&self.examples),
            contributors: table_of(&self.dimensions, self.contributors, self.estimated, &local.dimensions),
            attributes: table_of(&self.attribute_keys, self.attributes, self.attributes_estimated, &local.attributes),
            exceptions: ExceptionTable::from_groups(
                self.exceptions.into_iter().map(ExceptionWire::group).collect(),
                self.exceptions_estimated,
            ),
        };
        FlushedPoint {
            series: self.series.series(),
            remote_kind: remote_kind_of(self.remote_kind),
            step: self.step,
            point,
        }
    }
}

/// Serialises `value` after the version byte.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut payload = vec![VERSION];
    postcard::to_io(value, &mut payload).expect("writing to a Vec cannot fail");
    payload
}

/// Reads a payload of a version this one reads ([`READS`]); `None` for another version or one that
/// cannot be read.
fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Option<T> {
    match payload.split_first() {
        Some((version, rest)) if READS.contains(version) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

/// A point as payloads of at most `limit` bytes: the whole point when it fits, else split by
/// rows (contributor rows, then attribute rows) — the first part carries the counts, latency,
/// examples and exception groups (bounded, [`crate::signals::exception`]), each further part
/// zero counts and a share of the rows (merging the parts gives the point back).
pub fn split_point(point: PointWire, limit: usize) -> Vec<Vec<u8>> {
    let whole = encode(&point);
    let rows = point.contributors.len() + point.attributes.len();
    if whole.len() <= limit || rows <= 1 {
        return vec![whole];
    }
    // Each part gets at least one row, so both are smaller than the whole.
    let half = rows / 2;
    let mut first = point;
    let contributors = first.contributors.split_off(half.min(first.contributors.len()));
    let attributes = first.attributes.split_off(half - first.contributors.len());
    let second = PointWire {
        series: first.series.clone(),
        remote_kind: first.remote_kind,
        step: first.step,
        counts: [0; 4],
        latency: LatencySketch::default(),
        examples: Vec::new(),
        estimated: first.estimated,
        dimensions: first.dimensions.clone(),
        contributors,
        exceptions: Vec::new(),
        exceptions_estimated: first.exceptions_estimated,
        attribute_keys: first.attribute_keys.clone(),
        attributes,
        attributes_estimated: first.attributes_estimated,
    };
    let mut parts = split_point(first, limit);
    parts.extend(split_point(second, limit));
    parts
}

/// Reads a point of any version this one reads.
pub fn decode_point(payload: &[u8]) -> Option<PointWire> {
    match payload.first() {
        Some(2 | 3) => decode::<PointWireV3>(payload).map(PointWire::from),
        _ => decode(payload),
    }
}

/// Points of one partition as payloads of at most `limit` bytes each: as many points a payload
/// as fit, a point too large alone split by [`split_point`] (its parts are payloads of one point).
pub fn points_payloads(points: Vec<PointWire>, limit: usize) -> Vec<Vec<u8>> {
    let whole = encode(&points);
    if whole.len() <= limit {
        return vec![whole];
    }
    if points.len() == 1 {
        let point = points.into_iter().next().expect("one point");
        let mut payloads = Vec::new();
        for part in split_point(point, limit.saturating_sub(8)) {
            let part = decode_point(&part).expect("a part just written reads back");
            payloads.push(encode(&vec![part]));
        }
        return payloads;
    }
    let mut first = points;
    let second = first.split_off(first.len() / 2);
    let mut payloads = points_payloads(first, limit);
    payloads.extend(points_payloads(second, limit));
    payloads
}

/// The points of a points record; `None` for another version or one that cannot be read.
pub fn decode_points(payload: &[u8]) -> Option<Vec<PointWire>> {
    match payload.first() {
        Some(2 | 3) => decode::<Vec<PointWireV3>>(payload).map(|old| old.into_iter().map(PointWire::from).collect()),
        _ => decode(payload),
    }
}

/// Changelog keys: a merged point of a series and step, or a partition's marker.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum CheckpointKey {
    Point {
        series: SeriesWire,
        step: u64,
    },
    /// The end of a checkpoint round of a partition.
    Marker {
        partition: i32,
    },
    /// A degraded deployment's alert was written (its fingerprint): a new owner does not write it
    /// again. The value is empty.
    Alerted {
        fingerprint: String,
    },
}

/// The version byte of changelog keys: it stays 2, so that a point checkpointed by an older
/// version and again by this one has one key, which compaction keeps once.
const KEY_VERSION: u8 = 2;

/// A changelog key (led by [`KEY_VERSION`], not [`VERSION`]).
fn encode_key(key: &CheckpointKey) -> Vec<u8> {
    let mut payload = vec![KEY_VERSION];
    postcard::to_io(key, &mut payload).expect("writing to a Vec cannot fail");
    payload
}

pub fn checkpoint_key(series: &SeriesWire, step: u64) -> Vec<u8> {
    encode_key(&CheckpointKey::Point { series: series.clone(), step })
}

pub fn marker_key(partition: i32) -> Vec<u8> {
    encode_key(&CheckpointKey::Marker { partition })
}

pub fn alerted_key(fingerprint: &str) -> Vec<u8> {
    encode_key(&CheckpointKey::Alerted { fingerprint: fingerprint.to_string() })
}

pub fn decode_checkpoint_key(key: &[u8]) -> Option<CheckpointKey> {
    decode(key)
}

/// A checkpointed point (the owner's merge), at most `limit` bytes: a point too large for one
/// record keeps as many of the busiest rows as fit, halving the larger table first (a table cut
/// is then flagged estimated).
pub fn checkpoint_value(mut point: PointWire, limit: usize) -> Vec<u8> {
    loop {
        let payload = encode(&point);
        if payload.len() <= limit || (point.contributors.is_empty() && point.attributes.is_empty()) {
            return payload;
        }
        let (rows, estimated) = if point.contributors.len() >= point.attributes.len() {
            (&mut point.contributors, &mut point.estimated)
        } else {
            (&mut point.attributes, &mut point.attributes_estimated)
        };
        let keep = rows.len() / 2;
        rows.sort_by(|a, b| b.counts[0].cmp(&a.counts[0]));
        rows.truncate(keep);
        *estimated = true;
    }
}

/// The value of a marker: the points offset the round covers (everything before it is in the
/// round's checkpoints).
pub fn marker_value(offset: i64) -> Vec<u8> {
    encode(&offset)
}

pub fn decode_marker(payload: &[u8]) -> Option<i64> {
    decode(payload)
}

/// One series' rollup over `metrics.window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollupSeries {
    pub series: SeriesWire,
    pub remote_kind: u8,
    pub counts: [u64; 4],
    pub latency: LatencySketch,
}

impl RollupSeries {
    pub fn of(series: &SeriesId, remote_kind: RemoteKind, counts: &Counts, latency: &LatencySketch) -> Self {
        Self {
            series: SeriesWire::of(series),
            remote_kind: remote_kind_code(remote_kind),
            counts: counts_wire(counts),
            latency: latency.clone(),
        }
    }

    pub fn into_parts(self) -> (SeriesId, RemoteKind, Counts, LatencySketch) {
        (self.series.series(), remote_kind_of(self.remote_kind), counts_of(self.counts), self.latency)
    }
}

/// What an instance says of itself: which points partitions and SLOs it owns, where its API is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The instance (random, new at every start).
    pub instance: u64,
    /// Its `http.advertised_url`, once known.
    pub url: Option<String>,
    /// When it was sent (unix nanoseconds, the sender's clock).
    pub sent: u64,
    /// The points partitions it owns, and how many there are.
    pub partitions: Vec<i32>,
    pub partition_count: i32,
    /// The SLOs it evaluates (every part of a rollup carries them all).
    pub slos: Vec<String>,
    /// Reports of the SLOs it evaluates, one JSON object each, as `/api/slos` shows them (a rollup
    /// in several parts spreads them over the parts).
    pub slo_reports: Vec<String>,
}

/// An owner's rollup: its announcement and a share of its series (a rollup too large for one
/// message is sent in several, each with the announcement and a share of its SLO reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollupMessage {
    pub from: Announcement,
    pub series: Vec<RollupSeries>,
}

/// A rollup as payloads of at most `limit` bytes each (always at least one: the announcement):
/// halved, series and SLO reports alike, until each part fits.
pub fn rollup_payloads(from: Announcement, series: Vec<RollupSeries>, limit: usize) -> Vec<Vec<u8>> {
    let message = RollupMessage { from, series };
    let whole = encode(&message);
    if whole.len() <= limit || (message.series.len() <= 1 && message.from.slo_reports.len() <= 1) {
        return vec![whole];
    }
    let RollupMessage { from: mut first_from, series: mut first } = message;
    let second = first.split_off(first.len() / 2);
    let mut second_from = first_from.clone();
    second_from.slo_reports = first_from.slo_reports.split_off(first_from.slo_reports.len() / 2);
    let mut parts = rollup_payloads(first_from, first, limit);
    parts.extend(rollup_payloads(second_from, second, limit));
    parts
}

pub fn decode_rollup(payload: &[u8]) -> Option<RollupMessage> {
    decode(payload)
}

#[cfg(test)]
mod tests;
