//! The Kafka producer behind the [`DeliveryLedger`](super::DeliveryLedger): one `BaseProducer`,
//! each record carrying its [`Attempt`] as the delivery opaque, every answer — the broker's, or a
//! refusal before queueing — coming back as a [`Report`] with its error classified once by
//! [`classify`]. Made transactional ([`Forwarder::transactional`]), it writes records only in
//! transactions ([`Transport::transact`]), initialised on first use.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;

use crate::kafka_client::KafkaSession;
use crate::record::ENCODING_HEADER;

use super::{Attempt, ErrorClass, Report, SendError, Topics, TransactionError, TransactionGroups, Transport};
use crate::position::Commit;

/// How long a transaction's steps (initialisation, offsets, commit, abort) may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka producer queue limits tracewarden sets unless `[kafka.client]` does: the message
/// count is librdkafka's default; the bytes are 64 MiB instead of 1 GiB, to bound memory.
pub const QUEUE_MAX_MESSAGES: usize = 100_000;
pub const QUEUE_MAX_KBYTES: usize = 65_536;

/// How a Kafka error is handled: the one place Kafka errors are classified.
pub fn classify(error: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::InvalidRecord
            | C::InvalidRequiredAcks
            | C::UnsupportedVersion
            | C::InvalidTopic
            | C::Fatal
            | C::InvalidArgument
            | C::Authentication
            | C::SaslAuthenticationFailed,
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Retriable,
    }
}

fn send_error(error: &KafkaError) -> SendError {
    SendError {
        class: classify(error),
        code: error.rdkafka_error_code().map_or_else(|| "client".to_string(), |c| format!("{c:?}")),
        message: error.to_string(),
    }
}

/// Routes delivery reports to the forwarder's queue, and librdkafka's logs to the [`KafkaSession`].
pub struct DeliveryContext {
    reports: Mutex<Sender<Report>>,
    log: Arc<KafkaSession>,
}

impl ClientContext for DeliveryContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.log.oauth_token()
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Attempt>;

    fn delivery(&self, result: &DeliveryResult<'_>, attempt: Box<Attempt>) {
        let report = match result {
            Ok(_) => Report::Delivered(attempt),
            Err((error, _)) => Report::Failed(attempt, send_error(error)),
        };
        // The receiver lives as long as the forwarder that owns this producer.
        let _ = self.reports.lock().expect("report sender").send(report);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
}

/// The Kafka [`Transport`].
pub struct Forwarder {
    producer: BaseProducer<DeliveryContext>,
    reports: Receiver<Report>,
    topics: Topics,
    /// Transactional: whether `init_transactions` has succeeded.
    transactions_ready: bool,
    /// Whether a transaction has begun and not ended.
    in_transaction: bool,
}

fn transaction_error(error: &KafkaError) -> TransactionError {
    let fatal = match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        _ => false,
    };
    TransactionError {
        code: error.rdkafka_error_code().map_or_else(|| "client".to_string(), |c| format!("{c:?}")),
        message: error.to_string(),
        fatal,
    }
}

impl Forwarder {
    pub fn new(client: &rdkafka::ClientConfig, topics: Topics, log: Arc<KafkaSession>) -> Result<Self, ForwarderError> {
        let (sender, reports) = channel();
        let producer = client
            .create_with_context(DeliveryContext { reports: Mutex::new(sender), log })
            .map_err(crate::kafka_client::redact)
            .map_err(ForwarderError::Create)?;
        Ok(Self { producer, reports, topics, transactions_ready: false, in_transaction: false })
    }

    #[allow(clippy::vec_box)] // records travel boxed, as librdkafka's delivery opaque
    /// Begins a transaction (initialising transactions first, once), writes, commits the offsets
    /// and the transaction. Every record is handed to the producer or comes back in `reports`.
    fn try_transaction(
        &mut self,
        records: Vec<Box<Attempt>>,
        offsets: &[Commit],
        groups: &TransactionGroups<'_>,
        reports: &mut Vec<Report>,
    ) -> Result<(), TransactionError> {
        let began = if self.transactions_ready {
            self.producer.begin_transaction()
        } else {
            self.producer.init_transactions(TRANSACTION_TIMEOUT).and_then(|()| {
                self.transactions_ready = true;
                self.producer.begin_transaction()
            })
        };
        if let Err(error) = began {
            // Nothing was written: every record comes back as it went.
            let refused = SendError { class: ErrorClass::Retriable, ..send_error(&error) };
            reports.extend(records.into_iter().map(|attempt| Report::Failed(attempt, refused.clone())));
            return Err(transaction_error(&error));
        }
        self.in_transaction = true;
        let refused_before = reports.len();
        for attempt in records {
            self.send(attempt, reports);
        }
        // A record refused before queueing (too large, say) would not be in the transaction
        // while the offsets past its messages are: abort, and go again without it.
        if let Some(Report::Failed(_, refused)) = reports[refused_before..].first() {
            let message = format!("a record was refused before the transaction: {}", refused.message);
            return Err(TransactionError { code: refused.code.clone(), message, fatal: false });
        }
        let (owned, inputs): (Vec<&Commit>, Vec<&Commit>) =
            offsets.iter().partition(|(topic, _, _)| groups.owner_topics.contains(topic));
        for (group, commits) in [(groups.inputs, inputs), (groups.owners, owned)] {
            let Some(group) = group.filter(|_| !commits.is_empty()) else { continue };
            let mut list = TopicPartitionList::new();
            for (topic, partition, offset) in commits {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| transaction_error(&e))?;
            }
            self.producer
                .send_offsets_to_transaction(&list, group, TRANSACTION_TIMEOUT)
                .map_err(|e| transaction_error(&e))?;
        }
        self.producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| transaction_error(&e))?;
        self.in_transaction = false;
        Ok(())
    }

    fn collect(&mut self, reports: &mut Vec<Report>) {
        reports.extend(self.reports.try_iter());
    }
}

impl Transport for Forwarder {
    fn transact(
        &mut self,
        records: Vec<Box<Attempt>>,
        offsets: &[Commit],
        groups: &TransactionGroups<'_>,
        reports: &mut Vec<Report>,
    ) -> Result<(), TransactionError> {
        let sent = records.len();
        let result = self.try_transaction(records, offsets, groups, reports);
        if let Err(error) = &result {
            if error.fatal {
                return result;
            }
            if std::mem::take(&mut self.in_transaction) {
                // The abort waits for every record's report, and only polling serves them.
                self.producer.purge(PurgeConfig::default().queue().inflight());
                let deadline = std::time::Instant::now() + TRANSACTION_TIMEOUT;
                while reports.len() < sent && std::time::Instant::now() < deadline {
                    self.poll(Duration::from_millis(50), reports);
                }
                if let Err(e) = self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
                    let abort = transaction_error(&e);
                    // Not abortable either: the producer's state is unknown, start afresh.
                    return Err(TransactionError { fatal: true, ..abort });
                }
            }
        }
        // Every record comes back: delivered, or purged by the abort.
        let deadline = std::time::Instant::now() + TRANSACTION_TIMEOUT;
        while reports.len() < sent && std::time::Instant::now() < deadline {
            self.poll(Duration::from_millis(50), reports);
        }
        result
    }

    fn send(&mut self, attempt: Box<Attempt>, reports: &mut Vec<Report>) {
        let record = &attempt.record;
        let topic = self.topics.of(record.destination).to_string();
        let (partition, key, payload) = (record.partition, record.key.clone(), record.payload.clone());
        let headers = match (&record.dead_letter, record.encoding) {
            (Some((error, source)), _) => Some(
                OwnedHeaders::new()
                    .insert(Header { key: "tracewarden.error", value: Some(error.as_bytes()) })
                    .insert(Header { key: "tracewarden.source", value: Some(source.as_bytes()) }),
            ),
            (None, Some(encoding)) => Some(
                OwnedHeaders::new().insert(Header { key: ENCODING_HEADER, value: Some(encoding.as_str().as_bytes()) }),
            ),
            (None, None) => None,
        };
        let mut base = BaseRecord::with_opaque_to(&topic, attempt).key(&key[..]).payload(&payload[..]);
        if let Some(headers) = headers {
            base = base.headers(headers);
        }
        if let Some(partition) = partition {
            base = base.partition(partition);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    base = returned;
                    self.poll(Duration::from_millis(50), reports);
                }
                Err((error, returned)) => {
                    // Refused before queueing (for example larger than message.max.bytes).
                    reports.push(Report::Failed(returned.delivery_opaque, send_error(&error)));
                    return;
                }
            }
        }
    }

    /// Serves every delivery report that has arrived (waiting up to `timeout` for the first).
    /// `BaseProducer::poll` serves one event — one batch of reports — per call once its deadline
    /// has passed, and the worker settles once per pass of its loop (every 20 ms while consumption
    /// is paused): serving one batch a pass let acknowledgements pile up and kept back-pressure
    /// on for seconds.
    fn poll(&mut self, timeout: Duration, reports: &mut Vec<Report>) {
        self.producer.poll(timeout);
        loop {
            let before = reports.len();
            self.collect(reports);
            if reports.len() == before {
                return;
            }
            self.producer.poll(Duration::ZERO);
        }
    }
}
