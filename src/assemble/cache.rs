//! The decision cache: what happened to recently decided traces, so late spans follow the
//! decision of their trace (sampling.md "Late spans").
//!
//! Two bounded FIFO sets: kept traces with their rule and sample rate (late kept spans are
//! forwarded with the same `sampling.*` attributes), and dropped traces as 64-bit fingerprints
//! (8 bytes each: the dropped set is ten times larger by default). The oldest entry is forgotten
//! when a set is full, so memory is fixed by the two capacities.

use std::collections::VecDeque;

use crate::decision::Decision;
use crate::model::{FastMap, FastSet, TraceId};

pub struct DecisionCache {
    kept: FastMap<TraceId, Decision>,
    kept_order: VecDeque<TraceId>,
    kept_capacity: usize,
    dropped: FastSet<u64>,
    dropped_order: VecDeque<u64>,
    dropped_capacity: usize,
}

/// A 64-bit fingerprint of a trace id (its two halves folded; ids are random, so collisions
/// among a million entries have a probability near 2^-44).
fn fingerprint(trace_id: &TraceId) -> u64 {
    let (high, low) = trace_id.split_at(8);
    u64::from_le_bytes(high.try_into().expect("8 bytes"))
        ^ u64::from_le_bytes(low.try_into().expect("8 bytes")).rotate_left(29)
}

impl DecisionCache {
    pub fn new(kept_capacity: usize, dropped_capacity: usize) -> Self {
        Self {
            kept: FastMap::default(),
            kept_order: VecDeque::new(),
            kept_capacity,
            dropped: FastSet::default(),
            dropped_order: VecDeque::new(),
            dropped_capacity,
        }
    }

    pub fn remember(&mut self, trace_id: TraceId, decision: &Decision) {
        if decision.keep {
            if self.kept_capacity == 0 {
                return;
            }
            if self.kept.insert(trace_id, decision.clone()).is_none() {
                if self.kept_order.len() >= self.kept_capacity {
                    if let Some(old) = self.kept_order.pop_front() {
                        self.kept.remove(&old);
                    }
                }
                self.kept_order.push_back(trace_id);
            }
        } else {
            if self.dropped_capacity == 0 {
                return;
            }
            let print = fingerprint(&trace_id);
            if self.dropped.insert(print) {
                if self.dropped_order.len() >= self.dropped_capacity {
                    if let Some(old) = self.dropped_order.pop_front() {
                        self.dropped.remove(&old);
                    }
                }
                self.dropped_order.push_back(print);
            }
        }
    }

    pub fn lookup(&self, trace_id: &TraceId) -> Option<Decision> {
        if let Some(kept) = self.kept.get(trace_id) {
            return Some(kept.clone());
        }
        self.dropped.contains(&fingerprint(trace_id)).then(Decision::dropped_late)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.kept.len(), self.dropped.len())
    }
}
