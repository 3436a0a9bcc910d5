//! `[kafka]`: the connection and topics (kafka.md), and the librdkafka clients they configure.
//!
//! [`KafkaConfig`] is the section as written; the client builders apply `[kafka.client]` over
//! tracewarden's defaults, each property only to the clients that take it. [`KafkaSession`] is
//! what the clients of the process share (module `session`): librdkafka's logs and errors told
//! once, and the OAUTHBEARER token source.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use serde::Deserialize;

mod check;
pub mod oauth;
mod refusal;
mod secret_files;
mod session;
mod tls;

pub use check::client_problems;
pub use secret_files::read_property_files;
pub use session::{KafkaSession, LoggedContext};
pub use tls::with_trust_defaults;

use crate::format::InputEncoding;
use crate::settings::{secs, HumanDuration, Problem};

/// One `[[kafka.inputs]]` entry: an input topic and the encoding of its messages.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InputTopic {
    /// The topic; it must exist. Required.
    pub topic: String,
    /// `auto` | `otlp_proto` | `otlp_json` | `zipkin_json` | `zipkin_proto` | `jaeger_proto` |
    /// `jaeger_json` | `xray_json` (ingest.md "Kafka input encodings"). Required.
    pub encoding: InputEncoding,
}

/// `[kafka]`: brokers, topics and delivery (kafka.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `localhost:9092`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group shared by every instance. Default `tracewarden`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topics spans are read from; they must exist. Default `["otlp_spans"]`.
    #[serde(default = "default_input_topics")]
    pub input_topics: Vec<String>,
    /// `auto` | `otlp_proto` | `otlp_json` | `zipkin_json` | `zipkin_proto` | `jaeger_proto` |
    /// `jaeger_json` | `xray_json`. Default `auto` (per message: OTLP protobuf, OTLP/JSON or Zipkin JSON).
    #[serde(default = "default_encoding")]
    pub encoding: InputEncoding,
    /// `[[kafka.inputs]]`: more input topics, each with its own encoding (ingest.md "Kafka input
    /// encodings"); for a topic also in `input_topics`, its encoding replaces `encoding`. To read
    /// only these, set `input_topics = []`. Default none.
    #[serde(default)]
    pub inputs: Vec<InputTopic>,
    /// Kept traces, one message per trace keyed by trace id. Default `sampled_spans`.
    #[serde(default = "default_output_topic")]
    pub output_topic: String,
    /// SLO alert messages. Default `slo_alerts`.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Undecodable messages, unchanged, with error headers. Default `tracewarden_dead_letters`.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Internal: partial SLO counts, keyed by SLO name; consumed in the group
    /// `{group_id}-owners`, and an SLO is evaluated by the instance assigned its partition.
    /// Created at start when missing (with the input's partition count).
    /// Default `tracewarden_aggregates`.
    #[serde(default = "default_aggregates_topic")]
    pub aggregates_topic: String,
    /// Internal, compacted: SLO state checkpoints, keyed by SLO name. Created at start when
    /// missing (`cleanup.policy = compact`). Default `tracewarden_slo_state`.
    #[serde(default = "default_slo_state_topic")]
    pub slo_state_topic: String,
    /// Internal: partial 10 s points keyed by series, each merged by the owner of its
    /// partition in the group `{group_id}-series` (investigation.md "One view per consumer
    /// group"). Created at start when missing (`points_partitions` partitions, retention
    /// `investigation.history` + 10 min). Default `tracewarden_points`.
    #[serde(default = "default_points_topic")]
    pub points_topic: String,
    /// Partitions of `points_topic` (and of `timeline_topic`, which must match) when created
    /// here: the most instances that share the series. Default 64; 1 to 10000.
    #[serde(default = "default_points_partitions")]
    pub points_partitions: i32,
    /// Internal, compacted: the owners' merged points keyed by series and step, restored by the
    /// next owner of a partition. Created at start when missing (`cleanup.policy =
    /// compact,delete`, retention `investigation.history` + 10 min). Default
    /// `tracewarden_timeline`.
    #[serde(default = "default_timeline_topic")]
    pub timeline_topic: String,
    /// Internal: each owner's `metrics.window` rollup of its series every 10 s, read by every
    /// instance. Created at start when missing (one partition, retention 1 h). Default
    /// `tracewarden_rollups`.
    #[serde(default = "default_rollups_topic")]
    pub rollups_topic: String,
    /// How often consumed offsets are committed. Default `1s`; at least `10ms`.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// Whether input messages are keyed (partitioned) by trace id. Default `true`. When `false`,
    /// each instance first re-keys spans by trace id through the topic `{group_id}-repartition`
    /// (created at start with the input's partition count) and assembles from there.
    #[serde(default = "default_input_keyed_by_trace")]
    pub input_keyed_by_trace: bool,
    /// Exactly-once forwarding (kafka.md "Delivery"): every record written — kept traces, dead
    /// letters, re-keyed spans, SLO counts, alerts and checkpoints — goes out in a Kafka
    /// transaction together with the consumer offsets of the messages it came from, one
    /// transaction per `commit_interval`, so a downstream consumer with
    /// `isolation.level=read_committed` sees each once across crashes and rebalances. Needs
    /// brokers with transactions and KIP-447 (Kafka 2.5 or later). Default `false`
    /// (at-least-once).
    #[serde(default)]
    pub exactly_once: bool,
    /// With `exactly_once`: the prefix of each worker's `transactional.id`
    /// (`{prefix}-w{worker}`). It must differ between instances running at the same time, and
    /// stay the same when an instance restarts: the restarted one then aborts the transaction its
    /// predecessor left open at once, instead of the broker after `transaction.timeout.ms`
    /// (meanwhile `read_committed` consumers of what it wrote wait). Default
    /// `{group_id}-{host name}-{HTTP port}` (the process id instead when the port is 0).
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// A stable identity of this instance for static group membership (KIP-345,
    /// `group.instance.id`): every member it runs joins as `{instance_id}-w{worker}`,
    /// `{instance_id}-owners` and `{instance_id}-series`, so a restarted instance with the same
    /// id takes its partitions back without a rebalance (Kafka 2.3 or later); the id must differ
    /// between instances running at once (a StatefulSet's pod name, the host name). Trade-off: a
    /// member that stops is not replaced until `session.timeout.ms` passes, so keep that short
    /// enough. Default none (dynamic membership).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Any librdkafka property, passed through unchanged (SASL, TLS, timeouts). Default empty. From
    /// the environment: `TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD` sets `sasl.password`. A key
    /// ending in `_file` (`.file` from the environment) reads the property's value from that file
    /// (`"sasl.password_file" = "/run/secrets/kafka/password"`). With TLS and no CA named, the
    /// system's CA store is trusted. `check-config` reports what librdkafka would refuse.
    #[serde(default = "default_client")]
    pub client: BTreeMap<String, String>,
    /// `[kafka.aws_msk_iam]`: authenticate to Amazon MSK with IAM (OAUTHBEARER tokens signed
    /// with the standard AWS credential chain, refreshed before they expire). Default none.
    #[serde(default)]
    pub aws_msk_iam: Option<oauth::AwsMskIamConfig>,
}

fn default_brokers() -> String {
    "localhost:9092".into()
}

fn default_group_id() -> String {
    "tracewarden".into()
}

fn default_input_topics() -> Vec<String> {
    vec!["otlp_spans".into()]
}

fn default_encoding() -> InputEncoding {
    InputEncoding::Auto
}

fn default_output_topic() -> String {
    "sampled_spans".into()
}

fn default_alerts_topic() -> String {
    "slo_alerts".into()
}

fn default_dead_letter_topic() -> String {
    "tracewarden_dead_letters".into()
}

fn default_aggregates_topic() -> String {
    "tracewarden_aggregates".into()
}

fn default_points_topic() -> String {
    "tracewarden_points".into()
}

fn default_points_partitions() -> i32 {
    64
}

fn default_timeline_topic() -> String {
    "tracewarden_timeline".into()
}

fn default_rollups_topic() -> String {
    "tracewarden_rollups".into()
}

fn default_slo_state_topic() -> String {
    "tracewarden_slo_state".into()
}

fn default_commit_interval() -> HumanDuration {
    secs(1)
}

fn default_input_keyed_by_trace() -> bool {
    true
}

fn default_client() -> BTreeMap<String, String> {
    BTreeMap::new()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            group_id: default_group_id(),
            input_topics: default_input_topics(),
            inputs: Vec::new(),
            encoding: default_encoding(),
            output_topic: default_output_topic(),
            alerts_topic: default_alerts_topic(),
            dead_letter_topic: default_dead_letter_topic(),
            aggregates_topic: default_aggregates_topic(),
            slo_state_topic: default_slo_state_topic(),
            points_topic: default_points_topic(),
            points_partitions: default_points_partitions(),
            timeline_topic: default_timeline_topic(),
            rollups_topic: default_rollups_topic(),
            commit_interval: default_commit_interval(),
            input_keyed_by_trace: default_input_keyed_by_trace(),
            exactly_once: false,
            transactional_id: None,
            instance_id: None,
            client: default_client(),
            aws_msk_iam: None,
        }
    }
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

impl KafkaConfig {
    /// Adds this section's problems to `problems`: the section's own, then, when it has none,
    /// what librdkafka would refuse in the clients it configures ([`client_problems`]).
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let before = problems.len();
        self.validate_section(problems);
        self.validate_oauthbearer(problems);
        if problems.len() == before {
            problems.extend(client_problems(self));
        }
    }

    fn validate_section(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        let k = self;
        check(!k.brokers.trim().is_empty(), "kafka.brokers", "must name at least one broker (host:port)".into());
        check(!k.group_id.trim().is_empty(), "kafka.group_id", "must not be empty".into());
        check(
            k.transactional_id.as_ref().is_none_or(|id| !id.trim().is_empty()),
            "kafka.transactional_id",
            "must not be empty (leave it out for the default)".into(),
        );
        check(
            k.instance_id.as_ref().is_none_or(|id| !id.trim().is_empty() && !id.contains(char::is_whitespace)),
            "kafka.instance_id",
            "must be a non-empty name without spaces (leave it out for dynamic membership)".into(),
        );
        check(
            !k.client.contains_key("group.instance.id"),
            "kafka.client.group.instance.id",
            "set kafka.instance_id instead: each member of the instance needs an id of its own".into(),
        );
        check(
            !(k.exactly_once && k.client.get("isolation.level").is_some_and(|v| v != "read_committed")),
            "kafka.client.isolation.level",
            "must be read_committed with kafka.exactly_once: records of aborted transactions would be read".into(),
        );
        check(
            !k.all_input_topics().is_empty(),
            "kafka.input_topics",
            "must list at least one topic (or [[kafka.inputs]] must)".into(),
        );
        for (i, input) in k.inputs.iter().enumerate() {
            check(!input.topic.trim().is_empty(), &format!("kafka.inputs[{i}].topic"), "must not be empty".into());
            check(
                !k.inputs[..i].iter().any(|earlier| earlier.topic == input.topic),
                &format!("kafka.inputs[{i}].topic"),
                format!("{:?} is listed twice: one encoding per topic", input.topic),
            );
        }
        for (key, topic) in [
            ("kafka.output_topic", &k.output_topic),
            ("kafka.alerts_topic", &k.alerts_topic),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
            ("kafka.aggregates_topic", &k.aggregates_topic),
            ("kafka.slo_state_topic", &k.slo_state_topic),
            ("kafka.points_topic", &k.points_topic),
            ("kafka.timeline_topic", &k.timeline_topic),
            ("kafka.rollups_topic", &k.rollups_topic),
        ] {
            check(!topic.trim().is_empty(), key, "must not be empty".into());
            check(
                !k.all_input_topics().contains(topic),
                key,
                format!("{topic:?} is also an input topic: tracewarden would read its own output"),
            );
        }
        check(
            (1..=10_000).contains(&k.points_partitions),
            "kafka.points_partitions",
            format!("{} is out of range: 1 to 10000", k.points_partitions),
        );
        let internal = [&k.points_topic, &k.timeline_topic, &k.rollups_topic];
        for (i, topic) in internal.iter().enumerate() {
            check(
                !internal[..i].contains(topic),
                "kafka.rollups_topic",
                format!(
                    "{topic:?} names two of points_topic, timeline_topic and rollups_topic: each needs its own topic"
                ),
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
    }

    /// The OAUTHBEARER settings: an OIDC client given whole, `[kafka.aws_msk_iam]` with the
    /// protocol and mechanism it needs, and a token source whenever the mechanism is OAUTHBEARER.
    fn validate_oauthbearer(&self, problems: &mut Vec<Problem>) {
        let property = |key: &str| format!("kafka.client.{key}");
        let oidc = match oauth::oidc_settings(&self.client) {
            Ok(settings) => settings.is_some(),
            Err(found) => {
                problems.extend(found.into_iter().map(|(key, message)| Problem { key: property(&key), message }));
                true
            }
        };
        let mut check = Problem::checker(problems);
        let mechanism = self.sasl_mechanism().to_ascii_uppercase();
        if let Some(iam) = &self.aws_msk_iam {
            check(
                oauth::MSK_IAM_BUILT,
                "kafka.aws_msk_iam",
                "this build has no AWS MSK IAM support (built without the cargo feature aws-msk-iam)".into(),
            );
            check(
                !iam.region.trim().is_empty(),
                "kafka.aws_msk_iam.region",
                "must name the cluster's AWS region (eu-west-1)".into(),
            );
            check(
                !oidc,
                "kafka.aws_msk_iam",
                "and sasl.oauthbearer.method = \"oidc\" are two token sources: choose one".into(),
            );
            check(
                self.client.get("security.protocol").is_none_or(|p| p.eq_ignore_ascii_case("SASL_SSL")),
                "kafka.client.security.protocol",
                "must be SASL_SSL (or left out) with [kafka.aws_msk_iam]".into(),
            );
            check(
                mechanism == "OAUTHBEARER",
                "kafka.client.sasl.mechanisms",
                "must be OAUTHBEARER (or left out) with [kafka.aws_msk_iam]".into(),
            );
        } else {
            check(
                mechanism != "OAUTHBEARER" || oidc,
                "kafka.client.sasl.mechanisms",
                "OAUTHBEARER needs a token source: sasl.oauthbearer.method = \"oidc\" with its client id, secret and token endpoint, or [kafka.aws_msk_iam]".into(),
            );
        }
        check(
            !self.client.contains_key("sasl.oauthbearer.extensions"),
            "kafka.client.sasl.oauthbearer.extensions",
            "is not supported: tracewarden's tokens carry no SASL extensions".into(),
        );
    }

    /// The SASL mechanism the clients use: `sasl.mechanisms` (or `sasl.mechanism`), OAUTHBEARER
    /// with `[kafka.aws_msk_iam]`, else librdkafka's default, GSSAPI.
    pub fn sasl_mechanism(&self) -> &str {
        let named = self.client.get("sasl.mechanisms").or_else(|| self.client.get("sasl.mechanism"));
        match named {
            Some(mechanism) => mechanism,
            None if self.aws_msk_iam.is_some() => "OAUTHBEARER",
            None => "GSSAPI",
        }
    }

    /// `security.protocol`, upper case: `[kafka.client]`'s, SASL_SSL with `[kafka.aws_msk_iam]`,
    /// else PLAINTEXT.
    pub fn security_protocol(&self) -> String {
        match self.client.get("security.protocol") {
            Some(protocol) => protocol.to_ascii_uppercase(),
            None if self.aws_msk_iam.is_some() => "SASL_SSL".into(),
            None => "PLAINTEXT".into(),
        }
    }

    /// Every topic spans are read from: `input_topics`, then the `[[kafka.inputs]]` topics not
    /// among them.
    pub fn all_input_topics(&self) -> Vec<String> {
        let mut topics = self.input_topics.clone();
        for input in &self.inputs {
            if !topics.contains(&input.topic) {
                topics.push(input.topic.clone());
            }
        }
        topics
    }

    /// The `[[kafka.inputs]]` topics with their encodings (each replaces `encoding` for its topic).
    pub fn topic_encodings(&self) -> Vec<(String, InputEncoding)> {
        self.inputs.iter().map(|i| (i.topic.clone(), i.encoding)).collect()
    }

    /// The repartition topic used when the input is not keyed by trace id.
    pub fn repartition_topic(&self) -> String {
        format!("{}-repartition", self.group_id)
    }

    /// The producer's `message.max.bytes` (`[kafka.client]`, else librdkafka's default).
    pub fn message_max_bytes(&self) -> usize {
        self.client.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }
}

/// librdkafka properties that only a consumer takes (librdkafka warns when a producer gets them).
fn consumer_only(property: &str) -> bool {
    property.starts_with("fetch.")
        || property.starts_with("group.")
        || property.starts_with("queued.")
        || property.starts_with("enable.auto.")
        || matches!(
            property,
            "session.timeout.ms"
                | "heartbeat.interval.ms"
                | "max.poll.interval.ms"
                | "auto.offset.reset"
                | "auto.commit.interval.ms"
                | "partition.assignment.strategy"
                | "isolation.level"
                | "check.crcs"
                | "enable.partition.eof"
                | "coordinator.query.interval.ms"
        )
}

/// librdkafka properties that only a producer takes.
fn producer_only(property: &str) -> bool {
    property.starts_with("queue.buffering.")
        || property.starts_with("batch.")
        || property.starts_with("compression.")
        || property.starts_with("transaction")
        || matches!(
            property,
            "linger.ms"
                | "acks"
                | "request.required.acks"
                | "enable.idempotence"
                | "message.timeout.ms"
                | "delivery.timeout.ms"
                | "retries"
                | "message.send.max.retries"
                | "retry.backoff.ms"
                | "partitioner"
                | "compression.codec"
                | "sticky.partitioning.linger.ms"
        )
}

/// Applies the `[kafka.client]` properties a client of the given role takes (the shared ones and
/// its own) over tracewarden's defaults already in `client`: the user's settings win.
pub fn with_client_properties(mut client: ClientConfig, kafka: &KafkaConfig, consumer: bool) -> ClientConfig {
    if kafka.aws_msk_iam.is_some() {
        client.set("security.protocol", "SASL_SSL").set("sasl.mechanisms", "OAUTHBEARER");
    }
    let properties = kafka.client.iter().filter(|(k, _)| !oauth::OIDC_PROPERTIES.contains(&k.as_str()));
    for (key, value) in properties.filter(|(k, _)| if consumer { !producer_only(k) } else { !consumer_only(k) }) {
        client.set(key, value);
    }
    tls::with_trust_defaults(&mut client);
    client
}

/// Whether a librdkafka property holds a secret (a password, a key, a token): its value never
/// appears in a log line or an error.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "secret",
        "token",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore",
        "private.key",
    ]
    .iter()
    .any(|part| key.contains(part))
}

/// `error` without the value of a secret property: librdkafka's configuration errors quote the
/// value they refuse (`Client config error: … ssl.key.password <value>`).
pub fn redact(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, value) if is_secret_property(&key) => {
            let description = if value.is_empty() { description } else { description.replace(&value, "[redacted]") };
            KafkaError::ClientConfig(code, description, key, "[redacted]".into())
        }
        other => other,
    }
}

/// The librdkafka properties of the admin client.
pub fn admin_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &kafka.brokers);
    with_client_properties(client, kafka, false)
}

/// The librdkafka properties of the member of `{group_id}-owners` that consumes the aggregates
/// topic (SLO ownership), named `{client.id}-owners` (`tracewarden-owners` by default).
pub fn owners_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = consumer_config(kafka);
    let id = kafka.client.get("client.id").map_or("tracewarden", String::as_str);
    client.set("group.id", format!("{}-owners", kafka.group_id)).set("client.id", format!("{id}-owners"));
    with_instance_id(&mut client, kafka, "owners");
    client
}

/// Sets `group.instance.id` to `{kafka.instance_id}-{member}` when `kafka.instance_id` is set
/// (static membership).
pub fn with_instance_id(client: &mut ClientConfig, kafka: &KafkaConfig, member: &str) {
    if let Some(id) = &kafka.instance_id {
        client.set("group.instance.id", format!("{id}-{member}"));
    }
}

/// The librdkafka properties of the group member that consumes the inputs.
pub fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Every second: the consumer lag, and readiness follows the group coordinator link.
        .set("statistics.interval.ms", "1000")
        // Prefetch at most 32 MiB (librdkafka's default is 64 MiB per consumer).
        .set("queued.max.messages.kbytes", "32768")
        // When the prefetch is full, fetch again soon after the worker has made room: with the
        // default of 1 s the worker empties a full prefetch in a fraction of that, then idles.
        .set("fetch.queue.backoff.ms", "10")
        .set("partition.assignment.strategy", "cooperative-sticky");
    with_client_properties(client, kafka, true)
}

/// How long a member waits for its own metadata of the topics it subscribes to.
pub const SUBSCRIBE_METADATA_WAIT: Duration = Duration::from_secs(10);

/// Waits (up to [`SUBSCRIBE_METADATA_WAIT`]) until `consumer`'s own metadata shows every topic of `topics` with all
/// its partitions led, before it subscribes. A subscription whose metadata changes while its first
/// JoinGroup is in flight (a topic created a moment before, seen first by another client) makes
/// librdkafka rejoin and discard that JoinGroup's answer, the member id of the KIP-394 handshake
/// included; the broker then keeps the forgotten id as a pending member and the whole group waits
/// a session timeout before any member gets partitions (librdkafka issue 5569). Returns whether
/// the metadata settled within [`SUBSCRIBE_METADATA_WAIT`]; the caller subscribes either way.
pub fn await_topic_metadata<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topics: &[&str],
) -> bool {
    use rdkafka::consumer::Consumer as _;
    let deadline = std::time::Instant::now() + SUBSCRIBE_METADATA_WAIT;
    let settled = |topic: &str| {
        consumer.fetch_metadata(Some(topic), Duration::from_secs(2)).is_ok_and(|metadata| {
            metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
            })
        })
    };
    loop {
        if topics.iter().all(|topic| settled(topic)) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Errors that mean the brokers cannot be reached now (and may be later).
pub fn is_unreachable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve | C::BrokerNotAvailable | C::OperationTimedOut)
    ) || matches!(
        error,
        KafkaError::MetadataFetch(C::BrokerTransportFailure | C::AllBrokersDown | C::OperationTimedOut | C::Resolve)
    )
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn configuration_errors_do_not_quote_secret_values() {
        // As librdkafka words a refused secret (no OpenSSL in the build).
        let refused = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cret\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "s3cret".into(),
        );
        let shown = redact(refused).to_string();
        assert!(
            !shown.contains("s3cret") && shown.contains("sasl.password") && shown.contains("[redacted]"),
            "{shown}"
        );
        // Other properties keep their value: it is what the user needs to see.
        let plain = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"SCRAM\" for configuration property \"sasl.mechanism\"".into(),
            "sasl.mechanism".into(),
            "SCRAM".into(),
        );
        assert!(redact(plain).to_string().contains("SCRAM"));
        for secret in ["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.keystore.password"] {
            assert!(is_secret_property(secret), "{secret}");
        }
        assert!(!is_secret_property("bootstrap.servers") && !is_secret_property("sasl.username"));
    }
}
