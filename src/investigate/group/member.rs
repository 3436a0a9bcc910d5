//! This instance's part in the group view: one thread that publishes what was measured here,
//! owns its share of the series, and reads the rollups (the module docs of [`super`] show the
//! flow).
//!
//! - **Own** (the workers publish the points measured here: [`super::publish`]): a member of `{group_id}-series` on the points topic. The owner of a partition merges
//!   its partial points into the [`OwnedTimeline`]. Every [`ROLLUP_EVERY`] (and whenever a
//!   partition is given up) it checkpoints the points merged since the last round to the timeline
//!   topic (same partition), then writes a marker per partition holding the points offset the
//!   round covers, and commits that offset.
//! - **Take over**: when partitions are assigned, their changelog partitions are read to the end
//!   before consumption starts: the newest value of every key written before the last marker is
//!   merged, and the points are read from the marker's offset on — never replaying the raw
//!   points of the whole history. Values after the last marker belong to an unfinished round and
//!   are left out (the points they hold are read again from the marker's offset).
//! - **Alert**: every round, the owner judges the deployments of the services it owns
//!   ([`crate::investigate::deployments`]) and writes each newly degraded one to the alerts topic,
//!   then an `Alerted` key to the changelog; a new owner reads those keys on taking over, so an
//!   alert is written once (twice at most, when an owner stops between the two writes).
//! - **Roll up**: every [`ROLLUP_EVERY`] (and at once after an assignment or when a new series
//!   appears) the window rollup of the owned series goes to the rollups topic with this
//!   instance's announcement; every instance reads that topic into its [`GroupView`].
//!
//! Like the views it feeds, this is not the at-least-once data path: a record that cannot be
//! written or read is logged (rate-limited) and skipped, never retried in a loop or allowed to
//! hold up the span path. Wall time paces the transport; the injected clock stamps what is
//! measured and announced.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::clock::SharedClock;
use crate::investigate::deployments::{self, DeploymentAlert, DeploymentsQuery, Verdict};
use crate::investigate::OwnedTimeline;
use crate::kafka_client::{redact, KafkaSession, LoggedContext};
use crate::signals::{FlushedPoint, SeriesId};
use crate::slo::engine::SloEngine;
use crate::telemetry::{PipelineMetrics, RateLimitedWarning};

use super::wire::{
    alerted_key, checkpoint_key, checkpoint_value, decode_checkpoint_key, decode_marker, decode_point, decode_points,
    decode_rollup, marker_key, marker_value, rollup_payloads, series_partition, service_partition, Announcement,
    CheckpointKey, PointWire, RollupSeries, MAX_MESSAGE_BYTES,
};
use super::GroupView;

/// How often owners checkpoint and publish their rollups (wall time).
pub const ROLLUP_EVERY: Duration = Duration::from_secs(10);
/// The soonest a rollup follows the previous one when something new is to be announced.
const ROLLUP_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// How long a take-over reads the changelog before it gives up on the rest.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a checkpoint round waits for the broker's acknowledgements.
const CHECKPOINT_FLUSH: Duration = Duration::from_secs(10);
/// How long the points and rollups are kept beyond the history (topics created here).
const RETENTION_BEYOND_HISTORY: Duration = Duration::from_secs(600);
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum GroupMemberError {
    #[error("cannot create the group view's {client}: {source}")]
    Client {
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot start the group view thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The topics and clients of the group view.
pub struct GroupMemberSettings {
    pub points_topic: String,
    /// Where degraded deployments are alerted (`kafka.alerts_topic`).
    pub alerts_topic: String,
    pub timeline_topic: String,
    pub rollups_topic: String,
    /// Partitions of the points and timeline topics when this instance creates them.
    pub points_partitions: i32,
    /// `{group_id}-series`.
    pub series_group: String,
    /// The series member's `group.instance.id` (static membership), when `kafka.instance_id` is set.
    pub instance_id: Option<String>,
    /// Brokers and the producer's `[kafka.client]` properties.
    pub producer_client: ClientConfig,
    /// Brokers and the consumer's `[kafka.client]` properties.
    pub consumer_client: ClientConfig,
    pub admin: ClientConfig,
    pub history: Duration,
    pub kafka_session: Arc<KafkaSession>,
}

/// What the thread works with.
pub struct GroupMember {
    pub settings: GroupMemberSettings,
    pub timeline: Arc<OwnedTimeline>,
    pub slos: Arc<Mutex<SloEngine>>,
    pub view: Arc<GroupView>,
    pub telemetry: Arc<PipelineMetrics>,
    pub clock: SharedClock,
}

/// What the loop and the series consumer's rebalance callback share.
struct Owner {
    settings: GroupMemberSettings,
    producer: BaseProducer<LoggedContext>,
    timeline: Arc<OwnedTimeline>,
    view: Arc<GroupView>,
    telemetry: Arc<PipelineMetrics>,
    clock: SharedClock,
    /// Per owned partition: the points offset of the last marker written.
    marked: Mutex<HashMap<i32, i64>>,
    /// Something new to announce: a rollup is due at once.
    announce: AtomicBool,
    /// The fingerprints of the deployment alerts written (here, or by an owner before: read from
    /// the changelog), for the deployments still found.
    alerted: Mutex<HashSet<String>>,
    warning: Mutex<RateLimitedWarning>,
}

/// What a take-over read from the changelog.
#[derive(Default)]
struct Restored {
    /// Per partition: the points offset of its last marker.
    starts: HashMap<i32, i64>,
    /// The newest values of the keys written before those markers.
    values: Vec<Vec<u8>>,
    /// The fingerprints of the deployment alerts written.
    alerted: Vec<String>,
}

/// One merged point on its way to the changelog.
struct CheckpointRecord {
    partition: i32,
    key: Vec<u8>,
    value: Vec<u8>,
    point: (SeriesId, u64),
}

/// The series consumer's context: restores on assignment, checkpoints on revocation.
struct SeriesContext {
    owner: Arc<Owner>,
}

impl ClientContext for SeriesContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.owner.settings.kafka_session.log(level, facility, message);
    }

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.owner.settings.kafka_session.oauth_token()
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.owner.settings.kafka_session.error(error, reason);
    }
}

impl ConsumerContext for SeriesContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let owner = &self.owner;
        let topic = owner.settings.points_topic.as_str();
        let partitions: Vec<i32> =
            tpl.elements().iter().filter(|e| e.topic() == topic).map(|e| e.partition()).collect();
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for (partition, offset) in owner.restore(&partitions) {
                    let _ = tpl.set_partition_offset(topic, partition, Offset::Offset(offset));
                }
                let result = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                owner.view.update_ownership(|o| {
                    if !cooperative {
                        o.partitions.clear();
                    }
                    o.partitions.extend(&partitions);
                    o.joined = true;
                });
                tracing::info!(topic, ?partitions, "owning the series of these points partitions");
                result
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                owner.checkpoint(consumer);
                owner.release(&partitions);
                tracing::info!(topic, ?partitions, "series handed over");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "series group rebalance failed; giving up every partition");
                let all = owner.view.ownership().partitions.iter().copied().collect::<Vec<_>>();
                owner.release(&all);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot apply the series group's assignment");
        }
        owner.telemetry.series_partitions_owned.set(owner.view.ownership().partitions.len() as i64);
        owner.announce.store(true, Ordering::Relaxed);
    }
}

impl Owner {
    fn warn(&self, what: &str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.warning.lock().expect("warning lock").admit(self.clock.now()) {
            tracing::warn!(%error, suppressed, "{what}");
        }
    }

    fn count(&self, direction: &str, bytes: usize) {
        self.telemetry.group_view_bytes.with_label_values(&[direction]).inc_by(bytes as u64);
    }

    /// Sends one record, waiting for room in the producer's queue a few times.
    /// Sends a record (to `partition`, else to the partition of its key).
    fn send(&self, topic: &str, partition: Option<i32>, key: &[u8], payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        for _ in 0..50 {
            match self.producer.send(record) {
                Ok(()) => {
                    self.count("published", key.len() + payload.len());
                    return;
                }
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(100));
                }
                Err((error, _)) => {
                    self.warn("cannot publish to the group view's topics", &error);
                    return;
                }
            }
        }
        self.warn("the group view's producer queue stays full; a record was skipped", &topic);
    }

    /// Reads the changelog partitions of `partitions` to their end and merges what their last
    /// markers cover; returns the points offset to read each from (where a marker was found).
    fn restore(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        if partitions.is_empty() {
            return HashMap::new();
        }
        self.view.update_ownership(|o| o.restoring.extend(partitions));
        let started = Instant::now();
        let Restored { starts, values, alerted } = self.read_changelog(partitions).unwrap_or_else(|error| {
            self.warn("cannot read the timeline changelog; these series start without their history", &error);
            Restored::default()
        });
        let keys = &self.timeline.keys;
        let points: Vec<FlushedPoint> = values.iter().filter_map(|v| decode_point(v)).map(|p| p.point(keys)).collect();
        let now = self.clock.now();
        self.timeline.lock().restore(&points, now);
        self.alerted.lock().expect("alerted lock").extend(alerted);
        self.telemetry.series_points_restored.inc_by(points.len() as u64);
        self.marked.lock().expect("marked lock").extend(starts.iter().map(|(p, o)| (*p, *o)));
        self.view.update_ownership(|o| {
            for p in partitions {
                o.restoring.remove(p);
            }
        });
        tracing::info!(
            ?partitions,
            points = points.len(),
            millis = started.elapsed().as_millis() as u64,
            "restored the history of the series taken over"
        );
        starts
    }

    /// The changelog of `partitions`, read to its end: the points offsets of their last markers,
    /// and the newest values of the keys written before them.
    fn read_changelog(&self, partitions: &[i32]) -> Result<Restored, KafkaError> {
        let topic = self.settings.timeline_topic.as_str();
        let reader: BaseConsumer<LoggedContext> = self
            .settings
            .consumer_client
            .clone()
            .set("group.id", format!("{}-restore", self.settings.series_group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(LoggedContext(self.settings.kafka_session.clone()))
            .map_err(redact)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for &partition in partitions {
            let (_, high) = reader.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            if high > 0 {
                ends.insert(partition, high);
                assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        let mut starts = HashMap::new();
        let mut alerted = Vec::new();
        // Per partition: the values written since its last marker, and those before it.
        let mut pending: HashMap<i32, HashMap<Vec<u8>, Vec<u8>>> = HashMap::new();
        let mut covered: HashMap<i32, HashMap<Vec<u8>, Vec<u8>>> = HashMap::new();
        if ends.is_empty() {
            return Ok(Restored::default());
        }
        reader.assign(&assignment)?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        while !ends.is_empty() && Instant::now() < deadline {
            let Some(message) = reader.poll(Duration::from_millis(200)) else { continue };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    self.warn("cannot read the timeline changelog", &error);
                    continue;
                }
            };
            let partition = message.partition();
            let (key, payload) = (message.key().unwrap_or_default(), message.payload().unwrap_or_default());
            self.count("read", key.len() + payload.len());
            match decode_checkpoint_key(key) {
                Some(CheckpointKey::Point { .. }) => {
                    pending.entry(partition).or_default().insert(key.to_vec(), payload.to_vec());
                }
                Some(CheckpointKey::Marker { .. }) => {
                    if let Some(offset) = decode_marker(payload) {
                        let round = pending.remove(&partition).unwrap_or_default();
                        covered.entry(partition).or_default().extend(round);
                        starts.insert(partition, offset);
                    }
                }
                Some(CheckpointKey::Alerted { fingerprint }) => alerted.push(fingerprint),
                None => {}
            }
            if ends.get(&partition).is_some_and(|&end| message.offset() + 1 >= end) {
                ends.remove(&partition);
            }
        }
        if !ends.is_empty() {
            self.warn("the timeline changelog was not read to its end in time", &format!("{:?}", ends.keys()));
        }
        let values = covered.into_values().flat_map(|values| values.into_values()).collect();
        Ok(Restored { starts, values, alerted })
    }

    /// Writes the points merged since the last round, then a marker per owned partition whose
    /// position moved, waits for the acknowledgements and commits the positions.
    fn checkpoint(&self, consumer: &BaseConsumer<SeriesContext>) {
        let Some(count) = self.view.ownership().partition_count else { return };
        let owned = self.view.ownership().partitions;
        let positions = match consumer.position() {
            Ok(positions) => positions,
            Err(error) => {
                self.warn("cannot read the series consumer's position", &error);
                return;
            }
        };
        let changed: Vec<CheckpointRecord> = {
            let mut timeline = self.timeline.lock();
            let keys = self.timeline.keys.clone();
            timeline
                .take_changed()
                .into_iter()
                .map(|(series, kind, step, point)| {
                    let wire = PointWire::from_parts(&series, kind, step, point, &keys);
                    let key = checkpoint_key(&wire.series, step);
                    let partition = series_partition(&series, count);
                    let value = checkpoint_value(wire, MAX_MESSAGE_BYTES);
                    CheckpointRecord { partition, key, value, point: (series, step) }
                })
                .collect()
        };
        let topic = self.settings.timeline_topic.as_str();
        for record in &changed {
            self.send(topic, Some(record.partition), &record.key, &record.value);
        }
        let mut markers = Vec::new();
        let mut commit = TopicPartitionList::new();
        {
            let marked = self.marked.lock().expect("marked lock");
            for element in positions.elements_for_topic(&self.settings.points_topic) {
                let (partition, Offset::Offset(offset)) = (element.partition(), element.offset()) else { continue };
                if owned.contains(&partition) && marked.get(&partition) != Some(&offset) {
                    markers.push((partition, offset));
                    let _ = commit.add_partition_offset(&self.settings.points_topic, partition, Offset::Offset(offset));
                }
            }
        }
        for (partition, offset) in &markers {
            self.send(topic, Some(*partition), &marker_key(*partition), &marker_value(*offset));
        }
        if changed.is_empty() && markers.is_empty() {
            return;
        }
        match self.producer.flush(CHECKPOINT_FLUSH) {
            Ok(()) => {
                self.marked.lock().expect("marked lock").extend(markers);
                if commit.count() > 0 {
                    if let Err(error) = consumer.commit(&commit, rdkafka::consumer::CommitMode::Async) {
                        self.warn("cannot commit the series consumer's position", &error);
                    }
                }
            }
            Err(error) => {
                self.warn("a checkpoint round was not acknowledged; it is written again next round", &error);
                self.timeline.lock().mark_changed(changed.into_iter().map(|record| record.point));
            }
        }
    }

    /// Writes each deployment of the owned services found degraded and not alerted yet to the
    /// alerts topic, then its `Alerted` key to the changelog (module docs).
    fn alert_deployments(&self) {
        let Some(count) = self.view.ownership().partition_count else { return };
        let now = self.clock.now();
        let found = {
            let timeline = self.timeline.at(now);
            let services: BTreeSet<&str> = timeline
                .series()
                .filter_map(|(id, _)| match id {
                    SeriesId::Service(key) => Some(&*key.service),
                    _ => None,
                })
                .collect();
            services
                .into_iter()
                .flat_map(|service| {
                    let query = DeploymentsQuery::for_service(service);
                    deployments::deployments(&timeline, &query, now).deployments
                })
                .collect::<Vec<_>>()
        };
        let alerts: Vec<DeploymentAlert> = found.iter().map(|d| DeploymentAlert::of(d, now)).collect();
        let mut alerted = self.alerted.lock().expect("alerted lock");
        alerted.retain(|fingerprint| alerts.iter().any(|a| a.fingerprint == *fingerprint));
        for alert in alerts.iter().filter(|a| a.deployment.verdict == Verdict::Degraded) {
            if alerted.contains(&alert.fingerprint) {
                continue;
            }
            tracing::warn!(
                service = %alert.deployment.service,
                environment = %alert.deployment.environment,
                version = %alert.deployment.version,
                summary = %alert.annotations["summary"],
                "deployment degraded"
            );
            let payload = serde_json::to_vec(alert).expect("alerts serialise");
            self.send(&self.settings.alerts_topic, None, alert.fingerprint.as_bytes(), &payload);
            let partition = service_partition(&alert.deployment.service, count);
            self.send(&self.settings.timeline_topic, Some(partition), &alerted_key(&alert.fingerprint), &[]);
            alerted.insert(alert.fingerprint.clone());
        }
    }

    /// Forgets the series of `partitions` (another member owns them now).
    fn release(&self, partitions: &[i32]) {
        let Some(count) = self.view.ownership().partition_count else { return };
        let released: BTreeSet<i32> = partitions.iter().copied().collect();
        self.timeline.lock().release(|id| !released.contains(&series_partition(id, count)));
        self.view.update_ownership(|o| o.partitions.retain(|p| !released.contains(p)));
        let mut marked = self.marked.lock().expect("marked lock");
        for p in partitions {
            marked.remove(p);
        }
    }

    /// Publishes the rollup of the owned series with this instance's announcement (`leaving`:
    /// owning nothing any more).
    fn publish_rollup(&self, slos: &Mutex<SloEngine>, leaving: bool) {
        let now = self.clock.now();
        let ownership = self.view.ownership();
        let series: Vec<RollupSeries> = {
            let mut timeline = self.timeline.lock();
            timeline.expire(now);
            timeline
                .window_rollup(now)
                .iter()
                .map(|(id, kind, aggregate)| RollupSeries::of(id, *kind, &aggregate.counts, &aggregate.latency))
                .collect()
        };
        let (names, reports) = {
            let engine = slos.lock().expect("slo engine lock");
            (engine.owned_names(), engine.reports(now.unix_seconds()))
        };
        let from = Announcement {
            instance: self.view.instance,
            url: self.view.url().map(|u| u.to_string()),
            sent: now.0,
            partitions: if leaving { Vec::new() } else { ownership.partitions.iter().copied().collect() },
            partition_count: ownership.partition_count.unwrap_or(0),
            slos: if leaving { Vec::new() } else { names },
            slo_reports: reports.iter().map(|r| serde_json::to_string(r).expect("reports serialise")).collect(),
        };
        let series = if leaving { Vec::new() } else { series };
        for payload in rollup_payloads(from, series, MAX_MESSAGE_BYTES) {
            self.send(&self.settings.rollups_topic, Some(0), &self.view.instance.to_be_bytes(), &payload);
        }
    }
}

impl GroupMember {
    /// Starts the thread; it ends once `shutdown` is set, after a last publication, checkpoint
    /// and a rollup announcing that it owns nothing any more.
    pub fn start(self, shutdown: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, GroupMemberError> {
        let GroupMember { settings, timeline, slos, view, telemetry, clock } = self;
        let logged = LoggedContext(settings.kafka_session.clone());
        let producer: BaseProducer<LoggedContext> = settings
            .producer_client
            .clone()
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .create_with_context(logged.clone())
            .map_err(|source| GroupMemberError::Client { client: "producer", source: redact(source) })?;
        let rollups: BaseConsumer<LoggedContext> = settings
            .consumer_client
            .clone()
            .set("group.id", format!("{}-rollups", settings.series_group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(logged)
            .map_err(|source| GroupMemberError::Client { client: "rollups consumer", source: redact(source) })?;
        let mut series_client = settings
            .consumer_client
            .clone()
            .set("group.id", &settings.series_group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .clone();
        if let Some(id) = &settings.instance_id {
            series_client.set("group.instance.id", id);
        }
        let owner = Arc::new(Owner {
            settings,
            producer,
            timeline,
            view,
            telemetry,
            clock,
            marked: Mutex::default(),
            announce: AtomicBool::new(false),
            alerted: Mutex::default(),
            warning: Mutex::new(RateLimitedWarning::new(LOG_EVERY)),
        });
        let series: BaseConsumer<SeriesContext> = series_client
            .create_with_context(SeriesContext { owner: owner.clone() })
            .map_err(|source| GroupMemberError::Client { client: "series consumer", source: redact(source) })?;
        let thread = std::thread::Builder::new()
            .name("tracewarden-group-view".into())
            .spawn(move || run(owner, series, rollups, slos, shutdown))?;
        Ok(thread)
    }
}

fn run(
    owner: Arc<Owner>,
    series: BaseConsumer<SeriesContext>,
    rollups: BaseConsumer<LoggedContext>,
    slos: Arc<Mutex<SloEngine>>,
    shutdown: Arc<AtomicBool>,
) {
    let mut last_rollup = Instant::now();
    let mut last_topic_attempt: Option<Instant> = None;
    let mut ready = false;
    while !shutdown.load(Ordering::Relaxed) {
        if !ready && last_topic_attempt.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            last_topic_attempt = Some(Instant::now());
            match prepare(&owner, &series, &rollups) {
                Ok(()) => ready = true,
                Err(reason) => owner.warn(
                    "the group view's topics are not ready: the views, and the commits of the input (whose points wait to be published), wait for them",
                    &reason,
                ),
            }
        }
        if ready {
            read_points(&owner, &series);
            read_rollups(&owner, &rollups, &slos);
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        let announce = owner.announce.load(Ordering::Relaxed) && last_rollup.elapsed() >= ROLLUP_AT_MOST_EVERY;
        if ready && (announce || last_rollup.elapsed() >= ROLLUP_EVERY) {
            last_rollup = Instant::now();
            owner.announce.store(false, Ordering::Relaxed);
            owner.checkpoint(&series);
            owner.alert_deployments();
            owner.publish_rollup(&slos, false);
        }
        owner.producer.poll(Duration::ZERO);
    }
    if ready {
        owner.checkpoint(&series);
        owner.publish_rollup(&slos, true);
    }
    let _ = owner.producer.flush(Duration::from_secs(5));
    // Leaving the series group hands the partitions over (the revocation checkpoints nothing
    // new: the round above was the last).
    series.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !owner.view.ownership().partitions.is_empty() && Instant::now() < deadline {
        series.poll(Duration::from_millis(100));
    }
}

/// Creates the topics when missing, learns the points partition count, joins the series group
/// and starts reading the rollups from [`super::PEER_TIMEOUT`] ago.
fn prepare(
    owner: &Owner,
    series: &BaseConsumer<SeriesContext>,
    rollups: &BaseConsumer<LoggedContext>,
) -> Result<(), String> {
    let s = &owner.settings;
    let partitions_of = |topic: &str| -> Result<usize, String> {
        let metadata = rollups.fetch_metadata(Some(topic), Duration::from_secs(5)).map_err(|e| e.to_string())?;
        Ok(metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0))
    };
    let retention = (s.history + RETENTION_BEYOND_HISTORY).as_millis().to_string();
    let create_if_missing = |topic: &str, partitions: i32, settings: &[(&str, &str)]| -> Result<(), String> {
        if partitions_of(topic)? == 0 {
            crate::delivery::topics::create_topics_with(&s.admin, &s.kafka_session, &[topic], partitions, settings)?;
        }
        Ok(())
    };
    create_if_missing(&s.points_topic, s.points_partitions, &[("retention.ms", &retention)])?;
    let compacted = [("cleanup.policy", "compact,delete"), ("retention.ms", &retention)];
    create_if_missing(&s.timeline_topic, s.points_partitions, &compacted)?;
    create_if_missing(&s.rollups_topic, 1, &[("retention.ms", "3600000")])?;
    let count = partitions_of(&s.points_topic)?;
    if count == 0 {
        return Err(format!("{} has no partitions yet", s.points_topic));
    }
    let changelog = partitions_of(&s.timeline_topic)?;
    if changelog != count {
        tracing::error!(points = %s.points_topic, timeline = %s.timeline_topic, count, changelog, "the timeline topic must have as many partitions as the points topic: series restored from the wrong partition would be lost");
    }
    owner.view.update_ownership(|o| o.partition_count = Some(count as i32));
    crate::kafka_client::await_topic_metadata(series, &[&s.points_topic]);
    series.subscribe(&[&s.points_topic]).map_err(|e| e.to_string())?;
    let since = SystemTime::now()
        .checked_sub(super::PEER_TIMEOUT)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition_offset(&s.rollups_topic, 0, Offset::Offset(since)).map_err(|e| e.to_string())?;
    let start = rollups.offsets_for_times(wanted, Duration::from_secs(5)).unwrap_or_else(|_| {
        let mut end = TopicPartitionList::new();
        let _ = end.add_partition_offset(&s.rollups_topic, 0, Offset::End);
        end
    });
    rollups.assign(&start).map_err(|e| e.to_string())
}

/// Merges the points of the owned partitions that arrived.
fn read_points(owner: &Owner, series: &BaseConsumer<SeriesContext>) {
    let mut points = Vec::new();
    let mut timeout = Duration::from_millis(50);
    for _ in 0..2_000 {
        match series.poll(timeout) {
            Some(Ok(message)) => {
                let (key, payload) = (message.key().unwrap_or_default(), message.payload().unwrap_or_default());
                owner.count("read", key.len() + payload.len());
                match decode_points(payload) {
                    Some(batch) => points.extend(batch.into_iter().map(|p| p.point(&owner.timeline.keys))),
                    None => owner.warn("skipping a points record that cannot be read", &message.offset()),
                }
            }
            Some(Err(error)) => {
                owner.warn("cannot read the points topic", &error);
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
    if points.is_empty() {
        return;
    }
    let now = owner.clock.now();
    let mut timeline = owner.timeline.lock();
    let before = timeline.series_count();
    timeline.merge(&points, now);
    if timeline.series_count() > before {
        owner.announce.store(true, Ordering::Relaxed);
    }
}

/// Takes in the rollups that arrived.
fn read_rollups(owner: &Owner, rollups: &BaseConsumer<LoggedContext>, slos: &Mutex<SloEngine>) {
    for _ in 0..1_000 {
        match rollups.poll(Duration::ZERO) {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                owner.count("read", payload.len() + message.key().map_or(0, <[u8]>::len));
                match decode_rollup(payload) {
                    Some(rollup) => owner.view.apply(rollup, slos, owner.clock.now()),
                    None => owner.warn("skipping a rollup that cannot be read", &message.offset()),
                }
            }
            Some(Err(error)) => {
                owner.warn("cannot read the rollups topic", &error);
                break;
            }
            None => break,
        }
    }
}
