//! Delivery guarantees and scale-out against a real broker process (Tansu, started by
//! scripts/test.sh; or any Kafka named by TRACEWARDEN_TEST_BROKERS): several `tracewarden run`
//! processes in one consumer group, killed with SIGKILL, joining and leaving mid-stream. What a
//! user relies on: every trace of the input reaches the output (duplicates allowed, counted),
//! whole; memory stays bounded. Every record is produced in a batch of its own (see
//! tests/support/processes.rs).

#[path = "support/processes.rs"]
mod processes;

use processes::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};

use tracewarden::generate::{PetClinic, TrafficProfile};
use tracewarden::model::Encoding;

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn kill_9_of_an_instance_mid_stream_loses_no_trace() {
    let broker = broker("kill9");
    broker.create_topic(&broker.topic("in"), 6);
    broker.create_topic(&broker.topic("out"), 6);
    broker.create_topic(&broker.topic("dlq"), 1);
    let mut instances: Vec<Instance> =
        (0..3).map(|i| Instance::spawn(&broker, &format!("instance-{i}"), &[])).collect();
    // Traffic until the replacement has consumed some of it: the kill and the replacement's join
    // are both mid-stream, whatever the pace of the machine.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_traffic_until(&broker, 250, true, stop.clone());
    // Kill an instance that holds partitions and has messages read and not committed (pending:
    // buffered or in flight).
    let victim = &instances[1];
    let what = format!("instance-1 to consume and hold messages: see {}", victim.log.display());
    wait_for(what, Duration::from_secs(30), || {
        victim.metric("tracewarden_spans_received_total") >= 200.0
            && victim.metric("tracewarden_pending_messages") > 0.0
    });
    let victim_received = instances[1].metric("tracewarden_spans_received_total");
    instances[1].kill9();
    // What may be read again (kafka.md "Delivery": the replacement replays from the committed
    // offsets): the messages not committed when the victim died, at most everything between
    // the committed offsets and the partitions' ends as they are now. Each duplicate record
    // comes from at least one replayed message. (Counted over every partition, the survivors'
    // too: an upper bound; messages produced from now on are read once, by a live member.)
    let replayable = broker.backlog(&broker.topic("group"), &broker.topic("in"));
    let ends_at_kill = broker.ends(&broker.topic("in"));
    // The survivors take the victim's partitions over once its session has expired: the group
    // has seen the death before the replacement joins.
    wait_until_settled(&[&instances[0], &instances[2]], 6);
    instances.push(Instance::spawn(&broker, "replacement", &[]));
    let mut peak_rss = 0;
    // The live instances' largest RSS (instance 1 is the victim).
    let live = |instances: &[Instance]| -> u64 {
        instances.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, i)| i.rss_kib()).max().unwrap_or(0)
    };
    let replacement = &instances[3];
    let what = format!("the replacement to consume: see {}", replacement.log.display());
    wait_for(what, Duration::from_secs(60), || {
        peak_rss = peak_rss.max(live(&instances));
        replacement.metric("tracewarden_spans_received_total") >= 200.0
    });
    stop.store(true, Ordering::SeqCst);
    let sent = producer.join().unwrap();
    peak_rss = peak_rss.max(live(&instances));
    let duplicates = check_output(&broker, &sent);
    // The traces wholly produced before the kill: one of them is forwarded again only if a
    // message of it was not committed at the kill (the committed offsets only move on), and
    // once at most per change of the group that hands its partition to another member: the
    // takeover of the victim's partitions, and the replacement's join. So their duplicates are
    // at most twice the messages uncommitted at the kill.
    let input = broker.positions(&broker.topic("in"));
    let mut produced_before_kill: BTreeMap<&str, bool> = BTreeMap::new();
    for (key, partition, offset) in &input {
        let before = *offset < ends_at_kill[*partition as usize];
        produced_before_kill.entry(key.as_str()).and_modify(|b| *b &= before).or_insert(before);
    }
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let forwarded = broker.records_per_key(&broker.topic("out"), &expected);
    let duplicates_before_kill: usize = forwarded
        .iter()
        .filter(|(key, _)| produced_before_kill.get(key.as_str()) == Some(&true))
        .map(|(_, records)| records - 1)
        .sum();
    eprintln!(
        "kill -9 (victim had received {victim_received} spans, {replayable} messages uncommitted): {} traces in, all out whole, {duplicates} duplicates ({duplicates_before_kill} of traces from before the kill); peak RSS {} MiB",
        sent.len(),
        peak_rss / 1024
    );
    assert!(
        duplicates_before_kill as i64 <= 2 * replayable,
        "{duplicates_before_kill} duplicates of traces from before the kill, more than twice the {replayable} messages uncommitted at the kill"
    );
    // The window holds at most 50 000 spans, the producer queue 64 MiB, the prefetch 32 MiB.
    assert!(peak_rss > 0 && peak_rss < 400 * 1024, "RSS {} KiB", peak_rss);
    for (i, instance) in instances.iter_mut().enumerate() {
        if i != 1 {
            instance.terminate();
        }
    }
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn instances_joining_and_leaving_split_no_trace() {
    let broker = broker("rebalance");
    broker.create_topic(&broker.topic("in"), 6);
    broker.create_topic(&broker.topic("out"), 6);
    broker.create_topic(&broker.topic("dlq"), 1);
    let mut first = Instance::spawn(&broker, "first", &[]);
    // Traffic from before the first join until after the leave, whatever the pace of the machine.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_traffic_until(&broker, 250, true, stop.clone());
    let received = |i: &Instance| i.metric("tracewarden_spans_received_total");
    wait_for("the first instance to consume", Duration::from_secs(30), || received(&first) > 0.0);
    let mut joined: Vec<Instance> = (0..2).map(|i| Instance::spawn(&broker, &format!("joined-{i}"), &[])).collect();
    // The rebalance overlapped the traffic: the three share the partitions and the newcomers
    // consume the traffic still coming in.
    wait_until_settled(&[&first, &joined[0], &joined[1]], 6);
    wait_for("the joined instances to consume", Duration::from_secs(60), || joined.iter().all(|i| received(i) > 0.0));
    joined.remove(0).terminate();
    // And the leave did too: the two left take its partitions over and consume more traffic.
    wait_until_settled(&[&first, &joined[0]], 6);
    let after_leave = received(&first) + received(&joined[0]);
    wait_for("the instances left to consume after the leave", Duration::from_secs(60), || {
        received(&first) + received(&joined[0]) >= after_leave + 200.0
    });
    stop.store(true, Ordering::SeqCst);
    let sent = producer.join().unwrap();
    let duplicates = check_output(&broker, &sent);
    eprintln!("join/leave: {} traces in, all out whole, {duplicates} duplicates", sent.len());
    for instance in joined.iter_mut() {
        instance.terminate();
    }
    first.terminate();
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn unkeyed_input_assembles_whole_traces_across_instances() {
    let broker = broker("unkeyed");
    broker.create_topic(&broker.topic("in"), 6);
    broker.create_topic(&broker.topic("out"), 6);
    broker.create_topic(&broker.topic("dlq"), 1);
    // Each span takes an extra hop (input → repartition topic → owner) through another member:
    // under the load of the whole suite on two cores that hop can take longer than the 500 ms the
    // other tests decide after, and the root, by another member, arrives first. 3 s is still
    // tighter than the default (5 s); what users rely on is whole traces at the settings they run.
    let unkeyed = [("TRACEWARDEN__KAFKA__INPUT_KEYED_BY_TRACE", "false"), ("TRACEWARDEN__WINDOW__DECISION_WAIT", "3s")];
    let mut instances: Vec<Instance> =
        (0..2).map(|i| Instance::spawn(&broker, &format!("instance-{i}"), &unkeyed)).collect();
    // A trace's spans travel through several input partitions. While the group rebalances some of
    // them are not consumed for seconds, and a trace whose root came through another is decided
    // meanwhile, its late spans following (sampling.md): whole assembly is the settled group's
    // promise. The 6 input and 6 repartition partitions held, by both instances.
    wait_until_settled(&instances, 12);
    let producer = produce_traffic(&broker, 600, 200, false);
    let sent = producer.join().unwrap();
    let duplicates = check_output(&broker, &sent);
    let repartitioned: f64 = instances.iter().map(|i| i.metric("tracewarden_spans_repartitioned_total")).sum();
    eprintln!(
        "unkeyed: {} traces in, all out whole, {duplicates} duplicates, {repartitioned} spans repartitioned",
        sent.len()
    );
    assert_eq!(repartitioned as usize, sent.values().sum::<usize>());
    for instance in instances.iter_mut() {
        instance.terminate();
    }
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn a_backlog_far_larger_than_the_window_keeps_memory_bounded() {
    let broker = broker("backlog");
    broker.create_topic(&broker.topic("in"), 4);
    broker.create_topic(&broker.topic("out"), 4);
    broker.create_topic(&broker.topic("dlq"), 1);
    // The whole backlog is waiting before the instance starts: input as fast as Kafka can serve it.
    let producer = produce_traffic(&broker, 20_000, 1_000_000, true);
    let sent = producer.join().unwrap();
    let total_spans: usize = sent.values().sum();
    // The window's bound under test; the trace view's store (kept traces' records, up to 64 MiB by
    // default) is set aside so the figure is the pipeline's own.
    let small_window = [
        ("TRACEWARDEN__WINDOW__MAX_BUFFERED_SPANS", "5000"),
        ("TRACEWARDEN__WINDOW__MAX_SPANS_PER_TRACE", "1000"),
        ("TRACEWARDEN__INVESTIGATION__MAX_TRACE_BYTES", "0"),
    ];
    let mut instance = Instance::spawn(&broker, "instance", &small_window);
    let mut peak_rss = 0;
    let what = format!("the backlog to be forwarded: see {}", instance.log.display());
    wait_for(what, Duration::from_secs(180), || {
        peak_rss = peak_rss.max(instance.rss_kib());
        instance.metric("tracewarden_spans_forwarded_total") >= total_spans as f64
    });
    let early = instance.metric("tracewarden_traces_closed_total{reason=\"memory_pressure\"}");
    // Memory pressure decides the oldest traces at once: a trace whose messages straddle two
    // fetches may be decided between them, its late spans following in a second record.
    let late = instance.metric("tracewarden_late_spans_total{decision=\"kept\"}") + 0.0;
    check_output_with(&broker, &sent, true);
    eprintln!(
        "backlog: {} traces / {total_spans} spans, peak RSS {} MiB, {early} traces decided early by memory pressure, {late} late spans",
        sent.len(),
        peak_rss / 1024
    );
    // 5 000 buffered spans are a few MB; the rest is the binary, librdkafka and its bounded queues.
    assert!(peak_rss < 250 * 1024, "peak RSS {} MiB", peak_rss / 1024);
    assert!(early > 0.0, "window.max_buffered_spans decides the oldest traces early");
    instance.terminate();
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn bad_input_on_a_real_broker_is_dead_lettered_and_never_stalls() {
    let broker = broker("badinput");
    broker.create_topic(&broker.topic("in"), 1);
    broker.create_topic(&broker.topic("out"), 1);
    broker.create_topic(&broker.topic("dlq"), 1);
    let mut instance = Instance::spawn(&broker, "instance", &[]);
    let producer = producer_with(broker.client());
    let mut clinic = PetClinic::new(3, TrafficProfile::default());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let good = clinic.trace(now, Encoding::OTLP_PROTO);
    let garbage: Vec<Vec<u8>> = vec![
        b"\x0a\xff\xff\xff\x0f".to_vec(),
        b"{\"resourceSpans\": [".to_vec(),
        b"[\"not a span\"]".to_vec(),
        Vec::new(),
    ];
    let topic = broker.topic("in");
    for payload in &garbage {
        producer.send(BaseRecord::to(&topic).key("bad").payload(&payload[..])).unwrap();
    }
    let key = hex::encode(good.trace_id);
    for payload in good.messages.iter().rev() {
        producer.send(BaseRecord::to(&topic).key(&key).payload(&payload[..])).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let sent = BTreeMap::from([(key, good.spans)]);
    assert_eq!(check_output(&broker, &sent), 0, "the good trace behind the garbage gets through");
    let dead = broker.read_until(&broker.topic("dlq"), &BTreeSet::from(["bad".to_string()]), Duration::from_secs(30));
    assert_eq!(dead.len(), garbage.len(), "every bad message dead-lettered, unchanged");
    for (_, payload) in &dead {
        assert!(garbage.contains(payload));
    }
    assert_eq!(instance.metric("tracewarden_messages_dead_lettered_total"), garbage.len() as f64);
    instance.terminate();
}

/// An SLO incident across a `kill -9` of its evaluating instance: exactly one firing and one
/// resolved message per tier and for the budget. The victim dies with counts published and input
/// offsets not yet committed; its replacement restores the checkpoint, replays, and must count
/// nothing twice (a double count would leave the budget at WARNING instead of resolving it).
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn kill_9_of_the_slo_owner_mid_incident_sends_each_alert_once() {
    let broker = broker("slokill");
    slo_incident_with_a_kill(&broker, 1);
}

/// The same incident in a group of two: the SLO is evaluated by exactly one of them from the
/// counts of both; the owner is killed, a replacement starts, and one of the two takes the SLO
/// over.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn a_group_of_two_evaluates_each_slo_once_across_a_kill() {
    let broker = broker("slogroup");
    slo_incident_with_a_kill(&broker, 2);
}

fn slo_incident_with_a_kill(broker: &Broker, instances: usize) {
    let group = SloGroup::new(broker, 3);
    let (alerts, state) = (broker.topic("alerts"), broker.topic("state"));
    // Traces (and so their input offsets) wait 5 s for a decision: a kill within that time
    // leaves counted messages uncommitted, to be read and counted again by the next owner.
    let spawn = |label: &str| group.spawn(broker, label, &[("TRACEWARDEN__WINDOW__DECISION_WAIT", "5s")]);
    let mut live: Vec<Instance> = (0..instances).map(|i| spawn(&format!("instance-{i}"))).collect();
    let owners = |live: &[Instance]| -> Vec<usize> {
        (0..live.len()).filter(|&i| live[i].metric("tracewarden_slo_goal_ratio") > 0.0).collect()
    };
    let wait_for_one_owner = |live: &[Instance]| -> usize {
        // Which instance evaluates, what each holds and how its memberships stand.
        let states = || -> String {
            let states: Vec<String> = live
                .iter()
                .map(|i| {
                    let readyz = i.get("/readyz").and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
                    let readyz = readyz.unwrap_or_default();
                    format!(
                        "{}: goal {}, {} partitions {}, workers {}",
                        i.log.display(),
                        i.metric("tracewarden_slo_goal_ratio"),
                        readyz["status"],
                        readyz["partitions"],
                        readyz["workers"]
                    )
                })
                .collect();
            let settled = is_settled(live, 6);
            format!(
                "exactly one instance to evaluate the SLO, the group settled (settled: {settled}):\n{}",
                states.join("\n")
            )
        };
        wait_until(explained(states), Duration::from_secs(60), || {
            // Settled: the 3 input and 3 aggregates partitions are all held, by every instance.
            match owners(live).as_slice() {
                [one] if is_settled(live, 6) => Some(*one),
                _ => None,
            }
        })
    };
    let owner = wait_for_one_owner(&live);
    let producer = producer_with(broker.client());
    let produce = |messages: Vec<(String, bytes::Bytes)>| {
        for (key, payload) in &messages {
            producer.send(BaseRecord::to(&broker.topic("in")).key(key).payload(&payload[..])).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    // 5 faults in 100 requests (spread over the partitions, so over both instances of a group):
    // 5 % bad against 0.1 % allowed; every tier and the budget fire at the next evaluation.
    produce(tracewarden::testing::shop_requests(now(), 1, 100, 5, false));
    let statuses = |records: &[(String, Vec<u8>)]| -> Vec<(String, String)> {
        records
            .iter()
            .map(|(_, payload)| {
                let alert: serde_json::Value = serde_json::from_slice(payload).unwrap();
                let labels = &alert["labels"];
                let name = labels.get("tier").unwrap_or(&labels["severity"]).as_str().unwrap().to_string();
                (name, alert["status"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let fired = broker.read_while(&alerts, Duration::from_secs(60), |r| r.len() >= 4);
    let logs: Vec<_> = live.iter().map(|i| i.log.display().to_string()).collect();
    assert_eq!(statuses(&fired).len(), 4, "four alerts fire: {:?}; see {logs:?}", statuses(&fired));
    // The checkpoint with the four open alerts follows the alerts.
    let checkpointed = broker.read_while(&state, Duration::from_secs(30), |records| {
        records.iter().any(|(_, p)| {
            serde_json::from_slice::<serde_json::Value>(p)
                .is_ok_and(|c| c["alerts"].as_array().is_some_and(|a| a.len() == 4))
        })
    });
    assert!(!checkpointed.is_empty(), "a checkpoint in {state}");
    // More faults, then kill -9 of the owner once their counts are published (every 200 ms) and
    // merged, and before their offsets are committed (the traces wait 5 s): they are read again.
    // Three messages (traces 3, 4 and 5, spread over the partitions), 2 faults each.
    let merged = |i: &Instance| i.metric("tracewarden_slo_counts_merged_total{result=\"new\"}");
    let merged_before = merged(&live[owner]);
    for trace in 3..=5 {
        produce(tracewarden::testing::shop_requests(now(), trace, 50, 2, false));
    }
    let what = format!("the owner to merge the counts of the 3 messages: see {}", live[owner].log.display());
    wait_for(what, Duration::from_secs(30), || merged(&live[owner]) >= merged_before + 3.0);
    // The members of the two groups (input, and `-owners` for the aggregates) before the kill.
    let groups = [broker.topic("group"), format!("{}-owners", broker.topic("group"))];
    let members_before: Vec<usize> = groups.iter().map(|g| broker.group_members(g)).collect();
    assert!(
        members_before.iter().all(|&n| n > 0),
        "the broker lists the groups' members: {groups:?} {members_before:?}"
    );
    let mut victim = live.remove(owner);
    victim.kill9();
    let killed_at = Instant::now();
    // The precondition: the victim died with input not committed, which the next owner reads again.
    let uncommitted = broker.backlog(&broker.topic("group"), &broker.topic("in"));
    assert!(uncommitted > 0, "the victim died with its input committed: see {}", victim.log.display());
    // A replacement starts, as an orchestrator would restart it, once the victim's session has
    // expired. (Tansu's coordinator can keep a dead member in the assignment for good when a new
    // member joins while the dead one's session is still open; Kafka expires it regardless.)
    if live.is_empty() {
        // No member is left to see the session expire (Tansu expires members only when another
        // one calls): the session timeout is waited out.
        std::thread::sleep((SESSION_TIMEOUT + Duration::from_millis(500)).saturating_sub(killed_at.elapsed()));
    } else {
        // The survivors' calls expire the victim's session: the broker lists its members no more,
        // in either group (each instance has as many members in a group as the others).
        for (group, before) in groups.iter().zip(&members_before) {
            let left = before - before / (live.len() + 1);
            let what = format!("{group} to list {left} members, the victim's gone (from {before})");
            wait_for(what, Duration::from_secs(60), || broker.group_members(group) == left);
        }
    }
    live.push(spawn("replacement"));
    let successor = wait_for_one_owner(&live);
    // And the group shows the victim gone: as many members as before the kill, not one more.
    for (group, before) in groups.iter().zip(&members_before) {
        let what = format!("{group} to have {before} members again, the victim's gone");
        wait_for(what, Duration::from_secs(30), || broker.group_members(group) == *before);
    }
    // The incident ends: 24 000 good requests. Burn rates fall under every threshold and the
    // budget is over half again: 1 − (11/24 250)/0.001 = 0.55. Counted twice, any replayed
    // message's 2 faults would leave it under 0.47, WARNING.
    produce(tracewarden::testing::shop_requests(now(), 10, 24_000, 0, false));
    // Every request counted once: 11 faults in 24 250 requests, read from the new owner.
    let attainment = |i: &Instance| i.metric("tracewarden_slo_attainment_ratio{slo=\"buy-availability\"}");
    let expected_attainment = 1.0 - 11.0 / 24_250.0;
    let what = format!(
        "the new owner's attainment to be 1 − 11/24 250 = {expected_attainment:.6} (see {})",
        live[successor].log.display()
    );
    wait_until(
        explained(|| format!("{what}: it is {:.6}", attainment(&live[successor]))),
        Duration::from_secs(90),
        || ((attainment(&live[successor]) - expected_attainment).abs() < 1e-9).then_some(()),
    );
    // The alerts: read until every one that fired has resolved.
    let all_resolved = |records: &[(String, Vec<u8>)]| {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for (name, status) in statuses(records) {
            last.insert(name, status);
        }
        last.len() >= 4 && last.values().all(|s| s == "resolved")
    };
    let all = broker.read_while(&alerts, Duration::from_secs(90), all_resolved);
    let mut lifecycle: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, status) in statuses(&all) {
        lifecycle.entry(name).or_default().push(status);
    }
    // The 24 000 good requests reach the owner over a few publications, so an evaluation may
    // catch the budget on its way up, between 0 and half: WARNING fires then, and resolves once
    // they are all counted. Any other alert fires once and resolves once.
    let once = || vec!["firing".to_string(), "resolved".to_string()];
    if lifecycle.get("warning") == Some(&once()) {
        lifecycle.remove("warning");
    }
    let expected: BTreeMap<String, Vec<String>> =
        ["breached", "page-fast", "page-slow", "ticket"].iter().map(|a| (a.to_string(), once())).collect();
    assert_eq!(lifecycle, expected, "see {} and {}", victim.log.display(), live[successor].log.display());
    eprintln!(
        "SLO owner killed mid-incident ({instances} instance(s)): one firing and one resolved per alert; the new owner ignored {} replayed message counts",
        live[successor].metric("tracewarden_slo_counts_merged_total{result=\"duplicate\"}")
    );
    for instance in live.iter_mut() {
        instance.terminate();
    }
}

/// Two instances of one group, each reading half the partitions, answer `/api/service-map`,
/// `/api/contributors` and `/api/history` as one instance reading the whole input alone does; a
/// trace looked up on the instance that did not decide it redirects to the one that did.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn two_instances_answer_as_one_instance_with_the_whole_input() {
    let broker = broker("group-view");
    broker.create_topic(&broker.topic("in"), 4);
    // A window wide enough to hold the whole run, so the maps cover the same requests.
    let wide = ("TRACEWARDEN__METRICS__WINDOW", "15m");
    let view = broker.group_view_settings("");
    let group_settings = settings(&[wide], &view);
    let (first, second) =
        (Instance::spawn(&broker, "a", &group_settings), Instance::spawn(&broker, "b", &group_settings));
    // One instance alone, in its own group with its own group-view topics: the whole input.
    let alone_group = broker.topic("alone");
    let alone_view = broker.group_view_settings("alone-");
    let alone_settings = settings(
        &[
            wide,
            ("TRACEWARDEN__KAFKA__GROUP_ID", alone_group.as_str()),
            ("TRACEWARDEN__KAFKA__OUTPUT_TOPIC", "group-view-alone-out"),
        ],
        &alone_view,
    );
    let alone = Instance::spawn(&broker, "alone", &alone_settings);
    let producer = produce_traffic(&broker, 600, 300, true);
    let sent = producer.join().unwrap();
    let spans: usize = sent.values().sum();
    let read = |i: &Instance| i.metric("tracewarden_spans_received_total");
    let what = format!("the input to be read: see {}", first.log.display());
    wait_for(what, Duration::from_secs(120), || {
        read(&first) + read(&second) >= spans as f64 && read(&alone) >= spans as f64
    });
    assert!(read(&first) > 0.0 && read(&second) > 0.0, "both instances of the group read part of the input");

    // Counts exact and quantiles from merged sketches: equal once every snapshot is in.
    let json = |i: &Instance, path: &str| -> serde_json::Value {
        serde_json::from_str(&i.get(path).unwrap_or_default()).unwrap_or(serde_json::Value::Null)
    };
    let contributors = "/api/contributors?service=frontend&dimension=k8s.pod.name&by=faults";
    let history_total = |i: &Instance| -> u64 {
        json(i, "/api/history?service=frontend")["points"]
            .as_array()
            .map(|points| points.iter().filter_map(|p| p["requests"].as_u64()).sum())
            .unwrap_or(0)
    };
    let what = explained(|| {
        format!(
            "the group's answers to match the lone instance's:\nalone {}\nfirst {}\nsecond {}",
            json(&alone, "/api/service-map"),
            json(&first, "/api/service-map"),
            json(&second, "/api/service-map")
        )
    });
    wait_for(what, Duration::from_secs(60), || {
        let map = json(&alone, "/api/service-map");
        let same_maps = map["nodes"].as_array().is_some_and(|n| !n.is_empty())
            && json(&first, "/api/service-map") == map
            && json(&second, "/api/service-map") == map;
        let same_contributors = json(&first, contributors) == json(&alone, contributors)
            && json(&second, contributors) == json(&alone, contributors);
        let total = history_total(&alone);
        same_maps && same_contributors && total > 0 && history_total(&first) == total && history_total(&second) == total
    });

    // A kept trace: found on both; the one that did not decide it redirects to the one that did.
    let kept = json(&first, "/api/traces?decision=kept&limit=1");
    let trace_id = kept["traces"][0]["traceId"].as_str().expect("a kept trace").to_string();
    let held_by = kept["traces"][0]["heldBy"].as_str().expect("heldBy").to_string();
    let other = if held_by.ends_with(&first.http) { &second } else { &first };
    let answer = http::request(&other.http, "GET", &format!("/api/traces/{trace_id}"), &[], b"").unwrap();
    let response = answer.head;
    assert!(response.starts_with("HTTP/1.1 307"), "{response}");
    assert!(response.contains(&format!("location: {held_by}/api/traces/{trace_id}")), "{response}");
    drop((first, second, alone));
}

/// A group of three and a lone instance reading the same input: once the input is read and
/// committed, the owner of the frontend's series is killed with kill -9. The partition goes to a
/// survivor, which restores its history from the changelog, and the survivors answer
/// `/api/history`, `/api/contributors` and `/api/service-map` exactly as the lone instance does;
/// a fourth instance joins, takes partitions over, and the same holds.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn a_killed_owner_is_replaced_from_the_changelog_and_a_new_member_answers_the_same() {
    const SERIES_PARTITIONS: i32 = 8;
    let broker = broker("take-over");
    broker.create_topic(&broker.topic("in"), 4);
    let partitions = SERIES_PARTITIONS.to_string();
    let wide = ("TRACEWARDEN__METRICS__WINDOW", "15m");
    let view = broker.group_view_settings("");
    let group_settings = settings(&[wide, ("TRACEWARDEN__KAFKA__POINTS_PARTITIONS", partitions.as_str())], &view);
    let mut group: Vec<Instance> =
        ["a", "b", "c"].iter().map(|label| Instance::spawn(&broker, label, &group_settings)).collect();
    let alone_group = broker.topic("alone");
    let alone_view = broker.group_view_settings("alone-");
    let alone_settings = settings(
        &[
            wide,
            ("TRACEWARDEN__KAFKA__POINTS_PARTITIONS", partitions.as_str()),
            ("TRACEWARDEN__KAFKA__GROUP_ID", alone_group.as_str()),
            ("TRACEWARDEN__KAFKA__OUTPUT_TOPIC", "take-over-alone-out"),
        ],
        &alone_view,
    );
    let alone = Instance::spawn(&broker, "alone", &alone_settings);
    let sent = produce_traffic(&broker, 400, 200, true).join().unwrap();
    let spans: usize = sent.values().sum();
    let read =
        |instances: &[Instance]| instances.iter().map(|i| i.metric("tracewarden_spans_received_total")).sum::<f64>();
    let what = format!("the input to be read: see {}", group[0].log.display());
    wait_for(what, Duration::from_secs(120), || {
        read(&group) >= spans as f64 && read(std::slice::from_ref(&alone)) >= spans as f64
    });
    // Nothing is read twice after the kill: every input message is committed first.
    wait_for("the group to commit the whole input", Duration::from_secs(60), || {
        broker.backlog(&broker.topic("group"), &broker.topic("in")) == 0
    });

    // A history's points are stamped with the time each instance measured them, which differs
    // between the group and the lone instance: histories are compared by their totals, every
    // other answer (over a window wider than the run) as it is.
    let json = |i: &Instance, path: &str| -> serde_json::Value {
        let answer = serde_json::from_str(&i.get(path).unwrap_or_default()).unwrap_or(serde_json::Value::Null);
        match answer["points"].as_array() {
            Some(points) if path.starts_with("/api/history") => {
                let sum = |field: &str| points.iter().filter_map(|p| p[field].as_u64()).sum::<u64>();
                serde_json::json!({ "points": [{
                    "requests": sum("requests"), "faults": sum("faults"),
                    "errors": sum("errors"), "throttles": sum("throttles"),
                }] })
            }
            _ => answer,
        }
    };
    let answers = [
        "/api/service-map",
        "/api/history?service=frontend",
        "/api/history?service=customers-service",
        "/api/contributors?service=frontend&dimension=k8s.pod.name&by=faults",
        "/api/contributors?service=customers-service&dimension=service.version&by=requests",
    ];
    let wait_until_the_same = |instances: &[Instance], what: &str| {
        let started = Instant::now();
        // What differs, briefly: each answer's requests added up, the lone instance's first.
        let total = |v: &serde_json::Value| -> u64 {
            let rows = v["points"].as_array().or(v["contributors"].as_array()).or(v["nodes"].as_array());
            rows.map_or(0, |rows| rows.iter().filter_map(|r| r["requests"].as_u64()).sum())
        };
        let totals = |i: &Instance| answers.iter().map(|path| total(&json(i, path))).collect::<Vec<_>>();
        let awaited = explained(|| {
            format!(
                "{what}: the group's answers to match the lone instance's ({answers:?}):\nalone {:?}\ngroup {:?}",
                totals(&alone),
                instances.iter().map(totals).collect::<Vec<_>>()
            )
        });
        wait_for(awaited, Duration::from_secs(90), || {
            let expected: Vec<serde_json::Value> = answers.iter().map(|path| json(&alone, path)).collect();
            let complete = expected[0]["nodes"].as_array().is_some_and(|n| !n.is_empty())
                && expected[1]["points"].as_array().is_some_and(|p| !p.is_empty());
            complete
                && instances.iter().all(|i| answers.iter().zip(&expected).all(|(path, want)| json(i, path) == *want))
        });
        eprintln!("{what}: the group answered as the lone instance after {:?}", started.elapsed());
    };
    wait_until_the_same(&group, "three instances");

    // The owner of the frontend's series, killed.
    let frontend = tracewarden::investigate::group::wire::service_partition("frontend", SERIES_PARTITIONS);
    let owns = |i: &Instance| {
        json(i, "/readyz")["seriesPartitions"].as_array().is_some_and(|p| p.iter().any(|q| q == frontend))
    };
    let owner = group.iter().position(owns).expect("an instance owns the frontend's series");
    let mut killed = group.remove(owner);
    let restored = |instances: &[Instance]| {
        instances.iter().map(|i| i.metric("tracewarden_series_points_restored_total")).sum::<f64>()
    };
    let restored_before = restored(&group);
    killed.kill9();
    wait_until_the_same(&group, "after kill -9 of the frontend's owner");
    assert!(group.iter().any(owns), "a survivor took the frontend's series over");
    assert!(restored(&group) > restored_before, "the survivors restored the killed owner's points from the changelog");

    // A fourth member joins and takes partitions over from the others.
    group.push(Instance::spawn(&broker, "d", &group_settings));
    let what = format!("the new member to own series: see {}", group[2].log.display());
    wait_for(what, Duration::from_secs(60), || {
        json(&group[2], "/readyz")["seriesPartitions"].as_array().is_some_and(|p| !p.is_empty())
    });
    wait_until_the_same(&group, "after a fourth member joined");
    let exchanged: f64 = group.iter().map(|i| i.metric("tracewarden_group_view_bytes_total")).sum();
    assert!(exchanged > 0.0, "the group view's own traffic is counted");
    drop((group, alone));
}

/// Static membership (`kafka.instance_id`): an instance killed with kill -9 and started again
/// with the same id gets its partitions back without a rebalance — the other member keeps its
/// own throughout — instead of waiting out its predecessor's session (60 s here).
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn a_restarted_static_member_takes_its_partitions_back_without_a_rebalance() {
    let broker = broker("static");
    broker.create_topic(&broker.topic("in"), 4);
    // Group-view topics of its own: the default ones may exist already with 64 partitions.
    let view = broker.group_view_settings("");
    let settings = |id: &'static str| {
        settings(
            &[
                ("TRACEWARDEN__KAFKA__INSTANCE_ID", id),
                ("TRACEWARDEN__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "60000"),
                ("TRACEWARDEN__KAFKA__POINTS_PARTITIONS", "4"),
            ],
            &view,
        )
    };
    let mut first = Instance::spawn(&broker, "a", &settings("static-a"));
    let second = Instance::spawn(&broker, "b", &settings("static-b"));
    let held = |i: &Instance| -> Option<(Vec<String>, Vec<i64>)> {
        let body: serde_json::Value = serde_json::from_str(&i.get("/readyz")?).ok()?;
        let strings = |v: &serde_json::Value| v.as_array().map(|a| a.iter().map(|p| p.to_string()).collect());
        let mut inputs: Vec<String> = strings(&body["partitions"])?;
        inputs.sort();
        let mut series: Vec<i64> = body["seriesPartitions"].as_array()?.iter().filter_map(|p| p.as_i64()).collect();
        series.sort();
        (body["status"] == "ready").then_some((inputs, series))
    };
    let what = format!("the group to settle: see {}", first.log.display());
    let (before_a, before_b) = wait_until(what, Duration::from_secs(90), || {
        let (a, b) = (held(&first)?, held(&second)?);
        let settled = !a.0.is_empty() && !b.0.is_empty() && a.0.len() + b.0.len() == 4;
        (settled && !a.1.is_empty() && a.1.len() + b.1.len() == 4).then_some((a, b))
    });
    first.kill9();
    let restarted_at = Instant::now();
    let first = Instance::spawn(&broker, "a-again", &settings("static-a"));
    // 50 s: before the predecessor's session (60 s) would have expired and handed its partitions
    // over by a rebalance.
    let what = explained(|| {
        format!(
            "the restarted member to get its partitions back before its session would have expired: {:?}, see {}",
            held(&first),
            first.log.display()
        )
    });
    wait_for(what, Duration::from_secs(50), || {
        assert_eq!(held(&second).as_ref(), Some(&before_b), "the other member keeps its partitions throughout");
        held(&first).as_ref() == Some(&before_a)
    });
    eprintln!("the restarted static member held its partitions again {:?} after the restart", restarted_at.elapsed());
    drop((first, second));
}

/// The broker stops answering (SIGSTOP) while an SDK sends to the OTLP/HTTP receiver: the SDK is
/// told 503 (retryable), retries by itself, and once the broker answers again (SIGCONT) every
/// trace it sent is on Kafka — none lost (duplicates allowed: a request refused after the broker
/// had taken it, but before it answered, is sent again).
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh (it installs Tansu)"]
fn receiver_refuses_while_the_broker_is_stopped_and_loses_nothing() {
    let own = OwnBroker::start();
    let broker = Broker {
        brokers: own.brokers.clone(),
        name: format!("receiver-pause-{}", std::process::id()),
        security: Vec::new(),
    };
    broker.create_topic(&broker.topic("in"), 2);
    let otlp = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut instance = Instance::spawn(
        &broker,
        "receiver",
        &[
            ("TRACEWARDEN__WORKERS", "1"),
            ("TRACEWARDEN__INGEST__OTLP__HTTP_LISTEN", &otlp),
            ("TRACEWARDEN__INGEST__OTLP__GRPC_LISTEN", &grpc),
            ("TRACEWARDEN__INGEST__OTLP__ACK_TIMEOUT", "2s"),
        ],
    );
    let what = format!("the receiver to listen: see {}", instance.log.display());
    wait_for(what, Duration::from_secs(30), || TcpStream::connect(&otlp).is_ok());
    own.signal("-STOP");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/send_otlp_http.py");
    let sender = Command::new("python3")
        .args([script, &format!("http://{otlp}"), "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The SDK is told 503 while the broker is stopped (ack_timeout 2 s), before it answers again.
    let refused =
        || instance.metric("tracewarden_ingest_requests_total{receiver=\"otlp_http\",result=\"unavailable\"}");
    let what = format!("a request refused as unavailable while the broker is stopped: see {}", instance.log.display());
    wait_for(what, Duration::from_secs(60), || refused() >= 1.0);
    own.signal("-CONT");
    let sent = sender.wait_with_output().unwrap();
    assert!(sent.status.success(), "the SDK's retries succeeded: {}", String::from_utf8_lossy(&sent.stderr));
    let trace_ids: BTreeSet<String> = String::from_utf8_lossy(&sent.stdout).lines().map(String::from).collect();
    assert_eq!(trace_ids.len(), 5);
    let records = broker.read_until(&broker.topic("in"), &trace_ids, Duration::from_secs(30));
    let keys: BTreeSet<String> = records.iter().map(|(k, _)| k.clone()).collect();
    assert!(trace_ids.is_subset(&keys), "every trace reached Kafka: sent {trace_ids:?}, found {keys:?}");
    eprintln!("receiver under a stopped broker: {} records for 5 traces", records.len());
    instance.terminate();
}

/// Every member subscribes only once its own metadata shows its topics
/// (`kafka_client::await_topic_metadata`). librdkafka rejoins when a subscription's metadata
/// changes after its first join, and a rejoin while the KIP-394 JoinGroup is in flight forgets the
/// member id the broker handed out: the broker keeps it as a pending member and the whole group
/// waits a session timeout before any member gets a partition (librdkafka issue 5569; Tansu
/// enforces KIP-394). The series group's topic is created by the instances a moment before they
/// subscribe: without the wait, 6 of 9 series-group joins of three instances started together
/// rejoined so (and in the CLI tests one in many starts stalled); with it, none.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh, or set TRACEWARDEN_TEST_BROKERS"]
fn no_member_joins_before_its_topics_metadata_has_settled() {
    const SERIES_PARTITIONS: usize = 8;
    let broker = broker("join");
    broker.create_topic(&broker.topic("in"), 6);
    let view = broker.group_view_settings("");
    let partitions = SERIES_PARTITIONS.to_string();
    let instance_settings = settings(
        &[
            ("TRACEWARDEN__KAFKA__POINTS_PARTITIONS", partitions.as_str()),
            ("TRACEWARDEN__KAFKA__CLIENT__DEBUG", "cgrp"),
            ("TRACEWARDEN__LOG__LEVEL", "debug"),
        ],
        &view,
    );
    let instances: Vec<Instance> =
        ["a", "b", "c"].iter().map(|label| Instance::spawn(&broker, label, &instance_settings)).collect();
    wait_until_settled(&instances, 6);
    let series_owned = |i: &Instance| -> usize {
        let body: Option<serde_json::Value> = i.get("/readyz").and_then(|b| serde_json::from_str(&b).ok());
        body.and_then(|b| b["seriesPartitions"].as_array().map(Vec::len)).unwrap_or(0)
    };
    let what = format!("the series group to settle: see {}", instances[0].log.display());
    wait_for(what, Duration::from_secs(60), || instances.iter().map(series_owned).sum::<usize>() == SERIES_PARTITIONS);
    for instance in &instances {
        let log = std::fs::read_to_string(&instance.log).unwrap();
        assert!(
            log.contains("Group member needs a valid member ID"),
            "the precondition: the broker asked for the KIP-394 handshake and the log shows it ({})",
            instance.log.display()
        );
        assert!(
            !log.contains("subscription updated from metadata change"),
            "a member joined before its topics' metadata settled: see {}",
            instance.log.display()
        );
    }
    for mut instance in instances {
        instance.terminate();
    }
}
