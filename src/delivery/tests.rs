//! The at-least-once invariant of the module header, checked against an independent model across
//! random interleavings of messages, decisions, acknowledgements, failures and revocations. The
//! transport is scripted (the Kafka-level behaviour is tested against the mock cluster and a real
//! broker in `tests/`): here only the ledger's bookkeeping is under test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};

/// Keeps sent records until the test answers them; remembers when each record id was sent.
#[derive(Default)]
#[allow(clippy::vec_box)] // records travel boxed, as through librdkafka's opaque
struct ScriptedTransport {
    in_flight: Vec<Box<Attempt>>,
    /// Per record id: the clock readings of its sends.
    sends: BTreeMap<u64, Vec<Nanos>>,
    /// Record ids to refuse at once, with this error, on their next send.
    refuse: BTreeMap<u64, SendError>,
    clock: Option<Arc<ManualClock>>,
}

fn id_of(attempt: &Attempt) -> u64 {
    u64::from_be_bytes(attempt.record.key[..8].try_into().expect("8-byte key"))
}

impl Transport for ScriptedTransport {
    fn send(&mut self, attempt: Box<Attempt>, reports: &mut Vec<Report>) {
        let id = id_of(&attempt);
        let now = self.clock.as_ref().expect("clock").now();
        self.sends.entry(id).or_default().push(now);
        match self.refuse.remove(&id) {
            Some(error) => reports.push(Report::Failed(attempt, error)),
            None => self.in_flight.push(attempt),
        }
    }

    fn poll(&mut self, _timeout: Duration, _reports: &mut Vec<Report>) {}

    fn transact(
        &mut self,
        _records: Vec<Box<Attempt>>,
        _offsets: &[Commit],
        _groups: &TransactionGroups<'_>,
        _reports: &mut Vec<Report>,
    ) -> Result<(), TransactionError> {
        unreachable!("an at-least-once ledger never starts a transaction")
    }
}

fn error(class: ErrorClass) -> SendError {
    SendError { class, code: format!("{class:?}"), message: "scripted".into() }
}

#[derive(Clone, Debug)]
enum Step {
    /// A message is read on partition `p` with spans of traces `traces` (indices into the open
    /// traces; a new trace when out of range).
    Consume {
        partition: u8,
        traces: Vec<u8>,
    },
    /// An open trace is decided: kept (forwarded) or dropped.
    Decide {
        trace: u8,
        keep: bool,
    },
    /// The broker answers a record in flight.
    Answer {
        record: u8,
        outcome: Answer,
    },
    /// A record's next send is refused before queueing.
    RefuseNext {
        class_retriable: bool,
    },
    Advance {
        millis: u16,
    },
    Commit,
    /// A partition is revoked: traces wholly in it are handed over, the rest decided (kept).
    Revoke {
        partition: u8,
    },
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Delivered,
    Retriable,
    Permanent,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..2, proptest::collection::vec(0u8..6, 0..3)).prop_map(|(partition, traces)| Step::Consume { partition, traces }),
        3 => (0u8..8, any::<bool>()).prop_map(|(trace, keep)| Step::Decide { trace, keep }),
        4 => (0u8..8, prop_oneof![4 => Just(Answer::Delivered), 1 => Just(Answer::Retriable), 1 => Just(Answer::Permanent)])
            .prop_map(|(record, outcome)| Step::Answer { record, outcome }),
        1 => any::<bool>().prop_map(|class_retriable| Step::RefuseNext { class_retriable }),
        2 => (0u16..3000).prop_map(|millis| Step::Advance { millis }),
        2 => Just(Step::Commit),
        1 => (0u8..2).prop_map(|partition| Step::Revoke { partition }),
    ]
}

/// Messages as (partition, offset).
type Messages = BTreeSet<(u8, i64)>;

/// The model: which work is outstanding on which message, kept without holds.
#[derive(Default)]
struct Model {
    /// Open traces: their messages and their holds.
    traces: Vec<(Messages, Vec<Hold>)>,
    /// Records not yet delivered or abandoned, by id: their messages.
    records: BTreeMap<u64, BTreeSet<(u8, i64)>>,
    next_offset: [i64; 2],
    next_record: u64,
    /// Per partition, the offsets committed (never decreasing) and the last one returned.
    committed: [Option<i64>; 2],
}

impl Model {
    /// The lowest offset of a partition with outstanding work, else the next to read.
    fn lowest_outstanding(&self, partition: u8) -> i64 {
        let traces = self.traces.iter().flat_map(|(messages, _)| messages.iter());
        let records = self.records.values().flat_map(|messages| messages.iter());
        traces
            .chain(records)
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .min()
            .unwrap_or(self.next_offset[partition as usize])
    }

    fn record(&mut self, messages: BTreeSet<(u8, i64)>, holds: Vec<Hold>) -> Record {
        let id = self.next_record;
        self.next_record += 1;
        self.records.insert(id, messages);
        Record {
            destination: Destination::Output,
            partition: None,
            key: Bytes::copy_from_slice(&id.to_be_bytes()),
            payload: Bytes::from_static(b"trace"),
            dead_letter: None,
            encoding: None,
            holds,
            spans: 1,
        }
    }
}

fn topics() -> Topics {
    Topics {
        output: "out".into(),
        dead_letter: "dlq".into(),
        repartition: "re".into(),
        alerts: "alerts".into(),
        aggregates: "agg".into(),
        slo_state: "state".into(),
        points: "points".into(),
    }
}

fn ledger(clock: &Arc<ManualClock>) -> DeliveryLedger<ScriptedTransport> {
    let transport = ScriptedTransport { clock: Some(clock.clone()), ..Default::default() };
    let settings = DeliverySettings { high_records: 4, high_bytes: 1 << 20, ..DeliverySettings::default() };
    DeliveryLedger::new(transport, topics(), settings, Arc::new(PipelineMetrics::new()), clock.clone())
}

/// Sends a trace's record; a permanent refusal abandons it at once.
fn forward(
    ledger: &mut DeliveryLedger<ScriptedTransport>,
    model: &mut Model,
    messages: BTreeSet<(u8, i64)>,
    holds: Vec<Hold>,
    permanent: &mut BTreeMap<u64, usize>,
) {
    let id = model.next_record;
    let refused = ledger.transport.refuse.get(&id).map(|e| e.class);
    let record = model.record(messages, holds);
    ledger.send(record);
    if refused == Some(ErrorClass::Permanent) {
        model.records.remove(&id);
        permanent.insert(id, 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever happens, a commit never passes a message with outstanding work; once all work is
    /// done every partition commits to its end; a retriable failure is sent again only after its
    /// backoff, a permanent one never.
    #[test]
    fn commits_never_pass_outstanding_work(steps in proptest::collection::vec(step(), 1..120)) {
        let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
        let mut ledger = ledger(&clock);
        let mut model = Model::default();
        // Permanently failed records, with how many sends they had when they failed.
        let mut permanent: BTreeMap<u64, usize> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Consume { partition, traces } => {
                    let offset = model.next_offset[partition as usize];
                    model.next_offset[partition as usize] += 1;
                    let hold = ledger.receive("in", partition as i32, offset);
                    for trace in traces {
                        match model.traces.get_mut(trace as usize) {
                            Some((messages, holds)) => {
                                if messages.insert((partition, offset)) {
                                    holds.push(hold.share());
                                }
                            }
                            None => model.traces.push(([(partition, offset)].into(), vec![hold.share()])),
                        }
                    }
                    // The reader's own hold ends here: a message without spans is done.
                }
                Step::Decide { trace, keep } => {
                    if (trace as usize) < model.traces.len() {
                        let (messages, holds) = model.traces.remove(trace as usize);
                        if keep {
                            forward(&mut ledger, &mut model, messages, holds, &mut permanent);
                        }
                    }
                }
                Step::Answer { record, outcome } => {
                    let transport = &mut ledger.transport;
                    if transport.in_flight.is_empty() {
                        continue;
                    }
                    let attempt = transport.in_flight.remove(record as usize % transport.in_flight.len());
                    let id = id_of(&attempt);
                    let report = match outcome {
                        Answer::Delivered => {
                            model.records.remove(&id);
                            Report::Delivered(attempt)
                        }
                        Answer::Retriable => Report::Failed(attempt, error(ErrorClass::Retriable)),
                        Answer::Permanent => {
                            model.records.remove(&id);
                            permanent.insert(id, transport.sends[&id].len());
                            Report::Failed(attempt, error(ErrorClass::Permanent))
                        }
                    };
                    ledger.reports.push(report);
                    ledger.serve_answers();
                }
                Step::RefuseNext { class_retriable } => {
                    let class = if class_retriable { ErrorClass::Retriable } else { ErrorClass::Permanent };
                    ledger.transport.refuse.insert(model.next_record, error(class));
                }
                Step::Advance { millis } => {
                    clock.advance(Duration::from_millis(millis as u64));
                    ledger.serve_answers();
                }
                Step::Commit => {
                    for (_, partition, offset) in ledger.commits(None) {
                        let p = partition as u8;
                        let lowest = model.lowest_outstanding(p);
                        prop_assert_eq!(offset, lowest, "the commit on partition {} is the lowest outstanding offset", p);
                        prop_assert!(model.committed[p as usize].is_none_or(|c| c < offset), "commits only move forward");
                        model.committed[p as usize] = Some(offset);
                    }
                }
                Step::Revoke { partition } => {
                    // Traces also holding spans of the other partition are decided (kept); those
                    // wholly in the revoked one are handed over: their holds live until the commit.
                    let mut handed_over = Vec::new();
                    for (messages, holds) in std::mem::take(&mut model.traces) {
                        let touches = messages.iter().any(|(p, _)| *p == partition);
                        let wholly = messages.iter().all(|(p, _)| *p == partition);
                        if touches && wholly {
                            handed_over.push((messages, holds));
                        } else if touches {
                            forward(&mut ledger, &mut model, messages, holds, &mut permanent);
                        } else {
                            model.traces.push((messages, holds));
                        }
                    }
                    // The broker answers everything in flight (records waiting for a retry wait on).
                    for attempt in std::mem::take(&mut ledger.transport.in_flight) {
                        model.records.remove(&id_of(&attempt));
                        ledger.reports.push(Report::Delivered(attempt));
                    }
                    ledger.serve_answers();
                    let handed_over_lowest = handed_over.iter().flat_map(|(m, _)| m.iter()).map(|(_, o)| *o).min();
                    let lowest = handed_over_lowest.map_or(model.lowest_outstanding(partition), |h| h.min(model.lowest_outstanding(partition)));
                    let index = ledger.index("in", partition as i32);
                    for (_, _, offset) in ledger.commits(Some(&[index])) {
                        prop_assert_eq!(offset, lowest, "the revocation commit stops at the handed-over and unacknowledged work");
                    }
                    drop(handed_over);
                    ledger.forget(&[index]);
                    // The next owner reads again from the committed offset; here the partition
                    // starts afresh past everything read, and old work no longer holds it.
                    for messages in model.records.values_mut() {
                        messages.retain(|(p, _)| *p != partition);
                    }
                    model.committed[partition as usize] = None;
                }
            }
            for (id, sends) in &ledger.transport.sends {
                if let Some(&at_failure) = permanent.get(id) {
                    prop_assert_eq!(sends.len(), at_failure, "record {} was sent again after a permanent failure", id);
                }
                for pair in sends.windows(2) {
                    let wait = pair[1].since(pair[0]);
                    prop_assert!(wait >= Duration::from_millis(100), "record {} re-sent after {:?}", id, wait);
                }
            }
        }
        // Finish every piece of work: every partition commits to its end.
        model.traces.clear();
        for _ in 0..16 {
            clock.advance(Duration::from_secs(10));
            ledger.serve_answers();
            for attempt in std::mem::take(&mut ledger.transport.in_flight) {
                ledger.reports.push(Report::Delivered(attempt));
            }
            ledger.serve_answers();
        }
        prop_assert_eq!(ledger.unsettled(), 0);
        prop_assert_eq!(ledger.pending_messages(), 0);
        for (_, partition, offset) in ledger.commits(None) {
            prop_assert_eq!(offset, model.next_offset[partition as usize], "partition {} commits to its end", partition);
        }
    }
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
    let mut ledger = ledger(&clock);
    let mut model = Model::default();
    let hold = ledger.receive("in", 0, 0);
    let record = model.record([(0, 0)].into(), vec![hold]);
    ledger.send(record);
    let mut waits = Vec::new();
    for _ in 0..10 {
        let attempt = ledger.transport.in_flight.pop().expect("sent");
        ledger.reports.push(Report::Failed(attempt, error(ErrorClass::Retriable)));
        ledger.serve_answers();
        let waiting: Vec<(String, i32)> = ledger.waiting_partitions().into_iter().collect();
        assert_eq!(waiting, vec![("in".to_string(), 0)], "its partition pauses while the record waits");
        let sent_at = *ledger.transport.sends[&0].last().unwrap();
        // Step 10 ms at a time until the retry goes out.
        let mut waited = Duration::ZERO;
        while ledger.transport.in_flight.is_empty() {
            clock.advance(Duration::from_millis(10));
            waited += Duration::from_millis(10);
            ledger.serve_answers();
        }
        assert_eq!(clock.now().since(sent_at), waited);
        waits.push(waited.as_millis());
    }
    assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    assert_eq!(ledger.commits(None), vec![("in".to_string(), 0, 0)], "unacknowledged: the commit stays before it");
    let attempt = ledger.transport.in_flight.pop().unwrap();
    ledger.reports.push(Report::Delivered(attempt));
    ledger.serve_answers();
    assert!(ledger.waiting_partitions().is_empty(), "delivered: the partition resumes");
    assert_eq!(ledger.commits(None), vec![("in".to_string(), 0, 1)]);
}

#[test]
fn a_permanent_refusal_is_counted_once_and_releases_its_message() {
    let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
    let mut ledger = ledger(&clock);
    let mut model = Model::default();
    ledger.transport.refuse.insert(0, error(ErrorClass::Permanent));
    let hold = ledger.receive("in", 0, 0);
    let record = model.record([(0, 0)].into(), vec![hold]);
    ledger.send(record);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(30));
        ledger.serve_answers();
    }
    assert_eq!(ledger.transport.sends[&0].len(), 1, "never sent again");
    assert_eq!(ledger.telemetry.forward_failures.with_label_values(&["output"]).get(), 1);
    assert_eq!(ledger.telemetry.forward_retries.get(), 0);
    assert!(ledger.waiting_partitions().is_empty(), "abandoned: nothing waits");
    assert_eq!(ledger.commits(None), vec![("in".to_string(), 0, 1)], "the partition moves on");
}
