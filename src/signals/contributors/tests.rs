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

/// Attributes a span may carry: two values of each compared key, and one key not compared.
const ATTRIBUTES: [(&str, &str); 7] = [
    ("http.route", "/owners"),
    ("http.route", "/vets"),
    ("user_agent.original", "curl/8.5"),
    ("user_agent.original", "Mozilla/5.0"),
    ("url.scheme", "https"),
    ("url.scheme", "http"),
    ("http.request.method", "GET"),
];

proptest! {
    /// A span's attribute profile hash, worked out in one walk whatever the order of its
    /// attributes, is the hash of the profile built from them: the first value of each
    /// compared key, in the configured order (so rows of a profile met in two instances, or
    /// read back from the wire, are one row).
    #[test]
    fn a_spans_attribute_hash_is_its_profiles(picks in proptest::collection::vec(0..ATTRIBUTES.len(), 0..10)) {
        let mut span = crate::testing::SpanSpec::new("api", 1, 1, None, crate::testing::SERVER, "x");
        for &i in &picks {
            span = span.attr(ATTRIBUTES[i].0, crate::testing::AttrSpec::Str(ATTRIBUTES[i].1));
        }
        let span = &crate::testing::spans(&[span])[0];
        let keys = ["user_agent.original", "url.scheme", "http.route"];
        let profiler = AttributeProfiler::new(&keys.map(String::from));
        let expected: Vec<Option<Arc<str>>> = keys
            .iter()
            .map(|key| picks.iter().map(|&i| ATTRIBUTES[i]).find(|(k, _)| k == key).map(|(_, v)| Arc::from(v)))
            .collect();
        let profile = profiler.profile_of(span);
        prop_assert_eq!(&profile.values[..], &expected[..]);
        prop_assert_eq!(profiler.hash_of(span), profile.hash);
        prop_assert_eq!(profile.hash, Profile::new(expected.into()).hash);
    }
}

#[test]
fn profiles_of_other_values_or_positions_hash_apart() {
    let hash = |values: &[Option<&str>]| Profile::new(values.iter().map(|v| v.map(Arc::from)).collect()).hash;
    let distinct = [
        hash(&[None, None]),
        hash(&[Some("a"), None]),
        hash(&[None, Some("a")]),
        hash(&[Some("a"), Some("b")]),
        hash(&[Some("b"), Some("a")]),
        hash(&[Some(""), None]),
    ];
    for (i, a) in distinct.iter().enumerate() {
        assert!(distinct[i + 1..].iter().all(|b| a != b), "{distinct:?}");
    }
}
