//! One series over one 10 s step: the unit of history, of top contributors and of the partial
//! points instances publish to the series' owners (investigation.md "History", "One view per
//! consumer group").
//!
//! A [`Point`] is additive: merging two points of the same series and step (two instances', or
//! two flushes of one instance's) gives the point of all their requests together. Each series keeps
//! its open points ([`OpenPoints`]) as spans are recorded; [`super::SignalStore::flush_points`]
//! hands them over to the investigation timeline, which merges them with the other instances'.

use std::sync::Arc;

use crate::model::{Outcome, TraceId};

use super::contributors::ContributorTable;
use super::exception::ExceptionTable;
use super::sketch::{Bucket, LatencySketch};

/// The length of a point: 10 s.
pub const STEP_NANOS: u64 = 10_000_000_000;

/// The step (index of the 10 s interval since the epoch) holding time `nanos`.
pub fn step_of(nanos: u64) -> u64 {
    nanos / STEP_NANOS
}

/// Example trace ids kept per point and per contributor.
pub const EXAMPLES: usize = 3;

/// A few trace ids behind a figure: those of the worst outcomes, and among equally bad ones the
/// highest ids (random ids make that a fair sample). The choice depends only on what was offered,
/// not on the order: merging examples in any order, on any instance, keeps the same ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Examples {
    /// (trace id, outcome severity), at most [`EXAMPLES`].
    ids: [(TraceId, u8); EXAMPLES],
    len: u8,
}

impl Examples {
    pub fn record(&mut self, trace_id: &TraceId, outcome: Outcome) {
        self.offer(trace_id, outcome.severity());
    }

    /// Offers a trace id with its outcome's severity ([`Outcome::severity`]).
    pub fn offer(&mut self, trace_id: &TraceId, severity: u8) {
        // The common case, once full: ranked below every example held (so not held itself, or
        // held with a severity at least this one), it changes nothing.
        if self.len as usize == EXAMPLES && (severity, *trace_id) < self.weakest() {
            return;
        }
        let held = &mut self.ids[..self.len as usize];
        if let Some(same) = held.iter_mut().find(|(id, _)| id == trace_id) {
            same.1 = same.1.max(severity);
            return;
        }
        if (self.len as usize) < EXAMPLES {
            self.ids[self.len as usize] = (*trace_id, severity);
            self.len += 1;
            return;
        }
        let weakest = self.weakest();
        if (severity, *trace_id) > weakest {
            let at = self.ids.iter().position(|&(id, s)| (s, id) == weakest).expect("held");
            self.ids[at] = (*trace_id, severity);
        }
    }

    /// The rank (severity, id) of the example that would go first.
    fn weakest(&self) -> (u8, TraceId) {
        self.ids[..self.len as usize].iter().map(|&(id, s)| (s, id)).min().unwrap_or((0, [0; 16]))
    }

    /// Offers every example of `other`.
    pub fn merge(&mut self, other: &Examples) {
        for (id, severity) in other.iter_with_severity() {
            self.offer(&id, severity);
        }
    }

    /// The trace ids, worst outcome first (then highest id).
    pub fn trace_ids(&self) -> Vec<TraceId> {
        let mut held: Vec<(TraceId, u8)> = self.iter_with_severity().collect();
        held.sort_by_key(|&(id, s)| std::cmp::Reverse((s, id)));
        held.into_iter().map(|(id, _)| id).collect()
    }

    pub fn iter_with_severity(&self) -> impl Iterator<Item = (TraceId, u8)> + '_ {
        self.ids[..self.len as usize].iter().copied()
    }
}

/// Requests by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub faults: u64,
    /// Errors (4xx), throttles included.
    pub errors: u64,
    pub throttles: u64,
}

impl Counts {
    pub fn record(&mut self, outcome: Outcome) {
        self.requests += 1;
        self.faults += outcome.is_fault() as u64;
        self.errors += outcome.is_error() as u64;
        self.throttles += outcome.is_throttle() as u64;
    }

    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.faults += other.faults;
        self.errors += other.errors;
        self.throttles += other.throttles;
    }

    /// 1 − faults / requests; `None` without requests.
    pub fn availability(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1.0 - self.faults as f64 / self.requests as f64)
    }
}

/// The names of the values in a point's tables, in order: the contributor dimensions
/// (`investigation.dimensions`, resource attributes) and the compared span attributes
/// (`investigation.compare_attributes`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableKeys {
    pub dimensions: Arc<[Arc<str>]>,
    pub attributes: Arc<[Arc<str>]>,
}

/// What one series measured over one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    pub counts: Counts,
    pub latency: LatencySketch,
    pub examples: Examples,
    /// By resource profile; empty when no dimension is configured.
    pub contributors: ContributorTable,
    /// By attribute profile (`investigation.compare_attributes`); empty when none is compared.
    pub attributes: ContributorTable,
    /// The faults' exceptions, by group (entry series only).
    pub exceptions: ExceptionTable,
}

impl Point {
    /// Counts one request.
    pub fn record(&mut self, outcome: Outcome, bucket: Bucket, trace_id: &TraceId) {
        self.counts.record(outcome);
        self.latency.record(bucket);
        self.examples.record(trace_id, outcome);
    }

    /// Adds every request of `other`.
    pub fn merge(&mut self, other: &Point) {
        self.counts.add(&other.counts);
        self.latency.merge(&other.latency);
        self.examples.merge(&other.examples);
        self.contributors.merge(&other.contributors);
        self.attributes.merge(&other.attributes);
        self.exceptions.merge(&other.exceptions);
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.latency.heap_bytes()
            + self.contributors.heap_bytes()
            + self.attributes.heap_bytes()
            + self.exceptions.heap_bytes()
    }
}

/// Open points kept per series without a flush; beyond, the oldest is dropped (a flush comes
/// every 2 s in a running pipeline: this only bounds a store nobody flushes).
pub const MAX_OPEN_POINTS: usize = 64;

/// Which worker's publication a measurement goes out with: each worker publishes the points of
/// the traces it released, holding only its own messages, so that with `kafka.exactly_once` a
/// point is written in the transaction that commits the offsets of the messages it counts.
pub type Lane = u8;

/// The points a series has measured since the last flush, per lane: normally one per lane, two
/// across a step's end.
#[derive(Debug, Default)]
pub struct OpenPoints {
    points: Vec<(Lane, u64, Point)>,
}

impl OpenPoints {
    /// The point of `lane` and `step`, opened when new.
    pub fn at(&mut self, lane: Lane, step: u64) -> &mut Point {
        let found = self.points.iter().rposition(|(l, s, _)| *l == lane && *s == step);
        let index = match found {
            Some(index) => index,
            None => {
                if self.points.len() >= MAX_OPEN_POINTS {
                    self.points.remove(0);
                }
                self.points.push((lane, step, Point::default()));
                self.points.len() - 1
            }
        };
        &mut self.points[index].2
    }

    /// Hands over the points of `lane` (of every lane with `None`), oldest first.
    pub fn take(&mut self, lane: Option<Lane>) -> Vec<(u64, Point)> {
        let (taken, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.points).into_iter().partition(|(l, _, _)| lane.is_none_or(|lane| *l == lane));
        self.points = kept;
        taken.into_iter().map(|(_, step, point)| (step, point)).collect()
    }

    /// Whether a point of `lane` (of any lane with `None`) is open.
    pub fn has(&self, lane: Option<Lane>) -> bool {
        self.points.iter().any(|(l, _, _)| lane.is_none_or(|lane| *l == lane))
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TraceId {
        [n; 16]
    }

    #[test]
    fn examples_keep_the_worst_and_then_the_highest_ids() {
        let mut examples = Examples::default();
        examples.record(&id(1), Outcome::Ok);
        examples.record(&id(2), Outcome::Fault);
        examples.record(&id(3), Outcome::Ok);
        examples.record(&id(4), Outcome::Error);
        // The weakest, ok with the lowest id (1), made room for the error.
        assert_eq!(examples.trace_ids(), vec![id(2), id(4), id(3)]);
        examples.record(&id(5), Outcome::Ok);
        assert_eq!(examples.trace_ids(), vec![id(2), id(4), id(5)], "an ok with a higher id replaces 3");
        examples.record(&id(0), Outcome::Ok);
        assert_eq!(examples.trace_ids(), vec![id(2), id(4), id(5)], "a lower one does not get in");
        examples.record(&id(6), Outcome::Fault);
        examples.record(&id(7), Outcome::Fault);
        assert_eq!(examples.trace_ids(), vec![id(7), id(6), id(2)]);
        examples.record(&id(7), Outcome::Fault);
        assert_eq!(examples.trace_ids(), vec![id(7), id(6), id(2)], "the same trace twice is one example");
    }

    proptest::proptest! {
        /// Whatever the order and grouping, the same examples are kept.
        #[test]
        fn examples_do_not_depend_on_the_order(
            offers in proptest::collection::vec((0u8..20, 0u8..4), 0..30),
            split in 0usize..30,
        ) {
            let of = |offers: &[(u8, u8)]| {
                let mut e = Examples::default();
                offers.iter().for_each(|&(t, s)| e.offer(&id(t), s));
                e
            };
            let split = split.min(offers.len());
            let mut reversed = offers.clone();
            reversed.reverse();
            let mut merged = of(&offers[split..]);
            merged.merge(&of(&offers[..split]));
            proptest::prop_assert_eq!(of(&offers).trace_ids(), of(&reversed).trace_ids());
            proptest::prop_assert_eq!(of(&offers).trace_ids(), merged.trace_ids());
        }
    }

    #[test]
    fn points_merge_by_adding() {
        let (mut a, mut b) = (Point::default(), Point::default());
        a.record(Outcome::Fault, Bucket::of_nanos(5_000_000), &id(1));
        a.record(Outcome::Ok, Bucket::of_nanos(1_000_000), &id(2));
        b.record(Outcome::Throttle, Bucket::of_nanos(9_000_000), &id(3));
        a.merge(&b);
        assert_eq!(a.counts, Counts { requests: 3, faults: 1, errors: 1, throttles: 1 });
        assert_eq!(a.latency.count(), 3);
        assert_eq!(a.examples.trace_ids(), vec![id(1), id(3), id(2)], "fault, throttle, ok");
    }

    #[test]
    fn open_points_split_at_the_step() {
        let mut open = OpenPoints::default();
        open.at(0, 7).record(Outcome::Ok, Bucket::of_nanos(1), &id(1));
        open.at(0, 7).record(Outcome::Ok, Bucket::of_nanos(1), &id(2));
        open.at(0, 8).record(Outcome::Ok, Bucket::of_nanos(1), &id(3));
        let points = open.take(None);
        assert_eq!(points.iter().map(|(s, p)| (*s, p.counts.requests)).collect::<Vec<_>>(), vec![(7, 2), (8, 1)]);
        assert!(open.is_empty());
        for step in 0..MAX_OPEN_POINTS as u64 + 5 {
            open.at(0, step).record(Outcome::Ok, Bucket::of_nanos(1), &id(1));
        }
        let kept = open.take(None);
        assert_eq!(kept.len(), MAX_OPEN_POINTS, "bounded without flushes");
        assert_eq!(kept[0].0, 5, "the oldest went first");
    }

    #[test]
    fn each_lane_takes_only_its_own_points() {
        let mut open = OpenPoints::default();
        open.at(0, 7).record(Outcome::Ok, Bucket::of_nanos(1), &id(1));
        open.at(1, 7).record(Outcome::Fault, Bucket::of_nanos(1), &id(2));
        open.at(0, 7).record(Outcome::Ok, Bucket::of_nanos(1), &id(3));
        open.at(1, 8).record(Outcome::Ok, Bucket::of_nanos(1), &id(4));
        let lane_1 = open.take(Some(1));
        let summary = |points: &[(u64, Point)]| -> Vec<(u64, u64, u64)> {
            points.iter().map(|(s, p)| (*s, p.counts.requests, p.counts.faults)).collect()
        };
        assert_eq!(summary(&lane_1), vec![(7, 1, 1), (8, 1, 0)]);
        assert!(open.has(Some(0)) && !open.has(Some(1)));
        assert_eq!(summary(&open.take(Some(0))), vec![(7, 2, 0)]);
        assert!(open.is_empty());
    }
}
