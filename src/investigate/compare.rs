//! Compare (`/api/compare`, investigation.md "What changed"): what the selected requests of a
//! series have in common that the others do not.
//!
//! A selection is the requests of a series over a range that a mark picks out — an outcome
//! (`fault`, `error`, `throttle`) or a latency (`minLatency`); the baseline is the other requests
//! of the same series and range. For every contributor dimension (a resource attribute) and every
//! compared span attribute (`investigation.compare_attributes`), each value's share of the
//! selection is set against its share of the baseline, and values are ranked by the difference
//! (`selectionShare − baselineShare`), so a value behind a tenth of the requests and nine tenths
//! of the faults comes before a rare one that happens to have failed once; keys are ranked by
//! their first value's difference. `lift` is the ratio of the shares.
//!
//! The figures come from the series' two tables ([`crate::signals::contributors`]): rows by
//! resource profile and rows by span attribute profile, each holding counts and a latency sketch:
//! memory stays bounded per series and table, and `estimated` says when either fell back on its
//! heavy-hitter summary. A latency mark counts the requests in the sketch's bucket of
//! `minLatency` and above (within the sketch's 0.8 %). Requests without a key's attribute count
//! in the totals, not as a value. Both tables count every request once, so the totals come from
//! whichever is kept.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Nanos;
use crate::model::trace_id_hex;
use crate::signals::contributors::{ContributorRow, ContributorTable};
use crate::signals::point::{step_of, Examples, TableKeys};
use crate::signals::sketch::Bucket;

use super::query::{unix_seconds, whole_number, QueryError, Selection, SELECTION_PARAMETERS};
use super::timeline::Timeline;

/// Values answered per key unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

/// What marks a request as selected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    Faults,
    Errors,
    Throttles,
    /// Requests that took at least this long (nanoseconds).
    MinLatency(u64),
}

impl Mark {
    /// How many of a row's requests the mark selects.
    fn selected(self, row: &ContributorRow) -> u64 {
        match self {
            Self::Faults => row.counts.faults,
            Self::Errors => row.counts.errors,
            Self::Throttles => row.counts.throttles,
            Self::MinLatency(nanos) => row.latency.count_from(Bucket::of_nanos(nanos)),
        }
    }
}

/// What `/api/compare` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareQuery {
    pub selection: Selection,
    pub mark: Mark,
    /// Unix seconds: the first step holding `from`, the last holding `to` (within
    /// `metrics.window`); the whole window when absent.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: usize,
}

impl CompareQuery {
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let (mut selection, mut mark, mut from, mut to, mut limit) = (Selection::default(), None, None, None, None);
        let mut set_mark = |name: &str, value: Mark| match mark.replace(value) {
            Some(_) => Err(QueryError::new(name, "give one of outcome and minLatency, once")),
            None => Ok(()),
        };
        for (name, value) in parameters {
            if selection.accept(name, value)? {
                continue;
            }
            match name {
                "outcome" => set_mark(
                    name,
                    match value {
                        "fault" => Mark::Faults,
                        "error" => Mark::Errors,
                        "throttle" => Mark::Throttles,
                        _ => return Err(QueryError::new(name, "expected fault, error or throttle")),
                    },
                )?,
                "minLatency" => {
                    let latency = humantime::parse_duration(value)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| QueryError::new(name, "expected a duration such as 500ms or 2s"))?;
                    set_mark(name, Mark::MinLatency(latency.as_nanos().min(u64::MAX as u128) as u64))?
                }
                "from" => from = Some(unix_seconds(name, value)?),
                "to" => to = Some(unix_seconds(name, value)?),
                "limit" => limit = Some(whole_number(name, value, MAX_LIMIT)?),
                _ => {
                    return Err(QueryError::new(
                        name,
                        format!("unknown; expected {SELECTION_PARAMETERS}, outcome, minLatency, from, to or limit"),
                    ))
                }
            }
        }
        selection.validate()?;
        let mark =
            mark.ok_or_else(|| QueryError::new("outcome", "required (fault, error or throttle), or minLatency"))?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(QueryError::new("from", "must not be after to"));
            }
        }
        Ok(Self { selection, mark, from, to, limit: limit.unwrap_or(DEFAULT_LIMIT) })
    }
}

/// Requests on one side.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Side {
    pub requests: u64,
}

/// One value of a key, on both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparedValue {
    pub value: String,
    /// Selected requests with this value.
    pub selection: u64,
    /// Baseline requests with this value.
    pub baseline: u64,
    pub selection_share: f64,
    pub baseline_share: f64,
    /// `selectionShare / baselineShare`; `None` when the baseline has none of it.
    pub lift: Option<f64>,
    pub trace_ids: Vec<String>,
}

impl ComparedValue {
    fn difference(&self) -> f64 {
        self.selection_share - self.baseline_share
    }
}

/// One key (a dimension) and its values, ranked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComparedKey {
    pub key: String,
    pub values: Vec<ComparedValue>,
}

/// The `/api/compare` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub selection: Side,
    pub baseline: Side,
    pub estimated: bool,
    pub keys: Vec<ComparedKey>,
}

/// A value's requests on each side and its examples.
#[derive(Default)]
struct Tally {
    selection: u64,
    baseline: u64,
    examples: Examples,
}

/// The comparison at `now`; `keys` name the values of the points' tables, in order.
pub fn compare(timeline: &Timeline, keys: &TableKeys, query: &CompareQuery, now: Nanos) -> Comparison {
    let (first, last) = timeline.window(now);
    let step_of_seconds = |s: i64| step_of(s.max(0) as u64 * 1_000_000_000);
    let from = query.from.map_or(first, step_of_seconds);
    let to = query.to.map_or(last, step_of_seconds);
    let (resources, attributes) = timeline.tables_between(|s| query.selection.selects(s), from, to, now);
    let totals = if resources.is_empty() { &attributes } else { &resources };
    let (mut selected, mut baseline) = (0, 0);
    for row in totals.rows() {
        let marked = query.mark.selected(row).min(row.counts.requests);
        selected += marked;
        baseline += row.counts.requests - marked;
    }
    let sides = (selected, baseline);
    let mut keys: Vec<ComparedKey> = compared_keys(&resources, &keys.dimensions, query, sides)
        .chain(compared_keys(&attributes, &keys.attributes, query, sides))
        .collect();
    let top = |k: &ComparedKey| k.values.first().map_or(f64::MIN, ComparedValue::difference);
    keys.sort_by(|a, b| top(b).total_cmp(&top(a)).then(a.key.cmp(&b.key)));
    Comparison {
        selection: Side { requests: selected },
        baseline: Side { requests: baseline },
        estimated: resources.estimated || attributes.estimated,
        keys,
    }
}

/// The keys of one table (`names` its values' names), each with its values ranked; the pair is
/// the selected and baseline requests.
fn compared_keys<'a>(
    table: &'a ContributorTable,
    names: &'a [Arc<str>],
    query: &'a CompareQuery,
    (selected, baseline): (u64, u64),
) -> impl Iterator<Item = ComparedKey> + 'a {
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    names.iter().enumerate().filter_map(move |(index, name)| {
        let mut by_value: HashMap<Arc<str>, Tally> = HashMap::new();
        for row in table.rows() {
            let Some(value) = row.profile.values.get(index).cloned().flatten() else { continue };
            let marked = query.mark.selected(row).min(row.counts.requests);
            let tally = by_value.entry(value).or_default();
            tally.selection += marked;
            tally.baseline += row.counts.requests - marked;
            tally.examples.merge(&row.examples);
        }
        let mut values: Vec<ComparedValue> = by_value
            .into_iter()
            .map(|(value, tally)| {
                let (selection_share, baseline_share) =
                    (share(tally.selection, selected), share(tally.baseline, baseline));
                ComparedValue {
                    value: value.to_string(),
                    selection: tally.selection,
                    baseline: tally.baseline,
                    selection_share,
                    baseline_share,
                    lift: (baseline_share > 0.0).then(|| selection_share / baseline_share),
                    trace_ids: tally.examples.trace_ids().iter().map(trace_id_hex).collect(),
                }
            })
            .collect();
        // Largest difference first; ties by selected requests, then by value: stable answers.
        values.sort_by(|a, b| {
            b.difference().total_cmp(&a.difference()).then(b.selection.cmp(&a.selection)).then(a.value.cmp(&b.value))
        });
        values.truncate(query.limit);
        (!values.is_empty()).then(|| ComparedKey { key: name.to_string(), values })
    })
}

#[cfg(test)]
mod tests;
