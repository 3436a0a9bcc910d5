//! Deployments (`/api/deployments`, investigation.md "What changed"): a `service.version` not
//! seen before for a service and environment, judged against the version it replaces.
//!
//! Found and judged from the owner's timeline, from each step's requests by version
//! ([`super::versions`]), so the answer is the group's and is the same after an owner change
//! (the points, and with them the versions, are restored from the changelog).
//!
//! - **What is a deployment.** The versions a service ran in its first `metrics.window` of the
//!   timeline (the earliest point held, restored ones included) are the baseline. A version first
//!   seen later opens a deployment at the start of the 10 s step it was first seen in. Its
//!   previous version is the one that served the most requests of the service in the window
//!   before (else the last one seen before it); a version with no previous one (a new service)
//!   opens none.
//! - **What is compared.** `before` and `after` are the previous and the new version's requests
//!   since `firstSeen`, on the operations the new version served: the same operations over the
//!   same time.
//! - **The verdict** ([`judge`]): `degraded` when a one-sided two-proportion z-test finds the new
//!   version's fault rate above the previous one's at 99 % (z > [`Z_99`]) on at least
//!   [`MIN_FAULTS`] faults of the new version; `ok` when the test finds no such difference on
//!   enough requests: the new version served enough to have shown [`MIN_FAULTS`] faults at the
//!   larger of the previous version's fault rate and 1 %, and the previous version at least
//!   [`MIN_BEFORE_REQUESTS`]; else `pending`.
//! - **The alert** ([`DeploymentAlert`]): a degraded deployment is written once to the alerts
//!   topic by the owner of its service (the group member, which remembers it in the changelog).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Nanos;
use crate::signals::point::{Counts, STEP_NANOS};
use crate::signals::sketch::LatencySketch;
use crate::signals::SeriesId;

use super::query::{QueryError, Selection};
use super::timeline::Timeline;

/// The one-sided 99 % quantile of the standard normal distribution.
pub const Z_99: f64 = 2.326_347_874_040_841;
/// Faults of the new version below which it is never judged degraded.
pub const MIN_FAULTS: u64 = 20;
/// Requests of the previous version below which a deployment is not judged `ok`.
pub const MIN_BEFORE_REQUESTS: u64 = 100;
/// The fault rate below which "enough requests to show [`MIN_FAULTS`] faults" stops growing.
const FLOOR_FAULT_RATE: f64 = 0.01;
/// Instances listed per version.
const MAX_LISTED_INSTANCES: usize = 16;

/// What `/api/deployments` asks for: `service` (required) and `environment`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentsQuery {
    /// The service and environment (only those two are ever set).
    pub selection: Selection,
}

impl DeploymentsQuery {
    /// Every environment of `service`.
    pub fn for_service(service: &str) -> Self {
        Self { selection: Selection { service: Some(service.to_string()), ..Selection::default() } }
    }

    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let mut selection = Selection::default();
        for (name, value) in parameters {
            match name {
                "service" | "environment" => {
                    selection.accept(name, value)?;
                }
                _ => return Err(QueryError::new(name, "unknown; expected service or environment")),
            }
        }
        if selection.service.is_none() {
            return Err(QueryError::new("service", "required"));
        }
        Ok(Self { selection })
    }
}

/// A deployment's verdict (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Degraded,
    Ok,
    Pending,
}

/// One version's requests since `firstSeen`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionFigures {
    pub requests: u64,
    pub faults: u64,
    pub errors: u64,
    /// faults / requests; `null` without requests.
    pub fault_rate: Option<f64>,
    /// errors (4xx) / requests.
    pub error_rate: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// The instances that ran it (`service.instance.id`, else `k8s.pod.name`, else `host.name`).
    pub instances: Vec<String>,
}

/// One deployment in the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: String,
    /// The start of the 10 s step the version was first seen in (RFC 3339 UTC).
    pub first_seen: String,
    /// The end of the last 10 s step it served a request in.
    pub last_seen: String,
    /// The new version's instances.
    pub instances: Vec<String>,
    /// Whether the new version served nothing in the last `metrics.window` while the previous one
    /// did (rolled back, or replaced again).
    pub rolled_back: bool,
    pub verdict: Verdict,
    /// The test statistic (`null` when a side has no requests, or neither has a fault).
    pub z_score: Option<f64>,
    pub before: VersionFigures,
    pub after: VersionFigures,
    /// Whether a step's requests of a version were counted under another version.
    pub estimated: bool,
}

/// The `/api/deployments` answer: newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deployments {
    pub deployments: Vec<Deployment>,
}

/// The verdict on `before` and `after`'s counts, and the test statistic (module docs).
pub fn judge(before: &Counts, after: &Counts) -> (Verdict, Option<f64>) {
    if before.requests == 0 || after.requests == 0 {
        return (Verdict::Pending, None);
    }
    let (n0, n1) = (before.requests as f64, after.requests as f64);
    let (p0, p1) = (before.faults as f64 / n0, after.faults as f64 / n1);
    let pooled = (before.faults + after.faults) as f64 / (n0 + n1);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    let z = (spread > 0.0).then(|| (p1 - p0) / spread);
    if after.faults >= MIN_FAULTS && z.is_some_and(|z| z > Z_99) {
        return (Verdict::Degraded, z);
    }
    let enough = (MIN_FAULTS as f64 / p0.max(FLOOR_FAULT_RATE)).ceil();
    if n1 >= enough && before.requests >= MIN_BEFORE_REQUESTS {
        (Verdict::Ok, z)
    } else {
        (Verdict::Pending, z)
    }
}

/// One version's steps in one service and environment.
#[derive(Debug, Default)]
struct Seen {
    first_step: u64,
    last_step: u64,
    /// The service's requests of this version by step (every operation).
    requests: BTreeMap<u64, u64>,
}

/// A version's figures being added up.
#[derive(Default)]
struct Tally {
    counts: Counts,
    latency: LatencySketch,
    instances: Vec<String>,
}

impl Tally {
    fn figures(self) -> VersionFigures {
        let rate = |n: u64| (self.counts.requests > 0).then(|| n as f64 / self.counts.requests as f64);
        VersionFigures {
            requests: self.counts.requests,
            faults: self.counts.faults,
            errors: self.counts.errors,
            fault_rate: rate(self.counts.faults),
            error_rate: rate(self.counts.errors),
            p99_seconds: self.latency.quantile(0.99),
            instances: self.instances,
        }
    }
}

fn rfc3339(unix_nanos: u64) -> String {
    chrono::DateTime::from_timestamp_nanos(unix_nanos as i64).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The deployments of the query's service (in its environment, or in each), newest first.
pub fn deployments(timeline: &Timeline, query: &DeploymentsQuery, now: Nanos) -> Deployments {
    let (window_start, _) = timeline.window(now);
    let service = query.selection.service.as_deref().unwrap_or_default();
    let environment = query.selection.environment.as_deref();
    let window_steps = timeline.window_steps();
    // The service's entry series by environment.
    let mut by_environment: BTreeMap<&str, Vec<&super::timeline::SeriesPoints>> = BTreeMap::new();
    for (id, points) in timeline.series() {
        let SeriesId::Service(key) = id else { continue };
        if &*key.service == service && environment.is_none_or(|e| e == &*key.environment) {
            by_environment.entry(&key.environment).or_default().push(points);
        }
    }
    let mut found = Vec::new();
    for (environment, series) in by_environment {
        let mut earliest = u64::MAX;
        let mut seen: HashMap<Arc<str>, Seen> = HashMap::new();
        for points in &series {
            for (step, _, versions) in points.versions_between(0, u64::MAX) {
                earliest = earliest.min(step);
                for row in versions.rows().iter().filter(|r| r.counts.requests > 0) {
                    let Some(version) = &row.version else { continue };
                    let entry =
                        seen.entry(version.clone()).or_insert_with(|| Seen { first_step: step, ..Seen::default() });
                    entry.first_step = entry.first_step.min(step);
                    entry.last_step = entry.last_step.max(step);
                    *entry.requests.entry(step).or_default() += row.counts.requests;
                }
            }
        }
        let baseline_end = earliest.saturating_add(window_steps);
        for (version, new) in seen.iter().filter(|(_, s)| s.first_step >= baseline_end) {
            let Some(previous) = previous_version(&seen, version, new.first_step, window_steps) else { continue };
            let mut deployment = judged(service, environment, (version, new), previous, &series);
            deployment.rolled_back = new.last_step < window_start && seen[previous].last_step >= window_start;
            found.push(deployment);
        }
    }
    found.sort_by(|a, b| b.first_seen.cmp(&a.first_seen).then_with(|| a.environment.cmp(&b.environment)));
    Deployments { deployments: found }
}

/// The version `version` replaced: the busiest other one in the window before `first_step`,
/// else the last one seen before it.
fn previous_version<'a>(
    seen: &'a HashMap<Arc<str>, Seen>,
    version: &Arc<str>,
    first_step: u64,
    window_steps: u64,
) -> Option<&'a Arc<str>> {
    let before = |s: &&Seen| s.first_step < first_step;
    let others = || seen.iter().filter(move |(v, s)| *v != version && before(s));
    let busiest = others()
        .map(|(v, s)| {
            (v, s.requests.range(first_step.saturating_sub(window_steps)..first_step).map(|(_, n)| n).sum::<u64>())
        })
        .filter(|(_, requests)| *requests > 0)
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)));
    busiest.map(|(v, _)| v).or_else(|| {
        others().max_by(|(a, x), (b, y)| x.last_step.cmp(&y.last_step).then_with(|| b.cmp(a))).map(|(v, _)| v)
    })
}

/// The deployment of `new` after `previous`, its figures added up over `series`.
fn judged(
    service: &str,
    environment: &str,
    (version, new): (&Arc<str>, &Seen),
    previous: &Arc<str>,
    series: &[&super::timeline::SeriesPoints],
) -> Deployment {
    let (mut before, mut after) = (Tally::default(), Tally::default());
    let mut estimated = false;
    for points in series {
        let served = points
            .versions_between(new.first_step, u64::MAX)
            .any(|(_, _, v)| v.rows().iter().any(|r| r.version.as_ref() == Some(version) && r.counts.requests > 0));
        if !served {
            continue;
        }
        for (_, point, versions) in points.versions_between(new.first_step, u64::MAX) {
            estimated |= versions.estimated;
            for row in versions.rows() {
                let tally = match &row.version {
                    Some(v) if v == version => &mut after,
                    Some(v) if v == previous => &mut before,
                    _ => continue,
                };
                tally.counts.add(&row.counts);
                tally.latency.merge(row.latency(point));
                for instance in &row.instances {
                    if tally.instances.len() < MAX_LISTED_INSTANCES
                        && !tally.instances.iter().any(|i| **i == **instance)
                    {
                        tally.instances.push(instance.to_string());
                    }
                }
            }
        }
    }
    before.instances.sort();
    after.instances.sort();
    let (verdict, z_score) = judge(&before.counts, &after.counts);
    let after = after.figures();
    Deployment {
        service: service.to_string(),
        environment: environment.to_string(),
        version: version.to_string(),
        previous_version: previous.to_string(),
        first_seen: rfc3339(new.first_step * STEP_NANOS),
        last_seen: rfc3339((new.last_step + 1) * STEP_NANOS),
        instances: after.instances.clone(),
        rolled_back: false,
        verdict,
        z_score,
        before: before.figures(),
        after,
        estimated,
    }
}

/// A degraded deployment as written to the alerts topic (investigation.md), keyed by its
/// fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAlert {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<&'static str, String>,
    /// When the verdict was first found degraded (RFC 3339 UTC).
    pub starts_at: String,
    /// The deployment as `/api/deployments` says it then.
    pub deployment: Deployment,
}

impl DeploymentAlert {
    /// The alert for `deployment`, found degraded at `now`.
    pub fn of(deployment: &Deployment, now: Nanos) -> Self {
        let labels = BTreeMap::from([
            ("alertname".to_string(), "DeploymentDegraded".to_string()),
            ("service".to_string(), deployment.service.clone()),
            ("environment".to_string(), deployment.environment.clone()),
            ("version".to_string(), deployment.version.clone()),
            ("previous_version".to_string(), deployment.previous_version.clone()),
        ]);
        let percent = |rate: Option<f64>| rate.map_or("-".to_string(), |r| format!("{:.2} %", r * 100.0));
        let summary = format!(
            "{} {} (after {}) in {} faults {} of {} requests against {} of {} (z = {:.1})",
            deployment.service,
            deployment.version,
            deployment.previous_version,
            deployment.environment,
            percent(deployment.after.fault_rate),
            deployment.after.requests,
            percent(deployment.before.fault_rate),
            deployment.before.requests,
            deployment.z_score.unwrap_or_default(),
        );
        Self {
            kind: "deployment",
            status: "firing",
            fingerprint: crate::slo::engine::fingerprint(&labels),
            labels,
            annotations: BTreeMap::from([("summary", summary)]),
            starts_at: rfc3339(now.0 / 1_000_000_000 * 1_000_000_000),
            deployment: deployment.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
