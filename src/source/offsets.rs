//! Offset tracking for at-least-once delivery (kafka.md "Delivery").
//!
//! Each consumed message is pending from the moment it is read until every reference to it is
//! released: the pipeline holds one while decoding, each buffered trace that took spans from it
//! holds one, each forward or dead letter in flight holds one. Per partition the committable
//! offset is the lowest pending offset, or one past the highest offset read when none is pending.
//! Invariant: the committable offset never passes a message whose spans are not all counted and
//! decided (and forwarded, when kept).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::assemble::SourceRef;

#[derive(Default, Debug)]
struct PartitionState {
    /// Pending offsets and how many references each still has.
    pending: BTreeMap<i64, u32>,
    /// One past the highest offset read.
    next: Option<i64>,
    /// The last offset committed (to avoid committing the same position again).
    committed: Option<i64>,
}

/// Pending messages of every partition this instance reads.
#[derive(Default, Debug)]
pub struct OffsetTracker {
    /// Index → (topic, partition); indices are stable for the life of the process.
    table: Vec<(Arc<str>, i32)>,
    lookup: HashMap<(Arc<str>, i32), u32>,
    states: HashMap<u32, PartitionState>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stable index of a topic-partition.
    pub fn index(&mut self, topic: &str, partition: i32) -> u32 {
        if let Some(&i) = self.lookup.get(&(Arc::from(topic), partition)) {
            return i;
        }
        let i = self.table.len() as u32;
        let topic: Arc<str> = Arc::from(topic);
        self.table.push((topic.clone(), partition));
        self.lookup.insert((topic, partition), i);
        i
    }

    pub fn topic_partition(&self, index: u32) -> (&str, i32) {
        let (topic, partition) = &self.table[index as usize];
        (topic, *partition)
    }

    /// A message was read: pending with one reference (the reader's).
    pub fn begin(&mut self, source: SourceRef) {
        let state = self.states.entry(source.partition).or_default();
        *state.pending.entry(source.offset).or_insert(0) += 1;
        state.next = Some(state.next.map_or(source.offset + 1, |n| n.max(source.offset + 1)));
    }

    /// `count` more references to a pending message.
    pub fn acquire(&mut self, source: SourceRef, count: usize) {
        if count == 0 {
            return;
        }
        if let Some(refs) = self.states.get_mut(&source.partition).and_then(|s| s.pending.get_mut(&source.offset)) {
            *refs += count as u32;
        }
    }

    /// Releases one reference; the message is done when none remain.
    pub fn release(&mut self, source: SourceRef) {
        if let Some(state) = self.states.get_mut(&source.partition) {
            if let Some(refs) = state.pending.get_mut(&source.offset) {
                *refs -= 1;
                if *refs == 0 {
                    state.pending.remove(&source.offset);
                }
            }
        }
    }

    /// The offset that may be committed for a partition: the lowest pending, else one past the
    /// highest read; `None` before anything was read.
    pub fn committable(&self, index: u32) -> Option<i64> {
        let state = self.states.get(&index)?;
        state.pending.keys().next().copied().or(state.next)
    }

    /// One past the highest offset read on a partition.
    pub fn next_read(&self, index: u32) -> Option<i64> {
        self.states.get(&index)?.next
    }

    /// Messages still pending on a partition.
    pub fn pending(&self, index: u32) -> usize {
        self.states.get(&index).map_or(0, |s| s.pending.len())
    }

    /// Committable offsets that moved since the last [`OffsetTracker::mark_committed`]
    /// (restricted to `only` when given).
    pub fn due(&self, only: Option<&[u32]>) -> Vec<(u32, i64)> {
        let mut due: Vec<(u32, i64)> = self
            .states
            .iter()
            .filter(|(index, _)| only.is_none_or(|o| o.contains(index)))
            .filter_map(|(&index, state)| {
                let offset = self.committable(index)?;
                (state.committed != Some(offset)).then_some((index, offset))
            })
            .collect();
        due.sort_unstable();
        due
    }

    pub fn mark_committed(&mut self, index: u32, offset: i64) {
        if let Some(state) = self.states.get_mut(&index) {
            state.committed = Some(offset);
        }
    }

    /// Forgets a partition (after revocation: its messages will be read again by the new owner
    /// from the committed offset).
    pub fn forget(&mut self, index: u32) {
        self.states.remove(&index);
    }

    /// Total pending messages (all partitions).
    pub fn total_pending(&self) -> usize {
        self.states.values().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn src(offset: i64) -> SourceRef {
        SourceRef { partition: 0, offset }
    }

    #[test]
    fn commit_point_is_lowest_pending() {
        let mut t = OffsetTracker::new();
        let p = t.index("t", 0);
        assert_eq!(t.committable(p), None);
        for o in 10..13 {
            t.begin(src(o));
        }
        assert_eq!(t.committable(p), Some(10));
        t.release(src(11));
        assert_eq!(t.committable(p), Some(10));
        t.release(src(10));
        assert_eq!(t.committable(p), Some(12));
        t.release(src(12));
        assert_eq!(t.committable(p), Some(13));
        assert_eq!(t.due(None), vec![(p, 13)]);
        t.mark_committed(p, 13);
        assert!(t.due(None).is_empty());
    }

    proptest! {
        /// Whatever the order of releases, the committable offset never passes a message that
        /// still has a reference, and reaches the end once all are released.
        #[test]
        fn never_passes_a_pending_message(refs in proptest::collection::vec(1usize..4, 1..40), seed in any::<u64>()) {
            let mut t = OffsetTracker::new();
            let p = t.index("topic", 3);
            let mut outstanding: Vec<i64> = Vec::new();
            for (offset, &n) in refs.iter().enumerate() {
                let s = SourceRef { partition: p, offset: offset as i64 };
                t.begin(s);
                t.acquire(s, n - 1);
                outstanding.extend(std::iter::repeat_n(offset as i64, n));
            }
            let mut rng = seed;
            while !outstanding.is_empty() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (rng >> 33) as usize % outstanding.len();
                let offset = outstanding.swap_remove(i);
                t.release(SourceRef { partition: p, offset });
                let lowest_outstanding = outstanding.iter().min().copied();
                let committable = t.committable(p).unwrap();
                match lowest_outstanding {
                    Some(low) => prop_assert!(committable <= low, "committable {} passes pending {}", committable, low),
                    None => prop_assert_eq!(committable, refs.len() as i64),
                }
            }
        }
    }
}
