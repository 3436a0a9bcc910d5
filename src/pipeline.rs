//! The pipeline, wired in one place.
//!
//! ```text
//! Kafka ─▶ source ─▶ decode ─▶ assemble ─▶ signals ─▶ sampling ─▶ sink ─▶ Kafka
//!                       │ (undecodable)                                   ▲
//!                       └────────────────────── dead letter ──────────────┘
//! ```
//! One worker thread owns the span path ([`Stage`]): the consumer polls a message, the stage
//! decodes it, buffers its spans, and — for every trace the window releases — records its metrics
//! (all spans, before any decision), asks the sampler, and forwards or drops it. Offsets are
//! released only when a trace is decided and, if kept, acknowledged by the broker. Keeping the
//! span path on one thread means no locks or channels per span, and lets a rebalance callback
//! decide and flush the revoked partitions' traces synchronously. Scale-out is Kafka's: more
//! partitions, more instances. The HTTP server reads the shared [`SignalStore`] and registry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;

use crate::assemble::{DecisionReason, ReadyTrace, SourceRef, TraceBuffer};
use crate::clock::{Nanos, SharedClock};
use crate::config::Config;
use crate::decode::Decoder;
use crate::model::{trace_id_hex, Span};
use crate::sampling::Sampler;
use crate::signals::exposition::SignalCollector;
use crate::signals::SignalStore;
use crate::sink::encode::{encode_spans, encode_trace};
use crate::sink::{classify, Completion, Delivery, Destination, ErrorClass, Forwarder, SinkError, SinkTopics};
use crate::slo::engine::SloEngine;
use crate::slo::exchange::SloExchange;
use crate::slo::gauges::SloCollector;
use crate::source::offsets::OffsetTracker;
use crate::source::{Commit, MessageHandler, Readiness, SourceError, SourceSettings};
use crate::telemetry::PipelineMetrics;

/// How long shutdown and revocation wait for the broker to acknowledge forwards.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle series are evicted and the summary line considered.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// How often SLOs are evaluated (their finest bucket is a minute).
const SLO_EVALUATE_EVERY: Duration = Duration::from_secs(10);
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The span path of one instance.
pub struct Stage {
    decoder: Decoder,
    buffer: TraceBuffer,
    sampler: Sampler,
    offsets: OffsetTracker,
    forwarder: Forwarder,
    signals: Arc<Mutex<SignalStore>>,
    /// The SLO side (none without `[[slo]]`).
    slo_exchange: Option<SloExchange>,
    telemetry: Arc<PipelineMetrics>,
    clock: SharedClock,
    spans: Vec<Span>,
    ready: Vec<ReadyTrace>,
    completions: Vec<Completion>,
    last_maintenance: Nanos,
    last_summary: Nanos,
    last_slo_evaluation: Nanos,
    last_reject_log: Option<Nanos>,
    /// The producer's `message.max.bytes`: larger traces are forwarded in several records.
    max_message_bytes: usize,
    /// Input topics whose messages are re-keyed by trace id first (input not keyed by trace).
    repartition_from: Vec<String>,
}

impl Stage {
    pub fn new(
        config: &Config,
        forwarder: Forwarder,
        signals: Arc<Mutex<SignalStore>>,
        slos: Arc<Mutex<SloEngine>>,
        telemetry: Arc<PipelineMetrics>,
        clock: SharedClock,
    ) -> Self {
        let now = clock.now();
        Self {
            decoder: Decoder::new(config.kafka.encoding),
            buffer: TraceBuffer::new(config.window.limits()),
            sampler: Sampler::new(&config.sampling),
            offsets: OffsetTracker::new(),
            forwarder,
            signals,
            slo_exchange: (!config.slo.is_empty()).then(|| {
                SloExchange::new(
                    slos.clone(),
                    &config.kafka.aggregates_topic,
                    &config.kafka.slo_state_topic,
                    with_client_properties(
                        ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).clone(),
                        config,
                        true,
                    ),
                    telemetry.clone(),
                )
            }),
            telemetry,
            clock,
            spans: Vec::new(),
            ready: Vec::new(),
            completions: Vec::new(),
            last_maintenance: now,
            last_summary: now,
            last_slo_evaluation: now,
            last_reject_log: None,
            max_message_bytes: config
                .kafka
                .client
                .get("message.max.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES),
            repartition_from: if config.kafka.input_keyed_by_trace {
                Vec::new()
            } else {
                config.kafka.input_topics.clone()
            },
        }
    }

    /// One input message.
    pub fn handle(&mut self, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let now = self.clock.now();
        let source = SourceRef { partition: self.offsets.index(topic, partition), offset };
        self.offsets.begin(source);
        if let Some(exchange) = self.slo_exchange.as_mut().filter(|e| e.is_aggregates(topic)) {
            exchange.merge(source, payload, &mut self.offsets);
            self.offsets.release(source);
            return;
        }
        let payload = Bytes::copy_from_slice(payload);
        let repartition = self.repartition_from.iter().any(|t| t == topic);
        match self.decoder.decode_at(&payload, &mut self.spans, now) {
            Ok(stats) if repartition => {
                self.count_rejected(&stats);
                self.repartition(source);
            }
            Ok(stats) => {
                self.count_rejected(&stats);
                let t = &self.telemetry;
                if let Some(encoding) = stats.encoding {
                    t.spans_received.with_label_values(&[encoding.as_str()]).inc_by(stats.accepted as u64);
                }
                if let Some(exchange) = &mut self.slo_exchange {
                    exchange.count(source, &self.spans, &mut self.offsets);
                }
                let references = self.buffer.insert(&mut self.spans, source, now, &mut self.ready);
                self.offsets.acquire(source, references);
                self.offsets.release(source);
                self.process_ready(now);
            }
            Err(error) => {
                self.telemetry.messages_rejected.with_label_values(&[error.reason()]).inc();
                if self.last_reject_log.is_none_or(|t| now.since(t) > Duration::from_secs(10)) {
                    tracing::warn!(%topic, partition, offset, %error, "undecodable message sent to the dead-letter topic");
                    self.last_reject_log = Some(now);
                }
                let delivery = Delivery {
                    destination: Destination::DeadLetter,
                    partition: None,
                    key: key.map(Bytes::copy_from_slice).unwrap_or_default(),
                    payload,
                    dead_letter: Some((error.to_string(), format!("{topic}/{partition}/{offset}"))),
                    sources: vec![source],
                    spans: 0,
                    attempts: 1,
                };
                self.forwarder.send(Box::new(delivery), &mut self.completions);
            }
        }
    }

    /// Evaluates the SLOs owned here: alerts, then checkpoints.
    fn evaluate_slos(&mut self, now: Nanos) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.evaluate(now.unix_seconds(), &mut self.forwarder, &mut self.completions);
            self.settle();
        }
    }

    /// Publishes the SLO counts gathered (before the offsets they hold can be committed).
    fn publish_slo_counts(&mut self) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.publish(&mut self.offsets, &mut self.forwarder, &mut self.completions);
            self.settle();
        }
    }

    fn count_rejected(&self, stats: &crate::decode::DecodeStats) {
        let t = &self.telemetry;
        if stats.invalid_id > 0 {
            t.spans_rejected.with_label_values(&["invalid_id"]).inc_by(stats.invalid_id as u64);
        }
        if stats.invalid_time > 0 {
            t.spans_rejected.with_label_values(&["invalid_time"]).inc_by(stats.invalid_time as u64);
        }
    }

    /// Re-keys the decoded spans of an input message by trace id (kafka.md "Scale-out"): one
    /// record per trace to the repartition topic, in the arrival encoding. The message's offset is
    /// released when every record is acknowledged.
    fn repartition(&mut self, source: SourceRef) {
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_unstable_by_key(|s| s.trace_id);
        for trace in spans.chunk_by(|a, b| a.trace_id == b.trace_id) {
            let key = Bytes::from(trace_id_hex(&trace[0].trace_id));
            for part in encode_spans(trace, None, self.max_message_bytes) {
                self.offsets.acquire(source, 1);
                self.telemetry.spans_repartitioned.inc_by(part.spans as u64);
                let delivery = Delivery {
                    destination: Destination::Repartition,
                    partition: None,
                    key: key.clone(),
                    payload: part.payload,
                    dead_letter: None,
                    sources: vec![source],
                    spans: part.spans,
                    attempts: 1,
                };
                self.forwarder.send(Box::new(delivery), &mut self.completions);
            }
        }
        spans.clear();
        self.spans = spans;
        self.offsets.release(source);
        self.settle();
    }

    /// Metrics for every released trace (one lock for the batch), then decisions and forwards.
    fn process_ready(&mut self, now: Nanos) {
        if self.ready.is_empty() {
            return;
        }
        {
            let mut store = self.signals.lock().expect("signal store lock");
            for trace in &self.ready {
                store.record_trace(&trace.spans, now);
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        for trace in ready.drain(..) {
            let decision = match &trace.prior {
                Some(prior) => {
                    self.telemetry.late_spans.with_label_values(&[prior.label()]).inc_by(trace.spans.len() as u64);
                    prior.clone()
                }
                None => {
                    let decision = self.sampler.decide(&trace, now);
                    self.buffer.remember(trace.trace_id, &decision);
                    self.telemetry.traces_closed.with_label_values(&[trace.reason.as_str()]).inc();
                    self.telemetry.traces_decided.with_label_values(&[decision.label(), &decision.rule]).inc();
                    decision
                }
            };
            if !decision.keep {
                for source in &trace.sources {
                    self.offsets.release(*source);
                }
                continue;
            }
            let payloads = encode_trace(&trace.spans, &decision, self.max_message_bytes);
            // Each payload holds its own reference on every source of the trace.
            for source in &trace.sources {
                self.offsets.acquire(*source, payloads.len().saturating_sub(1));
            }
            let key = Bytes::from(trace_id_hex(&trace.trace_id));
            for part in payloads {
                let delivery = Delivery {
                    destination: Destination::Output,
                    partition: None,
                    key: key.clone(),
                    payload: part.payload,
                    dead_letter: None,
                    sources: trace.sources.clone(),
                    spans: part.spans,
                    attempts: 1,
                };
                self.forwarder.send(Box::new(delivery), &mut self.completions);
            }
        }
        self.ready = ready;
        self.settle();
    }

    /// Applies delivery reports: release offsets, resend retriable failures.
    fn settle(&mut self) {
        while !self.completions.is_empty() {
            let completions = std::mem::take(&mut self.completions);
            for completion in completions {
                match completion {
                    Completion::Delivered(delivery) => {
                        match delivery.destination {
                            Destination::Output => {
                                self.telemetry.spans_forwarded.inc_by(delivery.spans as u64);
                                self.telemetry.traces_forwarded.inc();
                            }
                            Destination::DeadLetter => self.telemetry.messages_dead_lettered.inc(),
                            Destination::Aggregates => self.published(&delivery),
                            Destination::Repartition | Destination::Alerts | Destination::SloState => {}
                        }
                        for source in &delivery.sources {
                            self.offsets.release(*source);
                        }
                    }
                    Completion::Failed(mut delivery, error) => match classify(&error) {
                        ErrorClass::Retriable => {
                            if delivery.attempts % 10 == 1 {
                                tracing::warn!(%error, attempts = delivery.attempts, destination = ?delivery.destination, "produce failed, retrying");
                            }
                            delivery.attempts += 1;
                            self.telemetry.forward_retries.inc();
                            self.forwarder.send(delivery, &mut self.completions);
                        }
                        ErrorClass::Permanent => {
                            let destination = delivery.destination.as_str();
                            if delivery.destination == Destination::Aggregates {
                                self.published(&delivery);
                            }
                            tracing::error!(%error, destination, key = %String::from_utf8_lossy(&delivery.key), bytes = delivery.payload.len(), "record abandoned: the broker will never accept it");
                            self.telemetry.forward_failures.with_label_values(&[destination]).inc();
                            for source in &delivery.sources {
                                self.offsets.release(*source);
                            }
                        }
                    },
                }
            }
        }
    }

    fn published(&mut self, delivery: &Delivery) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.published(&delivery.sources);
        }
    }

    fn flush(&mut self) {
        let deadline = std::time::Instant::now() + FLUSH_TIMEOUT;
        while self.forwarder.in_flight() > 0 && std::time::Instant::now() < deadline {
            self.forwarder.flush(Duration::from_millis(500), &mut self.completions);
            self.settle();
        }
        if self.forwarder.in_flight() > 0 {
            tracing::error!(
                in_flight = self.forwarder.in_flight(),
                "forwards not acknowledged in time; their offsets stay uncommitted"
            );
        }
    }

    fn commits_for(&mut self, only: Option<&[u32]>) -> Vec<Commit> {
        let due = self.offsets.due(only);
        due.into_iter()
            .map(|(index, offset)| {
                self.offsets.mark_committed(index, offset);
                let (topic, partition) = self.offsets.topic_partition(index);
                (topic.to_string(), partition, offset)
            })
            .collect()
    }

    fn publish_gauges(&self) {
        self.telemetry.buffered_traces.set(self.buffer.buffered_traces() as i64);
        self.telemetry.buffered_spans.set(self.buffer.buffered_spans() as i64);
        self.telemetry.pending_messages.set(self.offsets.total_pending() as i64);
    }
}

impl MessageHandler for Stage {
    fn message(&mut self, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        self.handle(topic, partition, offset, key, payload);
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        self.buffer.expire(now, &mut self.ready);
        self.process_ready(now);
        self.forwarder.poll(Duration::ZERO, &mut self.completions);
        self.settle();
        if self.slo_exchange.as_ref().is_some_and(|e| e.publish_due()) {
            self.publish_slo_counts();
        }
        if now.since(self.last_maintenance) >= MAINTENANCE_EVERY {
            self.last_maintenance = now;
            self.publish_gauges();
            self.signals.lock().expect("signal store lock").evict_idle(now);
        }
        if now.since(self.last_slo_evaluation) >= SLO_EVALUATE_EVERY {
            self.last_slo_evaluation = now;
            self.evaluate_slos(now);
        }
        if now.since(self.last_summary) >= SUMMARY_EVERY {
            self.last_summary = now;
            let t = &self.telemetry;
            let received: u64 = ["otlp_proto", "otlp_json", "zipkin_json"]
                .iter()
                .map(|e| t.spans_received.with_label_values(&[e]).get())
                .sum();
            tracing::info!(
                spans_received = received,
                spans_forwarded = t.spans_forwarded.get(),
                traces_forwarded = t.traces_forwarded.get(),
                buffered_traces = self.buffer.buffered_traces(),
                buffered_spans = self.buffer.buffered_spans(),
                pending_messages = self.offsets.total_pending(),
                dead_lettered = t.messages_dead_lettered.get(),
                "summary"
            );
        }
    }

    fn commits(&mut self) -> Vec<Commit> {
        self.commits_for(None)
    }

    fn assign(&mut self, partitions: &[(String, i32)]) {
        if let Some(exchange) = &mut self.slo_exchange {
            if let Err(error) = exchange.assign(partitions) {
                tracing::error!(%error, "SLO state not fully restored: evaluating from the newest checkpoint read, if any, and the counts that arrive");
            }
        }
    }

    fn saturated(&self) -> bool {
        self.forwarder.saturated()
    }

    fn relieved(&self) -> bool {
        self.forwarder.relieved()
    }

    /// Traces with their root are decided at once: the root span ends last, so they are complete.
    /// Root-less traces wholly in the revoked partitions are handed over undecided: the commit
    /// stops before their first span, so the next owner assembles them whole and no trace is split
    /// in two by a rebalance (traces that also hold spans of kept partitions are decided too).
    fn revoke(&mut self, partitions: &[(String, i32)], leaving: bool) -> Vec<Commit> {
        let indices: Vec<u32> = partitions.iter().map(|(t, p)| self.offsets.index(t, *p)).collect();
        let revoked = |s: &SourceRef| indices.contains(&s.partition);
        let now = self.clock.now();
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.revoke(
                partitions,
                now.unix_seconds(),
                &mut self.offsets,
                &mut self.forwarder,
                &mut self.completions,
            );
        }
        let reason = if leaving { DecisionReason::Shutdown } else { DecisionReason::Rebalance };
        self.buffer.drain(
            reason,
            |sources, root_present| sources.iter().any(revoked) && (root_present || !sources.iter().all(revoked)),
            &mut self.ready,
        );
        self.process_ready(now);
        let handed_over = self.buffer.hand_over(revoked);
        self.telemetry.traces_handed_over.inc_by(handed_over as u64);
        self.flush();
        let commits = self.commits_for(Some(&indices));
        for index in indices {
            self.offsets.forget(index);
            if let Some(exchange) = &mut self.slo_exchange {
                exchange.forget(index);
            }
        }
        self.publish_gauges();
        commits
    }

    fn shutdown(&mut self) -> Vec<Commit> {
        let now = self.clock.now();
        self.buffer.drain(DecisionReason::Shutdown, |_, _| true, &mut self.ready);
        self.process_ready(now);
        self.publish_slo_counts();
        self.flush();
        self.publish_gauges();
        self.commits_for(None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the HTTP server and the caller see of a running pipeline.
#[derive(Clone)]
pub struct Handles {
    pub signals: Arc<Mutex<SignalStore>>,
    pub slos: Arc<Mutex<SloEngine>>,
    pub telemetry: Arc<PipelineMetrics>,
    pub ready: Arc<Readiness>,
    pub clock: SharedClock,
}

/// A started pipeline.
pub struct Pipeline {
    pub handles: Handles,
    shutdown: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), SourceError>>>,
}

impl Pipeline {
    /// Asks the worker to stop and waits: buffered traces decided, forwards flushed, offsets committed.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.shutdown.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the worker to end (it ends early only on a fatal error).
    pub fn join(&mut self) -> Result<(), PipelineError> {
        if let Some(worker) = self.worker.take() {
            worker.join().unwrap_or_else(|_| Ok(()))?;
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
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
fn with_client_properties(mut client: ClientConfig, config: &Config, consumer: bool) -> ClientConfig {
    let properties = config.kafka.client.iter();
    for (key, value) in properties.filter(|(k, _)| if consumer { !producer_only(k) } else { !consumer_only(k) }) {
        client.set(key, value);
    }
    client
}

/// The librdkafka properties of the admin client.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.brokers);
    with_client_properties(client, config, false)
}

fn consumer_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        // Prefetch at most 32 MiB (librdkafka's default is 64 MiB per consumer).
        .set("queued.max.messages.kbytes", "32768")
        .set("partition.assignment.strategy", "cooperative-sticky");
    with_client_properties(client, config, true)
}

/// Builds the signal store and registry, then starts the worker thread.
pub fn start(config: &Config, clock: SharedClock) -> Result<Pipeline, PipelineError> {
    let telemetry = Arc::new(PipelineMetrics::new());
    let signals = Arc::new(Mutex::new(SignalStore::new(config.metrics.settings())));
    telemetry
        .registry
        .register(Box::new(SignalCollector::new(signals.clone(), clock.clone())))
        .expect("signal families are unique");
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", crate::sink::QUEUE_MAX_MESSAGES.to_string())
        .set("queue.buffering.max.kbytes", crate::sink::QUEUE_MAX_KBYTES.to_string());
    let producer = with_client_properties(producer, config, false);
    let repartition_topic = config.kafka.repartition_topic();
    let k = &config.kafka;
    let topics = SinkTopics {
        output: k.output_topic.clone(),
        dead_letter: k.dead_letter_topic.clone(),
        repartition: repartition_topic.clone(),
        alerts: k.alerts_topic.clone(),
        aggregates: k.aggregates_topic.clone(),
        slo_state: k.slo_state_topic.clone(),
    };
    let forwarder = Forwarder::new(&producer, topics)?;
    let slos = Arc::new(Mutex::new(SloEngine::new(&config.slo, &config.metrics.exclude)));
    telemetry
        .registry
        .register(Box::new(SloCollector::new(slos.clone(), clock.clone())))
        .expect("SLO families are unique");
    let stage = Arc::new(Mutex::new(Stage::new(
        config,
        forwarder,
        signals.clone(),
        slos.clone(),
        telemetry.clone(),
        clock.clone(),
    )));
    let ready = Arc::new(Readiness::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut topics = config.kafka.input_topics.clone();
    let mut required_topics = Vec::new();
    if !config.kafka.input_keyed_by_trace {
        topics.push(repartition_topic.clone());
        required_topics.push(repartition_topic);
    }
    let (mut compacted_topics, mut owner_topics) = (Vec::new(), Vec::new());
    if !config.slo.is_empty() {
        owner_topics.push(config.kafka.aggregates_topic.clone());
        required_topics.push(config.kafka.aggregates_topic.clone());
        compacted_topics.push(config.kafka.slo_state_topic.clone());
    }
    let settings = SourceSettings {
        client: consumer_config(config),
        brokers: config.kafka.brokers.clone(),
        topics,
        owner_topics,
        required_topics,
        commit_interval: config.kafka.commit_interval.0,
        admin: client_config(config),
        compacted_topics,
        output_topics: vec![
            config.kafka.output_topic.clone(),
            config.kafka.dead_letter_topic.clone(),
            config.kafka.alerts_topic.clone(),
        ],
    };
    let worker = {
        let (telemetry, ready, shutdown) = (telemetry.clone(), ready.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("tracewarden-pipeline".into())
            .spawn(move || crate::source::run(settings, stage, telemetry, ready, shutdown))?
    };
    Ok(Pipeline { handles: Handles { signals, slos, telemetry, ready, clock }, shutdown, worker: Some(worker) })
}
