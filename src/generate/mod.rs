//! Traffic generation: a PetClinic-like application (frontend, customers, vets, visits, billing,
//! insurance, a PostgreSQL database, a Kafka queue) running on several Kubernetes pods per service,
//! emitting realistic traces with configurable faults (5xx, mostly from one canary pod), errors
//! (4xx), throttles (429), a slow operation, a database that degrades on a schedule, long-tailed
//! latencies and health checks.
//!
//! [`PetClinic::trace`] builds one trace (`petclinic`: the model and its story; `deployment`: the
//! pods; `latency`: durations and the database's schedule) and encodes it the way an
//! OpenTelemetry pipeline would deliver it (`wire`): one message per service (each SDK exports
//! its own spans, under its pod's resource), in `otlp_proto` (via the `opentelemetry-proto`
//! types), `otlp_json` (the same types' OTLP/JSON serialisation) or `zipkin_json`. [`run`] drives a
//! Kafka topic at a target span rate (`tracewarden generate`, and the demo).

pub mod deployment;
mod latency;
mod petclinic;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::kafka_client::{with_client_properties, KafkaConfig, KafkaSession, LoggedContext};
use rdkafka::ClientConfig;

pub use petclinic::{GeneratedTrace, PetClinic, TrafficProfile};
pub use wire::writes;

use crate::model::Encoding;

/// Settings of a generator run.
#[derive(Clone, Debug)]
pub struct GenerateSettings {
    /// The brokers and how to reach them: `brokers`, `[kafka.client]` (TLS, SASL, OIDC) and
    /// `[kafka.aws_msk_iam]`, as `run` takes them; the topics of it are not used.
    pub kafka: KafkaConfig,
    pub topic: String,
    /// Target spans per second.
    pub rate: f64,
    /// Stop after this long (`None`: until stopped).
    pub duration: Option<Duration>,
    pub encoding: Encoding,
    pub profile: TrafficProfile,
    pub seed: u64,
}

/// Live counters of a generator run.
#[derive(Default)]
pub struct GenerateProgress {
    pub traces: AtomicU64,
    pub spans: AtomicU64,
    pub messages: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot make the OAUTHBEARER token source: {0}")]
    Tokens(String),
    #[error("cannot create the Kafka producer for {brokers}: {source}")]
    Producer {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot produce to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// What can be switched while the generator runs (the demo's fault switch and rollout).
#[derive(Debug)]
pub struct Switches {
    /// Fault injection ([`PetClinic::set_faults`]).
    pub faults: AtomicBool,
    /// customers-service's canary pod in rotation ([`PetClinic::set_canary`]).
    pub canary: AtomicBool,
}

impl Switches {
    /// Faults injected; the canary in rotation or not.
    pub fn new(canary: bool) -> Arc<Self> {
        Arc::new(Self { faults: AtomicBool::new(true), canary: AtomicBool::new(canary) })
    }
}

/// Produces traces until the duration elapses or `stop` is set; `switches` are read before each
/// trace. Prints nothing: callers report `progress`.
pub fn run(
    settings: &GenerateSettings,
    switches: Arc<Switches>,
    stop: Arc<AtomicBool>,
    progress: Arc<GenerateProgress>,
) -> Result<(), GenerateError> {
    let kafka = &settings.kafka;
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &kafka.brokers).set("linger.ms", "10");
    // The client properties as `run` takes them: the same token sources, trust defaults.
    let client = with_client_properties(client, kafka, false);
    let session = KafkaSession::for_kafka(kafka).map_err(|e| GenerateError::Tokens(e.to_string()))?;
    let producer: ThreadedProducer<LoggedContext> = client
        .create_with_context(LoggedContext(session))
        .map_err(crate::kafka_client::redact)
        .map_err(|source| GenerateError::Producer { brokers: kafka.brokers.clone(), source })?;
    let mut clinic = PetClinic::new(settings.seed, settings.profile.clone());
    let started = Instant::now();
    let mut produced_spans = 0f64;
    while !stop.load(Ordering::SeqCst) && settings.duration.is_none_or(|d| started.elapsed() < d) {
        let due = started.elapsed().as_secs_f64() * settings.rate;
        if produced_spans >= due {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        clinic.set_faults(switches.faults.load(Ordering::Relaxed));
        clinic.set_canary(switches.canary.load(Ordering::Relaxed));
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        let trace = clinic.trace(now, settings.encoding);
        let key = hex::encode(trace.trace_id);
        for payload in &trace.messages {
            let mut record = BaseRecord::to(&settings.topic).key(&key).payload(&payload[..]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((source, _)) => return Err(GenerateError::Produce { topic: settings.topic.clone(), source }),
                }
            }
        }
        produced_spans += trace.spans as f64;
        progress.traces.fetch_add(1, Ordering::Relaxed);
        progress.spans.fetch_add(trace.spans as u64, Ordering::Relaxed);
        progress.messages.fetch_add(trace.messages.len() as u64, Ordering::Relaxed);
    }
    let _ = producer.flush(Duration::from_secs(30));
    Ok(())
}

#[cfg(test)]
mod tests;
