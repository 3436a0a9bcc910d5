//! The recent evaluations of one SLO, for `GET /api/slos/{name}/history` (investigation.md
//! "History"): per evaluation, its attainment, error budget, burn rate per window, status and
//! firing alerts, over the last hour.
//!
//! The owner of an SLO records a point at every evaluation (the other instances forward the
//! question to it); its checkpoints carry the last hour (one point per 10 s, see
//! [`SloHistory::thinned`]) so that a new owner goes on with the same chart. Points travel as
//! JSON: camelCase fields, the time as RFC 3339 UTC (`"time"`).
//!
//! Invariants:
//! - points are in increasing time order, at most one per second;
//! - none is [`HISTORY_SPAN`] or more older than the newest one (nor than the time given to
//!   [`SloHistory::expire`]);
//! - at most [`HISTORY_POINTS`] points are kept, the oldest dropped first;
//! - a point recorded here replaces one of the same second (the later evaluation stands); a point
//!   restored from a checkpoint never replaces one held.

use std::collections::VecDeque;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::budget::{parse_time, Seconds};
use super::engine::{rfc3339, status_text, ErrorBudget, KnownText, WindowBurn};

/// How far back a history goes: one hour.
pub const HISTORY_SPAN: Seconds = 3600;

/// The most points a history keeps: one per second of [`HISTORY_SPAN`]. Points of distinct
/// seconds within the span never exceed it; it bounds memory whatever the span becomes.
pub const HISTORY_POINTS: usize = 3600;

/// One evaluation of an SLO.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPoint {
    /// When the SLO was evaluated (Unix seconds; `"time"`, RFC 3339 UTC, in JSON).
    #[serde(rename = "time", with = "time_text")]
    pub at: Seconds,
    /// `None` while the window holds no request.
    pub attainment: Option<f64>,
    pub error_budget: ErrorBudget,
    /// Each alert window once, in the order of the tiers.
    pub burn_rates: Vec<WindowRate>,
    /// `OK`, `WARNING`, `BREACHED` or `INSUFFICIENT_DATA`.
    #[serde(deserialize_with = "status_text")]
    pub status: KnownText,
    /// Firing alerts: tier names, and `budget-warning` / `budget-breached`.
    pub firing: Vec<String>,
}

/// The burn rate over one window: the part of a [`WindowBurn`] a chart draws (the threshold is the
/// tier's, fixed by the configuration).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowRate {
    /// As in the configuration: `"1h"`, `"5m"`.
    pub window: String,
    pub burn_rate: f64,
}

impl From<&WindowBurn> for WindowRate {
    fn from(burn: &WindowBurn) -> Self {
        WindowRate { window: burn.window.clone(), burn_rate: burn.burn_rate }
    }
}

/// Unix seconds as RFC 3339 UTC text, and back.
mod time_text {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Seconds, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        parse_time(&text).ok_or_else(|| D::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

/// The points of one SLO over the last [`HISTORY_SPAN`], oldest first. Serialised as the list of
/// its points; read back through [`SloHistory::merge`], so the invariants hold whatever arrives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SloHistory {
    points: VecDeque<HistoryPoint>,
}

impl SloHistory {
    /// Adds the point of an evaluation here; it replaces a point of the same second.
    pub fn record(&mut self, point: HistoryPoint) {
        self.insert(point, true);
        self.bound(HISTORY_SPAN, HISTORY_POINTS);
    }

    /// Adds points restored from a checkpoint, in time order; a point at a second already held is
    /// ignored. Returns how many of them were added and kept.
    pub fn merge(&mut self, points: impl IntoIterator<Item = HistoryPoint>) -> usize {
        let added: Vec<Seconds> = points.into_iter().filter_map(|p| self.insert(p, false)).collect();
        self.bound(HISTORY_SPAN, HISTORY_POINTS);
        let oldest = self.points.front().map_or(Seconds::MAX, |p| p.at);
        added.into_iter().filter(|&at| at >= oldest).count()
    }

    /// Drops the points [`HISTORY_SPAN`] or more older than `now`: a history no longer fed (its
    /// owner gone) does not show an old hour as the last one.
    pub fn expire(&mut self, now: Seconds) {
        self.drop_through(now - HISTORY_SPAN);
    }

    /// The newest point of each `step` seconds (aligned to the epoch), oldest first.
    pub fn thinned(&self, step: Seconds) -> impl Iterator<Item = &HistoryPoint> + '_ {
        let step = step.max(1);
        let next = self.points.iter().skip(1).map(Some).chain([None]);
        self.points
            .iter()
            .zip(next)
            .filter(move |(point, next)| next.is_none_or(|n| n.at.div_euclid(step) != point.at.div_euclid(step)))
            .map(|(point, _)| point)
    }

    /// Every point, oldest first.
    pub fn points(&self) -> impl DoubleEndedIterator<Item = &HistoryPoint> + ExactSizeIterator + '_ {
        self.points.iter()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Puts `point` in its place; at a second already held, replaces that point when `replace`.
    /// Returns the point's time when it was added.
    fn insert(&mut self, point: HistoryPoint, replace: bool) -> Option<Seconds> {
        let at = point.at;
        let place = self.points.partition_point(|p| p.at < at);
        match self.points.get_mut(place) {
            Some(held) if held.at == at => {
                if replace {
                    *held = point;
                }
                None
            }
            _ => {
                self.points.insert(place, point);
                Some(at)
            }
        }
    }

    /// Keeps the points less than `span` older than the newest, and at most `cap` of them.
    fn bound(&mut self, span: Seconds, cap: usize) {
        if let Some(newest) = self.points.back().map(|p| p.at) {
            self.drop_through(newest - span);
        }
        let excess = self.points.len().saturating_sub(cap);
        self.points.drain(..excess);
    }

    /// Drops the points at or before `at`.
    fn drop_through(&mut self, at: Seconds) {
        let dropped = self.points.partition_point(|p| p.at <= at);
        self.points.drain(..dropped);
    }
}

impl Serialize for SloHistory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.points)
    }
}

impl<'de> Deserialize<'de> for SloHistory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut history = SloHistory::default();
        history.merge(Vec::<HistoryPoint>::deserialize(deserializer)?);
        Ok(history)
    }
}

#[cfg(test)]
mod tests;
