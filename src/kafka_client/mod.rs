//! `[kafka]`: the connection and topics (kafka.md), and the librdkafka clients they configure.
//!
//! The rooms: `config` ([`KafkaConfig`], the section as written, and its checks), `check` (what
//! librdkafka would refuse, before `run`), `properties` (each client's properties: tracewarden's
//! defaults with `[kafka.client]` over them, each property only to the clients that take it),
//! `redaction` (secrets never printed), `secret_files` (`*_file` properties), `tls` (trust
//! defaults), `session` ([`KafkaSession`]: what the clients of a process share — librdkafka's logs
//! and errors told once, refusals said for what they are (`refusal`), and the OAUTHBEARER token
//! source, `oauth`). Here: waiting for topic metadata and the unreachable-broker classifier.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

mod check;
mod config;
pub mod oauth;
mod properties;
mod redaction;
mod refusal;
mod secret_files;
mod session;
mod tls;

pub use check::client_problems;
pub use config::{InputTopic, KafkaConfig};
pub use properties::{admin_config, consumer_config, owners_config, with_client_properties, with_instance_id};
pub use redaction::{is_secret_property, redact};
pub use secret_files::read_property_files;
pub use session::{KafkaSession, LoggedContext};
pub use tls::with_trust_defaults;

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
