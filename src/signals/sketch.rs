//! A small, mergeable latency histogram for the investigation views: history points, top
//! contributors and the owners' merge of every instance's partial points.
//!
//! The classic HDR histogram (3 significant digits, [`super::LatencyWindow`]) is exact enough for
//! the quantile gauges but takes kilobytes per histogram; a history point per series every 10 s
//! over an hour, and one per contributor value, need something far smaller. [`LatencySketch`] is
//! a sparse log-linear histogram of whole microseconds: below 128 µs every value is its own
//! bucket; above, each power of two is cut into 64 equal buckets (HDR's layout at 2 significant
//! binary digits), and a quantile answers the bucket's midpoint. The bucket of a latency takes a
//! few integer operations (no logarithm): it is worked out once per span.
//!
//! Invariants:
//! - a quantile is within [`RELATIVE_ACCURACY`] (1/128, under 0.8 %) of the true order statistic
//!   of the recorded latencies (as whole microseconds, clamped to 1 µs … 1 h, as the HDR windows
//!   do);
//! - buckets are kept sorted by index, only non-empty ones: memory grows with the spread of the
//!   latencies recorded, not their number (a few hundred bytes for a typical point);
//! - merging adds counts bucket by bucket: merging sketches equals recording all their latencies
//!   into one, so a group-wide quantile is that of every instance's requests together.

use serde::{Deserialize, Serialize};

/// Relative error of every quantile: half a bucket's width over its lower bound.
pub const RELATIVE_ACCURACY: f64 = 1.0 / 128.0;
/// Latencies are clamped to 1 µs … 1 h, as the HDR windows.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Values below this are buckets of their own.
const EXACT_BELOW: u64 = 128;
/// Buckets per power of two above [`EXACT_BELOW`].
const SUB_BUCKET_BITS: u32 = 6;

/// The bucket of a latency, worked out once per span and recorded in several sketches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket holding a latency of `nanos`.
    pub fn of_nanos(nanos: u64) -> Self {
        let micros = (nanos / 1_000).clamp(LOWEST_MICROS, HIGHEST_MICROS);
        if micros < EXACT_BELOW {
            return Self(micros as u16);
        }
        let octave = 63 - micros.leading_zeros(); // at least 7
        let sub = (micros >> (octave - SUB_BUCKET_BITS)) & ((1 << SUB_BUCKET_BITS) - 1);
        Self((EXACT_BELOW + ((octave - 7) as u64) * (1 << SUB_BUCKET_BITS) + sub) as u16)
    }

    /// The value a quantile in this bucket answers, in seconds: within [`RELATIVE_ACCURACY`] of
    /// every latency the bucket holds.
    pub fn seconds(self) -> f64 {
        let index = self.0 as u64;
        if index < EXACT_BELOW {
            return index as f64 / 1e6;
        }
        let above = index - EXACT_BELOW;
        let octave = 7 + (above >> SUB_BUCKET_BITS) as u32;
        let width = 1u64 << (octave - SUB_BUCKET_BITS);
        let low = (1u64 << octave) + (above & ((1 << SUB_BUCKET_BITS) - 1)) * width;
        // The midpoint of the whole microseconds the bucket holds.
        (low as f64 + (width - 1) as f64 / 2.0) / 1e6
    }
}

/// A sparse log-bucketed latency histogram (module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u16, u32)>", into = "Vec<(u16, u32)>")]
pub struct LatencySketch {
    /// (bucket, count), sorted by bucket, counts non-zero.
    buckets: Vec<(u16, u32)>,
}

impl From<Vec<(u16, u32)>> for LatencySketch {
    /// From the wire: sorted, merged and without empty buckets whatever the input.
    fn from(mut buckets: Vec<(u16, u32)>) -> Self {
        buckets.sort_unstable_by_key(|&(b, _)| b);
        let mut sketch = Self { buckets: Vec::with_capacity(buckets.len()) };
        for (bucket, count) in buckets {
            sketch.add(Bucket(bucket), count);
        }
        sketch
    }
}

impl From<LatencySketch> for Vec<(u16, u32)> {
    fn from(sketch: LatencySketch) -> Self {
        sketch.buckets
    }
}

impl LatencySketch {
    pub fn record(&mut self, bucket: Bucket) {
        self.add(bucket, 1);
    }

    fn add(&mut self, Bucket(bucket): Bucket, count: u32) {
        if count == 0 {
            return;
        }
        // The common case: the latency falls in the last bucket touched or past the end.
        match self.buckets.binary_search_by_key(&bucket, |&(b, _)| b) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(count),
            Err(i) => self.buckets.insert(i, (bucket, count)),
        }
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (self.buckets.iter().peekable(), other.buckets.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(x, cx)), Some(&&(y, cy))) if x == y => {
                    a.next();
                    b.next();
                    (x, cx.saturating_add(cy))
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => *a.next().expect("peeked"),
                (Some(_), Some(_)) | (None, Some(_)) => *b.next().expect("peeked"),
                (Some(_), None) => *a.next().expect("peeked"),
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&(_, c)| c as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How many latencies were recorded in `bucket` or above: those at or above any latency of
    /// `bucket`, give or take the one bucket (within [`RELATIVE_ACCURACY`] of its bounds).
    pub fn count_from(&self, bucket: Bucket) -> u64 {
        let start = self.buckets.partition_point(|&(b, _)| b < bucket.0);
        self.buckets[start..].iter().map(|&(_, c)| c as u64).sum()
    }

    /// The latency (seconds) at quantile `q` ∈ [0, 1]: the `⌈q·n⌉`-th smallest (at least the
    /// smallest), within α; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(bucket, count) in &self.buckets {
            seen += count as u64;
            if seen >= rank {
                return Some(Bucket(bucket).seconds());
            }
        }
        self.buckets.last().map(|&(b, _)| Bucket(b).seconds())
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u16, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_quantile(sorted_micros: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted_micros.len() as f64).ceil() as usize).max(1);
        sorted_micros[rank - 1] as f64 / 1e6
    }

    fn within_accuracy(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= exact * RELATIVE_ACCURACY * (1.0 + 1e-9)
    }

    proptest! {
        /// Every quantile is within 1 % of the exact order statistic, for latencies spread over
        /// the whole range (whole microseconds, as recorded).
        #[test]
        fn quantiles_are_within_the_relative_accuracy(
            micros in proptest::collection::vec(1u64..3_600_000_000, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = LatencySketch::default();
            for &m in &micros {
                sketch.record(Bucket::of_nanos(m * 1_000));
            }
            let mut sorted = micros.clone();
            sorted.sort_unstable();
            let estimate = sketch.quantile(q).expect("not empty");
            let exact = exact_quantile(&sorted, q);
            prop_assert!(within_accuracy(estimate, exact), "q {q}: estimate {estimate} exact {exact}");
            prop_assert_eq!(sketch.count(), micros.len() as u64);
        }

        /// Merging two sketches is the same as recording both sets of latencies into one.
        #[test]
        fn merge_equals_recording_everything_once(
            a in proptest::collection::vec(1u64..10_000_000_000, 0..200),
            b in proptest::collection::vec(1u64..10_000_000_000, 0..200),
        ) {
            let sketch_of = |nanos: &[u64]| {
                let mut s = LatencySketch::default();
                nanos.iter().for_each(|&n| s.record(Bucket::of_nanos(n)));
                s
            };
            let mut merged = sketch_of(&a);
            merged.merge(&sketch_of(&b));
            let together: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged, sketch_of(&together));
        }

        /// The wire form (sorted pairs) round-trips, and an unsorted or duplicated one is mended.
        #[test]
        fn wire_form_round_trips(nanos in proptest::collection::vec(1u64..10_000_000_000, 0..100)) {
            let mut sketch = LatencySketch::default();
            nanos.iter().for_each(|&n| sketch.record(Bucket::of_nanos(n)));
            let json = serde_json::to_string(&sketch).expect("serialises");
            let back: LatencySketch = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(&back, &sketch);
            let mut pairs: Vec<(u16, u32)> = sketch.clone().into();
            pairs.reverse();
            pairs.extend(pairs.clone());
            let doubled = LatencySketch::from(pairs);
            prop_assert_eq!(doubled.count(), 2 * sketch.count());
        }
    }

    #[test]
    fn clamps_like_the_hdr_windows_and_answers_nothing_when_empty() {
        assert_eq!(LatencySketch::default().quantile(0.5), None);
        let mut sketch = LatencySketch::default();
        sketch.record(Bucket::of_nanos(0));
        sketch.record(Bucket::of_nanos(u64::MAX));
        let low = sketch.quantile(0.0).expect("recorded");
        let high = sketch.quantile(1.0).expect("recorded");
        assert!(within_accuracy(low, 1e-6), "{low}");
        assert!(within_accuracy(high, 3600.0), "{high}");
    }
}
