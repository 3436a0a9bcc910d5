//! Creating the topics tracewarden writes to or consumes besides its inputs (kafka.md "Topics").
//! Existing topics are left alone; a topic that cannot be created is named in the error.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use std::sync::Arc;

use crate::kafka_client::KafkaSession;
use rdkafka::error::RDKafkaErrorCode;

/// Creates missing topics tracewarden writes to, with the partition count of the input and the
/// broker's default replication, on a background thread: consumption never waits for it. A topic
/// that cannot be created is reported, not fatal: the broker may still create it on first write.
pub fn create_missing_topics(
    client: rdkafka::ClientConfig,
    session: Arc<KafkaSession>,
    topics: Vec<String>,
    partitions: i32,
) {
    if topics.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("tracewarden-topics".into()).spawn(move || {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(reason) = create_topics(&client, &session, &names, partitions) {
            tracing::warn!(topics = ?names, %reason, "cannot create topics; create them, or let the broker auto-create them");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the topic creation thread");
    }
}

/// Creates topics (the existing ones are left alone); `Err` names what failed.
pub fn create_topics(
    client: &rdkafka::ClientConfig,
    session: &Arc<KafkaSession>,
    topics: &[&str],
    partitions: i32,
) -> Result<(), String> {
    create_topics_with(client, session, topics, partitions, &[])
}

/// Creates missing topics with topic-level settings (`cleanup.policy = compact` for the SLO state).
pub fn create_topics_with(
    client: &rdkafka::ClientConfig,
    session: &Arc<KafkaSession>,
    topics: &[&str],
    partitions: i32,
    settings: &[(&str, &str)],
) -> Result<(), String> {
    let admin =
        session.admin_client(client).map_err(|e| format!("admin client: {}", crate::kafka_client::redact(e)))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            settings
                .iter()
                .fold(NewTopic::new(t, partitions.max(1), TopicReplication::Fixed(-1)), |topic, (key, value)| {
                    topic.set(key, value)
                })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = runtime.block_on(admin.create_topics(&new_topics, &options)).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => failed.push(format!("{topic}: {code}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
