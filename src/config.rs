//! Configuration: a TOML file overridden by `TRACEWARDEN__SECTION__KEY` environment variables
//! (interfaces.md "Configuration").
//!
//! Every struct denies unknown keys; every error names the key (`window.decision_wait`) and the
//! expected form. [`Config::validate`] checks the rules that span fields and returns every problem
//! at once, so `tracewarden check-config` can explain them all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::assemble::WindowLimits;
use crate::decode::InputEncoding;
use crate::signals::{ExcludeRule, SignalSettings};

/// A duration written as `"500ms"`, `"5s"`, `"15m"`, `"30d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: expected a number and a unit, such as \"500ms\", \"5s\", \"15m\", \"30d\""
            ))
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format_duration(self.0))
    }
}

fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub window: WindowConfig,
    pub metrics: MetricsConfig,
    pub sampling: crate::sampling::SamplingConfig,
    /// `[[slo]]`: service level objectives (slo.md). Default none.
    pub slo: Vec<crate::slo::config::SloConfig>,
    pub http: HttpConfig,
    pub log: LogConfig,
}

/// `[kafka]`: brokers, topics and delivery (kafka.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `localhost:9092`.
    pub brokers: String,
    /// Consumer group shared by every instance. Default `tracewarden`.
    pub group_id: String,
    /// Topics spans are read from; they must exist. Default `["otlp_spans"]`.
    pub input_topics: Vec<String>,
    /// `auto` | `otlp_proto` | `otlp_json` | `zipkin_json`. Default `auto` (detected per message).
    pub encoding: InputEncoding,
    /// Kept traces, one message per trace keyed by trace id. Default `sampled_spans`.
    pub output_topic: String,
    /// SLO alert messages. Default `slo_alerts`.
    pub alerts_topic: String,
    /// Undecodable messages, unchanged, with error headers. Default `tracewarden_dead_letters`.
    pub dead_letter_topic: String,
    /// Internal: partial SLO counts, keyed by SLO name; consumed in the group
    /// `{group_id}-owners`, and an SLO is evaluated by the instance assigned its partition.
    /// Created at start when missing (with the input's partition count).
    /// Default `tracewarden_aggregates`.
    pub aggregates_topic: String,
    /// Internal, compacted: SLO state checkpoints, keyed by SLO name. Created at start when
    /// missing (`cleanup.policy = compact`). Default `tracewarden_slo_state`.
    pub slo_state_topic: String,
    /// How often consumed offsets are committed. Default `1s`; at least `10ms`.
    pub commit_interval: HumanDuration,
    /// Whether input messages are keyed (partitioned) by trace id. Default `true`. When `false`,
    /// each instance first re-keys spans by trace id through the topic `{group_id}-repartition`
    /// (created at start with the input's partition count) and assembles from there.
    pub input_keyed_by_trace: bool,
    /// Any librdkafka property, passed through unchanged (SASL, TLS, timeouts). Default empty. From
    /// the environment: `TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD` sets `sasl.password`.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "tracewarden".into(),
            input_topics: vec!["otlp_spans".into()],
            encoding: InputEncoding::Auto,
            output_topic: "sampled_spans".into(),
            alerts_topic: "slo_alerts".into(),
            dead_letter_topic: "tracewarden_dead_letters".into(),
            aggregates_topic: "tracewarden_aggregates".into(),
            slo_state_topic: "tracewarden_slo_state".into(),
            commit_interval: secs(1),
            input_keyed_by_trace: true,
            client: BTreeMap::new(),
        }
    }
}

/// `[window]`: the assembly window (sampling.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// A trace whose root arrived is decided after this long without a new span. Default `5s`.
    pub decision_wait: HumanDuration,
    /// A trace is decided this long after its first span at the latest. Default `30s`;
    /// must exceed `decision_wait`.
    pub max_trace_age: HumanDuration,
    /// A trace is decided when it holds this many spans. Default 10 000; at least 1.
    pub max_spans_per_trace: usize,
    /// The store never holds more spans; the oldest traces are decided early. Default 2 000 000;
    /// at least `max_spans_per_trace`.
    pub max_buffered_spans: usize,
    /// Kept trace ids remembered for late spans. Default 100 000.
    pub decision_cache_kept: usize,
    /// Dropped trace ids remembered for late spans (8 bytes each). Default 1 000 000.
    pub decision_cache_dropped: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            decision_wait: secs(5),
            max_trace_age: secs(30),
            max_spans_per_trace: 10_000,
            max_buffered_spans: 2_000_000,
            decision_cache_kept: 100_000,
            decision_cache_dropped: 1_000_000,
        }
    }
}

impl KafkaConfig {
    /// The repartition topic used when the input is not keyed by trace id.
    pub fn repartition_topic(&self) -> String {
        format!("{}-repartition", self.group_id)
    }
}

impl WindowConfig {
    pub fn limits(&self) -> WindowLimits {
        WindowLimits {
            decision_wait: self.decision_wait.0,
            max_trace_age: self.max_trace_age.0,
            max_spans_per_trace: self.max_spans_per_trace,
            max_buffered_spans: self.max_buffered_spans,
            decision_cache_kept: self.decision_cache_kept,
            decision_cache_dropped: self.decision_cache_dropped,
        }
    }
}

/// `[metrics]`: service and dependency metrics (signals.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Window of the HDR quantiles and availability gauges. Default `60s`; at least `1s`.
    pub window: HumanDuration,
    /// Upper bounds (seconds) of the classic latency histogram buckets, strictly increasing.
    /// Default `[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]`.
    pub latency_buckets: Vec<f64>,
    /// Series per metric family; beyond it spans count in one series labelled all `__overflow__`.
    /// Default 10 000; at least 1.
    pub max_series: usize,
    /// A series idle this long is removed. Default `15m`; at least `metrics.window`.
    pub series_ttl: HumanDuration,
    /// Exclusion rules (`[[metrics.exclude]]`): matching spans are counted only in
    /// `tracewarden_spans_excluded_total{rule}`. Default none.
    pub exclude: Vec<ExcludeRule>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            window: secs(60),
            latency_buckets: vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            max_series: 10_000,
            series_ttl: secs(15 * 60),
            exclude: Vec::new(),
        }
    }
}

impl MetricsConfig {
    pub fn settings(&self) -> SignalSettings {
        SignalSettings {
            window: self.window.0,
            latency_buckets: self.latency_buckets.clone(),
            max_series: self.max_series,
            series_ttl: self.series_ttl.0,
            exclude: self.exclude.clone(),
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/api/*`. Default `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".parse().expect("valid default address") }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `error` | `warn` | `info` | `debug` | `trace`, or directives such as
    /// `info,tracewarden=debug`. Default `info`.
    pub level: String,
    /// `pretty` (human) or `json` (one object a line). Default `pretty`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Pretty }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// One configuration problem, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

const ENV_PREFIX: &str = "TRACEWARDEN";

impl Config {
    /// Loads `path` (optional: defaults when `None`), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let prefix = format!("{ENV_PREFIX}__");
        let client_prefix = format!("{ENV_PREFIX}__KAFKA__CLIENT__");
        type Vars = Vec<(String, String)>;
        let (client_env, env): (Vars, Vars) =
            env.into_iter().filter(|(k, _)| k.starts_with(&prefix)).partition(|(k, _)| k.starts_with(&client_prefix));
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("kafka.input_topics")
                .with_list_parse_key("metrics.latency_buckets")
                .source(Some(env)),
        );
        let merged = builder.build().map_err(|e| invalid("(file)", e.to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { "(top level)".to_string() } else { key };
            // The config crate appends " for key `…`"; the key is reported separately.
            let mut message = e.into_inner().to_string();
            if let Some(at) = message.rfind(" for key `") {
                message.truncate(at);
            }
            if let Some(form) = expected_form(&key) {
                message = format!("{message}: expected {form}");
            }
            invalid(&key, message)
        })?;
        // librdkafka property names use dots, never underscores; environment names cannot hold
        // dots: TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD sets `sasl.password`.
        for (key, value) in client_env {
            let property = key[client_prefix.len()..].to_ascii_lowercase().replace('_', ".");
            config.kafka.client.insert(property, value);
        }
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Parses TOML text (no environment), validated.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let dir =
            std::env::temp_dir().join(format!("tracewarden-config-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::write(&dir, text)
            .map_err(|e| ConfigError::Read { path: dir.display().to_string(), message: e.to_string() })?;
        let result = Self::load_with_env(Some(&dir), std::iter::empty());
        let _ = std::fs::remove_file(&dir);
        result
    }

    /// Advice that does not make the configuration invalid (shown by `check-config`).
    pub fn warnings(&self) -> Vec<String> {
        self.sampling.warnings()
    }

    /// Rules that span fields; every problem is reported.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(Problem { key: key.into(), message });
            }
        };
        let k = &self.kafka;
        check(!k.brokers.trim().is_empty(), "kafka.brokers", "must name at least one broker (host:port)".into());
        check(!k.group_id.trim().is_empty(), "kafka.group_id", "must not be empty".into());
        check(!k.input_topics.is_empty(), "kafka.input_topics", "must list at least one topic".into());
        for (key, topic) in [
            ("kafka.output_topic", &k.output_topic),
            ("kafka.alerts_topic", &k.alerts_topic),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
            ("kafka.aggregates_topic", &k.aggregates_topic),
            ("kafka.slo_state_topic", &k.slo_state_topic),
        ] {
            check(!topic.trim().is_empty(), key, "must not be empty".into());
            check(
                !k.input_topics.contains(topic),
                key,
                format!("{topic:?} is also an input topic: tracewarden would read its own output"),
            );
        }
        check(
            k.commit_interval.0 >= Duration::from_millis(10),
            "kafka.commit_interval",
            format!("{} is too short: at least 10ms", k.commit_interval),
        );
        for property in k.client.keys() {
            check(
                !matches!(property.as_str(), "group.id" | "bootstrap.servers" | "enable.auto.commit"),
                &format!("kafka.client.{property}"),
                "is set by tracewarden itself (use kafka.group_id / kafka.brokers; commits are managed)".into(),
            );
        }
        let w = &self.window;
        check(!w.decision_wait.0.is_zero(), "window.decision_wait", "must be greater than zero".into());
        check(
            w.max_trace_age > w.decision_wait,
            "window.max_trace_age",
            format!("{} must exceed window.decision_wait ({})", w.max_trace_age, w.decision_wait),
        );
        check(w.max_spans_per_trace >= 1, "window.max_spans_per_trace", "must be at least 1".into());
        check(
            w.max_buffered_spans >= w.max_spans_per_trace,
            "window.max_buffered_spans",
            format!("{} must be at least window.max_spans_per_trace ({})", w.max_buffered_spans, w.max_spans_per_trace),
        );
        let m = &self.metrics;
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
        problems.extend(self.sampling.validate());
        let mut slo_names = std::collections::HashSet::new();
        for (i, slo) in self.slo.iter().enumerate() {
            problems.extend(slo.validate(i));
            if !slo_names.insert(slo.name.clone()) {
                problems
                    .push(Problem { key: format!("slo[{i}] ({:?}).name", slo.name), message: "is used twice".into() });
            }
        }
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(Problem { key: key.into(), message });
            }
        };
        check(
            valid_log_filter(&self.log.level),
            "log.level",
            format!("{:?} is not a level or filter (error, warn, info, debug, trace)", self.log.level),
        );
        problems
    }
}

/// The expected form of keys whose deserialisation errors do not say it.
fn expected_form(key: &str) -> Option<&'static str> {
    match key {
        "http.listen" => Some("an address such as \"127.0.0.1:9464\" or \"0.0.0.0:9464\""),
        "kafka.encoding" => Some("one of auto, otlp_proto, otlp_json, zipkin_json"),
        "log.format" => Some("pretty or json"),
        _ => None,
    }
}

/// Whether a log filter is made of levels and `target=level` directives only.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    tracing_subscriber::EnvFilter::try_new(filter).is_ok()
        && filter.split(',').map(str::trim).filter(|d| !d.is_empty()).all(|directive| {
            match directive.rsplit_once('=') {
                Some((_, level)) => LEVELS.contains(&level.to_ascii_lowercase().as_str()),
                None => LEVELS.contains(&directive.to_ascii_lowercase().as_str()) || directive.contains("::"),
            }
        })
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid(vec![Problem { key: key.into(), message }])
}

#[cfg(test)]
mod tests;
