//! Configuration: a TOML file overridden by `TRACEWARDEN__SECTION__KEY` environment variables
//! (interfaces.md "Configuration").
//!
//! Each component's section sits beside its logic (`[kafka]` in [`crate::kafka_client`], `[window]`
//! in [`crate::assemble`], `[metrics]` in [`crate::signals`], `[http]` in [`crate::http`],
//! `[[sampling.rules]]` in [`crate::sampling`], `[[slo]]` in [`crate::slo`]), each default next to
//! its field; this module composes them. Every struct denies unknown keys; every error names the
//! key (`window.decision_wait`) and the expected form. [`Config::validate`] returns every problem at
//! once, so `tracewarden check-config` can explain them all.

use std::path::Path;

use serde::Deserialize;

pub use crate::assemble::WindowConfig;
pub use crate::http::HttpConfig;
pub use crate::investigate::InvestigationConfig;
pub use crate::kafka_client::KafkaConfig;
pub use crate::settings::{secs, HumanDuration, Problem};
pub use crate::signals::MetricsConfig;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Span-path workers in this process (a top-level key, before any table): each is a member
    /// of the consumer group with its own share of the partitions, its own window and producer,
    /// and all share the metrics, the trace index and the SLO side. Default: the number of
    /// cores; 1 to 64. `window` limits are for the whole process, shared out among the workers.
    pub workers: Workers,
    pub kafka: KafkaConfig,
    pub window: WindowConfig,
    pub metrics: MetricsConfig,
    pub sampling: crate::sampling::SamplingConfig,
    /// `[[slo]]`: service level objectives (slo.md). Default none.
    pub slo: Vec<crate::slo::config::SloConfig>,
    pub http: HttpConfig,
    /// `[ingest.otlp]`, `[ingest.xray]`: receivers from SDKs onto Kafka (ingest.md). Off by default.
    pub ingest: crate::ingest::IngestConfig,
    pub log: LogConfig,
    pub investigation: InvestigationConfig,
}

/// The number of span-path workers (see [`Config::workers`]).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Workers(pub usize);

/// The most workers a process runs: beyond the cores they only add consumer-group members.
const MAX_WORKERS: usize = 64;

impl Default for Workers {
    /// One per core (as the operating system reports them, cgroup limits included).
    fn default() -> Self {
        Self(std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_WORKERS))
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

const ENV_PREFIX: &str = "TRACEWARDEN";

impl Config {
    /// The signal store's settings: `[metrics]`, with the contributor dimensions of
    /// `[investigation]`.
    pub fn signal_settings(&self) -> crate::signals::SignalSettings {
        crate::signals::SignalSettings {
            dimensions: self.investigation.tracked_dimensions(),
            compare_attributes: self.investigation.compare_attributes.clone(),
            max_values_per_dimension: self.investigation.max_values_per_dimension,
            ..self.metrics.settings()
        }
    }

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
        crate::kafka_client::read_property_files(&mut config.kafka.client)
            .map_err(|problem| ConfigError::Invalid(vec![problem]))?;
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
        Problem::checker(&mut problems)(
            (1..=MAX_WORKERS).contains(&self.workers.0),
            "workers",
            format!("must be from 1 to {MAX_WORKERS}, got {}", self.workers.0),
        );
        self.kafka.validate(&mut problems);
        self.window.validate(&mut problems);
        let workers = self.workers.0.max(1);
        Problem::checker(&mut problems)(
            self.window.max_buffered_spans / workers >= self.window.max_spans_per_trace,
            "window.max_buffered_spans",
            format!(
                "is shared out among the {workers} workers: each share ({}) must hold a trace of \
                 window.max_spans_per_trace ({}); raise it or lower workers",
                self.window.max_buffered_spans / workers,
                self.window.max_spans_per_trace
            ),
        );
        self.metrics.validate(&mut problems);
        self.investigation.validate(&mut problems);
        self.http.validate(&mut problems);
        self.ingest.validate(&mut problems);
        problems.extend(self.sampling.validate());
        let mut slo_names = std::collections::HashSet::new();
        for (i, slo) in self.slo.iter().enumerate() {
            problems.extend(slo.validate(i));
            if !slo_names.insert(slo.name.clone()) {
                problems
                    .push(Problem { key: format!("slo[{i}] ({:?}).name", slo.name), message: "is used twice".into() });
            }
        }
        Problem::checker(&mut problems)(
            valid_log_filter(&self.log.level),
            "log.level",
            format!("{:?} is not a level or filter (error, warn, info, debug, trace)", self.log.level),
        );
        problems
    }
}

/// The expected form of keys whose deserialisation errors do not say it.
fn expected_form(key: &str) -> Option<&'static str> {
    let input_encoding = key == "kafka.encoding" || (key.starts_with("kafka.inputs[") && key.ends_with("].encoding"));
    if input_encoding {
        return Some(
            "one of auto, otlp_proto, otlp_json, zipkin_json, zipkin_proto, jaeger_proto, jaeger_json, xray_json",
        );
    }
    match key {
        "http.listen" => Some("an address such as \"127.0.0.1:9464\" or \"0.0.0.0:9464\""),
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
