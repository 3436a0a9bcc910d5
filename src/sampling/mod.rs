//! Sampling: the keep/drop decision for each assembled trace (sampling.md "Rules").
//!
//! The pipeline calls [`Sampler::decide`] once per trace after its metrics are recorded, so a
//! decision never changes a metric (signals.md). Rules are tried in order; the first whose
//! conditions all hold decides; no match keeps the trace under the rule name `no_match`.
//! Invariants:
//! - probabilistic decisions are deterministic from the trace id (the OpenTelemetry
//!   consistent-probability scheme: randomness = the id's last 56 bits), so every instance, and a
//!   restarted one, decides the same trace the same way;
//! - every kept trace carries `sample_rate` = 1 / the probability it was kept with, so the sum of
//!   `sample_rate` over a rule's kept traces estimates how many traces the rule saw; a span that
//!   arrived head-sampled at a higher threshold is forwarded with that threshold and its adjusted
//!   count instead (the encoder reads the span's tracestate: `crate::format::tracestate_threshold`).

mod actions;
pub mod rules;

use std::sync::Arc;

use crate::assemble::ReadyTrace;
use crate::clock::Nanos;
use crate::format::AttributeLookup;
use crate::model::{Outcome, Role, Span, StatusCode};

pub use crate::decision::Decision;
use actions::Action;
pub use actions::{adjusted_count, randomness, threshold_for};
pub use rules::{Conditions, KeepAction, OutcomeName, RuleConfig, SamplingConfig, StatusName};

/// The rule name of traces no rule matched.
pub const NO_MATCH: &str = "no_match";

/// What the conditions look at, gathered in one pass over the trace.
pub struct TraceFacts<'a> {
    /// The root span, else the earliest entry span, else the earliest span.
    pub root: Option<&'a Span>,
    pub root_present: bool,
    pub duration_nanos: u64,
    pub spans: &'a [Span],
    seen: Seen,
}

/// Which span outcomes and span statuses occur in a trace.
#[derive(Default)]
struct Seen {
    ok: bool,
    error: bool,
    throttle: bool,
    fault: bool,
    status_unset: bool,
    status_ok: bool,
    status_error: bool,
}

impl Seen {
    fn add(&mut self, span: &Span) {
        match span.facts.outcome {
            Outcome::Ok => self.ok = true,
            Outcome::Error => self.error = true,
            Outcome::Throttle => self.throttle = true,
            Outcome::Fault => self.fault = true,
        }
        match span.status {
            StatusCode::Unset => self.status_unset = true,
            StatusCode::Ok => self.status_ok = true,
            StatusCode::Error => self.status_error = true,
        }
    }
}

impl<'a> TraceFacts<'a> {
    pub fn of(trace: &'a ReadyTrace) -> Self {
        Self::of_spans(&trace.spans, trace.root_present)
    }

    pub fn of_spans(spans: &'a [Span], root_present: bool) -> Self {
        let mut seen = Seen::default();
        let (mut start, mut end) = (u64::MAX, 0u64);
        let mut root: Option<&Span> = None;
        let rank = |s: &Span| {
            if s.is_root() {
                0
            } else if s.facts.role == Role::Entry {
                1
            } else {
                2
            }
        };
        for span in spans {
            seen.add(span);
            start = start.min(span.start_unix_nano);
            end = end.max(span.end_unix_nano);
            let better = match root {
                None => true,
                Some(r) => (rank(span), span.start_unix_nano) < (rank(r), r.start_unix_nano),
            };
            if better {
                root = Some(span);
            }
        }
        Self { root, root_present, duration_nanos: end.saturating_sub(start), spans, seen }
    }

    pub fn has_outcome(&self, outcome: OutcomeName) -> bool {
        let seen = &self.seen;
        match outcome {
            OutcomeName::Fault => seen.fault,
            OutcomeName::Throttle => seen.throttle,
            // Errors include throttles (signals.md).
            OutcomeName::Error => seen.error || seen.throttle,
            OutcomeName::Ok => seen.ok,
        }
    }

    pub fn has_status(&self, status: StatusName) -> bool {
        match status {
            StatusName::Error => self.seen.status_error,
            StatusName::Ok => self.seen.status_ok,
            StatusName::Unset => self.seen.status_unset,
        }
    }

    /// A root-span attribute by its current name, else its legacy one.
    fn root_attribute(&self, key: &str, legacy: &str) -> Option<String> {
        let root = self.root?;
        root.attribute(key).or_else(|| root.attribute(legacy)).and_then(|v| v.as_text())
    }

    /// The value of a dynamic-sampling key field.
    pub fn key_field(&self, field: &str) -> String {
        match field {
            "service" => self.root.map(|r| r.service().to_string()).unwrap_or_default(),
            "operation" => self.root.map(|r| r.operation.to_string()).unwrap_or_default(),
            "outcome" => {
                let worst = [OutcomeName::Fault, OutcomeName::Throttle, OutcomeName::Error]
                    .into_iter()
                    .find(|o| self.has_outcome(*o))
                    .unwrap_or(OutcomeName::Ok);
                format!("{worst:?}").to_lowercase()
            }
            "http_method" => self.root_attribute("http.request.method", "http.method").unwrap_or_default(),
            "status" => if self.has_status(StatusName::Error) { "ERROR" } else { "OK" }.to_string(),
            attribute => {
                self.spans.iter().find_map(|s| s.attribute(attribute).and_then(|v| v.as_text())).unwrap_or_default()
            }
        }
    }
}

impl Conditions {
    /// Whether every given condition holds.
    pub fn hold(&self, facts: &TraceFacts<'_>) -> bool {
        let wildcard = |pattern: &Option<crate::matcher::Wildcard>, value: &dyn Fn() -> Option<String>| {
            pattern.as_ref().is_none_or(|p| value().is_some_and(|v| p.matches(&v)))
        };
        wildcard(&self.service, &|| facts.root.map(|r| r.service().to_string()))
            && wildcard(&self.operation, &|| facts.root.map(|r| r.operation.to_string()))
            && wildcard(&self.http_method, &|| facts.root_attribute("http.request.method", "http.method"))
            && wildcard(&self.url_path, &|| facts.root_attribute("url.path", "http.target"))
            && wildcard(&self.host, &|| facts.root_attribute("server.address", "http.host"))
            && self.outcome.is_none_or(|o| facts.has_outcome(o))
            && self.status.is_none_or(|s| facts.has_status(s))
            && self.min_duration.is_none_or(|d| facts.duration_nanos >= d.0.as_nanos() as u64)
            && self.max_duration.is_none_or(|d| facts.duration_nanos <= d.0.as_nanos() as u64)
            && self.min_spans.is_none_or(|n| facts.spans.len() >= n)
            && self.max_spans.is_none_or(|n| facts.spans.len() <= n)
            && self.root_present.is_none_or(|r| facts.root_present == r)
            && self.attribute.as_ref().is_none_or(|a| facts.spans.iter().any(|s| a.holds(s)))
    }
}

struct Rule {
    name: Arc<str>,
    when: Option<Conditions>,
    action: Action,
}

/// Decides traces.
pub struct Sampler {
    rules: Vec<Rule>,
    no_match: Arc<str>,
}

impl Sampler {
    /// A sampler for validated rules.
    pub fn new(config: &SamplingConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|r| Rule { name: Arc::from(r.name.as_str()), when: r.when.clone(), action: Action::new(r) })
            .collect();
        Self { rules, no_match: Arc::from(NO_MATCH) }
    }

    /// Decides one trace at time `now`.
    pub fn decide(&mut self, trace: &ReadyTrace, now: Nanos) -> Decision {
        let facts = TraceFacts::of(trace);
        for rule in &mut self.rules {
            if rule.when.as_ref().is_none_or(|w| w.hold(&facts)) {
                return rule.action.decide(&rule.name, &trace.trace_id, &facts, now);
            }
        }
        Decision::keep(self.no_match.clone(), 1.0)
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new(&SamplingConfig::default())
    }
}

#[cfg(test)]
mod tests;
