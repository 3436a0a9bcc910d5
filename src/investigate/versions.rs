//! A series' requests by `service.version`, per 10 s step, kept by the owner over the whole
//! history (contributor tables are kept only over `metrics.window`): what deployments are found
//! and judged from ([`super::deployments`]).
//!
//! A step's [`StepVersions`] are made from its point's contributor table (every row names its
//! version), when the point is merged into the timeline; so they follow the point: additive, in
//! any order, restored with it from the changelog.
//!
//! Invariants:
//! - a step's rows add up to its point: each request of the point is in exactly one row, the
//!   row of the version its contributor row names (`None` for resources without a version);
//! - a row keeps a latency sketch of its own only while its step has more than one version: the
//!   only row of a step has the point's (most steps run one version, and cost a name and counts);
//! - at most [`MAX_VERSIONS`] rows per step; the requests of further versions go to the row with
//!   the fewest requests, and the step says it is `estimated`;
//! - at most [`MAX_INSTANCES`] instances are listed per row.

use std::sync::Arc;

use crate::signals::point::{Counts, Point};
use crate::signals::sketch::LatencySketch;
use crate::signals::INSTANCE_ATTRIBUTES;

/// Versions kept apart per step.
pub const MAX_VERSIONS: usize = 8;
/// Instances listed per version and step.
pub const MAX_INSTANCES: usize = 8;

/// Where a profile holds the version and the instance (positions in the timeline's dimensions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionColumns {
    /// `service.version`.
    pub version: Option<usize>,
    /// [`INSTANCE_ATTRIBUTES`] (those configured), in their order.
    pub instance: Vec<usize>,
}

impl VersionColumns {
    /// The columns among `dimensions`.
    pub fn of(dimensions: &[Arc<str>]) -> Self {
        let position = |name: &str| dimensions.iter().position(|d| &**d == name);
        Self {
            version: position(crate::investigate::config::VERSION_DIMENSION),
            instance: INSTANCE_ATTRIBUTES.into_iter().filter_map(position).collect(),
        }
    }
}

/// One version's requests in one step.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionRow {
    pub version: Option<Arc<str>>,
    pub counts: Counts,
    /// `None` while this is its step's only row: the point's sketch is this row's.
    latency: Option<LatencySketch>,
    pub instances: Vec<Arc<str>>,
}

impl VersionRow {
    /// This row's latency, given its step's point.
    pub fn latency<'a>(&'a self, point: &'a Point) -> &'a LatencySketch {
        self.latency.as_ref().unwrap_or(&point.latency)
    }

    fn add(&mut self, other: &VersionRow, other_latency: &LatencySketch) {
        self.counts.add(&other.counts);
        self.latency.get_or_insert_with(LatencySketch::default).merge(other_latency);
        for instance in &other.instances {
            add_instance(&mut self.instances, instance);
        }
    }
}

fn add_instance(instances: &mut Vec<Arc<str>>, instance: &Arc<str>) {
    if instances.len() < MAX_INSTANCES && !instances.contains(instance) {
        instances.push(instance.clone());
    }
}

/// One step's requests by version (module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepVersions {
    rows: Vec<VersionRow>,
    /// Whether a version's requests were counted in another's row ([`MAX_VERSIONS`]).
    pub estimated: bool,
}

impl StepVersions {
    /// The versions of `point`'s requests, from its contributor table (a point without one is
    /// one row of no version).
    pub fn of(point: &Point, columns: &VersionColumns) -> Self {
        let mut versions = StepVersions::default();
        if point.contributors.is_empty() {
            if point.counts.requests > 0 {
                versions.rows.push(VersionRow {
                    version: None,
                    counts: point.counts,
                    latency: None,
                    instances: Vec::new(),
                });
            }
            return versions;
        }
        for row in point.contributors.rows() {
            let value = |column: usize| row.profile.values.get(column).cloned().flatten();
            let version = columns.version.and_then(value);
            let instance = columns.instance.iter().find_map(|&c| value(c));
            let own =
                VersionRow { version, counts: row.counts, latency: None, instances: instance.into_iter().collect() };
            versions.add_row(&own, &row.latency);
        }
        versions.settle();
        versions
    }

    pub fn rows(&self) -> &[VersionRow] {
        &self.rows
    }

    /// Adds `other`, the versions of `other_point`, to these, the versions of `point` (before
    /// `other_point` is merged into it).
    pub fn merge(&mut self, point: &Point, other: &StepVersions, other_point: &Point) {
        if let [only] = self.rows.as_mut_slice() {
            only.latency.get_or_insert_with(|| point.latency.clone());
        }
        for row in &other.rows {
            self.add_row(row, row.latency(other_point));
        }
        self.estimated |= other.estimated;
        self.settle();
    }

    fn add_row(&mut self, row: &VersionRow, latency: &LatencySketch) {
        let position = match self.rows.iter().position(|r| r.version == row.version) {
            Some(i) => i,
            None if self.rows.len() < MAX_VERSIONS => {
                self.rows.push(VersionRow {
                    version: row.version.clone(),
                    counts: Counts::default(),
                    latency: None,
                    instances: Vec::new(),
                });
                self.rows.len() - 1
            }
            None => {
                self.estimated = true;
                let (i, _) =
                    self.rows.iter().enumerate().min_by_key(|(_, r)| r.counts.requests).expect("rows are full");
                i
            }
        };
        self.rows[position].add(row, latency);
    }

    /// The only row of a step drops its sketch (the point's is the same).
    fn settle(&mut self) {
        if let [only] = self.rows.as_mut_slice() {
            only.latency = None;
        }
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<VersionRow>()
            + self
                .rows
                .iter()
                .map(|r| {
                    r.latency.as_ref().map_or(0, LatencySketch::heap_bytes)
                        + r.instances.capacity() * std::mem::size_of::<Arc<str>>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
