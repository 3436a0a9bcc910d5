//! The librdkafka clients' properties: tracewarden's defaults for each client, with the
//! `[kafka.client]` properties applied over them, each only to the clients that take it (a
//! consumer-only property never reaches a producer, and the other way round).

use rdkafka::ClientConfig;

use super::{oauth, tls, KafkaConfig};

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
