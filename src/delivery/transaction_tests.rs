//! The exactly-once invariant of the module header, checked against a model of Kafka's
//! transactions: a transaction's records and offsets become visible together or not at all, a
//! crash loses everything in memory and reads again from the committed offsets, a revocation
//! hands a partition to an owner that starts from its committed offset. Across random
//! interleavings of reads, decisions, transactions (some failing, some after part of their
//! records reached the log), revocations and crashes, every span of a kept trace must be
//! visible exactly once, and no span of a dropped one; and every span of every trace must be
//! counted at least once in the visible points records (the group view's input, which a worker
//! publishes with the holds of the traces it measured; at-least-once, see the module header).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::*;
use crate::clock::ManualClock;

/// The broker as transactions see it: what `read_committed` consumers read, and the committed
/// offsets.
#[derive(Default)]
struct TransactionalLog {
    /// Payloads of committed records.
    visible: Vec<Bytes>,
    /// Partition → committed offset.
    committed: BTreeMap<i32, i64>,
    /// The next transaction fails; `delivered_first` of its records reach the log (aborted).
    fail_next: Option<usize>,
}

#[derive(Clone, Default)]
struct ModelTransport(Arc<std::sync::Mutex<TransactionalLog>>);

impl Transport for ModelTransport {
    fn send(&mut self, _attempt: Box<Attempt>, _reports: &mut Vec<Report>) {
        unreachable!("an exactly-once ledger writes only in transactions")
    }

    fn poll(&mut self, _timeout: Duration, _reports: &mut Vec<Report>) {}

    fn transact(
        &mut self,
        records: Vec<Box<Attempt>>,
        offsets: &[Commit],
        groups: &TransactionGroups<'_>,
        reports: &mut Vec<Report>,
    ) -> Result<(), TransactionError> {
        let mut log = self.0.lock().unwrap();
        if let Some(delivered_first) = log.fail_next.take() {
            let aborted = SendError { class: ErrorClass::Retriable, code: "Purge".into(), message: "aborted".into() };
            for (i, attempt) in records.into_iter().enumerate() {
                reports.push(if i < delivered_first {
                    Report::Delivered(attempt)
                } else {
                    Report::Failed(attempt, aborted.clone())
                });
            }
            return Err(TransactionError { code: "Scripted".into(), message: "scripted abort".into(), fatal: false });
        }
        for (topic, partition, offset) in offsets {
            assert!(groups.covers(topic), "offsets of {topic} committed without its group");
            let committed = log.committed.entry(*partition).or_default();
            assert!(*offset >= *committed, "partition {partition}: committed {offset} after {committed}");
            *committed = *offset;
        }
        for attempt in records {
            log.visible.push(attempt.record.payload.clone());
            reports.push(Report::Delivered(attempt));
        }
        Ok(())
    }
}

const PARTITIONS: i32 = 2;

/// Marks the payload of a points record in the model's log.
const POINTS: &str = "points:";

/// Whether a trace is kept: decided by its id, as sampling is (a replay decides the same).
fn kept(trace: u32) -> bool {
    !trace.is_multiple_of(3)
}

/// One input message: spans of some traces.
type Message = Vec<u32>;

/// An open trace: its id, its holds, and the (partition, offset) of each of its spans.
type OpenTrace = (u32, Vec<Hold>, Vec<(i32, i64)>);

/// One instance's memory: its ledger and the traces it assembles.
struct Instance {
    ledger: DeliveryLedger<ModelTransport>,
    /// Partition → next offset to read.
    positions: BTreeMap<i32, i64>,
    /// Open traces: id → holds and the (partition, offset) of its spans.
    open: Vec<OpenTrace>,
    /// The spans measured since the last points publication, with their messages' holds.
    measured: (Vec<Hold>, Vec<String>),
}

impl Instance {
    /// A fresh start: reads every partition from its committed offset.
    fn start(log: &ModelTransport, clock: &Arc<ManualClock>) -> Self {
        let ledger = DeliveryLedger::new(
            log.clone(),
            Topics {
                output: "out".into(),
                dead_letter: "dlq".into(),
                repartition: "rk".into(),
                alerts: "alerts".into(),
                aggregates: "agg".into(),
                slo_state: "state".into(),
                points: "points".into(),
            },
            DeliverySettings::default(),
            Arc::new(PipelineMetrics::new()),
            clock.clone(),
        )
        .exactly_once();
        let committed = log.0.lock().unwrap().committed.clone();
        let positions = (0..PARTITIONS).map(|p| (p, committed.get(&p).copied().unwrap_or(0))).collect();
        Self { ledger, positions, open: Vec::new(), measured: (Vec::new(), Vec::new()) }
    }

    fn read(&mut self, partition: i32, input: &[Vec<Message>]) {
        let offset = self.positions[&partition];
        let Some(message) = input[partition as usize].get(offset as usize) else { return };
        self.positions.insert(partition, offset + 1);
        let hold = self.ledger.receive("in", partition, offset);
        for &trace in message {
            let at = match self.open.iter().position(|(t, _, _)| *t == trace) {
                Some(at) => at,
                None => {
                    self.open.push((trace, Vec::new(), Vec::new()));
                    self.open.len() - 1
                }
            };
            self.open[at].1.push(hold.share());
            self.open[at].2.push((partition, offset));
        }
    }

    /// Decides an open trace: a kept one becomes a record of its spans.
    fn decide(&mut self, which: usize) {
        if self.open.is_empty() {
            return;
        }
        let (trace, holds, spans) = self.open.remove(which % self.open.len());
        let payload: Vec<String> = spans.iter().map(|(p, o)| format!("{trace}@{p}:{o}")).collect();
        // Every trace is measured (kept or not) before its decision.
        self.measured.0.extend(holds.iter().map(Hold::share));
        self.measured.1.extend(payload.iter().cloned());
        if !kept(trace) {
            return;
        }
        self.ledger.send(Record {
            destination: Destination::Output,
            partition: None,
            key: Bytes::from(trace.to_be_bytes().to_vec()),
            payload: Bytes::from(payload.join(",")),
            dead_letter: None,
            encoding: None,
            holds,
            spans: spans.len(),
        });
    }

    /// Publishes the points measured since the last publication, holding their messages.
    fn publish_points(&mut self) {
        let (holds, spans) = std::mem::take(&mut self.measured);
        if spans.is_empty() {
            return;
        }
        self.ledger.send(Record {
            destination: Destination::Points,
            partition: Some(0),
            key: Bytes::from_static(b"0"),
            payload: Bytes::from(format!("{POINTS}{}", spans.join(","))),
            dead_letter: None,
            encoding: None,
            holds,
            spans: 0,
        });
    }

    /// The partition is revoked: traces that also hold another partition are decided, the
    /// others handed over (held until the transaction), then the partition restarts from its
    /// committed offset, as under its next owner.
    fn revoke(&mut self, partition: i32, groups: &TransactionGroups<'_>, log: &ModelTransport) {
        let index = self.ledger.index("in", partition);
        let mut handed_over = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            let spans = &self.open[i].2;
            if spans.iter().any(|(p, _)| *p == partition) {
                if spans.iter().all(|(p, _)| *p == partition) {
                    handed_over.push(self.open.remove(i));
                } else {
                    self.decide(i);
                }
            } else {
                i += 1;
            }
        }
        self.publish_points();
        self.ledger.flush_transactions(groups, Duration::ZERO);
        drop(handed_over);
        self.ledger.forget(&[index]);
        let committed = log.0.lock().unwrap().committed.get(&partition).copied().unwrap_or(0);
        self.positions.insert(partition, committed);
    }
}

#[derive(Clone, Debug)]
enum Step {
    Read {
        partition: u8,
    },
    Decide {
        which: u8,
    },
    Transact,
    /// The next transaction fails after `delivered_first` of its records reached the log.
    FailNext {
        delivered_first: u8,
    },
    Revoke {
        partition: u8,
    },
    PublishPoints,
    Crash,
    Advance,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..PARTITIONS as u8).prop_map(|partition| Step::Read { partition }),
        3 => any::<u8>().prop_map(|which| Step::Decide { which }),
        2 => Just(Step::Transact),
        1 => (0u8..4).prop_map(|delivered_first| Step::FailNext { delivered_first }),
        1 => (0..PARTITIONS as u8).prop_map(|partition| Step::Revoke { partition }),
        2 => Just(Step::PublishPoints),
        1 => Just(Step::Crash),
        1 => Just(Step::Advance),
    ]
}

/// Input: per partition, messages with spans of traces 0..12, each trace on one partition
/// (keyed by trace id); a message may carry several traces.
fn input() -> impl Strategy<Value = Vec<Vec<Message>>> {
    let partition = |p: u32| {
        proptest::collection::vec(
            proptest::collection::btree_set((0u32..6).prop_map(move |t| t * PARTITIONS as u32 + p), 1..3)
                .prop_map(|traces| traces.into_iter().collect::<Vec<u32>>()),
            1..12,
        )
    };
    (partition(0), partition(1)).prop_map(|(a, b)| vec![a, b])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_kept_span_is_visible_exactly_once(input in input(), steps in proptest::collection::vec(step(), 1..120)) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "model")
            .create()
            .expect("a consumer (it never connects)");
        let metadata = consumer.group_metadata().expect("group metadata");
        let groups = TransactionGroups { inputs: Some(&metadata), owners: None, owner_topics: &[] };
        let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
        let log = ModelTransport::default();
        let mut instance = Instance::start(&log, &clock);
        for step in steps {
            match step {
                Step::Read { partition } => instance.read(partition as i32, &input),
                Step::Decide { which } => instance.decide(which as usize),
                Step::Transact => { let _ = instance.ledger.transact(&groups); }
                Step::FailNext { delivered_first } => log.0.lock().unwrap().fail_next = Some(delivered_first as usize),
                Step::Revoke { partition } => instance.revoke(partition as i32, &groups, &log),
                Step::PublishPoints => instance.publish_points(),
                Step::Crash => instance = Instance::start(&log, &clock),
                Step::Advance => clock.advance(Duration::from_secs(1)),
            }
        }
        // Run to the end without faults: read everything, decide everything, commit.
        log.0.lock().unwrap().fail_next = None;
        for partition in 0..PARTITIONS {
            while (instance.positions[&partition] as usize) < input[partition as usize].len() {
                instance.read(partition, &input);
            }
        }
        while !instance.open.is_empty() {
            instance.decide(0);
        }
        instance.publish_points();
        prop_assert!(instance.ledger.flush_transactions(&groups, Duration::ZERO));
        prop_assert_eq!(instance.ledger.unsettled(), 0, "every staged record written");

        let log = log.0.lock().unwrap();
        let (mut seen, mut counted): (HashMap<String, usize>, HashMap<String, usize>) = Default::default();
        for payload in &log.visible {
            let text = std::str::from_utf8(payload).unwrap();
            let (spans, into) = match text.strip_prefix(POINTS) {
                Some(points) => (points, &mut counted),
                None => (text, &mut seen),
            };
            for span in spans.split(',') {
                *into.entry(span.to_string()).or_default() += 1;
            }
        }
        for (partition, messages) in input.iter().enumerate() {
            prop_assert_eq!(log.committed.get(&(partition as i32)).copied().unwrap_or(0), messages.len() as i64);
            for (offset, message) in messages.iter().enumerate() {
                for &trace in message {
                    let span = format!("{trace}@{partition}:{offset}");
                    let times = seen.get(&span).copied().unwrap_or(0);
                    let expected = usize::from(kept(trace));
                    prop_assert_eq!(times, expected, "span {} visible {} times", span, times);
                    let measured = counted.get(&span).copied().unwrap_or(0);
                    prop_assert!(measured >= 1, "span {} never counted in points", span);
                }
            }
        }
    }
}
