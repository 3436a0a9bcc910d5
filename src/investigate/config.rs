//! `[investigation]`: the bounds of what is kept for investigation (investigation.md), each
//! default next to its field.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{secs, HumanDuration, Problem};

/// `[investigation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvestigationConfig {
    /// Decided traces whose summaries `/api/traces` searches, newest kept (a summary of a trace
    /// through two services takes about 300 bytes, by its layout; not yet measured).
    /// Default 100 000; at least 1.
    #[serde(default = "default_max_trace_summaries")]
    pub max_trace_summaries: usize,
    /// Bytes of kept traces' records held for `/api/traces/{id}` (the most recent kept first).
    /// Default 64 MiB (`67108864`); 0 holds none.
    #[serde(default = "default_max_trace_bytes")]
    pub max_trace_bytes: usize,
    /// Resource attributes `/api/contributors` ranks values of. Default `service.instance.id`,
    /// `service.version`, `host.name`, `k8s.pod.name`, `k8s.node.name`, `k8s.namespace.name`,
    /// `cloud.availability_zone`, `cloud.region`, `aws.ecs.task.arn`. `service.version` is tracked
    /// even when not listed: deployments are found from it (`/api/deployments`).
    #[serde(default = "default_dimensions")]
    pub dimensions: Vec<String>,
    /// Span attributes `/api/compare` sets the selected requests against the baseline by, beside
    /// the dimensions. Default `http.request.method`, `http.route`, `url.scheme`,
    /// `user_agent.original`, `rpc.method`, `db.operation.name`, `messaging.destination.name`; at
    /// most 64; `[]` keeps none (each compared attribute is looked up in every measured span).
    #[serde(default = "default_compare_attributes")]
    pub compare_attributes: Vec<String>,
    /// Distinct resources (so values of any dimension), and distinct combinations of compared
    /// span attribute values, tracked exactly per series and 10 s point; beyond, a heavy-hitter
    /// sketch keeps the largest and answers say `estimated`. Default 100; 1 to 10 000.
    #[serde(default = "default_max_values_per_dimension")]
    pub max_values_per_dimension: usize,
    /// How far back `/api/history` goes, in 10 s points. Default `1h`; 10 s to 24 h.
    #[serde(default = "default_history")]
    pub history: HumanDuration,
}

/// investigation.md's default dimensions.
fn default_dimensions() -> Vec<String> {
    [
        "service.instance.id",
        "service.version",
        "host.name",
        "k8s.pod.name",
        "k8s.node.name",
        "k8s.namespace.name",
        "cloud.availability_zone",
        "cloud.region",
        "aws.ecs.task.arn",
    ]
    .map(String::from)
    .to_vec()
}

/// investigation.md's default compared span attributes.
fn default_compare_attributes() -> Vec<String> {
    [
        "http.request.method",
        "http.route",
        "url.scheme",
        "user_agent.original",
        "rpc.method",
        "db.operation.name",
        "messaging.destination.name",
    ]
    .map(String::from)
    .to_vec()
}

fn default_max_values_per_dimension() -> usize {
    100
}

fn default_history() -> HumanDuration {
    secs(3600)
}

fn default_max_trace_bytes() -> usize {
    64 << 20
}

fn default_max_trace_summaries() -> usize {
    100_000
}

impl Default for InvestigationConfig {
    fn default() -> Self {
        Self {
            max_trace_summaries: default_max_trace_summaries(),
            max_trace_bytes: default_max_trace_bytes(),
            dimensions: default_dimensions(),
            compare_attributes: default_compare_attributes(),
            max_values_per_dimension: default_max_values_per_dimension(),
            history: default_history(),
        }
    }
}

/// The dimension deployments are found from, tracked whatever `dimensions` says.
pub const VERSION_DIMENSION: &str = "service.version";

impl InvestigationConfig {
    /// The dimensions contributor tables are kept by: the configured ones, and
    /// [`VERSION_DIMENSION`] when they lack it.
    pub fn tracked_dimensions(&self) -> Vec<String> {
        let mut dimensions = self.dimensions.clone();
        if !dimensions.iter().any(|d| d == VERSION_DIMENSION) {
            dimensions.push(VERSION_DIMENSION.to_string());
        }
        dimensions
    }

    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        check(self.max_trace_summaries >= 1, "investigation.max_trace_summaries", "must be at least 1".into());
        check(
            (1..=10_000).contains(&self.max_values_per_dimension),
            "investigation.max_values_per_dimension",
            format!("{} is out of range: 1 to 10000", self.max_values_per_dimension),
        );
        check(
            (Duration::from_secs(10)..=Duration::from_secs(24 * 3600)).contains(&self.history.0),
            "investigation.history",
            format!("{} is out of range: 10s to 24h", self.history),
        );
        check(
            self.dimensions.iter().all(|d| !d.is_empty()),
            "investigation.dimensions",
            "a dimension is an attribute name: not empty".into(),
        );
        check(
            self.compare_attributes.iter().all(|a| !a.is_empty()),
            "investigation.compare_attributes",
            "an attribute name: not empty".into(),
        );
        check(
            self.compare_attributes.len() <= crate::signals::contributors::MAX_COMPARE_ATTRIBUTES,
            "investigation.compare_attributes",
            format!(
                "{} attributes: at most {}",
                self.compare_attributes.len(),
                crate::signals::contributors::MAX_COMPARE_ATTRIBUTES
            ),
        );
        let tracked = self.tracked_dimensions();
        let shared: Vec<&str> =
            self.compare_attributes.iter().filter(|a| tracked.contains(a)).map(String::as_str).collect();
        check(
            shared.is_empty(),
            "investigation.compare_attributes",
            format!(
                "{} named among the dimensions too (a key is either a resource or a span attribute)",
                shared.join(", ")
            ),
        );
        let mut names = self.compare_attributes.clone();
        names.sort();
        check(
            names.windows(2).all(|w| w[0] != w[1]),
            "investigation.compare_attributes",
            "an attribute is named twice".into(),
        );
    }
}
