//! `[metrics]`: the service and dependency metrics' settings (signals.md), each default next to its
//! field.

use std::time::Duration;

use serde::Deserialize;

use super::{ExcludeRule, SignalSettings};
use crate::settings::{secs, HumanDuration, Problem};

/// `[metrics]`: service and dependency metrics (signals.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Window of the HDR quantiles and availability gauges. Default `60s`; at least `1s`.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Upper bounds (seconds) of the classic latency histogram buckets, strictly increasing.
    /// Default `[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]`.
    #[serde(default = "default_latency_buckets")]
    pub latency_buckets: Vec<f64>,
    /// Series per metric family; beyond it spans count in one series labelled all `__overflow__`.
    /// Default 10 000; at least 1.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// A series idle this long is removed. Default `15m`; at least `metrics.window`.
    #[serde(default = "default_series_ttl")]
    pub series_ttl: HumanDuration,
    /// Exclusion rules (`[[metrics.exclude]]`): matching spans are counted only in
    /// `tracewarden_spans_excluded_total{rule}`. Default none.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<ExcludeRule>,
}

fn default_window() -> HumanDuration {
    secs(60)
}

fn default_latency_buckets() -> Vec<f64> {
    vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

fn default_max_series() -> usize {
    10_000
}

fn default_series_ttl() -> HumanDuration {
    secs(15 * 60)
}

fn default_exclude() -> Vec<ExcludeRule> {
    Vec::new()
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            latency_buckets: default_latency_buckets(),
            max_series: default_max_series(),
            series_ttl: default_series_ttl(),
            exclude: default_exclude(),
        }
    }
}

impl MetricsConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        let m = self;
        check(
            m.window.0 >= Duration::from_secs(1),
            "metrics.window",
            format!("{} is too short: at least 1s", m.window),
        );
        check(
            m.latency_buckets.iter().all(|b| b.is_finite() && *b > 0.0)
                && m.latency_buckets.windows(2).all(|w| w[0] < w[1]),
            "metrics.latency_buckets",
            "must be positive, finite and strictly increasing (seconds)".into(),
        );
        check(m.max_series >= 1, "metrics.max_series", "must be at least 1".into());
        check(
            m.series_ttl >= m.window,
            "metrics.series_ttl",
            format!("{} must be at least metrics.window ({})", m.series_ttl, m.window),
        );
        let mut names = std::collections::HashSet::new();
        for (i, rule) in m.exclude.iter().enumerate() {
            let key = format!("metrics.exclude[{i}]");
            check(!rule.name.trim().is_empty(), &format!("{key}.name"), "must not be empty".into());
            check(names.insert(rule.name.clone()), &format!("{key}.name"), format!("{:?} is used twice", rule.name));
            check(
                rule.service.is_some() || rule.operation.is_some() || rule.attribute.is_some(),
                &key,
                "needs at least one of service, operation, attribute (it would exclude every span)".into(),
            );
            if let Some(attribute) = &rule.attribute {
                check(
                    attribute.test_count() == 1,
                    &format!("{key}.attribute"),
                    "needs exactly one of equals, matches, regex, min/max, exists".into(),
                );
            }
        }
    }

    /// The store's settings; contributors are off until the composing configuration sets
    /// `dimensions` (`[investigation]`, see `Config::signal_settings`).
    pub fn settings(&self) -> SignalSettings {
        SignalSettings {
            window: self.window.0,
            latency_buckets: self.latency_buckets.clone(),
            max_series: self.max_series,
            series_ttl: self.series_ttl.0,
            exclude: self.exclude.clone(),
            dimensions: Vec::new(),
            compare_attributes: Vec::new(),
            max_values_per_dimension: 1,
        }
    }
}
