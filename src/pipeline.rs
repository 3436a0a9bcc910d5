//! The pipeline, wired in one place.
//!
//! ```text
//! Kafka ─▶ source ─▶ Worker ─▶ SpanPath (decode, assemble, measure, sample, encode) ─▶ records
//!                       │                                                             │
//!                       ├──── SLO counts ─▶ SloExchange (publish, merge, evaluate) ───┤
//!                       │                                                             ▼
//!                       └──── commits ◀──────────── DeliveryLedger (holds, forwards, retries) ─▶ Kafka
//! ```
//! One message from the consumer to the commit: [`crate::source`] polls it and calls
//! [`Worker::message`]; the [`DeliveryLedger`] issues a hold on it; the [`SpanPath`] decodes,
//! counts and buffers it and returns the records to write; the ledger sends them and releases the
//! holds when the broker acknowledges; the source commits what [`Worker::commits`] says.
//!
//! One worker thread owns all of it: no locks or channels per span, and the rebalance callback
//! can decide and flush the revoked partitions' traces synchronously. Scale-out is Kafka's: more
//! partitions, more instances. The HTTP server reads the shared [`SignalStore`], the SLO engine
//! and the registry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::assemble::{DecisionReason, TraceBuffer};
use crate::clock::{Nanos, SharedClock};
use crate::config::Config;
use crate::decode::Decoder;
use crate::delivery::{DeliveryLedger, DeliverySettings, Forwarder, ForwarderError, Topics};
pub use crate::http::Handles;
use crate::investigate::exchange::{Exchange, ExchangeError, Peers};
use crate::investigate::timeline::Timeline;
use crate::investigate::{GroupTimeline, TraceStore};
use crate::kafka_client::{admin_config, consumer_config, owners_config, with_client_properties, ClientLog};
use crate::position::{Commit, Hold};
use crate::sampling::Sampler;
use crate::signals::exposition::SignalCollector;
use crate::signals::{Exclusions, SignalStore};
use crate::slo::engine::SloEngine;
use crate::slo::exchange::SloExchange;
use crate::slo::gauges::SloCollector;
use crate::source::{MessageHandler, Readiness, SourceError, SourceSettings};
use crate::span_path::{Effects, Message, SpanPath, SpanPathSettings};
use crate::telemetry::PipelineMetrics;

/// How long shutdown and revocation wait for the broker to acknowledge records.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle series are evicted and the gauges refreshed.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// How often the summary line is logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// How often SLOs are evaluated (their finest bucket is a minute).
const SLO_EVALUATE_EVERY: Duration = Duration::from_secs(10);

/// Periodic work, on the injected clock.
struct Timers {
    maintenance: Nanos,
    summary: Nanos,
    slo_evaluation: Nanos,
}

/// Drives one instance's span path, SLO exchange and delivery from the consumer loop.
pub struct Worker {
    path: SpanPath,
    delivery: DeliveryLedger,
    /// The SLO side (none without `[[slo]]`).
    slo_exchange: Option<SloExchange>,
    effects: Effects,
    signals: Arc<Mutex<SignalStore>>,
    telemetry: Arc<PipelineMetrics>,
    clock: SharedClock,
    timers: Timers,
}

impl Worker {
    pub fn new(
        path: SpanPath,
        delivery: DeliveryLedger,
        slo_exchange: Option<SloExchange>,
        signals: Arc<Mutex<SignalStore>>,
        telemetry: Arc<PipelineMetrics>,
        clock: SharedClock,
    ) -> Self {
        let now = clock.now();
        Self {
            path,
            delivery,
            slo_exchange,
            effects: Effects::default(),
            signals,
            telemetry,
            clock,
            timers: Timers { maintenance: now, summary: now, slo_evaluation: now },
        }
    }

    /// Sends what the span path produced; hands SLO counts to the exchange.
    fn apply(&mut self, message: Option<&Hold>) {
        if let (Some(exchange), Some(message)) = (self.slo_exchange.as_mut(), message) {
            if !self.effects.slo_counts.is_empty() {
                exchange.count(message, &mut self.effects.slo_counts);
            }
        }
        for record in self.effects.records.drain(..) {
            self.delivery.send(record);
        }
    }

    /// Evaluates the SLOs owned here: alerts, then checkpoints.
    fn evaluate_slos(&mut self, now: Nanos) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.evaluate(now.unix_seconds(), &mut self.delivery);
        }
    }

    /// Publishes the SLO counts gathered (before the offsets they hold can be committed).
    fn publish_slo_counts(&mut self) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.publish(&mut self.delivery);
        }
    }

    fn publish_gauges(&self) {
        self.telemetry.buffered_traces.set(self.path.buffered_traces() as i64);
        self.telemetry.buffered_spans.set(self.path.buffered_spans() as i64);
        self.telemetry.pending_messages.set(self.delivery.pending_messages() as i64);
    }

    fn log_summary(&self) {
        let t = &self.telemetry;
        let received: u64 = ["otlp_proto", "otlp_json", "zipkin_json"]
            .iter()
            .map(|e| t.spans_received.with_label_values(&[e]).get())
            .sum();
        tracing::info!(
            spans_received = received,
            spans_forwarded = t.spans_forwarded.get(),
            traces_forwarded = t.traces_forwarded.get(),
            buffered_traces = self.path.buffered_traces(),
            buffered_spans = self.path.buffered_spans(),
            pending_messages = self.delivery.pending_messages(),
            dead_lettered = t.messages_dead_lettered.get(),
            "summary"
        );
    }
}

impl MessageHandler for Worker {
    fn message(&mut self, topic: &str, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let now = self.clock.now();
        let hold = self.delivery.receive(topic, partition, offset);
        if let Some(exchange) = self.slo_exchange.as_mut().filter(|e| e.is_aggregates(topic)) {
            exchange.merge(&hold, payload);
            return;
        }
        let message = Message { topic, partition, offset, key, payload };
        self.path.message(message, &hold, now, &mut self.effects);
        self.apply(Some(&hold));
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        self.path.expire(now, &mut self.effects);
        self.apply(None);
        self.delivery.settle();
        if self.slo_exchange.as_ref().is_some_and(|e| e.publish_due()) {
            self.publish_slo_counts();
        }
        if now.since(self.timers.maintenance) >= MAINTENANCE_EVERY {
            self.timers.maintenance = now;
            self.publish_gauges();
            self.signals.lock().expect("signal store lock").evict_idle(now);
        }
        if now.since(self.timers.slo_evaluation) >= SLO_EVALUATE_EVERY {
            self.timers.slo_evaluation = now;
            self.evaluate_slos(now);
        }
        if now.since(self.timers.summary) >= SUMMARY_EVERY {
            self.timers.summary = now;
            self.log_summary();
        }
    }

    fn commits(&mut self) -> Vec<Commit> {
        self.delivery.commits(None)
    }

    fn assign(&mut self, partitions: &[(String, i32)]) {
        if let Some(exchange) = &mut self.slo_exchange {
            if let Err(error) = exchange.assign(partitions) {
                tracing::error!(%error, "SLO state not fully restored: evaluating from the newest checkpoint read, if any, and the counts that arrive");
            }
        }
    }

    fn saturated(&self) -> bool {
        self.delivery.saturated()
    }

    fn relieved(&self) -> bool {
        self.delivery.relieved()
    }

    fn waiting_partitions(&self) -> std::collections::BTreeSet<(String, i32)> {
        self.delivery.waiting_partitions()
    }

    /// Traces with their root are decided at once: the root span ends last, so they are complete.
    /// Root-less traces wholly in the revoked partitions are handed over undecided: the commit
    /// stops before their first span, so the next owner assembles them whole and no trace is split
    /// in two by a rebalance (traces that also hold spans of kept partitions are decided too).
    fn revoke(&mut self, partitions: &[(String, i32)], leaving: bool) -> Vec<Commit> {
        let indices: Vec<u32> = partitions.iter().map(|(t, p)| self.delivery.index(t, *p)).collect();
        let revoked = |partition: u32| indices.contains(&partition);
        let now = self.clock.now();
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.revoke(partitions, now.unix_seconds(), &mut self.delivery);
        }
        let reason = if leaving { DecisionReason::Shutdown } else { DecisionReason::Rebalance };
        self.path.drain(
            reason,
            |sources, root_present| {
                sources.iter().any(|h| revoked(h.source().partition))
                    && (root_present || !sources.iter().all(|h| revoked(h.source().partition)))
            },
            now,
            &mut self.effects,
        );
        self.apply(None);
        // Held until the revoked partitions are committed: the commit stops before them.
        let handed_over = self.path.hand_over(|source| revoked(source.partition), now);
        self.delivery.flush(FLUSH_TIMEOUT);
        let commits = self.delivery.commits(Some(&indices));
        drop(handed_over);
        self.delivery.forget(&indices);
        if let Some(exchange) = &mut self.slo_exchange {
            for &index in &indices {
                exchange.forget(index);
            }
        }
        self.publish_gauges();
        commits
    }

    fn shutdown(&mut self) -> Vec<Commit> {
        let now = self.clock.now();
        self.path.drain(DecisionReason::Shutdown, |_, _| true, now, &mut self.effects);
        self.apply(None);
        self.publish_slo_counts();
        self.delivery.flush(FLUSH_TIMEOUT);
        self.publish_gauges();
        self.delivery.commits(None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Forwarder(#[from] ForwarderError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// A started pipeline.
pub struct Pipeline {
    pub handles: Handles,
    shutdown: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), SourceError>>>,
    /// The snapshot exchange (group-wide views); ends with the worker.
    exchange: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Asks the worker to stop and waits: buffered traces decided, forwards flushed, offsets committed.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.shutdown.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the worker to end (it ends early only on a fatal error).
    pub fn join(&mut self) -> Result<(), PipelineError> {
        let result = match self.worker.take() {
            Some(worker) => worker.join().unwrap_or_else(|_| Ok(())),
            None => Ok(()),
        };
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(exchange) = self.exchange.take() {
            let _ = exchange.join();
        }
        Ok(result?)
    }

    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }
}

/// The span path's settings, parsed once from the configuration.
fn span_path_settings(config: &Config, slos: &SloEngine) -> SpanPathSettings {
    SpanPathSettings {
        decoder: Decoder::new(config.kafka.encoding),
        buffer: TraceBuffer::new(config.window.limits()),
        sampler: Sampler::new(&config.sampling),
        exclusions: Exclusions::new(&config.metrics.exclude),
        slo_counter: (!slos.is_empty()).then(|| slos.counter()),
        max_message_bytes: config.kafka.message_max_bytes(),
        repartition_from: if config.kafka.input_keyed_by_trace {
            Vec::new()
        } else {
            config.kafka.input_topics.clone()
        },
    }
}

/// Builds the signal store and registry, then starts the worker thread.
pub fn start(config: &Config, clock: SharedClock) -> Result<Pipeline, PipelineError> {
    let telemetry = Arc::new(PipelineMetrics::new());
    let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
    telemetry
        .registry
        .register(Box::new(SignalCollector::new(signals.clone(), clock.clone())))
        .expect("signal families are unique");
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", crate::delivery::QUEUE_MAX_MESSAGES.to_string())
        .set("queue.buffering.max.kbytes", crate::delivery::QUEUE_MAX_KBYTES.to_string());
    let producer = with_client_properties(producer, &config.kafka, false);
    let repartition_topic = config.kafka.repartition_topic();
    let k = &config.kafka;
    let topics = Topics {
        output: k.output_topic.clone(),
        dead_letter: k.dead_letter_topic.clone(),
        repartition: repartition_topic.clone(),
        alerts: k.alerts_topic.clone(),
        aggregates: k.aggregates_topic.clone(),
        slo_state: k.slo_state_topic.clone(),
    };
    let client_log = ClientLog::new(&config.kafka.brokers);
    let forwarder = Forwarder::new(&producer, topics.clone(), client_log.clone())?;
    let delivery_settings = DeliverySettings::from_producer(&producer);
    let delivery = DeliveryLedger::new(forwarder, topics, delivery_settings, telemetry.clone(), clock.clone());
    let slos = Arc::new(Mutex::new(SloEngine::new(&config.slo)));
    telemetry
        .registry
        .register(Box::new(SloCollector::new(slos.clone(), clock.clone())))
        .expect("SLO families are unique");
    let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
    let timeline = Arc::new(GroupTimeline::new(
        Timeline::new(config.investigation.history.0, config.metrics.window.0, config.metrics.max_series),
        signals.lock().expect("signal store lock").dimensions().clone(),
    ));
    let path = SpanPath::new(
        span_path_settings(config, &slos.lock().expect("slo engine lock")),
        signals.clone(),
        traces.clone(),
        telemetry.clone(),
    );
    let slo_exchange = (!config.slo.is_empty()).then(|| {
        SloExchange::new(
            slos.clone(),
            &config.kafka.aggregates_topic,
            &config.kafka.slo_state_topic,
            with_client_properties(
                ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).clone(),
                &config.kafka,
                true,
            ),
            telemetry.clone(),
        )
    });
    let worker = Arc::new(Mutex::new(Worker::new(
        path,
        delivery,
        slo_exchange,
        signals.clone(),
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
        client: consumer_config(&config.kafka),
        owners_client: owners_config(&config.kafka),
        brokers: config.kafka.brokers.clone(),
        topics,
        owner_topics,
        required_topics,
        commit_interval: config.kafka.commit_interval.0,
        admin: admin_config(&config.kafka),
        client_log: client_log.clone(),
        clock: clock.clone(),
        compacted_topics,
        output_topics: vec![
            config.kafka.output_topic.clone(),
            config.kafka.dead_letter_topic.clone(),
            config.kafka.alerts_topic.clone(),
        ],
    };
    let thread = {
        let (telemetry, ready, shutdown) = (telemetry.clone(), ready.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("tracewarden-pipeline".into())
            .spawn(move || crate::source::run(settings, worker, telemetry, ready, shutdown))?
    };
    let peers = Arc::new(Peers::new());
    let exchange = Exchange {
        topic: config.kafka.snapshots_topic.clone(),
        client: with_client_properties(
            ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).clone(),
            &config.kafka,
            false,
        ),
        admin: admin_config(&config.kafka),
        history: config.investigation.history.0,
        signals: signals.clone(),
        timeline: timeline.clone(),
        traces: traces.clone(),
        slos: slos.clone(),
        peers: peers.clone(),
        clock: clock.clone(),
    }
    .start(shutdown.clone())?;
    Ok(Pipeline {
        handles: Handles { signals, slos, traces, timeline, peers, telemetry, ready, clock },
        shutdown,
        worker: Some(thread),
        exchange: Some(exchange),
    })
}
