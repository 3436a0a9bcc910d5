//! Top contributors (investigation.md): which pod, host, zone or version is behind a series'
//! requests, faults and latency.
//!
//! Every dimension is a resource attribute, so a resource determines the value of every
//! dimension at once: a [`Profile`] is that tuple of values, worked out once per resource (per
//! [`Origin`], which spans of one resource share) by the [`ProfileCache`]. A series' point keeps
//! one [`ContributorTable`] row per profile; an answer for one dimension groups the rows by that
//! dimension's value. One table look-up per span, whatever the number of dimensions.
//!
//! Compare's span attributes (`investigation.compare_attributes`) are kept the same way in a
//! second table per point, by [`AttributeProfiler`]: a span's attribute profile is the tuple of
//! the compared attributes' values it carries. It differs from span to span, so only its hash is
//! worked out per span (a profile's hash is a sum over its values, so one walk of the span's
//! attributes in wire order gives it); the profile is built when its row is made.
//!
//! Invariants:
//! - a table tracks at most `capacity` (`investigation.max_values_per_dimension`) profiles, so at
//!   most that many values of any dimension, exactly;
//! - beyond that it is a Space-Saving heavy-hitter summary: a new profile takes over the row with
//!   the fewest requests, inheriting its counts (recorded as `overcount`), so a row's requests are
//!   an upper bound, over by at most `total / capacity`; a profile with more than
//!   `total / capacity` requests is always tracked; its other figures (faults, latency) are
//!   approximate, and the table says it is `estimated`;
//! - every request lands in exactly one row: the rows' sums equal the series' totals.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::format::find_resource_attribute;
use crate::model::{Origin, Outcome, Span, TraceId};

use super::point::{Counts, Examples};
use super::sketch::{Bucket, LatencySketch};

/// The values of every configured dimension for one resource, in the order of
/// `investigation.dimensions` (`None`: the resource lacks the attribute).
#[derive(Clone, Debug)]
pub struct Profile {
    /// A hash of the values: the row key.
    pub hash: u64,
    pub values: Arc<[Option<Arc<str>>]>,
}

impl Profile {
    /// The profile of a tuple of values. The hash is the same in every instance (a fixed
    /// function, [`value_hash`]), so rows from other instances' points merge with local ones.
    pub fn new(values: Arc<[Option<Arc<str>>]>) -> Self {
        let hash = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_deref().map(|v| value_hash(i, v)))
            .fold(EMPTY_PROFILE_HASH, u64::wrapping_add);
        Self { hash, values }
    }
}

/// The hash of a profile without any value.
const EMPTY_PROFILE_HASH: u64 = 0x2545_f491_4f6c_dd1d;

/// One value's share of its profile's hash: FNV-1a of the value, mixed with its position. A
/// profile's hash is the wrapping sum of its values' shares, so it can be worked out from values
/// met in any order, without building the profile ([`AttributeProfiler`]).
fn value_hash(position: usize, value: &str) -> u64 {
    let fnv = value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mixed = (fnv ^ (position as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed ^ (mixed >> 31)
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.values == other.values
    }
}

/// Hashes an address with one multiplication (Fx): the cache is looked up on every change of
/// resource between consecutive spans, and addresses need no flooding protection.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ byte as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Profiles cached beyond this many resources start afresh.
const MAX_CACHED_ORIGINS: usize = 16_384;

/// Works out each resource's profile once.
pub struct ProfileCache {
    dimensions: Arc<[Arc<str>]>,
    /// By the address of the shared [`Origin`]; the `Arc` keeps the address from being reused.
    by_origin: HashMap<usize, (Arc<Origin>, Profile), BuildHasherDefault<AddressHasher>>,
    /// Interned value strings, so profiles of many resources share them.
    values: HashMap<Arc<str>, ()>,
    /// The last origin looked up: consecutive spans mostly share their resource.
    last: Option<(usize, Profile)>,
}

impl ProfileCache {
    pub fn new(dimensions: &[String]) -> Self {
        Self {
            dimensions: dimensions.iter().map(|d| Arc::from(d.as_str())).collect(),
            by_origin: HashMap::default(),
            values: HashMap::new(),
            last: None,
        }
    }

    pub fn dimensions(&self) -> &Arc<[Arc<str>]> {
        &self.dimensions
    }

    /// Whether any dimension is configured (with none, no table is kept).
    pub fn is_active(&self) -> bool {
        !self.dimensions.is_empty()
    }

    /// The profile of the resource the spans of `origin` were reported under.
    pub fn of(&mut self, origin: &Arc<Origin>) -> &Profile {
        let address = Arc::as_ptr(origin) as usize;
        if matches!(&self.last, Some((last, _)) if *last == address) {
            return &self.last.as_ref().expect("just matched").1;
        }
        if let Some((_, profile)) = self.by_origin.get(&address) {
            let profile = profile.clone();
            return &self.last.insert((address, profile)).1;
        }
        if self.by_origin.len() >= MAX_CACHED_ORIGINS {
            self.by_origin.clear();
            self.values.clear();
        }
        let dimensions = self.dimensions.clone();
        let values: Arc<[Option<Arc<str>>]> = dimensions
            .iter()
            .map(|dimension| {
                let value = find_resource_attribute(origin.encoding, &origin.resource, dimension)?.as_text()?;
                Some(self.intern(&value))
            })
            .collect();
        let profile = Profile::new(values);
        // The cache holds the origin, so its address is not reused while remembered here.
        self.by_origin.insert(address, (origin.clone(), profile.clone()));
        &self.last.insert((address, profile)).1
    }

    pub fn intern(&mut self, value: &str) -> Arc<str> {
        match self.values.get_key_value(value) {
            Some((interned, ())) => interned.clone(),
            None => {
                let interned: Arc<str> = Arc::from(value);
                self.values.insert(interned.clone(), ());
                interned
            }
        }
    }
}

/// Works out a span's attribute profile: the values of `investigation.compare_attributes` it
/// carries (compare's span attributes). Unlike a resource's, it differs from span to span, so
/// only its hash is worked out per span, in one walk of the span's attributes and without
/// allocating; the profile itself is built (its values copied) only when a table meets it for
/// the first time, which happens at most `capacity` times per table.
pub struct AttributeProfiler {
    keys: Arc<[Arc<str>]>,
}

/// At most this many compared span attributes (a bit each in [`AttributeProfiler::hash_of`]).
pub const MAX_COMPARE_ATTRIBUTES: usize = 64;

impl AttributeProfiler {
    pub fn new(keys: &[String]) -> Self {
        Self { keys: keys.iter().take(MAX_COMPARE_ATTRIBUTES).map(|k| Arc::from(k.as_str())).collect() }
    }

    pub fn keys(&self) -> &Arc<[Arc<str>]> {
        &self.keys
    }

    /// Whether any attribute is compared (with none, no table is kept).
    pub fn is_active(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The index of a compared key, by its bytes.
    fn position(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.as_bytes() == key)
    }

    /// The hash of `span`'s attribute profile (what [`Profile::new`] gives for the values
    /// [`AttributeProfiler::profile_of`] finds); a key repeated in a span counts once, with its
    /// first value.
    pub fn hash_of(&self, span: &Span) -> u64 {
        let (mut hash, mut seen) = (EMPTY_PROFILE_HASH, 0_u64);
        let find = |key: &[u8]| self.position(key);
        span.origin.encoding.format().visit_span_attributes(&span.raw, &find, &mut |i, value| {
            if seen & (1 << i) == 0 {
                seen |= 1 << i;
                hash = hash.wrapping_add(value_hash(i, value));
            }
        });
        hash
    }

    /// `span`'s attribute profile.
    pub fn profile_of(&self, span: &Span) -> Profile {
        let mut values: Vec<Option<Arc<str>>> = vec![None; self.keys.len()];
        let find = |key: &[u8]| self.position(key);
        span.origin.encoding.format().visit_span_attributes(&span.raw, &find, &mut |i, value| {
            if values[i].is_none() {
                values[i] = Some(Arc::from(value));
            }
        });
        Profile::new(values.into())
    }
}

/// The figures of one profile (or, once the table is full, of the profiles that took the row).
#[derive(Clone, Debug, PartialEq)]
pub struct ContributorRow {
    pub profile: Profile,
    pub counts: Counts,
    pub latency: LatencySketch,
    pub examples: Examples,
    /// Requests inherited from the profiles this row replaced: `requests - overcount` is a lower
    /// bound of this profile's own requests (0 when exact).
    pub overcount: u64,
}

impl ContributorRow {
    fn new(profile: Profile) -> Self {
        Self {
            profile,
            counts: Counts::default(),
            latency: LatencySketch::default(),
            examples: Examples::default(),
            overcount: 0,
        }
    }

    fn record(&mut self, outcome: Outcome, bucket: Bucket, trace_id: &TraceId) {
        self.counts.record(outcome);
        self.latency.record(bucket);
        self.examples.record(trace_id, outcome);
    }

    /// Adds another row's figures (the same profile, from another point or instance).
    pub fn merge(&mut self, other: &ContributorRow) {
        self.counts.add(&other.counts);
        self.latency.merge(&other.latency);
        self.examples.merge(&other.examples);
        self.overcount += other.overcount;
    }
}

/// Rows beyond which look-ups go through a hash index rather than a scan.
const SCAN_LIMIT: usize = 24;

/// A series' contributors over one point (module docs for the invariants).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContributorTable {
    rows: Vec<ContributorRow>,
    /// Row by profile hash, once the table is larger than [`SCAN_LIMIT`].
    index: Option<HashMap<u64, usize>>,
    /// Whether a row was ever taken over by another profile.
    pub estimated: bool,
}

impl ContributorTable {
    /// A table of rows as they are (from another instance's point): one row per profile is assumed, as every
    /// table keeps.
    pub fn from_rows(rows: Vec<ContributorRow>, estimated: bool) -> Self {
        let mut table = Self { rows, index: None, estimated };
        table.reindex();
        table
    }

    pub fn rows(&self) -> &[ContributorRow] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn position(&self, hash: u64) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&hash).copied(),
            None => self.rows.iter().position(|r| r.profile.hash == hash),
        }
    }

    fn reindex(&mut self) {
        if self.rows.len() > SCAN_LIMIT {
            self.index = Some(self.rows.iter().enumerate().map(|(i, r)| (r.profile.hash, i)).collect());
        }
    }

    /// The row of the profile hashed `hash`: its own, a new one while there is room, else the
    /// row with the fewest requests, taken over; `profile` builds the profile when it has no row.
    fn row_for(&mut self, hash: u64, profile: impl FnOnce() -> Profile, capacity: usize) -> &mut ContributorRow {
        let position = match self.position(hash) {
            Some(i) => i,
            None if self.rows.len() < capacity.max(1) => {
                let profile = profile();
                debug_assert_eq!(profile.hash, hash);
                self.rows.push(ContributorRow::new(profile));
                let i = self.rows.len() - 1;
                match self.index.as_mut() {
                    Some(index) => {
                        index.insert(hash, i);
                    }
                    None => self.reindex(),
                }
                i
            }
            None => {
                let (i, smallest) = self
                    .rows
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| r.counts.requests)
                    .expect("capacity is at least 1");
                let old = smallest.profile.hash;
                let profile = profile();
                debug_assert_eq!(profile.hash, hash);
                let row = &mut self.rows[i];
                row.overcount = row.counts.requests;
                row.profile = profile;
                row.examples = Examples::default();
                self.estimated = true;
                if let Some(index) = self.index.as_mut() {
                    index.remove(&old);
                    index.insert(hash, i);
                }
                i
            }
        };
        &mut self.rows[position]
    }

    /// Counts one request of `profile`.
    pub fn record(&mut self, profile: &Profile, capacity: usize, outcome: Outcome, bucket: Bucket, trace_id: &TraceId) {
        self.row_for(profile.hash, || profile.clone(), capacity).record(outcome, bucket, trace_id);
    }

    /// Counts one request of the profile hashed `hash`, built by `profile` only when the table
    /// has no row of it.
    pub fn record_hashed(
        &mut self,
        hash: u64,
        profile: impl FnOnce() -> Profile,
        capacity: usize,
        outcome: Outcome,
        bucket: Bucket,
        trace_id: &TraceId,
    ) {
        self.row_for(hash, profile, capacity).record(outcome, bucket, trace_id);
    }

    /// Adds the rows of `other` (another point of the same series, or another instance's).
    /// Rows of the same profile are merged; others are added as they are, so a merged table
    /// may hold more than `capacity` rows (at most the sum of its parts').
    pub fn merge(&mut self, other: &ContributorTable) {
        self.estimated |= other.estimated;
        for row in &other.rows {
            match self.position(row.profile.hash) {
                Some(i) => self.rows[i].merge(row),
                None => {
                    self.rows.push(row.clone());
                    if let Some(index) = self.index.as_mut() {
                        index.insert(row.profile.hash, self.rows.len() - 1);
                    }
                }
            }
        }
        if self.index.is_none() {
            self.reindex();
        }
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<ContributorRow>()
            + self.rows.iter().map(|r| r.latency.heap_bytes()).sum::<usize>()
            + self.index.as_ref().map_or(0, |i| i.capacity() * 16)
    }
}

#[cfg(test)]
mod tests;
