//! Ingest: receivers that take spans straight from SDKs and put them on Kafka, keyed by trace id,
//! so that assembly and scale-out work exactly as for any other input (ingest.md "Receivers").
//!
//! - [`otlp_grpc`]: OTLP/gRPC `TraceService/Export`, gzip allowed;
//! - [`otlp_http`]: OTLP/HTTP `POST /v1/traces`, protobuf or JSON, gzip allowed;
//! - [`xray_udp`]: the X-Ray daemon protocol, one segment document per datagram.
//!
//! **Invariant: answer only after the broker acknowledged.** An OTLP request is answered success
//! only once every message it was split into is acknowledged; if the brokers do not acknowledge
//! within `ack_timeout`, or the producer queue is full (back-pressure instead of buffering
//! without bound), the answer is 503 with `Retry-After` (gRPC: `UNAVAILABLE`), and the client's
//! own retries cover the failure. UDP has no answer: a datagram that cannot be produced is counted
//! (`tracewarden_ingest_requests_total{receiver="xray",result="unavailable"}`).
//!
//! [`bind`] binds every configured receiver (a taken port is reported before anything starts);
//! [`Bound::start`] runs them.

pub mod config;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod split;
pub mod xray_udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::kafka_client::{KafkaSession, LoggedContext};
use rdkafka::ClientConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

pub use config::{IngestConfig, OtlpIngestConfig, XrayIngestConfig};

use crate::kafka_client::{redact, with_client_properties, KafkaConfig};
use crate::telemetry::families::{FamilySpec, INGEST_IN_FLIGHT_BYTES, INGEST_REJECTED, INGEST_REQUESTS, INGEST_SPANS};

/// Why a receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen on {addr} for the {receiver} receiver (another process has the port? change {flag})")]
    Bind {
        receiver: &'static str,
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve the OTLP receivers over TLS ([ingest.otlp] tls_cert_file, tls_key_file): {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot create the receivers' Kafka producer for {brokers}: {source}")]
    Producer {
        brokers: String,
        #[source]
        source: KafkaError,
    },
}

/// The receivers' counters (ingest.md), registered with the process's other metrics.
#[derive(Clone)]
pub struct IngestMetrics {
    /// `tracewarden_ingest_spans_total{receiver}`: spans (or documents) written to Kafka.
    pub spans: IntCounterVec,
    /// `tracewarden_ingest_requests_total{receiver,result}`.
    pub requests: IntCounterVec,
    /// `tracewarden_ingest_rejected_total{receiver,reason}`: datagrams and spans refused.
    pub rejected: IntCounterVec,
    /// `tracewarden_ingest_in_flight_bytes`: bytes of messages waiting for acknowledgement.
    pub in_flight_bytes: IntGauge,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> Self {
        // Registered once per process; a second start (tests) reuses the names harmlessly.
        let counter = |family: &FamilySpec| {
            let counter = IntCounterVec::new(Opts::new(family.name, family.help), family.labels).expect("valid metric");
            let _ = registry.register(Box::new(counter.clone()));
            counter
        };
        let gauge = IntGauge::new(INGEST_IN_FLIGHT_BYTES.name, INGEST_IN_FLIGHT_BYTES.help).expect("valid metric");
        let _ = registry.register(Box::new(gauge.clone()));
        Self {
            spans: counter(&INGEST_SPANS),
            requests: counter(&INGEST_REQUESTS),
            rejected: counter(&INGEST_REJECTED),
            in_flight_bytes: gauge,
        }
    }
}

impl IngestMetrics {
    /// Counts an OTLP request whose messages were all acknowledged; the partial success to answer
    /// when spans were refused for an invalid id.
    pub fn acknowledged(
        &self,
        receiver: &str,
        split: &split::Split,
    ) -> Option<opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess> {
        let produced: usize = split.messages.iter().map(|m| m.spans).sum();
        self.spans.with_label_values(&[receiver]).inc_by(produced as u64);
        let partial_success = (split.rejected > 0).then(|| {
            self.rejected.with_label_values(&[receiver, "invalid_id"]).inc_by(split.rejected as u64);
            opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                rejected_spans: split.rejected as i64,
                error_message: format!("{} spans without a valid trace or span id were dropped", split.rejected),
            }
        });
        let result = if partial_success.is_some() { "partial" } else { "ok" };
        self.requests.with_label_values(&[receiver, result]).inc();
        partial_success
    }
}

/// Why a request's messages were not all acknowledged (the answer is 503 / `UNAVAILABLE`).
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("Kafka did not acknowledge the spans: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{limit} bytes of requests already wait for Kafka (ingest.otlp.max_in_flight_bytes): retry later")]
    Busy { limit: usize },
}

/// The producer the receivers share, and where each writes.
#[derive(Clone)]
pub struct IngestSink {
    producer: FutureProducer<LoggedContext>,
    dead_letter_topic: String,
    /// One permit per byte of messages waiting for acknowledgement.
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight_bytes: usize,
    in_flight_gauge: IntGauge,
}

/// Bytes of one request waiting for acknowledgement: given back when dropped (acknowledged,
/// given up on, or the client went away).
struct Waiting<'s> {
    _permits: tokio::sync::SemaphorePermit<'s>,
    bytes: i64,
    gauge: &'s IntGauge,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

impl IngestSink {
    /// A producer whose messages expire after `delivery_timeout`: one its request was already
    /// answered 503 for is not delivered later (unless already sent), so the client's retry does
    /// not usually duplicate it.
    /// At most `max_in_flight_bytes` of messages wait for acknowledgement at once (`in_flight_gauge`
    /// shows how many do).
    pub fn new(
        kafka: &KafkaConfig,
        session: &Arc<KafkaSession>,
        delivery_timeout: Duration,
        max_in_flight_bytes: usize,
        in_flight_gauge: IntGauge,
    ) -> Result<Self, IngestError> {
        let mut client = ClientConfig::new();
        // Not idempotent: an idempotent producer whose in-flight messages expire must bump its epoch,
        // and where the broker cannot (Tansu), librdkafka raises a fatal error and the receiver would
        // answer 503 for good after one broker stall. At-least-once is the promise; the client's
        // retries may duplicate.
        client
            .set("bootstrap.servers", &kafka.brokers)
            .set("linger.ms", "5")
            .set("message.timeout.ms", delivery_timeout.as_millis().max(1).to_string());
        let producer = with_client_properties(client, kafka, false)
            .create_with_context(LoggedContext(session.clone()))
            .map_err(|source| IngestError::Producer { brokers: kafka.brokers.clone(), source: redact(source) })?;
        Ok(Self {
            producer,
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight_bytes)),
            max_in_flight_bytes,
            in_flight_gauge,
        })
    }

    /// Produces every message and waits for all acknowledgements, at most `timeout` (a full
    /// producer queue waits too, then fails): `Err` unless every one was acknowledged. Refused
    /// at once when the messages would take the bytes waiting past `max_in_flight_bytes` (a
    /// request larger than that on its own counts as that: it waits alone).
    pub async fn produce_all<'m>(
        &self,
        topic: &str,
        messages: impl Iterator<Item = (&'m str, &'m [u8])> + Clone,
        timeout: Duration,
    ) -> Result<(), ProduceError> {
        let bytes: usize = messages.clone().map(|(key, payload)| key.len() + payload.len()).sum();
        let permits = bytes.min(self.max_in_flight_bytes) as u32;
        let permits = self
            .in_flight
            .try_acquire_many(permits)
            .map_err(|_| ProduceError::Busy { limit: self.max_in_flight_bytes })?;
        let bytes = permits.num_permits() as i64;
        self.in_flight_gauge.add(bytes);
        let _waiting = Waiting { _permits: permits, bytes, gauge: &self.in_flight_gauge };
        let sends = messages.map(|(key, payload)| {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            self.producer.send(record, timeout)
        });
        let results = tokio::time::timeout(timeout, futures_util::future::join_all(sends))
            .await
            .map_err(|_| KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut))?;
        // `_waiting` is released here: the messages are acknowledged or given up on.
        for result in results {
            result.map_err(|(error, _)| error)?;
        }
        Ok(())
    }

    /// Writes input that could not be read to the dead-letter topic, unchanged, with headers
    /// `tracewarden.error` and `tracewarden.source` (kafka.md).
    pub async fn dead_letter(
        &self,
        payload: &[u8],
        error: &str,
        source: &str,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "tracewarden.error", value: Some(error) })
            .insert(rdkafka::message::Header { key: "tracewarden.source", value: Some(source) });
        let record = FutureRecord::<(), [u8]>::to(&self.dead_letter_topic).payload(payload).headers(headers);
        self.producer.send(record, timeout).await.map(|_| ()).map_err(|(error, _)| error)
    }
}

/// What [`Bound::start`] runs; the tasks end when `shutdown` is notified.
pub struct Receivers {
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub xray: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// What to tell a user whose receiver address is taken: the setting (or flag) that changes it.
#[derive(Clone, Copy, Debug)]
pub struct BindHints {
    pub otlp_grpc: &'static str,
    pub otlp_http: &'static str,
    pub xray: &'static str,
}

impl Default for BindHints {
    fn default() -> Self {
        Self { otlp_grpc: "ingest.otlp.grpc_listen", otlp_http: "ingest.otlp.http_listen", xray: "ingest.xray.listen" }
    }
}

/// The configured receivers' sockets, bound: a taken port is reported before anything else
/// starts.
pub struct Bound {
    otlp_grpc: Option<TcpListener>,
    otlp_http: Option<TcpListener>,
    xray: Option<UdpSocket>,
}

/// Binds every configured receiver's address.
pub async fn bind(ingest: &IngestConfig, hints: BindHints) -> Result<Bound, IngestError> {
    async fn tcp(receiver: &'static str, addr: SocketAddr, flag: &'static str) -> Result<TcpListener, IngestError> {
        TcpListener::bind(addr).await.map_err(|source| IngestError::Bind { receiver, addr, flag, source })
    }
    let (otlp_grpc, otlp_http) = match &ingest.otlp {
        Some(otlp) => (
            Some(tcp("OTLP/gRPC", otlp.grpc_listen, hints.otlp_grpc).await?),
            Some(tcp("OTLP/HTTP", otlp.http_listen, hints.otlp_http).await?),
        ),
        None => (None, None),
    };
    let xray = match &ingest.xray {
        Some(xray) => {
            let addr = xray.listen;
            let socket = UdpSocket::bind(addr).await.map_err(|source| IngestError::Bind {
                receiver: "X-Ray UDP",
                addr,
                flag: hints.xray,
                source,
            })?;
            Some(socket)
        }
        None => None,
    };
    Ok(Bound { otlp_grpc, otlp_http, xray })
}

impl Bound {
    /// Runs the bound receivers until `shutdown` is notified.
    pub fn start(
        self,
        ingest: &IngestConfig,
        kafka: &KafkaConfig,
        session: &Arc<KafkaSession>,
        registry: &Registry,
        shutdown: Arc<tokio::sync::Notify>,
    ) -> Result<Receivers, IngestError> {
        let mut receivers = Receivers { otlp_grpc: None, otlp_http: None, xray: None, tasks: Vec::new() };
        if self.otlp_grpc.is_none() && self.otlp_http.is_none() && self.xray.is_none() {
            return Ok(receivers);
        }
        let metrics = IngestMetrics::register(registry);
        let delivery_timeout = ingest.otlp.as_ref().map_or(xray_udp::ACK_TIMEOUT, |o| o.ack_timeout.0);
        let max_in_flight_bytes =
            ingest.otlp.as_ref().map_or_else(config::default_max_in_flight_bytes, |o| o.max_in_flight_bytes);
        let sink =
            IngestSink::new(kafka, session, delivery_timeout, max_in_flight_bytes, metrics.in_flight_bytes.clone())?;
        let otlp_topic = |otlp: &OtlpIngestConfig| {
            otlp.topic.clone().unwrap_or_else(|| kafka.all_input_topics().first().cloned().unwrap_or_default())
        };
        if let (Some(listener), Some(otlp)) = (self.otlp_grpc, &ingest.otlp) {
            let (bound, task) =
                otlp_grpc::serve(listener, otlp, otlp_topic(otlp), sink.clone(), metrics.clone(), shutdown.clone())?;
            tracing::info!(listen = %bound, "OTLP/gRPC receiver listening");
            receivers.otlp_grpc = Some(bound);
            receivers.tasks.push(task);
        }
        if let (Some(listener), Some(otlp)) = (self.otlp_http, &ingest.otlp) {
            let topic = otlp_topic(otlp);
            let (bound, task) =
                otlp_http::serve(listener, otlp, topic, sink.clone(), metrics.clone(), shutdown.clone())?;
            tracing::info!(listen = %bound, "OTLP/HTTP receiver listening");
            receivers.otlp_http = Some(bound);
            receivers.tasks.push(task);
        }
        if let (Some(socket), Some(xray)) = (self.xray, &ingest.xray) {
            let (bound, task) = xray_udp::serve(socket, xray, sink, metrics, shutdown);
            tracing::info!(listen = %bound, "X-Ray UDP receiver listening");
            receivers.xray = Some(bound);
            receivers.tasks.push(task);
        }
        Ok(receivers)
    }
}
