//! The snapshots one instance publishes to `kafka.snapshots_topic` for the others
//! (investigation.md "One view per consumer group"): its 10 s points (counts, latency sketch,
//! example traces, contributor rows), the summaries of the traces it decided, and the reports and
//! evaluation history of the SLOs it owns.
//!
//! One message is JSON (`SnapshotMessage`), keyed by the instance id, at most [`POINTS_PER_MESSAGE`]
//! points and [`SUMMARIES_PER_MESSAGE`] summaries; a snapshot may span several messages, and each
//! is merged on its own (points are additive), so a lost or late message never corrupts another.
//! A message is also split until its JSON fits in [`MAX_MESSAGE_BYTES`] (busy series carry large
//! contributor tables and sketches; Kafka refuses a message over 1 MB).
//! Contributor values travel with their dimension names, so instances configured with different
//! dimension lists still merge what they share.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{trace_id_hex, Outcome, RemoteKind, TraceId};
use crate::signals::contributors::{ContributorRow, ContributorTable, Profile};
use crate::signals::point::{Counts, Examples, Point};
use crate::signals::sketch::LatencySketch;
use crate::signals::{DependencyKey, FlushedPoint, SeriesId, ServiceKey};
use crate::slo::engine::SloReport;
use crate::slo::history::HistoryPoint;

use super::traces::TraceSummary;

/// The format's version; a message of another version is skipped.
pub const VERSION: u32 = 1;
pub const POINTS_PER_MESSAGE: usize = 500;
pub const SUMMARIES_PER_MESSAGE: usize = 2_000;
/// The largest message published: under librdkafka's `message.max.bytes` and Kafka's
/// `max.message.bytes` defaults (1 MB), which refuse a larger one outright.
pub const MAX_MESSAGE_BYTES: usize = 900_000;

impl SnapshotMessage {
    /// The message as JSON payloads of at most `limit` bytes each: a message too large is split in
    /// two (points and summaries halved; the SLOs go with the first half) until each part fits or
    /// holds a single point or summary. Every part is merged on its own, as any message is.
    pub fn encode_within(self, limit: usize) -> Vec<Vec<u8>> {
        let payload = serde_json::to_vec(&self).expect("snapshots serialise");
        if payload.len() <= limit || self.points.len() + self.traces.len() <= 1 {
            return vec![payload];
        }
        let SnapshotMessage { version, instance, url, dimensions, mut points, mut traces, slos } = self;
        let second = SnapshotMessage {
            version,
            instance: instance.clone(),
            url: url.clone(),
            dimensions: dimensions.clone(),
            points: points.split_off(points.len() / 2),
            traces: traces.split_off(traces.len() / 2),
            slos: Vec::new(),
        };
        let first = SnapshotMessage { version, instance, url, dimensions, points, traces, slos };
        let mut parts = first.encode_within(limit);
        parts.extend(second.encode_within(limit));
        parts
    }
}

/// One snapshot message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMessage {
    pub version: u32,
    /// The publishing process (a new id at every start).
    pub instance: String,
    /// Its `http.advertised_url`: where the spans of the traces it kept can be read.
    pub url: Option<String>,
    /// The dimension names of the contributor rows' values, in order.
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub points: Vec<PointWire>,
    #[serde(default)]
    pub traces: Vec<SummaryWire>,
    /// The SLOs this instance evaluates: latest report and the evaluations since the last message.
    #[serde(default)]
    pub slos: Vec<SloWire>,
}

/// One SLO as its owner publishes it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloWire {
    pub report: SloReport,
    pub history: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
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
        remote_kind: String,
    },
    Client {
        service: String,
        environment: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PointWire {
    pub series: SeriesWire,
    pub step: u64,
    pub counts: [u64; 4],
    pub latency: LatencySketch,
    /// (32-hex trace id, outcome severity).
    pub examples: Vec<(String, u8)>,
    #[serde(default)]
    pub estimated: bool,
    #[serde(default)]
    pub contributors: Vec<RowWire>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowWire {
    pub values: Vec<Option<String>>,
    pub counts: [u64; 4],
    pub latency: LatencySketch,
    pub examples: Vec<(String, u8)>,
    pub overcount: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryWire {
    pub trace_id: String,
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub span_count: usize,
    pub root_service: String,
    pub root_operation: String,
    pub http_status: u16,
    pub services: Vec<String>,
    /// (service, operation, environment) of every distinct entry span.
    pub entries: Vec<(String, String, String)>,
    pub outcome: String,
    pub kept: bool,
    pub rule: String,
}

fn counts_wire(c: &Counts) -> [u64; 4] {
    [c.requests, c.faults, c.errors, c.throttles]
}

fn counts_of([requests, faults, errors, throttles]: [u64; 4]) -> Counts {
    Counts { requests, faults, errors, throttles }
}

fn examples_wire(examples: &Examples) -> Vec<(String, u8)> {
    examples.iter_with_severity().map(|(id, severity)| (trace_id_hex(&id), severity)).collect()
}

fn trace_id_of(hex_id: &str) -> Option<TraceId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(id)
}

fn examples_of(wire: &[(String, u8)]) -> Examples {
    let mut examples = Examples::default();
    for (id, severity) in wire {
        if let Some(id) = trace_id_of(id) {
            examples.offer(&id, *severity);
        }
    }
    examples
}

fn remote_kind_of(name: &str) -> RemoteKind {
    [RemoteKind::Database, RemoteKind::Queue, RemoteKind::Aws]
        .into_iter()
        .find(|k| k.as_str() == name)
        .unwrap_or_default()
}

/// A point as published.
pub fn point_wire(flushed: &FlushedPoint) -> PointWire {
    let text = |s: &Arc<str>| s.to_string();
    let series = match &flushed.series {
        SeriesId::Service(k) => SeriesWire::Service {
            service: text(&k.service),
            operation: text(&k.operation),
            environment: text(&k.environment),
        },
        SeriesId::Dependency(k) => SeriesWire::Dependency {
            service: text(&k.service),
            operation: text(&k.operation),
            environment: text(&k.environment),
            remote_service: text(&k.remote_service),
            remote_operation: text(&k.remote_operation),
            remote_kind: flushed.remote_kind.as_str().to_string(),
        },
        SeriesId::Client { service, environment } => {
            SeriesWire::Client { service: text(service), environment: text(environment) }
        }
    };
    let point = &flushed.point;
    PointWire {
        series,
        step: flushed.step,
        counts: counts_wire(&point.counts),
        latency: point.latency.clone(),
        examples: examples_wire(&point.examples),
        estimated: point.contributors.estimated,
        contributors: point
            .contributors
            .rows()
            .iter()
            .map(|row| RowWire {
                values: row.profile.values.iter().map(|v| v.as_deref().map(str::to_string)).collect(),
                counts: counts_wire(&row.counts),
                latency: row.latency.clone(),
                examples: examples_wire(&row.examples),
                overcount: row.overcount,
            })
            .collect(),
    }
}

/// A published point, its contributor values put in the order of `local_dimensions` (values of
/// dimensions not configured here are left out).
pub fn point_of(wire: PointWire, their_dimensions: &[String], local_dimensions: &[Arc<str>]) -> FlushedPoint {
    let name = |s: String| -> Arc<str> { Arc::from(s) };
    let (series, remote_kind) = match wire.series {
        SeriesWire::Service { service, operation, environment } => (
            SeriesId::Service(ServiceKey {
                service: name(service),
                operation: name(operation),
                environment: name(environment),
            }),
            RemoteKind::default(),
        ),
        SeriesWire::Dependency { service, operation, environment, remote_service, remote_operation, remote_kind } => (
            SeriesId::Dependency(DependencyKey {
                service: name(service),
                operation: name(operation),
                remote_service: name(remote_service),
                remote_operation: name(remote_operation),
                environment: name(environment),
            }),
            remote_kind_of(&remote_kind),
        ),
        SeriesWire::Client { service, environment } => {
            (SeriesId::Client { service: name(service), environment: name(environment) }, RemoteKind::default())
        }
    };
    let positions: Vec<Option<usize>> =
        local_dimensions.iter().map(|d| their_dimensions.iter().position(|t| **t == **d)).collect();
    let rows = wire
        .contributors
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
    let point = Point {
        counts: counts_of(wire.counts),
        latency: wire.latency,
        examples: examples_of(&wire.examples),
        contributors: ContributorTable::from_rows(rows, wire.estimated),
    };
    FlushedPoint { series, remote_kind, step: wire.step, point }
}

/// A summary as published.
pub fn summary_wire(summary: &TraceSummary) -> SummaryWire {
    SummaryWire {
        trace_id: trace_id_hex(&summary.trace_id),
        start_unix_nano: summary.start_unix_nano,
        duration_nanos: summary.duration_nanos,
        span_count: summary.span_count,
        root_service: summary.root_service.to_string(),
        root_operation: summary.root_operation.to_string(),
        http_status: summary.http_status,
        services: summary.services.iter().map(|s| s.to_string()).collect(),
        entries: summary.entries.iter().map(|(s, o, e)| (s.to_string(), o.to_string(), e.to_string())).collect(),
        outcome: summary.outcome.as_str().to_string(),
        kept: summary.kept,
        rule: summary.rule.to_string(),
    }
}

/// A published summary, decided by the instance at `held_by`; `None` when malformed.
pub fn summary_of(wire: SummaryWire, held_by: Option<Arc<str>>) -> Option<TraceSummary> {
    let name = |s: String| -> Arc<str> { Arc::from(s) };
    Some(TraceSummary {
        trace_id: trace_id_of(&wire.trace_id)?,
        start_unix_nano: wire.start_unix_nano,
        duration_nanos: wire.duration_nanos,
        span_count: wire.span_count,
        root_service: name(wire.root_service),
        root_operation: name(wire.root_operation),
        http_status: wire.http_status,
        services: wire.services.into_iter().map(name).collect(),
        entries: wire.entries.into_iter().map(|(s, o, e)| (name(s), name(o), name(e))).collect(),
        outcome: Outcome::from_name(&wire.outcome)?,
        kept: wire.kept,
        rule: name(wire.rule),
        held_by,
    })
}

#[cfg(test)]
mod tests;
