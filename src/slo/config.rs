//! One `[[slo]]` definition (slo.md "Definition") and its validation.

use std::str::FromStr as _;

use serde::Deserialize;

use super::budget::{parse_time, Budgeting, Calendar, Exclusions, Objective, PeriodRule, Tier, Window};
use crate::matcher::Wildcard;
use crate::settings::{HumanDuration, Problem};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Unique; the identity of the SLO and of its alerts. Required.
    pub name: String,
    /// The service (wildcards `*`, `?`). Required.
    pub service: String,
    /// The operation (wildcards); absent = every operation of the service.
    pub operation: Option<String>,
    /// The environment (wildcards). Default `*`.
    pub environment: Option<String>,
    /// `availability` (good = not fault) | `latency` | `success` (good = neither fault nor error).
    pub sli: SliKind,
    /// Attainment goal, 0 < goal < 1.
    pub goal: f64,
    /// Rolling window, such as `30d`; or `calendar`. 1h to 400d.
    pub window: Option<HumanDuration>,
    /// Calendar window: `day` | `week` | `month` (UTC, real month lengths).
    pub calendar: Option<CalendarName>,
    /// `requests` (default) | `periods`.
    #[serde(default)]
    pub budgeting: BudgetingKind,
    /// `budgeting = "periods"` only: the period length, such as `1m`; whole minutes, at most
    /// 44 640 periods in the window (a minute's periods over 31 days).
    pub period: Option<HumanDuration>,
    /// `sli = "latency"` only: a request (or period statistic) is good at or under this.
    pub threshold: Option<HumanDuration>,
    /// `sli = "latency"` with `budgeting = "periods"`: `p50` | `p90` | `p99` | `p99.9` | `avg`.
    pub statistic: Option<String>,
    /// Status WARNING when the remaining budget ratio falls under this. Default 0.5; 0–1.
    #[serde(default = "default_warning_threshold")]
    pub warning_threshold: f64,
    /// Burn-rate alerts stay quiet while the long window holds fewer requests. Default 10.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Windows in which requests are not counted (periods in them are good).
    #[serde(default)]
    pub exclusions: Vec<ExclusionConfig>,
    /// Burn-rate tiers; default the SRE Workbook's page-fast, page-slow, ticket. At most 8.
    #[serde(default)]
    pub alerts: Vec<TierConfig>,
}

fn default_warning_threshold() -> f64 {
    0.5
}

fn default_min_requests() -> u64 {
    10
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SliKind {
    Availability,
    Latency,
    Success,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CalendarName {
    Day,
    Week,
    Month,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BudgetingKind {
    #[default]
    Requests,
    Periods,
}

/// `{ start = "2026-12-24T00:00:00Z", duration = "48h" }` or `{ cron = "0 2 * * SUN", duration = "2h" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionConfig {
    /// RFC 3339 start of a one-off window.
    pub start: Option<String>,
    /// Five-field cron schedule (UTC) of a recurring window.
    pub cron: Option<String>,
    /// How long each window lasts.
    pub duration: HumanDuration,
}

/// `[[slo.alerts]]`: one burn-rate tier.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The tier's name (label `tier`).
    pub tier: String,
    /// Long window; the short one is long / 12. 12m to 7d.
    pub long: HumanDuration,
    /// Share of the budget the tier lets burn in its long window, 0–1.
    pub share: f64,
    /// Label `severity`, such as `page` or `ticket`.
    pub severity: String,
}

/// The period statistics and the share of good requests each one needs.
/// Parses `[[slo]]` tables from TOML text (as they appear in a configuration file); unvalidated.
pub fn parse_slos(text: &str) -> Result<Vec<SloConfig>, toml::de::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Slos {
        slo: Vec<SloConfig>,
    }
    toml::from_str::<Slos>(text).map(|s| s.slo)
}

/// The bounds that keep an SLO's checkpoint under `MAX_MESSAGE_BYTES` (slo.md "State and
/// scale-out", investigation.md "No message too large"): the checkpoint holds a minute bucket for
/// the longest alert window, an hour bucket up to 35 days, a day bucket beyond, one bucket per
/// period (period budgeting) and one evaluation per 10 s of the last hour with a burn rate per
/// window. `aggregate::tests` writes the largest one these allow.
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(400 * 86_400);
pub const MAX_TIER_LONG: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);
pub const MAX_TIERS: usize = 8;
pub const MAX_PERIODS: u64 = 31 * 24 * 60;

const STATISTICS: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl SloConfig {
    /// Every problem, each naming the SLO and the key.
    pub fn validate(&self, index: usize) -> Vec<Problem> {
        let at = format!("slo[{index}] ({:?})", self.name);
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| problems.push(Problem { key: format!("{at}.{key}"), message });
        if self.name.trim().is_empty() {
            problem("name", "is required".into());
        }
        if self.service.trim().is_empty() {
            problem("service", "is required".into());
        }
        if !(self.goal > 0.0 && self.goal < 1.0) {
            problem("goal", format!("{} must be between 0 and 1 (exclusive), such as 0.999", self.goal));
        }
        match (self.window, self.calendar) {
            (Some(_), Some(_)) => problem("window", "give either window or calendar, not both".into()),
            (None, None) => problem("window", "is required (a rolling window such as \"30d\", or calendar)".into()),
            (Some(w), None) if w.0.as_secs() < 3600 => problem("window", format!("{w} is too short: at least 1h")),
            (Some(w), None) if w.0 > MAX_WINDOW => {
                problem("window", format!("{w} is too long: at most {}d", MAX_WINDOW.as_secs() / 86_400))
            }
            _ => {}
        }
        match (self.budgeting, self.period) {
            (BudgetingKind::Periods, None) => problem("period", "is required with budgeting = \"periods\"".into()),
            (BudgetingKind::Requests, Some(_)) => problem("period", "applies to budgeting = \"periods\" only".into()),
            (BudgetingKind::Periods, Some(p)) => {
                if p.0.as_secs() < 60 || p.0.as_secs() % 60 != 0 {
                    problem("period", format!("{p} must be whole minutes, at least 1m"));
                }
                if self.window.is_some_and(|w| p >= w) {
                    problem("period", format!("{p} must be shorter than the window"));
                }
                // The longest window a definition can give: a calendar month is 31 days.
                let window = match (self.window, self.calendar) {
                    (Some(w), _) => w.0.as_secs(),
                    (None, Some(CalendarName::Day)) => 86_400,
                    (None, Some(CalendarName::Week)) => 7 * 86_400,
                    (None, _) => 31 * 86_400,
                };
                let periods = window / p.0.as_secs().max(1);
                if p.0.as_secs() >= 60 && periods > MAX_PERIODS {
                    problem(
                        "period",
                        format!("{p} divides the window into {periods} periods; at most {MAX_PERIODS} (a longer period, or a shorter window)"),
                    );
                }
            }
            (BudgetingKind::Requests, None) => {}
        }
        match (self.sli, self.threshold) {
            (SliKind::Latency, None) => problem("threshold", "is required with sli = \"latency\"".into()),
            (SliKind::Availability | SliKind::Success, Some(_)) => {
                problem("threshold", "applies to sli = \"latency\" only".into())
            }
            _ => {}
        }
        let latency_periods = self.sli == SliKind::Latency && self.budgeting == BudgetingKind::Periods;
        match (&self.statistic, latency_periods) {
            (None, true) => {
                problem("statistic", "is required with sli = \"latency\" and budgeting = \"periods\"".into())
            }
            (Some(_), false) => {
                problem("statistic", "applies to sli = \"latency\" with budgeting = \"periods\" only".into())
            }
            (Some(s), true) if s != "avg" && !STATISTICS.iter().any(|(name, _)| name == s) => {
                let names: Vec<&str> = STATISTICS.iter().map(|(n, _)| *n).chain(["avg"]).collect();
                problem("statistic", format!("{s:?} is not one of {}", names.join(", ")))
            }
            _ => {}
        }
        let w = self.warning_threshold;
        if !(0.0..=1.0).contains(&w) {
            problem("warning_threshold", format!("{w} must be between 0 and 1"));
        }
        for (i, exclusion) in self.exclusions.iter().enumerate() {
            let key = format!("exclusions[{i}]");
            match (&exclusion.start, &exclusion.cron) {
                (Some(start), None) if parse_time(start).is_none() => problem(
                    &format!("{key}.start"),
                    format!("{start:?} is not an RFC 3339 time such as \"2026-12-24T00:00:00Z\""),
                ),
                (None, Some(cron)) => {
                    if let Err(e) = croner::Cron::from_str(cron) {
                        problem(&format!("{key}.cron"), format!("{cron:?} is not a cron schedule: {e}"));
                    }
                }
                (Some(_), Some(_)) | (None, None) => problem(&key, "needs exactly one of start and cron".into()),
                _ => {}
            }
            if exclusion.duration.0.is_zero() {
                problem(&format!("{key}.duration"), "must be greater than zero".into());
            }
        }
        if self.alerts.len() > MAX_TIERS {
            problem("alerts", format!("{} tiers; at most {MAX_TIERS}", self.alerts.len()));
        }
        let mut tiers = std::collections::HashSet::new();
        for (i, tier) in self.alerts.iter().enumerate() {
            let key = format!("alerts[{i}]");
            if !tiers.insert(tier.tier.clone()) || tier.tier.trim().is_empty() {
                problem(&format!("{key}.tier"), format!("{:?} is empty or used twice", tier.tier));
            }
            if !(tier.share > 0.0 && tier.share <= 1.0) {
                problem(&format!("{key}.share"), format!("{} must be in (0, 1]", tier.share));
            }
            if tier.long.0.as_secs() < 12 * 60 {
                problem(
                    &format!("{key}.long"),
                    format!("{} is too short: at least 12m (the short window is long/12)", tier.long),
                );
            }
            if tier.long.0 > MAX_TIER_LONG {
                problem(
                    &format!("{key}.long"),
                    format!("{} is too long: at most {}d", tier.long, MAX_TIER_LONG.as_secs() / 86_400),
                );
            }
            if tier.severity.trim().is_empty() {
                problem(&format!("{key}.severity"), "is required".into());
            }
        }
        problems
    }

    /// The budget arithmetic of a validated definition.
    pub fn objective(&self) -> Objective {
        let window = match (self.window, self.calendar) {
            (Some(w), _) => Window::Rolling(w.0),
            (None, Some(CalendarName::Day)) => Window::Calendar(Calendar::Day),
            (None, Some(CalendarName::Week)) => Window::Calendar(Calendar::Week),
            (None, Some(CalendarName::Month)) | (None, None) => Window::Calendar(Calendar::Month),
        };
        let budgeting = match (self.budgeting, self.period) {
            (BudgetingKind::Periods, Some(p)) => Budgeting::Periods { period: p.0.as_secs() as i64 },
            _ => Budgeting::Requests,
        };
        let mut exclusions = Exclusions::default();
        for e in &self.exclusions {
            let duration = e.duration.0.as_secs() as i64;
            if let Some(start) = e.start.as_deref().and_then(parse_time) {
                exclusions.fixed.push((start, duration));
            } else if let Some(cron) = e.cron.as_deref().and_then(|c| croner::Cron::from_str(c).ok()) {
                exclusions.recurring.push((cron, duration));
            }
        }
        let period_rule = match (self.sli, self.statistic.as_deref(), self.threshold) {
            (SliKind::Latency, Some("avg"), Some(threshold)) => {
                PeriodRule::MeanAtMost(threshold.0.as_micros().min(u64::MAX as u128) as u64)
            }
            (SliKind::Latency, Some(statistic), _) => PeriodRule::GoodShare(
                STATISTICS.iter().find(|(name, _)| *name == statistic).map(|(_, share)| *share).unwrap_or(self.goal),
            ),
            _ => PeriodRule::GoodShare(self.goal),
        };
        Objective {
            goal: self.goal,
            period_rule,
            window,
            budgeting,
            warning_threshold: self.warning_threshold,
            exclusions,
        }
    }

    /// The burn-rate tiers: configured, else the SRE Workbook's.
    pub fn tiers(&self) -> Vec<Tier> {
        if self.alerts.is_empty() {
            return Tier::defaults();
        }
        self.alerts
            .iter()
            .map(|t| Tier {
                name: t.tier.clone(),
                severity: t.severity.clone(),
                long: t.long.0.as_secs() as i64,
                share: t.share,
            })
            .collect()
    }

    /// Whether a request of this service, operation and environment counts for the SLO.
    pub fn selects(&self, service: &str, operation: &str, environment: &str) -> bool {
        Wildcard::new(&self.service).matches(service)
            && self.operation.as_deref().is_none_or(|o| Wildcard::new(o).matches(operation))
            && self.environment.as_deref().is_none_or(|e| Wildcard::new(e).matches(environment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<String> {
        let slo: SloConfig = toml::from_str(toml_text).unwrap();
        slo.validate(0).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_spec_example_is_valid() {
        let slo: SloConfig = toml::from_str(
            r#"
            name = "checkout-availability"
            service = "checkout"
            operation = "POST /pay"
            environment = "*"
            sli = "availability"
            goal = 0.999
            window = "30d"
            budgeting = "requests"
            warning_threshold = 0.5
            min_requests = 10
            exclusions = [{ start = "2026-12-24T00:00:00Z", duration = "48h" }, { cron = "0 2 * * SUN", duration = "2h" }]
            "#,
        )
        .unwrap();
        assert!(slo.validate(0).is_empty(), "{:?}", slo.validate(0));
        let objective = slo.objective();
        assert_eq!(objective.window, Window::Rolling(std::time::Duration::from_secs(30 * 86_400)));
        assert_eq!((objective.exclusions.fixed.len(), objective.exclusions.recurring.len()), (1, 1));
        assert_eq!(slo.tiers().len(), 3);
        assert!(slo.selects("Checkout", "post /pay", "prod") && !slo.selects("checkout", "GET /cart", "prod"));
    }

    #[test]
    fn latency_periods_are_bad_when_their_statistic_exceeds_the_threshold() {
        let slo: SloConfig = toml::from_str(
            "name = \"l\"\nservice = \"s\"\nsli = \"latency\"\nthreshold = \"300ms\"\ngoal = 0.9\nwindow = \"1d\"\nbudgeting = \"periods\"\nperiod = \"1m\"\nstatistic = \"p99\"",
        )
        .unwrap();
        assert!(slo.validate(0).is_empty(), "{:?}", slo.validate(0));
        let objective = slo.objective();
        assert_eq!(objective.period_rule, PeriodRule::GoodShare(0.99));
        let mut series = super::super::budget::Series::default();
        let now = 1_800_000_000;
        // 98 of 100 requests under 300 ms: the period's p99 is over the threshold, so it is bad,
        // although 98 % is above the SLO's 90 % goal.
        series.add(now - 30, 98, 100);
        let budget = objective.budget(&series, now);
        assert!((budget.remaining - (0.1 * 86_400.0 - 60.0)).abs() < 1e-6, "{budget:?}");
        assert!(problems("name = \"l\"\nservice = \"s\"\nsli = \"latency\"\nthreshold = \"1s\"\ngoal = 0.9\nwindow = \"1d\"\nbudgeting = \"periods\"\nperiod = \"1m\"\nstatistic = \"p42\"")
            .iter()
            .any(|p| p.contains("\"p42\" is not one of p50, p90, p99, p99.9, avg")));
    }

    #[test]
    fn definitions_whose_state_could_outgrow_a_kafka_message_are_refused_by_name() {
        let base = "name = \"b\"\nservice = \"s\"\nsli = \"availability\"\ngoal = 0.99\n";
        let tier = |name: &str, long: &str| {
            format!("[[alerts]]\ntier = \"{name}\"\nlong = \"{long}\"\nshare = 0.1\nseverity = \"page\"\n")
        };
        let refused = |text: String, expected: &str| {
            let p = problems(&text);
            assert!(p.iter().any(|line| line.contains(expected)), "expected {expected:?} in {p:#?}");
        };
        refused(format!("{base}window = \"401d\""), r#"slo[0] ("b").window: 401d is too long: at most 400d"#);
        refused(
            format!("{base}window = \"30d\"\n{}", tier("slow", "8d")),
            r#"slo[0] ("b").alerts[0].long: 8d is too long: at most 7d"#,
        );
        let nine: String = (0..9).map(|i| tier(&format!("t{i}"), "1h")).collect();
        refused(format!("{base}window = \"30d\"\n{nine}"), r#"slo[0] ("b").alerts: 9 tiers; at most 8"#);
        refused(
            format!("{base}window = \"60d\"\nbudgeting = \"periods\"\nperiod = \"1m\""),
            "period: 1m divides the window into 86400 periods; at most 44640",
        );
        // At the bounds: accepted.
        let eight: String = (0..8).map(|i| tier(&format!("t{i}"), "7d")).collect();
        assert!(problems(&format!("{base}window = \"400d\"\n{eight}")).is_empty());
        assert!(problems(&format!("{base}calendar = \"month\"\nbudgeting = \"periods\"\nperiod = \"1m\"")).is_empty());
    }

    #[test]
    fn avg_periods_are_bad_when_their_mean_latency_exceeds_the_threshold() {
        let slo: SloConfig = toml::from_str(
            "name = \"l\"\nservice = \"s\"\nsli = \"latency\"\nthreshold = \"300ms\"\ngoal = 0.9\nwindow = \"1d\"\nbudgeting = \"periods\"\nperiod = \"1m\"\nstatistic = \"avg\"",
        )
        .unwrap();
        assert!(slo.validate(0).is_empty(), "{:?}", slo.validate(0));
        let objective = slo.objective();
        assert_eq!(objective.period_rule, PeriodRule::MeanAtMost(300_000));
        let now: i64 = 1_800_000_000 / 60 * 60;
        let mut series = super::super::budget::Series::default();
        let counts = |total: u64, mean_ms: u64| super::super::budget::Counts {
            good: 0,
            total,
            latency_us: total * mean_ms * 1000,
        };
        // Three minutes ago: mean 200 ms (good, although no request counts as "good" here: the
        // mean is what is judged). Two minutes ago: mean 301 ms (bad). One minute ago: exactly
        // 300 ms (good: at most the threshold).
        series.add_counts(now - 180, counts(10, 200));
        series.add_counts(now - 120, counts(10, 301));
        series.add_counts(now - 60, counts(4, 300));
        let budget = objective.budget(&series, now);
        assert!((budget.remaining - (0.1 * 86_400.0 - 60.0)).abs() < 1e-6, "one bad minute: {budget:?}");
    }

    #[test]
    fn every_rule_of_the_definition_is_checked() {
        let p = problems(
            r#"
            name = "x"
            service = "s"
            sli = "latency"
            goal = 1.5
            window = "30d"
            calendar = "month"
            budgeting = "periods"
            statistic = "p42"
            warning_threshold = 2
            exclusions = [{ cron = "every sunday", duration = "2h" }, { start = "tomorrow", duration = "0s" }, { duration = "1h" }]
            alerts = [{ tier = "a", long = "5m", share = 0, severity = "" }, { tier = "a", long = "1h", share = 0.1, severity = "page" }]
            "#,
        );
        for expected in [
            r#"slo[0] ("x").goal"#,
            r#"slo[0] ("x").window: give either window or calendar"#,
            r#"slo[0] ("x").period: is required"#,
            r#"slo[0] ("x").threshold: is required"#,
            r#"slo[0] ("x").statistic: "p42" is not one of"#,
            r#"slo[0] ("x").warning_threshold"#,
            r#"slo[0] ("x").exclusions[0].cron"#,
            r#"slo[0] ("x").exclusions[1].start"#,
            r#"slo[0] ("x").exclusions[1].duration"#,
            r#"slo[0] ("x").exclusions[2]: needs exactly one of start and cron"#,
            r#"slo[0] ("x").alerts[0].share"#,
            r#"slo[0] ("x").alerts[0].long"#,
            r#"slo[0] ("x").alerts[0].severity"#,
            r#"slo[0] ("x").alerts[1].tier"#,
        ] {
            assert!(p.iter().any(|line| line.starts_with(expected)), "missing {expected}: {p:#?}");
        }
        assert!(problems("name = \"y\"\nservice = \"s\"\nsli = \"success\"\ngoal = 0.99\n")
            .iter()
            .any(|l| l.contains("window: is required")));
        assert!(toml::from_str::<SloConfig>(
            "name = \"y\"\nservice = \"s\"\nsli = \"speed\"\ngoal = 0.9\nwindow = \"1d\""
        )
        .is_err());
        assert!(toml::from_str::<SloConfig>(
            "name = \"y\"\nservice = \"s\"\nsli = \"success\"\ngoal = 0.9\nwindow = \"1d\"\ncolour = 1"
        )
        .is_err());
    }
}
