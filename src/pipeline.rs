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
//! `workers` threads (default: one per core) each own a consumer, a span path (its own window)
//! and a delivery ledger (its own producer): no locks or channels per span, and the rebalance
//! callback decides and flushes the revoked partitions' traces synchronously. Each worker is a
//! member of the consumer group with its own share of the partitions, so kafka.md's guarantees
//! hold per worker exactly as per instance. The workers share the [`SignalStore`], the trace
//! index, the sampler (rates are per process), the SLO engine and the registry, each taken once
//! per batch of released traces; worker 0 also runs the SLO owners' member, evaluates the SLOs
//! owned here and does the periodic upkeep. Scale-out beyond one process is Kafka's: more
//! partitions, more instances. The HTTP server reads the shared stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::assemble::{DecisionReason, TraceBuffer};
use crate::clock::{Nanos, SharedClock};
use crate::config::Config;
use crate::delivery::{
    DeliveryLedger, DeliverySettings, Forwarder, ForwarderError, Topics, TransactionError, TransactionGroups,
};
use crate::format::{Decoder, InputEncoding};
pub use crate::http::Handles;
use crate::investigate::group::forward::PeerClient;
use crate::investigate::group::gauges::GroupQuantileCollector;
use crate::investigate::group::member::{GroupMember, GroupMemberError, GroupMemberSettings};
use crate::investigate::group::publish::PointsPublisher;
use crate::investigate::group::GroupView;
use crate::investigate::timeline::Timeline;
use crate::investigate::versions::VersionColumns;
use crate::investigate::{OwnedTimeline, TraceStore};
use crate::kafka_client::{
    admin_config, consumer_config, owners_config, with_client_properties, with_instance_id, KafkaSession,
};
use crate::position::{Commit, Hold};
use crate::sampling::Sampler;
use crate::signals::exposition::SignalCollector;
use crate::signals::{Exclusions, Lane, SignalStore};
use crate::slo::engine::SloEngine;
use crate::slo::exchange::SloExchange;
use crate::slo::gauges::SloCollector;
use crate::source::LeaveTogether;
use crate::source::{MessageHandler, Readiness, SourceError, SourceSettings, TopicsPrepared};
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

/// The gauges one worker last added to the process's totals.
#[derive(Default)]
struct PublishedGauges {
    buffered_traces: i64,
    buffered_spans: i64,
    buffered_bytes: i64,
    pending_messages: i64,
}

/// Drives one worker's span path, SLO exchange and delivery from its consumer loop.
pub struct Worker {
    /// Which worker of the process this is: worker 0 also evaluates the SLOs this instance
    /// owns, evicts idle series and logs the summary.
    index: usize,
    path: SpanPath,
    delivery: DeliveryLedger,
    /// The SLO side (none without `[[slo]]`).
    slo_exchange: Option<SloExchange>,
    /// Publishes the points of the traces this worker released to their owners (every
    /// [`crate::investigate::group::publish::PUBLISH_EVERY`], and before its offsets are committed
    /// on revocation and shutdown).
    points: PointsPublisher,
    effects: Effects,
    signals: Arc<Mutex<SignalStore>>,
    telemetry: Arc<PipelineMetrics>,
    clock: SharedClock,
    timers: Timers,
    published: PublishedGauges,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        path: SpanPath,
        delivery: DeliveryLedger,
        slo_exchange: Option<SloExchange>,
        points: PointsPublisher,
        signals: Arc<Mutex<SignalStore>>,
        telemetry: Arc<PipelineMetrics>,
        clock: SharedClock,
    ) -> Self {
        let now = clock.now();
        Self {
            index,
            path,
            delivery,
            slo_exchange,
            points,
            effects: Effects::default(),
            signals,
            telemetry,
            clock,
            timers: Timers { maintenance: now, summary: now, slo_evaluation: now },
            published: PublishedGauges::default(),
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

    /// Publishes the points measured since the last time (before the offsets they hold can be
    /// committed).
    fn publish_points(&mut self) {
        for record in self.points.records() {
            self.delivery.send(record);
        }
    }

    /// Publishes the SLO counts gathered (before the offsets they hold can be committed).
    fn publish_slo_counts(&mut self) {
        if let Some(exchange) = &mut self.slo_exchange {
            exchange.publish(&mut self.delivery);
        }
    }

    /// Adds this worker's change since its last call to the process's gauges.
    fn publish_gauges(&mut self) {
        let t = &self.telemetry;
        let p = &mut self.published;
        let now = [
            self.path.buffered_traces(),
            self.path.buffered_spans(),
            self.path.buffered_bytes(),
            self.delivery.pending_messages(),
        ];
        for (gauge, last, now) in [
            (&t.buffered_traces, &mut p.buffered_traces, now[0]),
            (&t.buffered_spans, &mut p.buffered_spans, now[1]),
            (&t.buffered_bytes, &mut p.buffered_bytes, now[2]),
            (&t.pending_messages, &mut p.pending_messages, now[3]),
        ] {
            gauge.add(now as i64 - *last);
            *last = now as i64;
        }
    }

    fn log_summary(&self) {
        let t = &self.telemetry;
        tracing::info!(
            spans_received = t.spans_received_total(),
            spans_forwarded = t.spans_forwarded.get(),
            traces_forwarded = t.traces_forwarded.get(),
            buffered_traces = t.buffered_traces.get(),
            buffered_spans = t.buffered_spans.get(),
            pending_messages = t.pending_messages.get(),
            dead_lettered = t.messages_dead_lettered.get(),
            "summary"
        );
    }
}

impl MessageHandler for Worker {
    fn message(&mut self, message: Message<'_>) {
        let now = self.clock.now();
        let hold = self.delivery.receive(message.topic, message.partition, message.offset);
        if let Some(exchange) = self.slo_exchange.as_mut().filter(|e| e.is_aggregates(message.topic)) {
            exchange.merge(&hold, message.payload);
            return;
        }
        self.path.message(message, &hold, now, &mut self.effects);
        self.apply(Some(&hold));
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        self.path.expire(now, &mut self.effects);
        self.apply(None);
        self.delivery.serve_answers();
        if self.slo_exchange.as_ref().is_some_and(|e| e.publish_due()) {
            self.publish_slo_counts();
        }
        if self.points.due() {
            self.publish_points();
        }
        if now.since(self.timers.maintenance) >= MAINTENANCE_EVERY {
            self.timers.maintenance = now;
            self.publish_gauges();
            if self.index == 0 {
                self.signals.lock().expect("signal store lock").evict_idle(now);
            }
        }
        if self.index == 0 && now.since(self.timers.slo_evaluation) >= SLO_EVALUATE_EVERY {
            self.timers.slo_evaluation = now;
            self.evaluate_slos(now);
        }
        if self.index == 0 && now.since(self.timers.summary) >= SUMMARY_EVERY {
            self.timers.summary = now;
            self.log_summary();
        }
    }

    fn commits(&mut self, groups: &TransactionGroups<'_>) -> Vec<Commit> {
        if self.delivery.is_exactly_once() {
            if let Err(error) = self.delivery.transact(groups) {
                exit_if_fatal(&error);
            }
            return Vec::new();
        }
        self.delivery.commits(None)
    }

    fn commit_refused(&mut self, refused: &[Commit]) {
        self.delivery.commit_refused(refused);
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
    fn revoke(&mut self, partitions: &[(String, i32)], leaving: bool, groups: &TransactionGroups<'_>) -> Vec<Commit> {
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
        self.publish_points();
        // Held until the revoked partitions are committed: the commit stops before them.
        let handed_over = self.path.hand_over(|source| revoked(source.partition), now);
        let commits = self.flush_for_commit(groups, Some(&indices));
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

    fn shutdown(&mut self, groups: &TransactionGroups<'_>) -> Vec<Commit> {
        let now = self.clock.now();
        self.path.drain(DecisionReason::Shutdown, |_, _| true, now, &mut self.effects);
        self.apply(None);
        self.publish_slo_counts();
        self.publish_points();
        let commits = self.flush_for_commit(groups, None);
        self.publish_gauges();
        commits
    }
}

impl Worker {
    /// Writes every record out and returns the positions to commit (of `only` when given);
    /// exactly-once, commits them in transactions and returns none.
    fn flush_for_commit(&mut self, groups: &TransactionGroups<'_>, only: Option<&[u32]>) -> Vec<Commit> {
        if self.delivery.is_exactly_once() {
            self.delivery.flush_transactions(groups, FLUSH_TIMEOUT);
            return Vec::new();
        }
        self.delivery.flush(FLUSH_TIMEOUT);
        self.delivery.commits(only)
    }
}

/// A transactional producer that cannot go on (fenced by another instance with its
/// `transactional.id`) ends the process: its records and offsets are uncommitted, and a restart
/// — or the group's next owner — reads them again from the committed offsets.
fn exit_if_fatal(error: &TransactionError) {
    if error.fatal {
        tracing::error!(%error, "the transactional producer cannot go on (another instance may use the same kafka.transactional_id): exiting; a restart resumes from the committed offsets");
        std::process::exit(70);
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
    GroupView(#[from] GroupMemberError),
    #[error("cannot make the OAUTHBEARER token source: {0}")]
    Tokens(#[from] crate::kafka_client::oauth::TokenError),
}

/// A started pipeline.
pub struct Pipeline {
    pub handles: Handles,
    /// What the process's Kafka clients share (logs, OAUTHBEARER tokens): the receivers' producer
    /// joins it.
    pub kafka_session: Arc<KafkaSession>,
    shutdown: Arc<AtomicBool>,
    /// The worker threads, each a member of the consumer group.
    workers: Vec<JoinHandle<()>>,
    /// Each worker's result, as it ends.
    ended: Receiver<Result<(), SourceError>>,
    /// The group view's member (group-wide views); ends with the workers.
    group_member: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Asks the workers to stop and waits: buffered traces decided, forwards flushed, offsets
    /// committed.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.shutdown.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the workers to end. A worker ends early only on a fatal error: the others are
    /// then stopped too, and the first error is returned.
    pub fn join(&mut self) -> Result<(), PipelineError> {
        let mut result = Ok(());
        for _ in 0..self.workers.len() {
            // A worker that panicked sends nothing: its sender is dropped with it.
            let ended = self.ended.recv().unwrap_or(Ok(()));
            self.shutdown.store(true, Ordering::SeqCst);
            if result.is_ok() {
                result = ended;
            }
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(member) = self.group_member.take() {
            let _ = member.join();
        }
        Ok(result?)
    }

    /// Whether a worker has ended (after a fatal error, or once stopped).
    pub fn is_finished(&self) -> bool {
        self.workers.is_empty() || self.workers.iter().any(|w| w.is_finished())
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }
}

/// One worker's span path settings, parsed once from the configuration: the window's limits
/// are the process's, shared out among the workers (validation keeps each share above a trace's
/// own bound).
fn span_path_settings(
    config: &Config,
    index: usize,
    slos: &SloEngine,
    sampler: &Arc<Mutex<Sampler>>,
) -> SpanPathSettings {
    let workers = config.workers.0.max(1);
    let mut limits = config.window.limits();
    limits.max_buffered_spans = (limits.max_buffered_spans / workers).max(1);
    limits.max_buffered_bytes = (limits.max_buffered_bytes / workers).max(1);
    limits.decision_cache_kept = (limits.decision_cache_kept / workers).max(1);
    limits.decision_cache_dropped = (limits.decision_cache_dropped / workers).max(1);
    SpanPathSettings {
        decoder: Decoder::for_topics(config.kafka.encoding, topic_encodings(config)),
        buffer: TraceBuffer::new(limits),
        sampler: sampler.clone(),
        exclusions: Exclusions::new(&config.metrics.exclude),
        slo_counter: (!slos.is_empty()).then(|| slos.counter()),
        max_message_bytes: config.kafka.message_max_bytes(),
        repartition_from: if config.kafka.input_keyed_by_trace { Vec::new() } else { config.kafka.all_input_topics() },
        lane: Lane::try_from(index).expect("workers are at most 64"),
    }
}

/// The input topics read in an encoding of their own. The repartition topic carries every
/// input's spans in their arrival encoding: it is read as `auto`, each record naming its
/// encoding in a header.
fn topic_encodings(config: &Config) -> Vec<(String, InputEncoding)> {
    let mut topics = config.kafka.topic_encodings();
    if !config.kafka.input_keyed_by_trace && !topics.is_empty() {
        topics.push((config.kafka.repartition_topic(), InputEncoding::Auto));
    }
    topics
}

/// What every worker of the process shares.
struct Shared {
    signals: Arc<Mutex<SignalStore>>,
    slos: Arc<Mutex<SloEngine>>,
    traces: Arc<Mutex<TraceStore>>,
    sampler: Arc<Mutex<Sampler>>,
    telemetry: Arc<PipelineMetrics>,
    kafka_session: Arc<KafkaSession>,
    group: Arc<GroupView>,
    clock: SharedClock,
}

/// `kafka.transactional_id`, or `{group_id}-{host name}-{HTTP port}`: unique among instances
/// running at once, the same across a restart of one (with HTTP on port 0, the process id
/// stands in for the port).
fn transactional_id_prefix(config: &Config) -> String {
    if let Some(prefix) = &config.kafka.transactional_id {
        return prefix.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    match config.http.listen.port() {
        // A port picked by the system is no identity: the process's own id at least keeps two
        // instances on one host apart.
        0 => format!("{}-{host}-pid{}", config.kafka.group_id, std::process::id()),
        port => format!("{}-{host}-{port}", config.kafka.group_id),
    }
}

/// Builds worker `index`: its producer and delivery ledger, its span path, its SLO counting.
fn build_worker(config: &Config, index: usize, shared: &Shared) -> Result<Worker, PipelineError> {
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", crate::delivery::QUEUE_MAX_MESSAGES.to_string())
        .set("queue.buffering.max.kbytes", crate::delivery::QUEUE_MAX_KBYTES.to_string());
    if config.kafka.exactly_once {
        producer.set("transactional.id", format!("{}-w{index}", transactional_id_prefix(config)));
    }
    let producer = with_client_properties(producer, &config.kafka, false);
    let k = &config.kafka;
    let topics = Topics {
        output: k.output_topic.clone(),
        dead_letter: k.dead_letter_topic.clone(),
        repartition: k.repartition_topic(),
        alerts: k.alerts_topic.clone(),
        aggregates: k.aggregates_topic.clone(),
        slo_state: k.slo_state_topic.clone(),
        points: k.points_topic.clone(),
    };
    let forwarder = Forwarder::new(&producer, topics.clone(), shared.kafka_session.clone())?;
    let delivery_settings = DeliverySettings::from_producer(&producer);
    let mut delivery =
        DeliveryLedger::new(forwarder, topics, delivery_settings, shared.telemetry.clone(), shared.clock.clone());
    if config.kafka.exactly_once {
        delivery = delivery.exactly_once();
    }
    let path = SpanPath::new(
        span_path_settings(config, index, &shared.slos.lock().expect("slo engine lock"), &shared.sampler),
        shared.signals.clone(),
        shared.traces.clone(),
        shared.telemetry.clone(),
    );
    let slo_exchange = (!config.slo.is_empty()).then(|| {
        SloExchange::new(
            shared.slos.clone(),
            &config.kafka.aggregates_topic,
            &config.kafka.slo_state_topic,
            &config.kafka.alerts_topic,
            with_client_properties(
                ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).clone(),
                &config.kafka,
                true,
            ),
            shared.kafka_session.clone(),
            shared.telemetry.clone(),
        )
    });
    Ok(Worker::new(
        index,
        path,
        delivery,
        slo_exchange,
        PointsPublisher::new(
            Lane::try_from(index).expect("workers are at most 64"),
            shared.signals.clone(),
            shared.group.clone(),
            shared.telemetry.clone(),
        ),
        shared.signals.clone(),
        shared.telemetry.clone(),
        shared.clock.clone(),
    ))
}

/// Builds the shared stores and registry, then starts `workers` worker threads (each a member of
/// the consumer group) and the group view's member.
pub fn start(config: &Config, clock: SharedClock) -> Result<Pipeline, PipelineError> {
    let telemetry = Arc::new(PipelineMetrics::new());
    let signals = Arc::new(Mutex::new(SignalStore::new(config.signal_settings())));
    telemetry
        .registry
        .register(Box::new(SignalCollector::new(signals.clone(), clock.clone())))
        .expect("signal families are unique");
    let slos = Arc::new(Mutex::new(SloEngine::new(&config.slo)));
    telemetry
        .registry
        .register(Box::new(SloCollector::new(slos.clone(), clock.clone())))
        .expect("SLO families are unique");
    let traces = Arc::new(Mutex::new(TraceStore::new(&config.investigation)));
    let keys = signals.lock().expect("signal store lock").table_keys();
    let timeline = Arc::new(OwnedTimeline::new(
        Timeline::new(config.investigation.history.0, config.metrics.window.0, config.metrics.max_series)
            .with_versions(VersionColumns::of(&keys.dimensions)),
        keys,
    ));
    telemetry
        .registry
        .register(Box::new(GroupQuantileCollector::new(timeline.clone(), clock.clone())))
        .expect("group quantile families are unique");
    let kafka_session = KafkaSession::for_kafka(&config.kafka)?;
    if let Some(source) = kafka_session.token_source() {
        tracing::info!(source = %source, "OAUTHBEARER tokens come from tracewarden's own token source");
    }
    // Messages are committed only once the points they added to are published.
    signals.lock().expect("signal store lock").keep_holds();
    let group = Arc::new(GroupView::new());
    let shared = Shared {
        signals: signals.clone(),
        slos: slos.clone(),
        traces: traces.clone(),
        sampler: Arc::new(Mutex::new(Sampler::new(&config.sampling))),
        telemetry: telemetry.clone(),
        kafka_session: kafka_session.clone(),
        group: group.clone(),
        clock: clock.clone(),
    };
    let workers = config.workers.0.max(1);
    let built: Vec<Worker> =
        (0..workers).map(|index| build_worker(config, index, &shared)).collect::<Result<_, _>>()?;
    let ready = Arc::new(Readiness::new(workers).with_kafka_session(kafka_session.clone()));
    let shutdown = Arc::new(AtomicBool::new(false));
    let repartition_topic = config.kafka.repartition_topic();
    let mut topics = config.kafka.all_input_topics();
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
    let topics_prepared = Arc::new(TopicsPrepared::default());
    let leave_together = Arc::new(LeaveTogether::new(workers));
    let (ended_tx, ended) = channel();
    let mut threads = Vec::with_capacity(workers);
    for (index, worker) in built.into_iter().enumerate() {
        let settings = SourceSettings {
            member: index,
            topics_prepared: topics_prepared.clone(),
            leave_together: leave_together.clone(),
            client: {
                let mut client = consumer_config(&config.kafka);
                with_instance_id(&mut client, &config.kafka, &format!("w{index}"));
                client
            },
            owners_client: owners_config(&config.kafka),
            brokers: config.kafka.brokers.clone(),
            topics: topics.clone(),
            // One member per instance takes part in SLO ownership.
            owner_topics: if index == 0 { owner_topics.clone() } else { Vec::new() },
            required_topics: required_topics.clone(),
            commit_interval: config.kafka.commit_interval.0,
            admin: admin_config(&config.kafka),
            kafka_session: kafka_session.clone(),
            clock: clock.clone(),
            compacted_topics: compacted_topics.clone(),
            output_topics: vec![
                config.kafka.output_topic.clone(),
                config.kafka.dead_letter_topic.clone(),
                config.kafka.alerts_topic.clone(),
            ],
        };
        let (telemetry, ready, shutdown, ended) =
            (telemetry.clone(), ready.clone(), shutdown.clone(), ended_tx.clone());
        let worker = Arc::new(Mutex::new(worker));
        threads.push(std::thread::Builder::new().name(format!("tracewarden-worker-{index}")).spawn(move || {
            let result = crate::source::run(settings, worker, telemetry, ready, shutdown);
            let _ = ended.send(result);
        })?);
    }
    let brokers = ClientConfig::new().set("bootstrap.servers", &config.kafka.brokers).clone();
    let k = &config.kafka;
    let group_member = GroupMember {
        settings: GroupMemberSettings {
            points_topic: k.points_topic.clone(),
            alerts_topic: k.alerts_topic.clone(),
            timeline_topic: k.timeline_topic.clone(),
            rollups_topic: k.rollups_topic.clone(),
            points_partitions: k.points_partitions,
            series_group: format!("{}-series", k.group_id),
            instance_id: k.instance_id.as_ref().map(|id| format!("{id}-series")),
            producer_client: with_client_properties(brokers.clone(), k, false),
            consumer_client: with_client_properties(brokers, k, true),
            admin: admin_config(k),
            history: config.investigation.history.0,
            kafka_session: kafka_session.clone(),
        },
        timeline: timeline.clone(),
        slos: slos.clone(),
        view: group.clone(),
        telemetry: telemetry.clone(),
        clock: clock.clone(),
    }
    .start(shutdown.clone())?;
    let peers = PeerClient::new(config.http.tls_cert_file.as_deref());
    Ok(Pipeline {
        kafka_session,
        handles: Handles { signals, slos, traces, timeline, group, peers, telemetry, ready, clock },
        shutdown,
        workers: threads,
        ended,
        group_member: Some(group_member),
    })
}
