//! Before subscribing: waiting for the brokers (readiness stays 503; a refused authentication
//! past [`AUTHENTICATION_GIVE_UP`] is an error), checking that the input topics exist, and creating
//! the topics this instance needs that do not exist yet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::{SourceError, SourceSettings};
use crate::delivery::{classify, ErrorClass};

/// Creates the topics this instance consumes or writes that do not exist yet.
pub(super) fn prepare_topics(settings: &SourceSettings, check: TopicCheck) -> Result<(), SourceError> {
    if !check.missing_required.is_empty() {
        let names: Vec<&str> = check.missing_required.iter().map(String::as_str).collect();
        crate::delivery::topics::create_topics(&settings.admin, &settings.kafka_session, &names, check.partitions)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_required.join(", "), reason })?;
    }
    if !check.missing_compacted.is_empty() {
        let names: Vec<&str> = check.missing_compacted.iter().map(String::as_str).collect();
        let compacted = [("cleanup.policy", "compact"), ("segment.ms", "3600000")];
        crate::delivery::topics::create_topics_with(&settings.admin, &settings.kafka_session, &names, 1, &compacted)
            .map_err(|reason| SourceError::CreateTopics { topics: check.missing_compacted.join(", "), reason })?;
    }
    crate::delivery::topics::create_missing_topics(
        settings.admin.clone(),
        settings.kafka_session.clone(),
        check.missing_outputs,
        check.partitions,
    );
    Ok(())
}

/// How long one metadata request waits for the brokers.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two metadata requests while the brokers do not answer.
const METADATA_RETRY: Duration = Duration::from_secs(2);
/// How long the brokers may refuse the SASL authentication before `run` gives up: long enough
/// for credentials made a moment ago to reach every broker (SCRAM users propagate), short
/// enough that a wrong password is said by a restart loop, not by a pod that never gets ready.
const AUTHENTICATION_GIVE_UP: Duration = Duration::from_secs(15);

/// Reads the topics' metadata, retrying while the brokers cannot be reached (readiness stays
/// 503 meanwhile); `None` when shutdown was asked first. Errors that retrying cannot fix (a
/// missing input topic, failed authentication) are returned.
pub(super) fn wait_for_brokers<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
    shutdown: &AtomicBool,
) -> Result<Option<TopicCheck>, SourceError> {
    // Since when every attempt has met a refused SASL authentication.
    let mut refused_since: Option<Instant> = None;
    loop {
        match check_topics_serving_events(consumer, settings) {
            Ok(check) => return Ok(Some(check)),
            Err(SourceError::Metadata { source, .. }) if classify(&source) == ErrorClass::Retriable => {
                let resume = Instant::now() + METADATA_RETRY;
                while Instant::now() < resume {
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    // Serves the client's logs and errors (nothing is subscribed yet): why the
                    // brokers do not answer — a refused TLS handshake or SASL authentication —
                    // reaches the KafkaSession only through them.
                    let _ = consumer.poll(Duration::from_millis(50));
                }
                match settings.kafka_session.authentication_refusal() {
                    Some(said) => {
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= AUTHENTICATION_GIVE_UP {
                            return Err(SourceError::Authentication(said));
                        }
                    }
                    None => refused_since = None,
                }
                settings.kafka_session.unreachable(&source.to_string());
            }
            Err(error) => return Err(error),
        }
        if shutdown.load(Ordering::SeqCst) {
            return Ok(None);
        }
    }
}

/// [`check_topics`], with the client's events served meanwhile (nothing is subscribed yet, so
/// nothing else polls it): an OAUTHBEARER token is asked for when the client is made, and the
/// metadata request cannot connect before it is there; refusals are logged as they come.
fn check_topics_serving_events<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
) -> Result<TopicCheck, SourceError> {
    let checked = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !checked.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(50));
            }
        });
        let result = check_topics(consumer, settings);
        checked.store(true, Ordering::SeqCst);
        result
    })
}

/// What the broker's metadata says of the topics this instance needs.
pub(super) struct TopicCheck {
    /// The largest partition count among the input topics.
    partitions: i32,
    /// Output topics that do not exist yet (created in the background).
    missing_outputs: Vec<String>,
    /// Topics this instance also consumes (the repartition topic) that do not exist yet.
    missing_required: Vec<String>,
    /// Compacted topics that do not exist yet.
    missing_compacted: Vec<String>,
}

/// Checks the input topics exist and lists the topics to create.
fn check_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &SourceSettings,
) -> Result<TopicCheck, SourceError> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|source| SourceError::Metadata { brokers: settings.brokers.clone(), source })?;
    let exists = |topic: &str| metadata.topics().iter().any(|m| m.name() == topic && m.error().is_none());
    let inputs = settings.topics.iter().filter(|t| !settings.required_topics.contains(t));
    let missing: Vec<&str> = inputs.clone().filter(|t| !exists(t)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(SourceError::MissingTopics(missing.join(", ")));
    }
    let partitions = metadata
        .topics()
        .iter()
        .filter(|m| inputs.clone().any(|t| t == m.name()))
        .map(|m| m.partitions().len() as i32)
        .max()
        .unwrap_or(1);
    let missing_of = |topics: &[String]| topics.iter().filter(|t| !exists(t)).cloned().collect::<Vec<_>>();
    Ok(TopicCheck {
        partitions,
        missing_outputs: missing_of(&settings.output_topics),
        missing_required: missing_of(&settings.required_topics),
        missing_compacted: missing_of(&settings.compacted_topics),
    })
}
