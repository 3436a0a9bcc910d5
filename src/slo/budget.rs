//! Budget arithmetic (slo.md "Budget arithmetic" and "Burn-rate alerts").
//!
//! T = goal, W = window, N = requests in W, B = bad requests in W; for period budgeting, periods
//! of length s, K = W/s, b = bad periods. Invariants:
//! - counts live in event-time buckets of [`BUCKET_SECONDS`]; a query covers whole buckets;
//! - a period with no requests is good; requests inside an exclusion are never counted and periods
//!   inside one are good (the caller filters requests with [`Exclusions::contains`]);
//! - calendar windows start at the UTC start of the day, ISO week (Monday) or month, and their
//!   length W is the whole calendar unit (real month lengths).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};

/// Width of an event-time bucket.
pub const BUCKET_SECONDS: i64 = 60;

/// Unix seconds.
pub type Seconds = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calendar {
    Day,
    Week,
    Month,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Rolling(Duration),
    Calendar(Calendar),
}

impl Window {
    /// The window containing `now`: (start, length W). Rolling windows end now.
    pub fn bounds(&self, now: Seconds) -> (Seconds, Seconds) {
        match self {
            Window::Rolling(w) => (now - w.as_secs() as i64, w.as_secs() as i64),
            Window::Calendar(unit) => {
                let at = Utc.timestamp_opt(now, 0).single().unwrap_or_default();
                let day = at.date_naive();
                let start = match unit {
                    Calendar::Day => day,
                    Calendar::Week => day - ChronoDuration::days(day.weekday().num_days_from_monday() as i64),
                    Calendar::Month => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day),
                };
                let end = match unit {
                    Calendar::Day => start + ChronoDuration::days(1),
                    Calendar::Week => start + ChronoDuration::days(7),
                    Calendar::Month => start.checked_add_months(chrono::Months::new(1)).unwrap_or(start),
                };
                let secs =
                    |d: NaiveDate| -> Seconds { d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0) };
                (secs(start), secs(end) - secs(start))
            }
        }
    }
}

/// How the budget is counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budgeting {
    /// Occurrences: the budget is (1 − T)·N requests.
    Requests,
    /// Timeslices of `period` seconds: the budget is (1 − T)·W seconds.
    Periods { period: Seconds },
}

/// Exclusion windows: fixed ones, [start, start + duration), and recurring ones that open at
/// every occurrence of a cron schedule (UTC) for a duration.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    pub fixed: Vec<(Seconds, Seconds)>,
    pub recurring: Vec<(croner::Cron, Seconds)>,
}

impl Exclusions {
    pub fn contains(&self, at: Seconds) -> bool {
        if self.fixed.iter().any(|&(start, duration)| at >= start && at < start + duration) {
            return true;
        }
        if self.recurring.is_empty() {
            return false;
        }
        let Some(time) = Utc.timestamp_opt(at, 0).single() else { return false };
        self.recurring.iter().any(|(cron, duration)| {
            cron.find_previous_occurrence(&time, true).is_ok_and(|opened| at < opened.timestamp() + duration)
        })
    }
}

/// What one bucket (or any span of time) holds: good and total requests, and the sum of their
/// latencies (for the `avg` statistic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
    /// Sum of the requests' latencies, in microseconds.
    pub latency_us: u64,
}

impl Counts {
    pub fn merge(&mut self, other: Counts) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
        self.latency_us = self.latency_us.saturating_add(other.latency_us);
    }
}

/// When a period is good (period budgeting).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PeriodRule {
    /// Its share of good requests is at least this: the goal for availability and success; for a
    /// latency statistic pXX, XX % (p99 ≤ threshold exactly when at least 99 % of the period's
    /// requests are at or under it).
    GoodShare(f64),
    /// Its mean latency is at most this many microseconds (statistic `avg`).
    MeanAtMost(u64),
}

impl PeriodRule {
    fn is_bad(&self, counts: Counts) -> bool {
        counts.total > 0
            && match *self {
                PeriodRule::GoodShare(share) => (counts.good as f64) < share * counts.total as f64,
                PeriodRule::MeanAtMost(micros) => counts.latency_us > micros.saturating_mul(counts.total),
            }
    }
}

/// Counts per event-time bucket, for one SLO.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    buckets: BTreeMap<Seconds, Counts>,
}

impl Series {
    pub fn add(&mut self, at: Seconds, good: u64, total: u64) {
        self.add_counts(at, Counts { good, total, latency_us: 0 });
    }

    pub fn add_counts(&mut self, at: Seconds, counts: Counts) {
        self.buckets.entry(bucket_of(at)).or_default().merge(counts);
    }

    /// (good, total) of the buckets starting in [from, to).
    pub fn sum(&self, from: Seconds, to: Seconds) -> (u64, u64) {
        let counts = self.counts(from, to);
        (counts.good, counts.total)
    }

    /// Everything the buckets starting in [from, to) hold.
    pub fn counts(&self, from: Seconds, to: Seconds) -> Counts {
        let mut sum = Counts::default();
        for counts in self.buckets.range(from..to).map(|(_, c)| *c) {
            sum.merge(counts);
        }
        sum
    }

    /// Forgets buckets before `before`.
    pub fn prune(&mut self, before: Seconds) {
        self.buckets = self.buckets.split_off(&before);
    }

    /// Merges the buckets starting before `before` into `width`-aligned buckets: the old part
    /// of a long window needs only sums (slo.md: coarser buckets are fine there). A window whose
    /// start falls inside a coarse bucket leaves that bucket out.
    pub fn coarsen(&mut self, before: Seconds, width: Seconds) {
        let old: Vec<(Seconds, Counts)> = self.buckets.range(..before).map(|(at, c)| (*at, *c)).collect();
        if old.iter().all(|(at, _)| at.rem_euclid(width) == 0) {
            return;
        }
        for (at, counts) in old {
            self.buckets.remove(&at);
            self.buckets.entry(at.div_euclid(width) * width).or_default().merge(counts);
        }
    }

    /// Replaces each whole `period` starting before `before` by one bucket that keeps only its
    /// verdict under `rule`: a bad period stays bad and a good one good, in one bucket instead of
    /// one per minute. (Its request count becomes 1: old periods count by verdict only.)
    pub fn judge_periods(&mut self, before: Seconds, period: Seconds, rule: PeriodRule) {
        let before = before.div_euclid(period) * period;
        let Some((&first, _)) = self.buckets.first_key_value() else { return };
        let mut start = first.div_euclid(period) * period;
        while start < before {
            let buckets: Vec<Seconds> = self.buckets.range(start..start + period).map(|(at, _)| *at).collect();
            let judged = |c: &Counts| c.total == 1 && (c.latency_us == 0 || c.latency_us == JUDGED_BAD_LATENCY);
            let already_judged = buckets.len() == 1 && buckets[0] == start && judged(&self.buckets[&start]);
            if !buckets.is_empty() && !already_judged {
                let counts = self.counts(start, start + period);
                for at in buckets {
                    self.buckets.remove(&at);
                }
                let verdict = if rule.is_bad(counts) {
                    Counts { good: 0, total: 1, latency_us: JUDGED_BAD_LATENCY }
                } else {
                    Counts { good: 1, total: 1, latency_us: 0 }
                };
                self.buckets.insert(start, verdict);
            }
            start = match self.buckets.range(start + period..).next() {
                Some((&next, _)) => next.div_euclid(period) * period,
                None => break,
            };
        }
    }

    /// Every bucket: (start, counts), oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = (Seconds, Counts)> + '_ {
        self.buckets.iter().map(|(at, c)| (*at, *c))
    }

    /// Bad periods of length `period` in [from, to): a period is bad when `rule` says so; one
    /// with no requests, or inside an exclusion, is good.
    pub fn bad_periods(
        &self,
        from: Seconds,
        to: Seconds,
        period: Seconds,
        rule: PeriodRule,
        exclusions: &Exclusions,
    ) -> u64 {
        let mut bad = 0;
        let mut start = from.div_euclid(period) * period;
        while start < to {
            let counts = self.counts(start.max(from), (start + period).min(to));
            if rule.is_bad(counts) && !exclusions.contains(start) {
                bad += 1;
            }
            start += period;
        }
        bad
    }
}

/// The latency sum of a judged bad period: a mean over any threshold.
const JUDGED_BAD_LATENCY: u64 = u64::MAX / 4;

/// The start of the bucket holding `at`.
pub fn bucket_of(at: Seconds) -> Seconds {
    at.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
}

/// The objective of one SLO.
#[derive(Clone, Debug)]
pub struct Objective {
    pub goal: f64,
    /// When a period is good (period budgeting).
    pub period_rule: PeriodRule,
    pub window: Window,
    pub budgeting: Budgeting,
    pub warning_threshold: f64,
    pub exclusions: Exclusions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning,
    Breached,
    InsufficientData,
}

impl Status {
    /// Every status (to read one back from its text).
    pub const ALL: [Status; 4] = [Status::Ok, Status::Warning, Status::Breached, Status::InsufficientData];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Breached => "BREACHED",
            Status::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// The budget of an SLO at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// 1 − B/N, or good periods / periods elapsed; `None` without requests.
    pub attainment: Option<f64>,
    /// Requests, or seconds.
    pub total: f64,
    pub remaining: f64,
    pub remaining_ratio: f64,
    pub status: Status,
    pub requests: u64,
}

impl Objective {
    fn allowed(&self) -> f64 {
        1.0 - self.goal
    }

    /// The budget at `now` (slo.md's table).
    pub fn budget(&self, series: &Series, now: Seconds) -> Budget {
        let (start, length) = self.window.bounds(now);
        let (good, total) = series.sum(start, now + 1);
        let (attainment, budget_total, remaining, ratio) = match self.budgeting {
            Budgeting::Requests => {
                let bad = (total - good) as f64;
                let n = total as f64;
                let budget_total = self.allowed() * n;
                let attainment = (total > 0).then(|| 1.0 - bad / n);
                let ratio = if total > 0 { 1.0 - (bad / n) / self.allowed() } else { 1.0 };
                (attainment, budget_total, budget_total - bad, ratio)
            }
            Budgeting::Periods { period } => {
                let k = length as f64 / period as f64;
                let elapsed = ((now - start) as f64 / period as f64).ceil().max(1.0);
                let bad = series.bad_periods(start, now + 1, period, self.period_rule, &self.exclusions) as f64;
                let budget_total = self.allowed() * length as f64;
                let attainment = (total > 0).then(|| (elapsed - bad) / elapsed);
                let ratio = 1.0 - bad / (self.allowed() * k);
                (attainment, budget_total, budget_total - bad * period as f64, ratio)
            }
        };
        // 1 − T is inexact in binary (1 − 0.999 ≠ 0.001): a budget spent to within a billionth
        // of itself is spent.
        let spent = remaining <= 1e-9 * budget_total.abs().max(1.0);
        let status = if total == 0 {
            Status::InsufficientData
        } else if spent {
            Status::Breached
        } else if ratio < self.warning_threshold {
            Status::Warning
        } else {
            Status::Ok
        };
        Budget { attainment, total: budget_total, remaining, remaining_ratio: ratio, status, requests: total }
    }

    /// Burn rate over the last `w` seconds: the bad share over the allowed share.
    ///
    /// The bucket holding the window's start counts whole, so a window spans w to w + one
    /// bucket: a 1-minute window just after a minute boundary is not judged on the few seconds
    /// of a bucket just begun.
    pub fn burn_rate(&self, series: &Series, now: Seconds, w: Seconds) -> BurnRate {
        let from = bucket_of(now + 1 - w);
        let (good, total) = series.sum(from, now + 1);
        let rate = match self.budgeting {
            Budgeting::Requests if total > 0 => ((total - good) as f64 / total as f64) / self.allowed(),
            Budgeting::Periods { period } => {
                let bad = series.bad_periods(from, now + 1, period, self.period_rule, &self.exclusions) as f64;
                (bad / (w as f64 / period as f64)) / self.allowed()
            }
            _ => 0.0,
        };
        BurnRate { rate, bad: total - good, total }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurnRate {
    pub rate: f64,
    pub bad: u64,
    pub total: u64,
}

/// A multi-window, multi-burn-rate alert tier (SRE Workbook, table 5-8).
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    pub severity: String,
    /// Long window (seconds); the short one is long / 12.
    pub long: Seconds,
    /// The share of the budget this tier lets burn within its long window.
    pub share: f64,
}

impl Tier {
    /// The workbook's three tiers: page-fast (1 h, 2 %), page-slow (6 h, 5 %), ticket (3 d, 10 %).
    pub fn defaults() -> Vec<Tier> {
        let tier = |name: &str, severity: &str, long: Seconds, share: f64| Tier {
            name: name.into(),
            severity: severity.into(),
            long,
            share,
        };
        vec![
            tier("page-fast", "page", 3600, 0.02),
            tier("page-slow", "page", 6 * 3600, 0.05),
            tier("ticket", "ticket", 3 * 86_400, 0.10),
        ]
    }

    pub fn short(&self) -> Seconds {
        self.long / 12
    }

    /// threshold = share × W / long: 14.4 for page-fast with W = 30 d.
    pub fn threshold(&self, window_length: Seconds) -> f64 {
        self.share * window_length as f64 / self.long as f64
    }

    /// Whether the tier fires at `now`: both windows burn above the threshold, and the long
    /// window holds at least `min_requests` requests.
    pub fn firing(&self, objective: &Objective, series: &Series, now: Seconds, min_requests: u64) -> bool {
        let (_, length) = objective.window.bounds(now);
        let threshold = self.threshold(length);
        let long = objective.burn_rate(series, now, self.long);
        let short = objective.burn_rate(series, now, self.short());
        long.total >= min_requests && long.rate > threshold && short.rate > threshold
    }
}

/// Parses an RFC 3339 time (for exclusion starts).
pub fn parse_time(text: &str) -> Option<Seconds> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests;
