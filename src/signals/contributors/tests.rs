use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn profile(pod: u32) -> Profile {
    Profile::new(Arc::from(vec![Some(Arc::from(format!("pod-{pod}").as_str()))]))
}

const ID: TraceId = [1; 16];

/// Records a stream of (pod, fault?) requests into one table of `capacity` rows.
fn table_of(stream: &[(u32, bool)], capacity: usize) -> ContributorTable {
    let mut table = ContributorTable::default();
    for &(pod, fault) in stream {
        let outcome = if fault { Outcome::Fault } else { Outcome::Ok };
        table.record(&profile(pod), capacity, outcome, Bucket::of_nanos(1_000_000), &ID);
    }
    table
}

fn exact_counts(stream: &[(u32, bool)]) -> HashMap<u64, (u64, u64)> {
    let mut exact: HashMap<u64, (u64, u64)> = HashMap::new();
    for &(pod, fault) in stream {
        let entry = exact.entry(profile(pod).hash).or_default();
        entry.0 += 1;
        entry.1 += fault as u64;
    }
    exact
}

/// Skewed streams: a few heavy pods among many light ones, in any order.
fn skewed_stream() -> impl Strategy<Value = Vec<(u32, bool)>> {
    proptest::collection::vec((prop_oneof![3 => 0u32..3, 1 => 3u32..200], any::<bool>()), 1..600)
}

proptest! {
    /// Within capacity the table is exact; beyond it every row is an upper bound whose error is
    /// at most `total / capacity`, every profile heavier than that is tracked, and the rows always
    /// sum to the series' totals.
    #[test]
    fn space_saving_bounds_hold_against_exact_counts(stream in skewed_stream(), capacity in 1usize..40) {
        let table = table_of(&stream, capacity);
        let exact = exact_counts(&stream);
        let total = stream.len() as u64;
        let faults = stream.iter().filter(|(_, f)| *f).count() as u64;
        prop_assert!(table.rows().len() <= capacity);
        prop_assert_eq!(table.rows().iter().map(|r| r.counts.requests).sum::<u64>(), total);
        prop_assert_eq!(table.rows().iter().map(|r| r.counts.faults).sum::<u64>(), faults);
        prop_assert_eq!(table.estimated, exact.len() > capacity);
        let error_bound = total / capacity as u64;
        for row in table.rows() {
            let (true_requests, true_faults) = exact[&row.profile.hash];
            prop_assert!(row.counts.requests >= true_requests, "an estimate is an upper bound");
            prop_assert!(row.counts.requests - true_requests <= row.overcount);
            prop_assert!(row.overcount <= error_bound, "overcount {} > {}", row.overcount, error_bound);
            if !table.estimated {
                prop_assert_eq!((row.counts.requests, row.counts.faults, row.overcount), (true_requests, true_faults, 0));
            }
        }
        for (hash, (requests, _)) in &exact {
            if *requests > error_bound {
                prop_assert!(table.rows().iter().any(|r| r.profile.hash == *hash), "a heavy hitter was lost");
            }
        }
    }

    /// Merging tables of two parts of a stream keeps every request once.
    #[test]
    fn merged_tables_keep_the_totals(a in skewed_stream(), b in skewed_stream(), capacity in 1usize..40) {
        let mut merged = table_of(&a, capacity);
        merged.merge(&table_of(&b, capacity));
        prop_assert_eq!(merged.rows().iter().map(|r| r.counts.requests).sum::<u64>(), (a.len() + b.len()) as u64);
        prop_assert!(merged.rows().len() <= 2 * capacity);
        let mut hashes: Vec<u64> = merged.rows().iter().map(|r| r.profile.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        prop_assert_eq!(hashes.len(), merged.rows().len(), "one row per profile");
    }
}

#[test]
fn a_large_table_finds_its_rows_through_the_index() {
    let stream: Vec<(u32, bool)> = (0..100).flat_map(|pod| [(pod, false), (pod, pod % 10 == 0)]).collect();
    let table = table_of(&stream, 200);
    assert_eq!(table.rows().len(), 100);
    assert!(table.rows().iter().all(|r| r.counts.requests == 2));
    assert_eq!(table.rows().iter().map(|r| r.counts.faults).sum::<u64>(), 10);
}
