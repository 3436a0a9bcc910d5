//! History (`/api/history`): the selected series' 10 s points over the last
//! `investigation.history` (or `from`/`to`), for charts without Prometheus.
//!
//! Every step of the range is answered, oldest first; a step without requests has zero counts and
//! no latency, so a chart shows the gap rather than joining across it.

use serde::Serialize;

use crate::clock::Nanos;
use crate::model::trace_id_hex;
use crate::signals::point::STEP_NANOS;

use super::query::{unix_seconds, QueryError, Selection, SELECTION_PARAMETERS};
use super::timeline::{Aggregate, Timeline};

/// What `/api/history` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryQuery {
    pub selection: Selection,
    /// Unix seconds: the first step holding `from`, the last holding `to` (both within the
    /// history kept).
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl HistoryQuery {
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let mut query = Self { selection: Selection::default(), from: None, to: None };
        for (name, value) in parameters {
            if query.selection.accept(name, value)? {
                continue;
            }
            match name {
                "from" => query.from = Some(unix_seconds("from", value)?),
                "to" => query.to = Some(unix_seconds("to", value)?),
                _ => {
                    return Err(QueryError::new(name, format!("unknown; expected {SELECTION_PARAMETERS}, from or to")))
                }
            }
        }
        query.selection.validate()?;
        if let (Some(from), Some(to)) = (query.from, query.to) {
            if from > to {
                return Err(QueryError::new("from", "must not be after to"));
            }
        }
        Ok(query)
    }
}

/// One step of a chart.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPoint {
    /// The step's start, RFC 3339 UTC.
    pub time: String,
    pub requests: u64,
    pub faults: u64,
    pub errors: u64,
    pub throttles: u64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub trace_ids: Vec<String>,
}

/// The `/api/history` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub step_seconds: u64,
    pub points: Vec<HistoryPoint>,
}

fn step_time(step: u64) -> String {
    let seconds = (step * STEP_NANOS / 1_000_000_000) as i64;
    chrono::DateTime::from_timestamp(seconds, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

impl HistoryPoint {
    fn of(step: u64, aggregate: &Aggregate) -> Self {
        let latency = &aggregate.latency;
        Self {
            time: step_time(step),
            requests: aggregate.counts.requests,
            faults: aggregate.counts.faults,
            errors: aggregate.counts.errors,
            throttles: aggregate.counts.throttles,
            p50_seconds: latency.quantile(0.5),
            p90_seconds: latency.quantile(0.9),
            p99_seconds: latency.quantile(0.99),
            trace_ids: aggregate.examples.trace_ids().iter().map(trace_id_hex).collect(),
        }
    }
}

/// The selected series' history at `now`.
pub fn history(timeline: &Timeline, query: &HistoryQuery, now: Nanos) -> History {
    let (oldest, newest) = timeline.history(now);
    let step_of_seconds = |s: i64| (s.max(0) as u64 * 1_000_000_000) / STEP_NANOS;
    let from = query.from.map_or(oldest, step_of_seconds).max(oldest);
    let to = query.to.map_or(newest, step_of_seconds).min(newest);
    let mut measured = timeline.points(|s| query.selection.selects(s), from, to).into_iter().peekable();
    let empty = Aggregate::default();
    let points = (from..=to)
        .map(|step| match measured.next_if(|(s, _)| *s == step) {
            Some((_, aggregate)) => HistoryPoint::of(step, &aggregate),
            None => HistoryPoint::of(step, &empty),
        })
        .collect();
    History { step_seconds: STEP_NANOS / 1_000_000_000, points }
}

#[cfg(test)]
mod tests;
