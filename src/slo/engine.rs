//! Evaluation of every configured SLO: requests in, state changes out as alert messages
//! (slo.md "Alert messages"), and a report for gauges and `/api/slos`.
//!
//! Invariants: a request counts for every SLO whose service/operation/environment selects it, in
//! the event-time bucket of its span's end, unless an exclusion holds then; an alert message is
//! produced on every state change and only then; a resolved message repeats the labels,
//! fingerprint and `startsAt` of its firing one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};

use super::aggregate::{
    AggregateRecord, AlertCheckpoint, Checkpoint, Ledger, CHECKPOINT_HISTORY_STEP, CHECKPOINT_VERSION,
};
use super::budget::{bucket_of, Budget, Budgeting, Counts, Objective, Seconds, Series, Status, Tier};
use super::config::{SliKind, SloConfig};
use super::history::{HistoryPoint, SloHistory};
use super::sent::SentAlert;
use crate::duration::{format_duration, format_seconds};
use crate::model::{Role, Span};

/// One alert message, as written to `kafka.alerts_topic` (JSON, keyed by fingerprint).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertMessage {
    pub schema_version: u32,
    pub status: &'static str,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<&'static str, String>,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub slo: SloSummary,
    pub evaluation: AlertEvaluation,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SloSummary {
    pub goal: f64,
    pub window: String,
    pub budgeting: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvaluation {
    pub evaluated_at: String,
    pub windows: Vec<WindowBurn>,
    pub error_budget: ErrorBudget,
    pub attainment: Option<f64>,
    pub budget_status: &'static str,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowBurn {
    pub window: String,
    pub burn_rate: f64,
    pub threshold: f64,
    pub bad: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    /// `requests`, or `seconds` for period budgeting.
    #[serde(deserialize_with = "unit_text")]
    pub unit: KnownText,
    pub total: f64,
    pub remaining: f64,
    pub remaining_ratio: f64,
}

/// An open alert: its fingerprint, labels and start.
#[derive(Clone, Debug)]
struct Firing {
    labels: BTreeMap<String, String>,
    fingerprint: String,
    starts_at: Seconds,
}

struct SloRuntime {
    config: SloConfig,
    objective: Objective,
    tiers: Vec<Tier>,
    /// Whether this instance evaluates the SLO (it owns the SLO's aggregates partition).
    owned: bool,
    series: Series,
    ledger: Ledger,
    tier_alerts: Vec<Option<Firing>>,
    budget_alert: Option<(Status, Firing)>,
    /// Firing alerts restored for tiers no longer configured: resolved at the next evaluation.
    orphans: Vec<Firing>,
    /// Whether anything changed since the last checkpoint.
    dirty: bool,
    /// One point per evaluation over the last hour: recorded here while owned, received from
    /// the owner otherwise; kept across take-over and release so the chart has no hole.
    history: SloHistory,
    /// The owner's latest report, while another instance owns the SLO.
    remote_report: Option<SloReport>,
}

/// The state of one SLO now, for gauges and `/api/slos` (camelCase fields, as every API). A
/// non-owner answers with the owner's, read back from its JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SloReport {
    pub name: String,
    pub service: String,
    pub operation: Option<String>,
    pub sli: String,
    pub goal: f64,
    pub window: String,
    pub attainment: Option<f64>,
    pub error_budget: ErrorBudget,
    pub burn_rates: Vec<WindowBurn>,
    /// [`Status::as_str`]: `OK`, `WARNING`, `BREACHED` or `INSUFFICIENT_DATA`.
    #[serde(deserialize_with = "status_text")]
    pub status: KnownText,
    /// The burn-rate tiers.
    pub tiers: Vec<String>,
    /// Firing alerts: tier names, and `budget-warning` / `budget-breached`.
    pub firing: Vec<String>,
}

/// The name of the budget alert family in checkpoints.
const BUDGET_ALERT: &str = "budget";

/// Counts older than this are kept in day buckets (requests budgeting): only windows longer than
/// a month reach them.
const DAILY_BUCKETS_AFTER: Seconds = 35 * 86_400;

/// Each window's burn once: tiers may share a window (page-slow's long 6 h is ticket's short one),
/// and a window's burn rate does not depend on the tier.
pub fn distinct_windows(burns: &[WindowBurn]) -> impl Iterator<Item = &WindowBurn> {
    burns.iter().enumerate().filter(|(i, b)| burns[..*i].iter().all(|seen| seen.window != b.window)).map(|(_, b)| b)
}

/// One of a fixed set of texts (a status, a unit), read back by `status_text` or `unit_text`.
/// Named so that serde's derive does not take it for text borrowed from the input, which would
/// tie a value read back to input living forever.
pub type KnownText = &'static str;

/// Reads back a status written by [`Status::as_str`] (the `&'static str` it was).
pub(super) fn status_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    one_of(deserializer, &Status::ALL.map(Status::as_str))
}

/// Reads back a budget unit (the `&'static str` it was).
fn unit_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    one_of(deserializer, &["requests", "seconds"])
}

fn one_of<'de, D: Deserializer<'de>>(deserializer: D, known: &[&'static str]) -> Result<&'static str, D::Error> {
    let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
    known.iter().find(|k| **k == text).copied().ok_or_else(|| {
        let expected = format!("one of {}", known.join(", "));
        D::Error::invalid_value(Unexpected::Str(&text), &expected.as_str())
    })
}

/// `at` as RFC 3339 UTC, whole seconds (`2026-05-01T10:02:00Z`).
pub(super) fn rfc3339(at: Seconds) -> String {
    Utc.timestamp_opt(at, 0).single().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// The labels' Prometheus/Alertmanager fingerprint (prometheus/common `model.LabelSet.Fingerprint`):
/// FNV-1a 64 over the label names in sorted (byte) order, each name and each value followed by
/// the byte 0xff, as 16 lowercase hex digits. Alertmanager, given the same labels, computes the same.
pub(crate) fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const SEPARATOR: u8 = 0xff;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for byte in name.bytes().chain([SEPARATOR]).chain(value.bytes()).chain([SEPARATOR]) {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

impl SloRuntime {
    fn base_labels(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut labels = BTreeMap::from([
            ("slo".into(), c.name.clone()),
            ("service".into(), c.service.clone()),
            ("environment".into(), c.environment.clone().unwrap_or_else(|| "*".into())),
            ("sli".into(), format!("{:?}", c.sli).to_lowercase()),
        ]);
        // An SLO over every operation of its service has no `operation` label (slo.md).
        if let Some(operation) = &c.operation {
            labels.insert("operation".into(), operation.clone());
        }
        labels
    }

    fn window_text(&self) -> String {
        match (self.config.window, self.config.calendar) {
            (Some(w), _) => format_duration(w.0),
            (None, Some(c)) => format!("{c:?}").to_lowercase(),
            (None, None) => String::new(),
        }
    }

    fn unit(&self) -> &'static str {
        match self.objective.budgeting {
            Budgeting::Requests => "requests",
            Budgeting::Periods { .. } => "seconds",
        }
    }

    fn burns(&self, tier: &Tier, now: Seconds) -> Vec<WindowBurn> {
        let (_, length) = self.objective.window.bounds(now);
        let threshold = tier.threshold(length);
        [tier.long, tier.short()]
            .into_iter()
            .map(|w| {
                let burn = self.objective.burn_rate(&self.series, now, w);
                WindowBurn {
                    window: format_seconds(w),
                    burn_rate: burn.rate,
                    threshold,
                    bad: burn.bad,
                    total: burn.total,
                }
            })
            .collect()
    }

    fn error_budget(&self, budget: &Budget) -> ErrorBudget {
        ErrorBudget {
            unit: self.unit(),
            total: budget.total,
            remaining: budget.remaining,
            remaining_ratio: budget.remaining_ratio,
        }
    }

    fn evaluation(&self, budget: &Budget, windows: Vec<WindowBurn>, now: Seconds) -> AlertEvaluation {
        AlertEvaluation {
            evaluated_at: rfc3339(now),
            windows,
            error_budget: self.error_budget(budget),
            attainment: budget.attainment,
            budget_status: budget.status.as_str(),
        }
    }

    fn message(
        &self,
        firing: &Firing,
        resolved_at: Option<Seconds>,
        summary: String,
        evaluation: AlertEvaluation,
    ) -> AlertMessage {
        AlertMessage {
            schema_version: 1,
            status: if resolved_at.is_some() { "resolved" } else { "firing" },
            fingerprint: firing.fingerprint.clone(),
            labels: firing.labels.clone(),
            annotations: BTreeMap::from([("summary", summary)]),
            starts_at: rfc3339(firing.starts_at),
            ends_at: resolved_at.map(rfc3339),
            slo: SloSummary {
                goal: self.config.goal,
                window: self.window_text(),
                budgeting: match self.objective.budgeting {
                    Budgeting::Requests => "requests",
                    Budgeting::Periods { .. } => "periods",
                },
            },
            evaluation,
        }
    }

    fn subject(&self) -> String {
        match &self.config.operation {
            Some(op) => format!("{} {op}", self.config.service),
            None => self.config.service.clone(),
        }
    }

    fn evaluate(&mut self, now: Seconds, out: &mut Vec<AlertMessage>) {
        let before = out.len();
        let budget = self.objective.budget(&self.series, now);
        for alert in std::mem::take(&mut self.orphans) {
            let summary = format!("{}: the alert's tier is no longer configured", self.subject());
            out.push(self.message(&alert, Some(now), summary, self.evaluation(&budget, Vec::new(), now)));
        }
        let min_requests = self.config.min_requests;
        let mut burn_rates = Vec::with_capacity(2 * self.tiers.len());
        for i in 0..self.tiers.len() {
            let tier = self.tiers[i].clone();
            let firing = tier.firing(&self.objective, &self.series, now, min_requests);
            let windows = self.burns(&tier, now);
            burn_rates.extend(windows.iter().cloned());
            let summary = match firing {
                true => format!(
                    "{} is burning its error budget at {:.1}x (threshold {:.1}x)",
                    self.subject(),
                    windows[0].burn_rate,
                    windows[0].threshold
                ),
                // Resolved: whichever window fell back under the threshold says so.
                false => format!(
                    "{} burns its error budget at {:.1}x over {} and {:.1}x over {}, no longer both over {:.1}x",
                    self.subject(),
                    windows[0].burn_rate,
                    windows[0].window,
                    windows[1].burn_rate,
                    windows[1].window,
                    windows[0].threshold
                ),
            };
            match (&self.tier_alerts[i], firing) {
                (None, true) => {
                    let mut labels = self.base_labels();
                    labels.insert("alertname".into(), "SLOBurnRate".into());
                    labels.insert("severity".into(), tier.severity.clone());
                    labels.insert("tier".into(), tier.name.clone());
                    let alert = Firing { fingerprint: fingerprint(&labels), labels, starts_at: now };
                    out.push(self.message(&alert, None, summary, self.evaluation(&budget, windows, now)));
                    self.tier_alerts[i] = Some(alert);
                }
                (Some(alert), false) => {
                    out.push(self.message(alert, Some(now), summary, self.evaluation(&budget, windows, now)));
                    self.tier_alerts[i] = None;
                }
                _ => {}
            }
        }
        let wanted = matches!(budget.status, Status::Warning | Status::Breached).then_some(budget.status);
        let current = self.budget_alert.as_ref().map(|(s, _)| *s);
        if wanted != current {
            let summary = format!(
                "{} has {:.0}% of its error budget left ({})",
                self.subject(),
                budget.remaining_ratio * 100.0,
                budget.status.as_str()
            );
            if let Some((_, alert)) = self.budget_alert.take() {
                out.push(self.message(&alert, Some(now), summary.clone(), self.evaluation(&budget, Vec::new(), now)));
            }
            if let Some(status) = wanted {
                let mut labels = self.base_labels();
                labels.insert("alertname".into(), "SLOErrorBudget".into());
                labels
                    .insert("severity".into(), if status == Status::Breached { "breached" } else { "warning" }.into());
                let alert = Firing { fingerprint: fingerprint(&labels), labels, starts_at: now };
                out.push(self.message(&alert, None, summary, self.evaluation(&budget, Vec::new(), now)));
                self.budget_alert = Some((status, alert));
            }
        }
        let point = HistoryPoint {
            at: now,
            attainment: budget.attainment,
            error_budget: self.error_budget(&budget),
            burn_rates: distinct_windows(&burn_rates).map(Into::into).collect(),
            status: budget.status.as_str(),
            firing: self.firing(),
        };
        self.history.record(point);
        // Keep the buckets the window and the longest tier still need.
        let (start, _) = self.objective.window.bounds(now);
        let longest = self.tiers.iter().map(|t| t.long).max().unwrap_or(0);
        self.series.prune(start.min(now - longest) - 60);
        // Beyond every tier's long window the window needs only sums (requests) or verdicts
        // (periods): coarser buckets keep memory and checkpoints small for long windows — hours,
        // and days beyond 35 days (so a month's window keeps its hours).
        let fine_from = now - longest - 3600;
        match self.objective.budgeting {
            Budgeting::Requests => {
                self.series.coarsen(bucket_of(fine_from), 3600);
                self.series.coarsen((now - DAILY_BUCKETS_AFTER).div_euclid(86_400) * 86_400, 86_400);
            }
            Budgeting::Periods { period } => self.series.judge_periods(fine_from, period, self.objective.period_rule),
        }
        self.dirty |= out.len() > before;
    }

    fn checkpoint(&self, now: Seconds) -> Checkpoint {
        let alert = |name: &str, status: Option<Status>, firing: &Firing| AlertCheckpoint {
            alert: name.into(),
            status: status.map(|s| s.as_str().into()),
            fingerprint: firing.fingerprint.clone(),
            labels: firing.labels.clone(),
            starts_at: firing.starts_at,
        };
        let tiers =
            self.tiers.iter().zip(&self.tier_alerts).filter_map(|(t, a)| Some(alert(&t.name, None, a.as_ref()?)));
        let budget = self.budget_alert.iter().map(|(status, firing)| alert(BUDGET_ALERT, Some(*status), firing));
        Checkpoint {
            version: CHECKPOINT_VERSION,
            slo: self.config.name.clone(),
            written_at: now,
            buckets: self.series.buckets().map(|(at, c)| (at, c.good, c.total, c.latency_us)).collect(),
            alerts: tiers.chain(budget).collect(),
            ledger: self.ledger.entries(),
            history: self.history.thinned(CHECKPOINT_HISTORY_STEP).cloned().collect(),
        }
    }

    /// Starts owning the SLO from a checkpoint (or from nothing).
    fn restore(&mut self, checkpoint: Option<Checkpoint>) {
        self.owned = true;
        self.dirty = false;
        self.series = Series::default();
        self.ledger = Ledger::default();
        self.tier_alerts = vec![None; self.tiers.len()];
        self.budget_alert = None;
        self.orphans.clear();
        let Some(checkpoint) = checkpoint else { return };
        // The previous owner's evaluations; those recorded here (an owner taking its SLO back)
        // stand.
        self.history.merge(checkpoint.history);
        for (at, good, total, latency_us) in checkpoint.buckets {
            self.series.add_counts(at, Counts { good, total, latency_us });
        }
        self.ledger = Ledger::from_entries(checkpoint.ledger);
        for alert in checkpoint.alerts {
            let firing = Firing { labels: alert.labels, fingerprint: alert.fingerprint, starts_at: alert.starts_at };
            let budget_status = match alert.status.as_deref() {
                Some("WARNING") => Some(Status::Warning),
                Some("BREACHED") => Some(Status::Breached),
                _ => None,
            };
            match (alert.alert.as_str(), budget_status) {
                (BUDGET_ALERT, Some(status)) => self.budget_alert = Some((status, firing)),
                (tier, _) => match self.tiers.iter().position(|t| t.name == tier) {
                    Some(i) => self.tier_alerts[i] = Some(firing),
                    None => self.orphans.push(firing),
                },
            }
        }
    }

    /// Takes the state of each of `sent`'s alerts of this SLO, in order: a firing alert is open,
    /// a resolved one closed (if it is the one open), so the last sent of a fingerprint stands.
    fn apply_sent(&mut self, sent: &[SentAlert]) {
        for alert in sent.iter().filter(|a| a.labels.get("slo") == Some(&self.config.name)) {
            let Some(starts_at) = alert.starts_at_seconds() else { continue };
            let firing = Firing { labels: alert.labels.clone(), fingerprint: alert.fingerprint.clone(), starts_at };
            let label = |name: &str| alert.labels.get(name).map(String::as_str);
            match label("alertname") {
                Some("SLOBurnRate") => {
                    let Some(i) = self.tiers.iter().position(|t| Some(t.name.as_str()) == label("tier")) else {
                        continue;
                    };
                    if alert.is_firing() {
                        self.tier_alerts[i] = Some(firing);
                    } else if self.tier_alerts[i].as_ref().is_some_and(|f| f.fingerprint == alert.fingerprint) {
                        self.tier_alerts[i] = None;
                    }
                }
                Some("SLOErrorBudget") => {
                    let status = if label("severity") == Some("breached") { Status::Breached } else { Status::Warning };
                    if alert.is_firing() {
                        self.budget_alert = Some((status, firing));
                    } else if self.budget_alert.as_ref().is_some_and(|(_, f)| f.fingerprint == alert.fingerprint) {
                        self.budget_alert = None;
                    }
                }
                _ => {}
            }
        }
    }

    /// Firing alerts: tier names, and `budget-warning` / `budget-breached`.
    fn firing(&self) -> Vec<String> {
        self.tiers
            .iter()
            .zip(&self.tier_alerts)
            .filter(|(_, a)| a.is_some())
            .map(|(t, _)| t.name.clone())
            .chain(self.budget_alert.as_ref().map(|(s, _)| format!("budget-{}", s.as_str().to_lowercase())))
            .collect()
    }

    fn report(&self, now: Seconds) -> SloReport {
        let budget = self.objective.budget(&self.series, now);
        let burn_rates = self.tiers.iter().flat_map(|t| self.burns(t, now)).collect();
        SloReport {
            name: self.config.name.clone(),
            service: self.config.service.clone(),
            operation: self.config.operation.clone(),
            sli: format!("{:?}", self.config.sli).to_lowercase(),
            goal: self.config.goal,
            window: self.window_text(),
            attainment: budget.attainment,
            error_budget: self.error_budget(&budget),
            burn_rates,
            status: budget.status.as_str(),
            tiers: self.tiers.iter().map(|t| t.name.clone()).collect(),
            firing: self.firing(),
        }
    }
}

/// Every SLO of the configuration: the ones this instance owns are evaluated here.
pub struct SloEngine {
    slos: Vec<SloRuntime>,
    counter: SloCounter,
}

/// What counts for which SLO: the selection and SLI of every SLO, applied to the spans of one
/// message. Cheap to clone; the span path holds its own.
#[derive(Clone)]
pub struct SloCounter {
    slos: Vec<(SloConfig, super::budget::Exclusions)>,
    /// The SLOs selecting each (service, operation, environment) seen: wildcards are matched
    /// once per name, not once per span. Bounded: cleared when full.
    selection: HashMap<RequestName, Box<[usize]>>,
}

/// (service, operation, environment) of a request.
type RequestName = (Arc<str>, Arc<str>, Arc<str>);

/// Names remembered by [`SloCounter`] before it starts afresh.
const SELECTION_CACHE: usize = 16_384;

impl SloCounter {
    pub fn is_empty(&self) -> bool {
        self.slos.is_empty()
    }

    /// Counts the entry spans of `spans` for every SLO that selects them into `tally`:
    /// (SLO index, bucket start, counts), one entry per request.
    pub fn count(&mut self, spans: &[Span], tally: &mut Vec<(usize, Seconds, Counts)>) {
        if self.slos.is_empty() {
            return;
        }
        for span in spans.iter().filter(|s| s.facts.role == Role::Entry && s.facts.excluded.is_none()) {
            if self.selection.len() >= SELECTION_CACHE {
                self.selection.clear();
            }
            let key = (span.service().clone(), span.operation.clone(), span.environment().clone());
            let slos = &self.slos;
            let selected = self.selection.entry(key).or_insert_with_key(|(service, operation, environment)| {
                (0..slos.len()).filter(|&i| slos[i].0.selects(service, operation, environment)).collect()
            });
            if selected.is_empty() {
                continue;
            }
            let at = (span.end_unix_nano / 1_000_000_000) as Seconds;
            let outcome = span.facts.outcome;
            let latency_us = span.duration_nanos() / 1_000;
            for &index in selected.iter() {
                let (config, exclusions) = &self.slos[index];
                if exclusions.contains(at) {
                    continue;
                }
                let good = match config.sli {
                    SliKind::Availability => !outcome.is_fault(),
                    SliKind::Success => !outcome.is_fault() && !outcome.is_error(),
                    SliKind::Latency => {
                        config.threshold.is_some_and(|t| span.duration_nanos() <= t.0.as_nanos() as u64)
                    }
                };
                tally.push((index, bucket_of(at), Counts { good: good as u64, total: 1, latency_us }));
            }
        }
    }
}

impl SloEngine {
    /// SLOs from validated definitions (spans a `[[metrics.exclude]]` rule excludes never count:
    /// see [`SpanFacts::excluded`](crate::model::SpanFacts)). No SLO is owned until
    /// [`SloEngine::take_over`].
    pub fn new(slos: &[SloConfig]) -> Self {
        let runtimes = slos
            .iter()
            .map(|config| {
                let tiers = config.tiers();
                SloRuntime {
                    objective: config.objective(),
                    tier_alerts: vec![None; tiers.len()],
                    tiers,
                    config: config.clone(),
                    owned: false,
                    series: Series::default(),
                    ledger: Ledger::default(),
                    budget_alert: None,
                    orphans: Vec::new(),
                    dirty: false,
                    history: SloHistory::default(),
                    remote_report: None,
                }
            })
            .collect();
        let counter = SloCounter {
            slos: slos.iter().map(|c| (c.clone(), c.objective().exclusions)).collect(),
            selection: HashMap::new(),
        };
        Self { slos: runtimes, counter }
    }

    pub fn is_empty(&self) -> bool {
        self.slos.is_empty()
    }

    pub fn counter(&self) -> SloCounter {
        self.counter.clone()
    }

    /// SLO names, by index.
    pub fn names(&self) -> Vec<String> {
        self.slos.iter().map(|s| s.config.name.clone()).collect()
    }

    pub fn is_owned(&self, index: usize) -> bool {
        self.slos.get(index).is_some_and(|s| s.owned)
    }

    /// Starts evaluating SLO `index` here, from its checkpoint when there is one. The history in
    /// the checkpoint (the previous owner's evaluations) is merged: this instance's points follow
    /// it.
    /// Starts evaluating SLO `index` here from its checkpoint and, on top of it, the alerts
    /// its previous owner sent (in the order sent: [`super::sent`]), which the checkpoint may
    /// not hold yet.
    pub fn take_over(&mut self, index: usize, checkpoint: Option<Checkpoint>, sent: &[SentAlert]) {
        if let Some(slo) = self.slos.get_mut(index) {
            slo.restore(checkpoint);
            slo.apply_sent(sent);
            slo.remote_report = None;
        }
    }

    /// Stops evaluating SLO `index` here (its new owner restores it from the checkpoint, history
    /// included). The history recorded here stays until it expires.
    pub fn release(&mut self, index: usize) {
        if let Some(slo) = self.slos.get_mut(index) {
            slo.restore(None);
            slo.owned = false;
        }
    }

    /// Merges partial counts into an owned SLO, each source message once; returns the SLO's
    /// index and how many of the record's source messages were new, when the record is for an
    /// SLO owned here.
    pub fn merge(&mut self, record: &AggregateRecord) -> Option<(usize, usize)> {
        let index = self.slos.iter().position(|s| s.config.name == record.slo && s.owned)?;
        let slo = &mut self.slos[index];
        let series = &mut slo.series;
        let admitted = slo.ledger.admit(record, |at, counts| series.add_counts(at, counts));
        slo.dirty |= admitted > 0;
        Some((index, admitted))
    }

    /// Counts a trace's requests straight into the owned SLOs (the pipeline goes through the
    /// aggregates topic).
    #[cfg(test)]
    pub(crate) fn record_trace(&mut self, spans: &[Span]) {
        let mut tally = Vec::new();
        self.counter.count(spans, &mut tally);
        for (index, at, counts) in tally {
            if self.slos[index].owned {
                self.slos[index].series.add_counts(at, counts);
                self.slos[index].dirty = true;
            }
        }
    }

    /// Evaluates every owned SLO at `now` and returns the alert messages of the state changes;
    /// each evaluation adds a point to the SLO's history. The histories kept of SLOs owned
    /// elsewhere now drop the points [`HISTORY_SPAN`] or more older than `now`.
    ///
    /// [`HISTORY_SPAN`]: super::history::HISTORY_SPAN
    pub fn evaluate(&mut self, now: Seconds) -> Vec<AlertMessage> {
        let mut out = Vec::new();
        for slo in &mut self.slos {
            match slo.owned {
                true => slo.evaluate(now, &mut out),
                false => slo.history.expire(now),
            }
        }
        out
    }

    /// The state of SLO `index` to write to the state topic: when it changed since the last one,
    /// or in any case with `force` (merged messages wait for it, or the SLO is handed over).
    pub fn checkpoint(&mut self, index: usize, now: Seconds, force: bool) -> Option<Checkpoint> {
        let slo = self.slos.get_mut(index).filter(|s| s.owned && (force || s.dirty))?;
        slo.dirty = false;
        Some(slo.checkpoint(now))
    }

    /// Reports of the SLOs evaluated here.
    pub fn reports(&self, now: Seconds) -> Vec<SloReport> {
        self.slos.iter().filter(|s| s.owned).map(|s| s.report(now)).collect()
    }

    /// Reports of every SLO the group evaluates: this instance's own, and the latest received from
    /// the owners of the others (an SLO not heard of yet is left out).
    pub fn group_reports(&self, now: Seconds) -> Vec<SloReport> {
        self.slos.iter().filter_map(|s| if s.owned { Some(s.report(now)) } else { s.remote_report.clone() }).collect()
    }

    /// Names of the SLOs evaluated here (what this instance publishes reports and history of).
    pub fn owned_names(&self) -> Vec<String> {
        self.slos.iter().filter(|s| s.owned).map(|s| s.config.name.clone()).collect()
    }

    fn named(&self, name: &str) -> Option<&SloRuntime> {
        self.slos.iter().find(|s| s.config.name == name)
    }

    fn named_mut(&mut self, name: &str) -> Option<&mut SloRuntime> {
        self.slos.iter_mut().find(|s| s.config.name == name)
    }

    /// The history of SLO `name` (recorded here, or restored from its previous owner's
    /// checkpoint); `None` for a name not configured.
    pub fn history(&self, name: &str) -> Option<&SloHistory> {
        Some(&self.named(name)?.history)
    }

    /// The latest report received from the owner of SLO `name`, while another instance owns it.
    pub fn remote_report(&self, name: &str) -> Option<&SloReport> {
        self.named(name)?.remote_report.as_ref()
    }

    /// Keeps the owner's latest report of an SLO owned elsewhere; returns whether it was kept (a
    /// report for an SLO owned here, or not configured, is not).
    pub fn set_remote_report(&mut self, report: SloReport) -> bool {
        match self.named_mut(&report.name) {
            Some(slo) if !slo.owned => {
                slo.remote_report = Some(report);
                true
            }
            _ => false,
        }
    }

    /// The answer of `GET /api/slos/{name}/history`: `{"slo": name, "points": [...]}`, the
    /// points oldest first, over the last hour (as of the latest evaluation or point received);
    /// `None` for a name not configured.
    pub fn history_json(&self, name: &str) -> Option<serde_json::Value> {
        let slo = self.named(name)?;
        Some(serde_json::json!({ "slo": slo.config.name, "points": slo.history }))
    }
}

#[cfg(test)]
mod tests;
