//! Kafka positions and the holds that keep them uncommitted: the vocabulary of at-least-once
//! delivery, shared by the span path (which carries holds along with the work they stand for) and
//! the delivery ledger (which issues them and commits past a message only when none is left).
//!
//! A [`Hold`] stands for one piece of unfinished work on one consumed message: the span path
//! reading it, a buffered trace with spans from it, a record in flight that settles it. Holds are
//! values, not counters: [`Hold::share`] makes another one, and dropping a hold releases it, so a
//! hold cannot be released twice or forgotten in a count. [`PendingOffsets`] remembers every
//! message read and answers, per partition, the offset that may be committed.
//!
//! Invariant: the committable offset of a partition is the lowest offset of a message that still
//! has a hold, or one past the highest offset read when none has; it never passes a held message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

/// Where spans came from: one consumed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    /// Index of the topic-partition in the [`PendingOffsets`] table.
    pub partition: u32,
    pub offset: i64,
}

/// A committable position: (topic, partition, next offset to read).
pub type Commit = (String, i32, i64);

/// One piece of unfinished work on a consumed message; dropping it releases the message.
#[must_use = "a hold keeps its message uncommitted until dropped: keep it with the work it stands for"]
#[derive(Debug)]
pub struct Hold(Arc<SourceRef>);

impl Hold {
    /// The message this hold keeps.
    pub fn source(&self) -> SourceRef {
        *self.0
    }

    /// Another hold on the same message, for another piece of work.
    pub fn share(&self) -> Hold {
        Hold(self.0.clone())
    }

    /// An identity of the held message, the same for every hold on it while any lives (holds of
    /// different workers' ledgers may share a [`SourceRef`], never this).
    pub fn message_key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

#[derive(Debug, Default)]
struct PartitionQueue {
    /// Messages read, in offset order, each with a handle on its holds.
    read: VecDeque<(i64, Weak<SourceRef>)>,
    /// One past the highest offset read.
    next: Option<i64>,
    /// The last offset committed (to avoid committing the same position again).
    committed: Option<i64>,
}

impl PartitionQueue {
    /// Forgets the released messages at the front; the front is then the lowest held offset.
    fn prune(&mut self) {
        while self.read.front().is_some_and(|(_, holds)| holds.strong_count() == 0) {
            self.read.pop_front();
        }
    }

    fn committable(&mut self) -> Option<i64> {
        self.prune();
        self.read.front().map(|(offset, _)| *offset).or(self.next)
    }
}

/// Every message read on every partition, and whether work on it is left.
#[derive(Debug, Default)]
pub struct PendingOffsets {
    /// Index → (topic, partition); indices are stable for the life of the process.
    table: Vec<(Arc<str>, i32)>,
    lookup: HashMap<(Arc<str>, i32), u32>,
    partitions: HashMap<u32, PartitionQueue>,
}

impl PendingOffsets {
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

    /// The index of a topic-partition seen before.
    pub fn known_index(&self, topic: &str, partition: i32) -> Option<u32> {
        self.lookup.get(&(Arc::from(topic), partition)).copied()
    }

    pub fn topic_partition(&self, index: u32) -> (&str, i32) {
        let (topic, partition) = &self.table[index as usize];
        (topic, *partition)
    }

    /// A message was read: pending until the returned hold, and every hold shared from it, is
    /// dropped.
    pub fn begin(&mut self, source: SourceRef) -> Hold {
        let hold = Arc::new(source);
        let queue = self.partitions.entry(source.partition).or_default();
        let entry = (source.offset, Arc::downgrade(&hold));
        // Offsets are read in order; a re-read after a seek back keeps the queue sorted.
        match queue.read.back() {
            Some((last, _)) if *last > source.offset => {
                let at = queue.read.partition_point(|(o, _)| *o <= source.offset);
                queue.read.insert(at, entry);
            }
            _ => queue.read.push_back(entry),
        }
        queue.next = Some(queue.next.map_or(source.offset + 1, |n| n.max(source.offset + 1)));
        Hold(hold)
    }

    /// The offset that may be committed for a partition: the lowest held, else one past the
    /// highest read; `None` before anything was read.
    pub fn committable(&mut self, index: u32) -> Option<i64> {
        self.partitions.get_mut(&index)?.committable()
    }

    /// The lowest offset of a partition still held, if any.
    pub fn lowest_held(&mut self, index: u32) -> Option<i64> {
        let queue = self.partitions.get_mut(&index)?;
        queue.prune();
        queue.read.front().map(|(offset, _)| *offset)
    }

    /// The lowest offset of a partition held by more than the `excluded` holds counted for it
    /// (per message), else one past the highest read; `None` before anything was read. With
    /// the holds of the records staged for a transaction excluded, it is how far the
    /// transaction may commit before looking at those records themselves.
    pub fn lowest_held_beyond(&mut self, index: u32, excluded: &HashMap<SourceRef, usize>) -> Option<i64> {
        let queue = self.partitions.get_mut(&index)?;
        queue.prune();
        let held = |(offset, holds): &(i64, Weak<SourceRef>)| {
            let by_staged = excluded.get(&SourceRef { partition: index, offset: *offset }).copied().unwrap_or(0);
            holds.strong_count() > by_staged
        };
        queue.read.iter().find(|entry| held(entry)).map(|(offset, _)| *offset).or(queue.next)
    }

    /// The partitions read from (their indices).
    pub fn partition_indices(&self) -> Vec<u32> {
        let mut indices: Vec<u32> = self.partitions.keys().copied().collect();
        indices.sort_unstable();
        indices
    }

    /// The last offset committed on a partition.
    pub fn committed(&self, index: u32) -> Option<i64> {
        self.partitions.get(&index)?.committed
    }

    /// One past the highest offset read on a partition.
    pub fn next_read(&self, index: u32) -> Option<i64> {
        self.partitions.get(&index)?.next
    }

    /// Committable offsets that moved since the last [`PendingOffsets::mark_committed`]
    /// (restricted to `only` when given), in partition order.
    pub fn due(&mut self, only: Option<&[u32]>) -> Vec<(u32, i64)> {
        let mut due: Vec<(u32, i64)> = self
            .partitions
            .iter_mut()
            .filter(|(index, _)| only.is_none_or(|o| o.contains(index)))
            .filter_map(|(&index, queue)| {
                let offset = queue.committable()?;
                (queue.committed != Some(offset)).then_some((index, offset))
            })
            .collect();
        due.sort_unstable();
        due
    }

    pub fn mark_committed(&mut self, index: u32, offset: i64) {
        if let Some(queue) = self.partitions.get_mut(&index) {
            queue.committed = Some(offset);
        }
    }

    /// The broker refused the commit of `offset`: unless a later position was issued since, the
    /// partition's committable offset is due again, moved or not.
    pub fn commit_refused(&mut self, index: u32, offset: i64) {
        if let Some(queue) = self.partitions.get_mut(&index) {
            if queue.committed == Some(offset) {
                queue.committed = None;
            }
        }
    }

    /// Forgets a partition (after revocation: its messages will be read again by the new owner
    /// from the committed offset; holds still alive on them no longer count).
    pub fn forget(&mut self, index: u32) {
        self.partitions.remove(&index);
    }

    /// Messages still held on one partition.
    pub fn pending(&self, index: u32) -> usize {
        self.partitions.get(&index).map_or(0, |q| q.read.iter().filter(|(_, h)| h.strong_count() > 0).count())
    }

    /// Messages still held on every partition.
    pub fn total_pending(&self) -> usize {
        self.partitions.keys().map(|&index| self.pending(index)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commit_point_is_the_lowest_held_message() {
        let mut pending = PendingOffsets::new();
        let p = pending.index("t", 0);
        assert_eq!(pending.committable(p), None);
        let mut holds: Vec<Hold> = (10..13).map(|offset| pending.begin(SourceRef { partition: p, offset })).collect();
        assert_eq!(pending.committable(p), Some(10));
        let shared = holds[0].share();
        drop(holds.remove(1)); // offset 11
        assert_eq!(pending.committable(p), Some(10));
        drop(holds.remove(0)); // offset 10, still shared
        assert_eq!(pending.committable(p), Some(10));
        drop(shared);
        assert_eq!(pending.committable(p), Some(12));
        drop(holds);
        assert_eq!(pending.committable(p), Some(13));
        assert_eq!(pending.due(None), vec![(p, 13)]);
        pending.mark_committed(p, 13);
        assert!(pending.due(None).is_empty());
    }

    #[test]
    fn a_refused_commit_is_due_again_unless_a_later_one_was_issued() {
        let mut pending = PendingOffsets::new();
        let p = pending.index("t", 0);
        drop(pending.begin(SourceRef { partition: p, offset: 6 }));
        pending.mark_committed(p, 7);
        assert!(pending.due(None).is_empty());
        pending.commit_refused(p, 7);
        assert_eq!(pending.due(None), vec![(p, 7)], "the quiet partition is committed again");
        pending.mark_committed(p, 7);
        drop(pending.begin(SourceRef { partition: p, offset: 7 }));
        pending.mark_committed(p, 8);
        pending.commit_refused(p, 7);
        assert!(pending.due(None).is_empty(), "a later position was issued since the refused one");
    }

    #[test]
    fn a_forgotten_partition_starts_afresh() {
        let mut pending = PendingOffsets::new();
        let p = pending.index("t", 0);
        let held = pending.begin(SourceRef { partition: p, offset: 4 });
        pending.forget(p);
        assert_eq!(pending.committable(p), None);
        let _again = pending.begin(SourceRef { partition: p, offset: 2 });
        drop(held);
        assert_eq!(pending.committable(p), Some(2));
    }

    proptest! {
        /// Whatever the order in which holds are shared and dropped, the committable offset never
        /// passes a message that still has one, and reaches the end once all are dropped.
        #[test]
        fn never_passes_a_held_message(shares in proptest::collection::vec(1usize..4, 1..40), seed in any::<u64>()) {
            let mut pending = PendingOffsets::new();
            let p = pending.index("topic", 3);
            let mut outstanding: Vec<Hold> = Vec::new();
            for (offset, &n) in shares.iter().enumerate() {
                let hold = pending.begin(SourceRef { partition: p, offset: offset as i64 });
                for _ in 1..n {
                    outstanding.push(hold.share());
                }
                outstanding.push(hold);
            }
            let mut rng = seed;
            while !outstanding.is_empty() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (rng >> 33) as usize % outstanding.len();
                drop(outstanding.swap_remove(i));
                let lowest_held = outstanding.iter().map(|h| h.source().offset).min();
                let committable = pending.committable(p).unwrap();
                match lowest_held {
                    Some(low) => prop_assert_eq!(committable, low, "the commit point is the lowest held offset"),
                    None => prop_assert_eq!(committable, shares.len() as i64),
                }
                prop_assert_eq!(pending.pending(p), outstanding.iter().map(|h| h.source().offset).collect::<std::collections::BTreeSet<_>>().len());
            }
        }
    }
}
