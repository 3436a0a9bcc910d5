//! The actions of sampling rules: `all`, `none`, `rate` (+ reservoir), `dynamic`, `throughput`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::rules::{KeepAction, RuleConfig};
use super::{Decision, TraceFacts};
use crate::clock::Nanos;
pub use crate::decision::adjusted_count;
use crate::model::TraceId;

/// 2^56: the range of OpenTelemetry sampling randomness and thresholds.
const SCALE: u64 = 1 << 56;

/// A trace id's sampling randomness: its last 56 bits (W3C Trace Context level 2).
pub fn randomness(trace_id: &TraceId) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[1..].copy_from_slice(&trace_id[9..]);
    u64::from_be_bytes(bytes)
}

/// The rejection threshold of a keep probability: keep when randomness ≥ threshold.
pub fn threshold_for(probability: f64) -> u64 {
    if probability >= 1.0 {
        0
    } else if probability <= 0.0 {
        SCALE
    } else {
        // 2^56 − round(p·2^56): computing (1 − p)·2^56 directly would lose the low bits.
        SCALE - ((probability * SCALE as f64).round() as u64).clamp(1, SCALE)
    }
}

/// The exact keep probability a threshold stands for.
fn probability_of(threshold: u64) -> f64 {
    (SCALE - threshold) as f64 / SCALE as f64
}

/// A consistent-probability decision: deterministic from the trace id.
fn consistent(rule: &Arc<str>, trace_id: &TraceId, probability: f64) -> Decision {
    let threshold = threshold_for(probability);
    if threshold < SCALE && randomness(trace_id) >= threshold {
        Decision {
            keep: true,
            rule: rule.clone(),
            sample_rate: 1.0 / probability_of(threshold),
            threshold: Some(threshold),
        }
    } else {
        Decision::drop(rule.clone())
    }
}

/// Counts matches per second: X-Ray's reservoir.
pub(super) struct Reservoir {
    per_second: u32,
    second: u64,
    used: u32,
}

impl Reservoir {
    /// Takes a place in the current second's reservoir, if one is left.
    fn take(&mut self, now: Nanos) -> bool {
        let second = now.0 / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

/// Refinery's dynamic sampler (dynsampler-go `AvgSampleRate`): per key, a sample rate set each
/// period from the last period's counts, so rare keys are kept far more often than common ones
/// while the average stays near 1 in `goal_rate`. The first trace of each key in a period is
/// always kept (weight 1), so every key seen is represented.
pub(super) struct Dynamic {
    goal_rate: f64,
    key: Vec<String>,
    period: Duration,
    period_start: Option<Nanos>,
    counts: HashMap<String, u64>,
    rates: HashMap<String, f64>,
}

/// At most this many distinct keys per period; beyond, new keys share one overflow key.
const MAX_KEYS: usize = 10_000;

impl Dynamic {
    fn key_of(&self, facts: &TraceFacts<'_>) -> String {
        self.key.iter().map(|field| facts.key_field(field)).collect::<Vec<_>>().join("\u{1f}")
    }

    fn roll(&mut self, now: Nanos) {
        let start = *self.period_start.get_or_insert(now);
        if now.since(start) < self.period {
            return;
        }
        self.period_start = Some(now);
        self.rates = average_sample_rates(&self.counts, self.goal_rate);
        self.counts.clear();
    }

    fn decide(&mut self, rule: &Arc<str>, trace_id: &TraceId, facts: &TraceFacts<'_>, now: Nanos) -> Decision {
        self.roll(now);
        let mut key = self.key_of(facts);
        if !self.counts.contains_key(&key) && self.counts.len() >= MAX_KEYS {
            key = "__overflow__".into();
        }
        let count = self.counts.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            return Decision::keep(rule.clone(), 1.0);
        }
        let rate = self.rates.get(&key).copied().unwrap_or(1.0).max(1.0);
        consistent(rule, trace_id, 1.0 / rate)
    }
}

/// dynsampler-go's `AvgSampleRate`: each key's share of the kept budget grows with the log of its
/// count; unused budget of rare keys passes to the common ones.
fn average_sample_rates(counts: &HashMap<String, u64>, goal_rate: f64) -> HashMap<String, f64> {
    let total: u64 = counts.values().sum();
    let mut rates = HashMap::with_capacity(counts.len());
    if total == 0 {
        return rates;
    }
    let goal_count = total as f64 / goal_rate;
    let log_sum: f64 = counts.values().map(|&c| (c as f64).log10()).sum();
    let goal_ratio = goal_count / log_sum;
    let mut keys: Vec<(&String, u64)> = counts.iter().map(|(k, &c)| (k, c)).collect();
    keys.sort_by_key(|(k, c)| (*c, (*k).clone()));
    let mut extra = 0.0;
    let mut remaining = keys.len() as f64;
    for (key, count) in keys {
        let count = count as f64;
        let mut goal_for_key = if goal_ratio.is_finite() { (count.log10() * goal_ratio).max(1.0) } else { 1.0 };
        let extra_for_key = extra / remaining;
        goal_for_key += extra_for_key;
        extra -= extra_for_key;
        remaining -= 1.0;
        let rate = if count <= goal_for_key {
            extra += goal_for_key - count;
            1.0
        } else {
            let rate = (count / goal_for_key).ceil();
            let rate = if rate.is_finite() { rate } else { 1.0 };
            extra += goal_for_key - count / rate;
            rate
        };
        rates.insert(key.clone(), rate);
    }
    rates
}

/// Adapts a keep probability each second so kept traces approach a goal per second.
pub(super) struct Throughput {
    goal: f64,
    second: u64,
    seen: u64,
    probability: f64,
}

impl Throughput {
    fn decide(&mut self, rule: &Arc<str>, trace_id: &TraceId, now: Nanos) -> Decision {
        let second = now.0 / 1_000_000_000;
        if second != self.second {
            // Traffic of the second just ended (or none, after a gap) sets the next probability.
            let seen = if second == self.second + 1 { self.seen } else { 0 };
            self.probability = if seen == 0 { 1.0 } else { (self.goal / seen as f64).min(1.0) };
            self.second = second;
            self.seen = 0;
        }
        self.seen += 1;
        consistent(rule, trace_id, self.probability)
    }
}

pub(super) enum Action {
    All,
    None,
    Rate { probability: f64, reservoir: Option<Reservoir> },
    Dynamic(Box<Dynamic>),
    Throughput(Throughput),
}

impl Action {
    pub(super) fn new(rule: &RuleConfig) -> Self {
        match rule.keep {
            KeepAction::All => Self::All,
            KeepAction::None => Self::None,
            KeepAction::Rate => Self::Rate {
                probability: rule.rate.unwrap_or(1.0),
                reservoir: rule.reservoir_per_second.filter(|&n| n > 0).map(|per_second| Reservoir {
                    per_second,
                    second: 0,
                    used: 0,
                }),
            },
            KeepAction::Dynamic => Self::Dynamic(Box::new(Dynamic {
                goal_rate: rule.goal_rate.unwrap_or(10).max(1) as f64,
                key: rule.key.clone().unwrap_or_else(|| vec!["service".into(), "operation".into(), "outcome".into()]),
                period: rule.adjust_every.map(|d| d.0).unwrap_or(Duration::from_secs(30)),
                period_start: None,
                counts: HashMap::new(),
                rates: HashMap::new(),
            })),
            KeepAction::Throughput => Self::Throughput(Throughput {
                goal: rule.traces_per_second.unwrap_or(1.0),
                second: 0,
                seen: 0,
                probability: 1.0,
            }),
        }
    }

    pub(super) fn decide(
        &mut self,
        rule: &Arc<str>,
        trace_id: &TraceId,
        facts: &TraceFacts<'_>,
        now: Nanos,
    ) -> Decision {
        match self {
            Self::All => Decision::keep(rule.clone(), 1.0),
            Self::None => Decision::drop(rule.clone()),
            Self::Rate { probability, reservoir } => {
                if reservoir.as_mut().is_some_and(|r| r.take(now)) {
                    Decision { threshold: Some(0), ..Decision::keep(rule.clone(), 1.0) }
                } else {
                    consistent(rule, trace_id, *probability)
                }
            }
            Self::Dynamic(dynamic) => dynamic.decide(rule, trace_id, facts, now),
            Self::Throughput(throughput) => throughput.decide(rule, trace_id, now),
        }
    }
}
