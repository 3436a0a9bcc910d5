//! Top contributors (`/api/contributors`, `/api/contributors/dimensions`): the values of one
//! resource dimension behind a series' requests, faults, errors or latency over `metrics.window`.
//!
//! The rows of the selected series' contributor tables ([`crate::signals::contributors`]) are
//! grouped by the dimension's value and ranked; the first `limit` values are answered and
//! everything else — further values, and requests from resources without the attribute — is one
//! `"__other__"` row, so the rows always add up to the series' totals. `estimated` says whether
//! any table had to fall back on its heavy-hitter summary.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Nanos;
use crate::model::trace_id_hex;
use crate::signals::contributors::ContributorTable;
use crate::signals::point::{Counts, Examples};
use crate::signals::sketch::LatencySketch;

use super::query::{whole_number, QueryError, Selection, SELECTION_PARAMETERS};
use super::timeline::Timeline;

/// The row holding everything outside the ranked values.
pub const OTHER: &str = "__other__";
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 1_000;

/// What values are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankBy {
    Requests,
    Faults,
    Errors,
    /// p99 latency.
    Latency,
}

impl RankBy {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "requests" => Self::Requests,
            "faults" => Self::Faults,
            "errors" => Self::Errors,
            "latency" => Self::Latency,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Faults => "faults",
            Self::Errors => "errors",
            Self::Latency => "latency",
        }
    }
}

/// What `/api/contributors` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ContributorQuery {
    pub selection: Selection,
    pub dimension: String,
    pub by: RankBy,
    pub limit: usize,
}

impl ContributorQuery {
    /// Parses the query; `dimensions` are the configured ones (a `dimension` outside them is
    /// named in the error, with the list).
    pub fn parse<'a>(
        parameters: impl IntoIterator<Item = (&'a str, &'a str)>,
        dimensions: &[Arc<str>],
    ) -> Result<Self, QueryError> {
        let (mut selection, mut dimension, mut by, mut limit) = (Selection::default(), None, RankBy::Requests, None);
        for (name, value) in parameters {
            if selection.accept(name, value)? {
                continue;
            }
            match name {
                "dimension" => {
                    if !dimensions.iter().any(|d| **d == *value) {
                        let known: Vec<&str> = dimensions.iter().map(|d| &**d).collect();
                        return Err(QueryError::new(
                            "dimension",
                            format!("{value:?} is not among investigation.dimensions: {}", known.join(", ")),
                        ));
                    }
                    dimension = Some(value.to_string());
                }
                "by" => {
                    by = RankBy::parse(value)
                        .ok_or_else(|| QueryError::new("by", "expected requests, faults, errors or latency"))?
                }
                "limit" => limit = Some(whole_number("limit", value, MAX_LIMIT)?),
                _ => {
                    return Err(QueryError::new(
                        name,
                        format!("unknown; expected {SELECTION_PARAMETERS}, dimension, by or limit"),
                    ))
                }
            }
        }
        selection.validate()?;
        let dimension = dimension.ok_or_else(|| QueryError::new("dimension", "required: a resource attribute"))?;
        Ok(Self { selection, dimension, by, limit: limit.unwrap_or(DEFAULT_LIMIT) })
    }
}

/// One value's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contributor {
    pub value: String,
    pub requests: u64,
    pub faults: u64,
    pub errors: u64,
    pub throttles: u64,
    pub availability: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub trace_ids: Vec<String>,
}

/// The `/api/contributors` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contributors {
    pub dimension: String,
    pub by: &'static str,
    pub estimated: bool,
    pub contributors: Vec<Contributor>,
}

#[derive(Default)]
struct ValueFigures {
    counts: Counts,
    latency: LatencySketch,
    examples: Examples,
}

impl ValueFigures {
    fn contributor(&self, value: String) -> Contributor {
        Contributor {
            value,
            requests: self.counts.requests,
            faults: self.counts.faults,
            errors: self.counts.errors,
            throttles: self.counts.throttles,
            availability: self.counts.availability(),
            p99_seconds: self.latency.quantile(0.99),
            trace_ids: self.examples.trace_ids().iter().map(trace_id_hex).collect(),
        }
    }
}

/// The answer over `metrics.window` at `now`; `dimensions` are the configured ones, in the order
/// of every profile's values.
pub fn top_contributors(
    timeline: &Timeline,
    dimensions: &[Arc<str>],
    query: &ContributorQuery,
    now: Nanos,
) -> Contributors {
    let table = timeline.contributors(|s| query.selection.selects(s), now);
    let index = dimensions.iter().position(|d| **d == *query.dimension);
    let mut by_value: HashMap<Arc<str>, ValueFigures> = HashMap::new();
    let mut other = ValueFigures::default();
    for row in table.rows() {
        let figures = match index.and_then(|i| row.profile.values.get(i).cloned().flatten()) {
            Some(value) => by_value.entry(value).or_default(),
            None => &mut other,
        };
        figures.counts.add(&row.counts);
        figures.latency.merge(&row.latency);
        figures.examples.merge(&row.examples);
    }
    let mut ranked: Vec<(Arc<str>, ValueFigures)> = by_value.into_iter().collect();
    let rank = |f: &ValueFigures| match query.by {
        RankBy::Requests => f.counts.requests as f64,
        RankBy::Faults => f.counts.faults as f64,
        RankBy::Errors => f.counts.errors as f64,
        RankBy::Latency => f.latency.quantile(0.99).unwrap_or(0.0),
    };
    // Largest first; ties by requests, then by value, so answers are stable.
    ranked.sort_by(|(va, a), (vb, b)| {
        rank(b).total_cmp(&rank(a)).then(b.counts.requests.cmp(&a.counts.requests)).then(va.cmp(vb))
    });
    let mut contributors = Vec::new();
    for (i, (value, figures)) in ranked.into_iter().enumerate() {
        if i < query.limit {
            contributors.push(figures.contributor(value.to_string()));
        } else {
            other.counts.add(&figures.counts);
            other.latency.merge(&figures.latency);
            other.examples.merge(&figures.examples);
        }
    }
    if other.counts.requests > 0 {
        contributors.push(other.contributor(OTHER.to_string()));
    }
    Contributors { dimension: query.dimension.clone(), by: query.by.as_str(), estimated: table.estimated, contributors }
}

/// The configured dimensions the selected series have seen a value of over `metrics.window`
/// (`/api/contributors/dimensions`), in configured order.
pub fn dimensions_seen(timeline: &Timeline, dimensions: &[Arc<str>], selection: &Selection, now: Nanos) -> Vec<String> {
    let table: ContributorTable = timeline.contributors(|s| selection.selects(s), now);
    dimensions
        .iter()
        .enumerate()
        .filter(|(i, _)| table.rows().iter().any(|r| r.profile.values.get(*i).is_some_and(Option::is_some)))
        .map(|(_, d)| d.to_string())
        .collect()
}

/// Parses `/api/contributors/dimensions`: a selection only.
pub fn parse_selection<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Selection, QueryError> {
    let mut selection = Selection::default();
    for (name, value) in parameters {
        if !selection.accept(name, value)? {
            return Err(QueryError::new(name, format!("unknown; expected {SELECTION_PARAMETERS}")));
        }
    }
    selection.validate()?;
    Ok(selection)
}

#[cfg(test)]
mod tests;
