//! The timeline: the 10 s points over the last `investigation.history` of the series this
//! instance owns, every instance's partial points merged — what top contributors and history
//! answer from, and what the owner rolls up for the group's map and tables.
//!
//! Invariants:
//! - a point is additive ([`Point::merge`]): the timeline's point of a series and step is the sum
//!   of every instance's (and every flush's) points of that series and step, whatever the order
//!   they arrive in;
//! - points older than the history are dropped, and so are the series left without points;
//!   contributor and exception tables are kept only for the steps inside `metrics.window` (what
//!   `/api/contributors`, `/api/compare` and `/api/exceptions` answer over), so an hour of
//!   history costs counts and a sketch per series and step;
//! - at most `max_series` series are held (`metrics.max_series`); points of further series are
//!   counted in `refused` and not kept.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::clock::Nanos;
use crate::model::RemoteKind;
use crate::signals::contributors::ContributorTable;
use crate::signals::exception::ExceptionTable;
use crate::signals::point::{step_of, Counts, Examples, Point, STEP_NANOS};
use crate::signals::sketch::LatencySketch;
use crate::signals::{FlushedPoint, SeriesId};

use super::versions::{StepVersions, VersionColumns};

/// A series' points, oldest first.
#[derive(Debug, Default)]
pub struct SeriesPoints {
    /// For dependency series: what the remote side is (the map's node kind).
    pub remote_kind: RemoteKind,
    points: VecDeque<(u64, Point)>,
    /// The requests of each point by version, index for index (empty when versions are not
    /// tracked).
    versions: VecDeque<StepVersions>,
}

impl SeriesPoints {
    /// The points of steps `from..=to`, oldest first.
    pub fn between(&self, from: u64, to: u64) -> impl Iterator<Item = &(u64, Point)> {
        let start = self.points.partition_point(|(s, _)| *s < from);
        self.points.range(start..).take_while(move |(s, _)| *s <= to)
    }

    /// The points of steps `from..=to` with their requests by version, oldest first.
    pub fn versions_between(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &Point, &StepVersions)> {
        let start = self.points.partition_point(|(s, _)| *s < from);
        self.points
            .range(start..)
            .zip(self.versions.range(start..))
            .take_while(move |((s, _), _)| *s <= to)
            .map(|((s, p), v)| (*s, p, v))
    }

    fn merge(&mut self, step: u64, point: &Point, columns: &VersionColumns) {
        let incoming = || match columns.version {
            Some(_) => StepVersions::of(point, columns),
            None => StepVersions::default(),
        };
        match self.points.binary_search_by_key(&step, |(s, _)| *s) {
            Ok(i) => {
                if columns.version.is_some() {
                    self.versions[i].merge(&self.points[i].1, &incoming(), point);
                }
                self.points[i].1.merge(point)
            }
            Err(i) => {
                self.points.insert(i, (step, point.clone()));
                self.versions.insert(i, incoming());
            }
        }
    }

    fn pop_front(&mut self) {
        self.points.pop_front();
        self.versions.pop_front();
    }
}

/// Counts, latency and examples of several points together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregate {
    pub counts: Counts,
    pub latency: LatencySketch,
    pub examples: Examples,
}

/// What an answer says of an aggregate: counts, availability and latency percentiles.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub requests: u64,
    pub faults: u64,
    pub errors: u64,
    pub throttles: u64,
    pub availability: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

impl Aggregate {
    pub fn figures(&self) -> Figures {
        let (counts, latency) = (&self.counts, &self.latency);
        Figures {
            requests: counts.requests,
            faults: counts.faults,
            errors: counts.errors,
            throttles: counts.throttles,
            availability: counts.availability(),
            p50_seconds: latency.quantile(0.5),
            p90_seconds: latency.quantile(0.9),
            p99_seconds: latency.quantile(0.99),
        }
    }

    pub fn add(&mut self, point: &Point) {
        self.counts.add(&point.counts);
        self.latency.merge(&point.latency);
        self.examples.merge(&point.examples);
    }

    pub fn add_aggregate(&mut self, other: &Aggregate) {
        self.counts.add(&other.counts);
        self.latency.merge(&other.latency);
        self.examples.merge(&other.examples);
    }
}

/// One series over `metrics.window`: what the map and the series tables are made of.
pub type WindowSeries = (SeriesId, RemoteKind, Aggregate);

/// The group-wide points of every series (module docs).
pub struct Timeline {
    /// Steps of history kept (`investigation.history / 10 s`).
    history_steps: u64,
    /// Steps of `metrics.window` (the current, partial step included).
    window_steps: u64,
    max_series: usize,
    /// Where profiles hold the version and instance (no version: versions are not tracked).
    columns: VersionColumns,
    series: HashMap<SeriesId, SeriesPoints>,
    /// The (series, step) points merged into since the last [`Timeline::take_changed`].
    changed: HashSet<(SeriesId, u64)>,
    /// Points refused because `max_series` series were held.
    pub refused: u64,
}

impl Timeline {
    pub fn new(history: Duration, window: Duration, max_series: usize) -> Self {
        let steps = |d: Duration| (d.as_nanos() as u64).div_ceil(STEP_NANOS).max(1);
        Self {
            history_steps: steps(history),
            window_steps: steps(window),
            max_series,
            columns: VersionColumns::default(),
            series: HashMap::new(),
            changed: HashSet::new(),
            refused: 0,
        }
    }

    /// Keeps each point's requests by version too, read from the contributor profiles' columns
    /// (deployments are found from them).
    pub fn with_versions(mut self, columns: VersionColumns) -> Self {
        self.columns = columns;
        self
    }

    /// The steps of `metrics.window`.
    pub fn window_steps(&self) -> u64 {
        self.window_steps
    }

    /// The steps of `metrics.window` at `now`: `(first, last)`.
    pub fn window(&self, now: Nanos) -> (u64, u64) {
        let last = step_of(now.0);
        (last.saturating_sub(self.window_steps - 1), last)
    }

    /// The steps of the history at `now`: `(first, last)`.
    pub fn history(&self, now: Nanos) -> (u64, u64) {
        let last = step_of(now.0);
        (last.saturating_sub(self.history_steps - 1), last)
    }

    /// Merges points (the partial points of every instance, read by the owner);
    /// points older than the history at `now` are ignored.
    pub fn merge(&mut self, points: &[FlushedPoint], now: Nanos) {
        let (oldest, _) = self.history(now);
        for flushed in points.iter().filter(|f| f.step >= oldest) {
            let room = self.series.len() < self.max_series;
            let series = match self.series.get_mut(&flushed.series) {
                Some(series) => series,
                None if room => self.series.entry(flushed.series.clone()).or_default(),
                None => {
                    self.refused += 1;
                    continue;
                }
            };
            series.remote_kind = flushed.remote_kind;
            series.merge(flushed.step, &flushed.point, &self.columns);
            if !self.changed.contains(&(flushed.series.clone(), flushed.step)) {
                self.changed.insert((flushed.series.clone(), flushed.step));
            }
        }
    }

    /// The points merged into since the last call (what an owner checkpoints next), with their
    /// series' remote kind; points that aged out meanwhile are left out.
    pub fn take_changed(&mut self) -> Vec<(SeriesId, RemoteKind, u64, &Point)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|(id, step)| {
                let (key, series) = self.series.get_key_value(&id)?;
                let i = series.points.binary_search_by_key(&step, |(s, _)| *s).ok()?;
                Some((key.clone(), series.remote_kind, step, &series.points[i].1))
            })
            .collect()
    }

    /// Marks points as merged into again (their checkpoint was not acknowledged).
    pub fn mark_changed(&mut self, points: impl IntoIterator<Item = (SeriesId, u64)>) {
        self.changed.extend(points);
    }

    /// Merges points restored from a checkpoint: as [`Timeline::merge`], but not counted as
    /// changed (they are checkpointed already).
    pub fn restore(&mut self, points: &[FlushedPoint], now: Nanos) {
        let changed = self.changed.clone();
        self.merge(points, now);
        self.changed = changed;
    }

    /// Forgets every series `keep` says no to (their partition went to another owner).
    pub fn release(&mut self, keep: impl Fn(&SeriesId) -> bool) {
        self.series.retain(|id, _| keep(id));
        self.changed.retain(|(id, _)| keep(id));
    }

    /// Drops what has aged out at `now`: points past the history, contributor and exception tables
    /// past the window, series left empty.
    pub fn expire(&mut self, now: Nanos) {
        let (oldest, _) = self.history(now);
        let (window_start, _) = self.window(now);
        self.series.retain(|_, series| {
            while series.points.front().is_some_and(|(s, _)| *s < oldest) {
                series.pop_front();
            }
            for (_, point) in series.points.iter_mut().take_while(|(s, _)| *s < window_start) {
                if !point.contributors.is_empty() {
                    point.contributors = ContributorTable::default();
                }
                if !point.attributes.is_empty() {
                    point.attributes = ContributorTable::default();
                }
                if !point.exceptions.is_empty() {
                    point.exceptions = ExceptionTable::default();
                }
            }
            !series.points.is_empty()
        });
    }

    /// Every series and its points.
    pub fn series(&self) -> impl Iterator<Item = (&SeriesId, &SeriesPoints)> {
        self.series.iter()
    }

    /// The aggregate of each series over `metrics.window` at `now` (series with no point in it
    /// left out).
    pub fn over_window(&self, now: Nanos) -> Vec<(&SeriesId, RemoteKind, Aggregate)> {
        let (from, to) = self.window(now);
        self.series
            .iter()
            .filter_map(|(id, series)| {
                let mut aggregate = Aggregate::default();
                series.between(from, to).for_each(|(_, p)| aggregate.add(p));
                (aggregate.counts.requests > 0).then_some((id, series.remote_kind, aggregate))
            })
            .collect()
    }

    /// Each series' aggregate over `metrics.window` at `now`, owned: what an owner's rollup
    /// carries (series with no request in the window left out).
    pub fn window_rollup(&self, now: Nanos) -> Vec<WindowSeries> {
        self.over_window(now).into_iter().map(|(id, kind, aggregate)| (id.clone(), kind, aggregate)).collect()
    }

    /// The length of `metrics.window` in seconds (the current, partial step included).
    pub fn window_seconds(&self) -> u64 {
        self.window_steps * 10
    }

    /// The contributor tables of the selected series over `metrics.window` at `now`, merged.
    pub fn contributors(&self, select: impl Fn(&SeriesId) -> bool, now: Nanos) -> ContributorTable {
        let (from, to) = self.window(now);
        self.contributors_between(select, from, to, now)
    }

    /// The selected series' contributor tables of steps `from..=to` merged; only the steps inside
    /// `metrics.window` at `now` keep tables, so the range is cut to those.
    pub fn contributors_between(
        &self,
        select: impl Fn(&SeriesId) -> bool,
        from: u64,
        to: u64,
        now: Nanos,
    ) -> ContributorTable {
        self.merged_between(select, from, to, now, false).0
    }

    /// The selected series' tables of steps `from..=to` merged, as
    /// [`Timeline::contributors_between`]: by resource profile, and by attribute profile
    /// (compared span attributes).
    pub fn tables_between(
        &self,
        select: impl Fn(&SeriesId) -> bool,
        from: u64,
        to: u64,
        now: Nanos,
    ) -> (ContributorTable, ContributorTable) {
        self.merged_between(select, from, to, now, true)
    }

    /// The selected series' resource tables of steps `from..=to` merged, and their attribute
    /// tables when `with_attributes` says so (empty otherwise).
    fn merged_between(
        &self,
        select: impl Fn(&SeriesId) -> bool,
        from: u64,
        to: u64,
        now: Nanos,
        with_attributes: bool,
    ) -> (ContributorTable, ContributorTable) {
        let (first, last) = self.window(now);
        let (from, to) = (from.max(first), to.min(last));
        let (mut resources, mut merged_attributes) = (ContributorTable::default(), ContributorTable::default());
        for (_, series) in self.series.iter().filter(|(id, _)| select(id)) {
            for (_, point) in series.between(from, to) {
                resources.merge(&point.contributors);
                if with_attributes {
                    merged_attributes.merge(&point.attributes);
                }
            }
        }
        (resources, merged_attributes)
    }

    /// The selected series' exception groups over `metrics.window` at `now`, merged, with the
    /// series each came from (groups of one key in several series stay apart).
    pub fn exceptions(&self, select: impl Fn(&SeriesId) -> bool, now: Nanos) -> Vec<(&SeriesId, ExceptionTable)> {
        let (from, to) = self.window(now);
        self.series
            .iter()
            .filter(|(id, _)| select(id))
            .filter_map(|(id, series)| {
                let mut merged = ExceptionTable::default();
                series.between(from, to).for_each(|(_, p)| merged.merge(&p.exceptions));
                (!merged.is_empty()).then_some((id, merged))
            })
            .collect()
    }

    /// The selected series' points of steps `from..=to` added together, one per step that has
    /// any (oldest first).
    pub fn points(&self, select: impl Fn(&SeriesId) -> bool, from: u64, to: u64) -> Vec<(u64, Aggregate)> {
        let mut by_step: std::collections::BTreeMap<u64, Aggregate> = Default::default();
        for (_, series) in self.series.iter().filter(|(id, _)| select(id)) {
            for (step, point) in series.between(from, to) {
                by_step.entry(*step).or_default().add(point);
            }
        }
        by_step.into_iter().collect()
    }

    /// Heap bytes held by points (for the memory figures; map overhead left out).
    pub fn heap_bytes(&self) -> usize {
        self.series
            .values()
            .map(|s| {
                s.points.capacity() * std::mem::size_of::<(u64, Point)>()
                    + s.points.iter().map(|(_, p)| p.heap_bytes()).sum::<usize>()
                    + s.versions.capacity() * std::mem::size_of::<StepVersions>()
                    + s.versions.iter().map(StepVersions::heap_bytes).sum::<usize>()
            })
            .sum()
    }

    /// How many series are held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests;
