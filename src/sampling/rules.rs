//! Sampling rules as configured (`[[sampling.rules]]`, sampling.md "Rules"), and their validation.

use serde::Deserialize;

use crate::matcher::{AttributeCondition, Wildcard};
use crate::settings::{HumanDuration, Problem};

/// One `[[sampling.rules]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name: `sampling.rule` on forwarded spans and the `rule` label. Required, unique.
    pub name: String,
    /// Conditions that must all hold; absent = the rule matches every trace (a catch-all).
    pub when: Option<Conditions>,
    /// What to do with a matching trace.
    pub keep: KeepAction,
    /// `keep = "rate"`: the keep probability, 0–1.
    pub rate: Option<f64>,
    /// `keep = "rate"`: traces kept outright in each second before `rate` applies (X-Ray's
    /// reservoir; per instance). Default 0.
    pub reservoir_per_second: Option<u32>,
    /// `keep = "dynamic"`: keep 1 in `goal_rate` traces on average; at least 1.
    pub goal_rate: Option<u32>,
    /// `keep = "dynamic"`: the fields whose values make a key: `service`, `operation`, `outcome`,
    /// `http_method`, `status`, or any attribute key. Default `["service", "operation", "outcome"]`.
    pub key: Option<Vec<String>>,
    /// `keep = "dynamic"`: how often per-key rates are recomputed from the last period's counts.
    /// Default `30s`; at least `1s`.
    pub adjust_every: Option<HumanDuration>,
    /// `keep = "throughput"`: the goal of kept traces per second (per instance); more than 0.
    pub traces_per_second: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeepAction {
    All,
    None,
    Rate,
    Dynamic,
    Throughput,
}

/// `when = { … }`: every given condition must hold.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// The root span's service (else the earliest entry span's); X-Ray wildcards.
    pub service: Option<Wildcard>,
    /// The root span's operation; X-Ray wildcards.
    pub operation: Option<Wildcard>,
    /// The root span's `http.request.method` (legacy `http.method`); X-Ray wildcards.
    pub http_method: Option<Wildcard>,
    /// The root span's `url.path` (legacy `http.target`); X-Ray wildcards.
    pub url_path: Option<Wildcard>,
    /// The root span's `server.address` (legacy `http.host`); X-Ray wildcards.
    pub host: Option<Wildcard>,
    /// Some span of the trace has this outcome: `fault`, `error`, `throttle` or `ok`.
    pub outcome: Option<OutcomeName>,
    /// Some span has this status: `ERROR`, `OK` or `UNSET`.
    pub status: Option<StatusName>,
    /// Trace duration (latest span end − earliest start) at least this.
    pub min_duration: Option<HumanDuration>,
    /// Trace duration at most this.
    pub max_duration: Option<HumanDuration>,
    /// At least this many spans.
    pub min_spans: Option<usize>,
    /// At most this many spans.
    pub max_spans: Option<usize>,
    /// Some span (span or resource attributes) satisfies this.
    pub attribute: Option<AttributeCondition>,
    /// Whether the root span arrived.
    pub root_present: Option<bool>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeName {
    Fault,
    Error,
    Throttle,
    Ok,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusName {
    Error,
    Ok,
    Unset,
}

/// `[sampling]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Ordered rules; the first whose conditions all hold decides. No match keeps the trace
    /// (`rule="no_match"`). Default none (every trace kept).
    pub rules: Vec<RuleConfig>,
}

impl SamplingConfig {
    /// Every problem of the rules, each naming the rule and key.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = if rule.name.trim().is_empty() {
                format!("sampling.rules[{i}]")
            } else {
                format!("sampling.rules[{i}] ({:?})", rule.name)
            };
            let mut problem =
                |key: &str, message: String| problems.push(Problem { key: format!("{at}.{key}"), message });
            if rule.name.trim().is_empty() {
                problem("name", "is required".into());
            } else if !names.insert(rule.name.clone()) || rule.name == super::NO_MATCH {
                problem("name", format!("{:?} is used twice or reserved", rule.name));
            }
            let given = |field: bool, key: &str, actions: &[KeepAction]| {
                (field && !actions.contains(&rule.keep)).then(|| key.to_string())
            };
            let misplaced: Vec<String> = [
                given(rule.rate.is_some(), "rate", &[KeepAction::Rate]),
                given(rule.reservoir_per_second.is_some(), "reservoir_per_second", &[KeepAction::Rate]),
                given(rule.goal_rate.is_some(), "goal_rate", &[KeepAction::Dynamic]),
                given(rule.key.is_some(), "key", &[KeepAction::Dynamic]),
                given(rule.adjust_every.is_some(), "adjust_every", &[KeepAction::Dynamic]),
                given(rule.traces_per_second.is_some(), "traces_per_second", &[KeepAction::Throughput]),
            ]
            .into_iter()
            .flatten()
            .collect();
            for key in misplaced {
                problem(&key, format!("does not apply to keep = {:?}", rule.keep));
            }
            match rule.keep {
                KeepAction::Rate => match rule.rate {
                    Some(r) if (0.0..=1.0).contains(&r) => {}
                    Some(r) => problem("rate", format!("{r} is not a probability between 0 and 1")),
                    None => problem("rate", "is required with keep = \"rate\"".into()),
                },
                KeepAction::Dynamic => {
                    if rule.goal_rate.is_none_or(|g| g < 1) {
                        problem("goal_rate", "is required with keep = \"dynamic\" and at least 1".into());
                    }
                    if rule.key.as_ref().is_some_and(|k| k.is_empty()) {
                        problem("key", "must name at least one field".into());
                    }
                    if rule.adjust_every.is_some_and(|d| d.0 < std::time::Duration::from_secs(1)) {
                        problem("adjust_every", "must be at least 1s".into());
                    }
                }
                KeepAction::Throughput => {
                    if rule.traces_per_second.is_none_or(|t| !(t > 0.0 && t.is_finite())) {
                        problem("traces_per_second", "is required with keep = \"throughput\" and more than 0".into());
                    }
                }
                KeepAction::All | KeepAction::None => {}
            }
            if let Some(when) = &rule.when {
                if let Some(attribute) = &when.attribute {
                    if attribute.test_count() != 1 {
                        problem(
                            "when.attribute",
                            "needs exactly one of equals, matches, regex, min/max, exists".into(),
                        );
                    }
                }
                if let (Some(min), Some(max)) = (when.min_duration, when.max_duration) {
                    if min > max {
                        problem("when.min_duration", format!("{min} exceeds when.max_duration {max}"));
                    }
                }
                if let (Some(min), Some(max)) = (when.min_spans, when.max_spans) {
                    if min > max {
                        problem("when.min_spans", format!("{min} exceeds when.max_spans {max}"));
                    }
                }
            }
        }
        problems
    }

    /// Advice that does not make the configuration invalid.
    pub fn warnings(&self) -> Vec<String> {
        let catch_all = self.rules.iter().any(|r| r.when.is_none());
        if !self.rules.is_empty() && !catch_all {
            vec!["sampling.rules: no catch-all rule (one without `when`): traces no rule matches are kept as \"no_match\"".into()]
        } else {
            Vec::new()
        }
    }
}
