//! Evaluation of every configured SLO: requests in, state changes out as alert messages
//! (slo.md "Alert messages"), and a report for gauges and `/api/slos`.
//!
//! Invariants: a request counts for every SLO whose service/operation/environment selects it, in
//! the event-time bucket of its span's end, unless an exclusion holds then; an alert message is
//! produced on every state change and only then; a resolved message repeats the labels,
//! fingerprint and `startsAt` of its firing one.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde::Serialize;

use super::budget::{Budget, Budgeting, Objective, Seconds, Series, Status, Tier};
use super::config::{SliKind, SloConfig};
use crate::model::{Outcome, Span};
use crate::signals::ExcludeRule;

/// One alert message, as written to `kafka.alerts_topic` (JSON, keyed by fingerprint).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertMessage {
    pub schema_version: u32,
    pub status: &'static str,
    pub fingerprint: String,
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub slo: SloSummary,
    pub evaluation: AlertEvaluation,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
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

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowBurn {
    pub window: String,
    pub burn_rate: f64,
    pub threshold: f64,
    pub bad: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    pub unit: &'static str,
    pub total: f64,
    pub remaining: f64,
    pub remaining_ratio: f64,
}

/// An open alert: its fingerprint, labels and start.
#[derive(Clone, Debug)]
struct Firing {
    labels: BTreeMap<&'static str, String>,
    fingerprint: String,
    starts_at: Seconds,
}

struct SloRuntime {
    config: SloConfig,
    objective: Objective,
    tiers: Vec<Tier>,
    series: Series,
    tier_alerts: Vec<Option<Firing>>,
    budget_alert: Option<(Status, Firing)>,
}

/// The state of one SLO now, for gauges and `/api/slos`.
#[derive(Clone, Debug, Serialize)]
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
    pub status: &'static str,
    /// The burn-rate tiers.
    pub tiers: Vec<String>,
    /// Firing alerts: tier names, and `budget-warning` / `budget-breached`.
    pub firing: Vec<String>,
}

/// Every SLO of the configuration.
pub struct SloEngine {
    slos: Vec<SloRuntime>,
    exclude: Vec<ExcludeRule>,
}

fn rfc3339(at: Seconds) -> String {
    Utc.timestamp_opt(at, 0).single().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

fn human(seconds: Seconds) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64)).to_string()
}

/// A stable 64-bit fingerprint of the labels (FNV-1a over `name=value` lines, names sorted).
fn fingerprint(labels: &BTreeMap<&'static str, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for byte in name.bytes().chain([b'=']).chain(value.bytes()).chain([b'\n']) {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

impl SloRuntime {
    fn base_labels(&self) -> BTreeMap<&'static str, String> {
        let c = &self.config;
        BTreeMap::from([
            ("slo", c.name.clone()),
            ("service", c.service.clone()),
            ("operation", c.operation.clone().unwrap_or_else(|| "*".into())),
            ("environment", c.environment.clone().unwrap_or_else(|| "*".into())),
            ("sli", format!("{:?}", c.sli).to_lowercase()),
        ])
    }

    fn window_text(&self) -> String {
        match (self.config.window, self.config.calendar) {
            (Some(w), _) => human(w.0.as_secs() as i64),
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
                WindowBurn { window: human(w), burn_rate: burn.rate, threshold, bad: burn.bad, total: burn.total }
            })
            .collect()
    }

    fn evaluation(&self, budget: &Budget, windows: Vec<WindowBurn>, now: Seconds) -> AlertEvaluation {
        AlertEvaluation {
            evaluated_at: rfc3339(now),
            windows,
            error_budget: ErrorBudget {
                unit: self.unit(),
                total: budget.total,
                remaining: budget.remaining,
                remaining_ratio: budget.remaining_ratio,
            },
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
        let budget = self.objective.budget(&self.series, now);
        let min_requests = self.config.min_requests.unwrap_or(10);
        for i in 0..self.tiers.len() {
            let tier = self.tiers[i].clone();
            let firing = tier.firing(&self.objective, &self.series, now, min_requests);
            let windows = self.burns(&tier, now);
            let summary = format!(
                "{} is burning its error budget at {:.1}x (threshold {:.1}x)",
                self.subject(),
                windows[0].burn_rate,
                windows[0].threshold
            );
            match (&self.tier_alerts[i], firing) {
                (None, true) => {
                    let mut labels = self.base_labels();
                    labels.insert("alertname", "SLOBurnRate".into());
                    labels.insert("severity", tier.severity.clone());
                    labels.insert("tier", tier.name.clone());
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
                labels.insert("alertname", "SLOErrorBudget".into());
                labels.insert("severity", if status == Status::Breached { "breached" } else { "warning" }.into());
                let alert = Firing { fingerprint: fingerprint(&labels), labels, starts_at: now };
                out.push(self.message(&alert, None, summary, self.evaluation(&budget, Vec::new(), now)));
                self.budget_alert = Some((status, alert));
            }
        }
        // Keep the buckets the window and the longest tier still need.
        let (start, _) = self.objective.window.bounds(now);
        let longest = self.tiers.iter().map(|t| t.long).max().unwrap_or(0);
        self.series.prune(start.min(now - longest) - 60);
    }

    fn report(&self, now: Seconds) -> SloReport {
        let budget = self.objective.budget(&self.series, now);
        let burn_rates = self.tiers.iter().flat_map(|t| self.burns(t, now)).collect();
        let firing = self
            .tiers
            .iter()
            .zip(&self.tier_alerts)
            .filter(|(_, a)| a.is_some())
            .map(|(t, _)| t.name.clone())
            .chain(self.budget_alert.as_ref().map(|(s, _)| format!("budget-{}", s.as_str().to_lowercase())))
            .collect();
        SloReport {
            name: self.config.name.clone(),
            service: self.config.service.clone(),
            operation: self.config.operation.clone(),
            sli: format!("{:?}", self.config.sli).to_lowercase(),
            goal: self.config.goal,
            window: self.window_text(),
            attainment: budget.attainment,
            error_budget: ErrorBudget {
                unit: self.unit(),
                total: budget.total,
                remaining: budget.remaining,
                remaining_ratio: budget.remaining_ratio,
            },
            burn_rates,
            status: budget.status.as_str(),
            tiers: self.tiers.iter().map(|t| t.name.clone()).collect(),
            firing,
        }
    }
}

impl SloEngine {
    /// SLOs from validated definitions; spans matching `exclude` never count.
    pub fn new(slos: &[SloConfig], exclude: &[ExcludeRule]) -> Self {
        let slos = slos
            .iter()
            .map(|config| {
                let tiers = config.tiers();
                SloRuntime {
                    objective: config.objective(),
                    tier_alerts: vec![None; tiers.len()],
                    tiers,
                    config: config.clone(),
                    series: Series::default(),
                    budget_alert: None,
                }
            })
            .collect();
        Self { slos, exclude: exclude.to_vec() }
    }

    pub fn is_empty(&self) -> bool {
        self.slos.is_empty()
    }

    /// Counts the entry spans of a trace for every SLO that selects them.
    pub fn record_trace(&mut self, spans: &[Span]) {
        if self.slos.is_empty() {
            return;
        }
        for span in spans.iter().filter(|s| s.is_entry()) {
            if self.exclude.iter().any(|rule| rule.matches(span)) {
                continue;
            }
            let at = (span.end_unix_nano / 1_000_000_000) as Seconds;
            let outcome = Outcome::of(span);
            for slo in &mut self.slos {
                if !slo.config.selects(span.service(), &span.operation, span.environment())
                    || slo.objective.exclusions.contains(at)
                {
                    continue;
                }
                let good = match slo.config.sli {
                    SliKind::Availability => !outcome.is_fault(),
                    SliKind::Success => !outcome.is_fault() && !outcome.is_error(),
                    SliKind::Latency => {
                        slo.config.threshold.is_some_and(|t| span.duration_nanos() <= t.0.as_nanos() as u64)
                    }
                };
                slo.series.add(at, good as u64, 1);
            }
        }
    }

    /// Evaluates every SLO at `now` and returns the alert messages of the state changes.
    pub fn evaluate(&mut self, now: Seconds) -> Vec<AlertMessage> {
        let mut out = Vec::new();
        for slo in &mut self.slos {
            slo.evaluate(now, &mut out);
        }
        out
    }

    pub fn reports(&self, now: Seconds) -> Vec<SloReport> {
        self.slos.iter().map(|s| s.report(now)).collect()
    }
}

#[cfg(test)]
mod tests;
