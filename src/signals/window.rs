//! A sliding window of latencies and faults for quantiles and availability over `metrics.window`.
//!
//! The window is a ring of [`SLOTS`] time slots of `window / SLOTS` each. A query merges the
//! current slot with the previous `SLOTS - 1`, so it covers between `(SLOTS-1)/SLOTS · window` and
//! `window` of the most recent time: never a span older than the window. Each slot's HDR histogram
//! (3 significant digits over 1 µs … 1 h, signals.md) is allocated on first use, grows only as far
//! as the largest latency recorded, and is released when the slot expires, so an idle series holds
//! no histogram memory.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::clock::Nanos;
use crate::model::Outcome;

pub const SLOTS: u64 = 5;
/// Lowest and highest trackable latency in microseconds: 1 µs … 1 h.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

struct Slot {
    /// Which slot of time this is (`now / slot_length`); u64::MAX when never used.
    index: u64,
    histogram: Option<Histogram<u32>>,
    requests: u64,
    faults: u64,
    errors: u64,
    throttles: u64,
}

pub struct LatencyWindow {
    slot_nanos: u64,
    slots: Vec<Slot>,
}

/// Quantiles and availability over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowSnapshot {
    pub requests: u64,
    pub faults: u64,
    /// Errors (4xx, throttles included).
    pub errors: u64,
    pub throttles: u64,
    /// (quantile, seconds) for 0.5, 0.9, 0.99, 0.999; empty when the window holds no request.
    pub quantiles: Vec<(f64, f64)>,
}

impl WindowSnapshot {
    /// 1 − faults / requests; `None` when the window holds no request.
    pub fn availability(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1.0 - self.faults as f64 / self.requests as f64)
    }

    pub fn fault_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.faults as f64 / self.requests as f64)
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles.iter().find(|(qq, _)| *qq == q).map(|(_, v)| *v)
    }
}

pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

impl LatencyWindow {
    pub fn new(window: Duration) -> Self {
        let slot_nanos = (window.as_nanos() as u64 / SLOTS).max(1);
        let slots = (0..SLOTS)
            .map(|_| Slot { index: u64::MAX, histogram: None, requests: 0, faults: 0, errors: 0, throttles: 0 })
            .collect();
        Self { slot_nanos, slots }
    }

    fn slot_index(&self, now: Nanos) -> u64 {
        now.0 / self.slot_nanos
    }

    pub fn record(&mut self, now: Nanos, latency_nanos: u64, outcome: Outcome) {
        let index = self.slot_index(now);
        let slot = &mut self.slots[(index % SLOTS) as usize];
        if slot.index != index {
            slot.index = index;
            slot.requests = 0;
            slot.faults = 0;
            slot.errors = 0;
            slot.throttles = 0;
            if let Some(h) = slot.histogram.as_mut() {
                h.reset();
            }
        }
        slot.requests += 1;
        slot.faults += outcome.is_fault() as u64;
        slot.errors += outcome.is_error() as u64;
        slot.throttles += outcome.is_throttle() as u64;
        let micros = (latency_nanos / 1_000).clamp(LOWEST_MICROS, HIGHEST_MICROS);
        // Auto-resizing: a histogram grows only as far as the largest latency it has seen.
        let histogram =
            slot.histogram.get_or_insert_with(|| Histogram::new(SIGNIFICANT_DIGITS).expect("valid HDR precision"));
        if histogram.record(micros).is_err() {
            histogram.saturating_record(micros);
        }
    }

    /// Quantiles and availability of the slots still inside the window at `now`. Frees the
    /// histograms of expired slots.
    pub fn snapshot(&mut self, now: Nanos) -> WindowSnapshot {
        let mut totals = WindowTotals::default();
        totals.add(self, now);
        totals.snapshot()
    }
}

/// Several windows merged (a service's operations, a node's calls): counts added, HDR
/// histograms merged, so quantiles are those of all the requests together.
#[derive(Default)]
pub struct WindowTotals {
    requests: u64,
    faults: u64,
    errors: u64,
    throttles: u64,
    histogram: Option<Histogram<u32>>,
}

impl WindowTotals {
    /// Adds the slots of `window` still inside it at `now` (freeing the expired ones).
    pub fn add(&mut self, window: &mut LatencyWindow, now: Nanos) {
        let current = window.slot_index(now);
        let oldest = current.saturating_sub(SLOTS - 1);
        for slot in &mut window.slots {
            if slot.index == u64::MAX {
                continue;
            }
            if slot.index < oldest || slot.index > current {
                slot.histogram = None;
                slot.index = u64::MAX;
                continue;
            }
            self.requests += slot.requests;
            self.faults += slot.faults;
            self.errors += slot.errors;
            self.throttles += slot.throttles;
            if let Some(h) = &slot.histogram {
                match self.histogram.as_mut() {
                    Some(m) => m.add(h).expect("same bounds"),
                    None => self.histogram = Some(h.clone()),
                }
            }
        }
    }

    pub fn snapshot(&self) -> WindowSnapshot {
        let quantiles = match &self.histogram {
            Some(h) if self.requests > 0 => {
                QUANTILES.iter().map(|&q| (q, h.value_at_quantile(q) as f64 / 1e6)).collect()
            }
            _ => Vec::new(),
        };
        WindowSnapshot {
            requests: self.requests,
            faults: self.faults,
            errors: self.errors,
            throttles: self.throttles,
            quantiles,
        }
    }
}
