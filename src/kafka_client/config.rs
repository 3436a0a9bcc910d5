//! `[kafka]` as written (kafka.md): the schema with each field's default and limits, and the
//! checks `check-config` runs on it before any client is made.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{client_problems, oauth};
use crate::format::InputEncoding;
use crate::settings::{secs, HumanDuration, Problem};

/// One `[[kafka.inputs]]` entry: an input topic and the encoding of its messages.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InputTopic {
    /// The topic; it must exist. Required.
    pub topic: String,
    /// `auto` or an encoding's name (ingest.md "Kafka input encodings"; a wrong name is answered
    /// with the list). Required.
    pub encoding: InputEncoding,
}

/// `[kafka]`: brokers, topics and delivery (kafka.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `localhost:9092`.
    pub brokers: String,
    /// Consumer group shared by every instance. Default `tracewarden`.
    pub group_id: String,
    /// Topics spans are read from; they must exist. Default `["otlp_spans"]`.
    pub input_topics: Vec<String>,
    /// `auto` or an encoding's name (ingest.md "Kafka input encodings"). Default `auto` (per
    /// message: OTLP protobuf, OTLP/JSON or Zipkin JSON).
    pub encoding: InputEncoding,
    /// `[[kafka.inputs]]`: more input topics, each with its own encoding (ingest.md "Kafka input
    /// encodings"); for a topic also in `input_topics`, its encoding replaces `encoding`. To read
    /// only these, set `input_topics = []`. Default none.
    pub inputs: Vec<InputTopic>,
    /// Kept traces, one message per trace keyed by trace id. Default `sampled_spans`.
    pub output_topic: String,
    /// SLO alert messages and degraded deployments (`"type": "deployment"`). Default `slo_alerts`.
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
    /// Internal: partial 10 s points keyed by series, each merged by the owner of its
    /// partition in the group `{group_id}-series` (investigation.md "One view per consumer
    /// group"). Created at start when missing (`points_partitions` partitions, retention
    /// `investigation.history` + 10 min). Default `tracewarden_points`.
    pub points_topic: String,
    /// Partitions of `points_topic` (and of `timeline_topic`, which must match) when created
    /// here: the most instances that share the series. Default 64; 1 to 10000.
    pub points_partitions: i32,
    /// Internal, compacted: the owners' merged points keyed by series and step, restored by the
    /// next owner of a partition. Created at start when missing (`cleanup.policy =
    /// compact,delete`, retention `investigation.history` + 10 min). Default
    /// `tracewarden_timeline`.
    pub timeline_topic: String,
    /// Internal: each owner's `metrics.window` rollup of its series every 10 s, read by every
    /// instance. Created at start when missing (one partition, retention 1 h). Default
    /// `tracewarden_rollups`.
    pub rollups_topic: String,
    /// How often consumed offsets are committed. Default `1s`; at least `10ms`.
    pub commit_interval: HumanDuration,
    /// Whether input messages are keyed (partitioned) by trace id. Default `true`. When `false`,
    /// each instance first re-keys spans by trace id through the topic `{group_id}-repartition`
    /// (created at start with the input's partition count) and assembles from there.
    pub input_keyed_by_trace: bool,
    /// Exactly-once forwarding (kafka.md "Delivery"): every record written — kept traces, dead
    /// letters, re-keyed spans, SLO counts, alerts and checkpoints — goes out in a Kafka
    /// transaction together with the consumer offsets of the messages it came from, one
    /// transaction per `commit_interval`, so a downstream consumer with
    /// `isolation.level=read_committed` sees each once across crashes and rebalances. Needs
    /// brokers with transactions and KIP-447 (Kafka 2.5 or later). Default `false`
    /// (at-least-once).
    pub exactly_once: bool,
    /// With `exactly_once`: the prefix of each worker's `transactional.id`
    /// (`{prefix}-w{worker}`). It must differ between instances running at the same time, and
    /// stay the same when an instance restarts: the restarted one then aborts the transaction its
    /// predecessor left open at once, instead of the broker after `transaction.timeout.ms`
    /// (meanwhile `read_committed` consumers of what it wrote wait). Default
    /// `{group_id}-{host name}-{HTTP port}` (the process id instead when the port is 0).
    pub transactional_id: Option<String>,
    /// A stable identity of this instance for static group membership (KIP-345,
    /// `group.instance.id`): every member it runs joins as `{instance_id}-w{worker}`,
    /// `{instance_id}-owners` and `{instance_id}-series`, so a restarted instance with the same
    /// id takes its partitions back without a rebalance (Kafka 2.3 or later); the id must differ
    /// between instances running at once (a StatefulSet's pod name, the host name). Trade-off: a
    /// member that stops is not replaced until `session.timeout.ms` passes, so keep that short
    /// enough. Default none (dynamic membership).
    pub instance_id: Option<String>,
    /// Any librdkafka property, passed through unchanged (SASL, TLS, timeouts). Default empty. From
    /// the environment: `TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD` sets `sasl.password`. A key
    /// ending in `_file` (`.file` from the environment) reads the property's value from that file
    /// (`"sasl.password_file" = "/run/secrets/kafka/password"`). With TLS and no CA named, the
    /// system's CA store is trusted. `check-config` reports what librdkafka would refuse.
    pub client: BTreeMap<String, String>,
    /// `[kafka.aws_msk_iam]`: authenticate to Amazon MSK with IAM (OAUTHBEARER tokens signed
    /// with the standard AWS credential chain, refreshed before they expire). Default none.
    pub aws_msk_iam: Option<oauth::AwsMskIamConfig>,
}

impl Default for KafkaConfig {
    /// Every field's default, as its documentation states it.
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "tracewarden".into(),
            input_topics: vec!["otlp_spans".into()],
            encoding: InputEncoding::Auto,
            inputs: Vec::new(),
            output_topic: "sampled_spans".into(),
            alerts_topic: "slo_alerts".into(),
            dead_letter_topic: "tracewarden_dead_letters".into(),
            aggregates_topic: "tracewarden_aggregates".into(),
            slo_state_topic: "tracewarden_slo_state".into(),
            points_topic: "tracewarden_points".into(),
            points_partitions: 64,
            timeline_topic: "tracewarden_timeline".into(),
            rollups_topic: "tracewarden_rollups".into(),
            commit_interval: secs(1),
            input_keyed_by_trace: true,
            exactly_once: false,
            transactional_id: None,
            instance_id: None,
            client: BTreeMap::new(),
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
