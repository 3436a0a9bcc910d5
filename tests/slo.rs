//! SLOs across restarts and consumer groups, through Kafka (librdkafka's mock cluster): a
//! restarted owner sends no alert twice and forgets no resolution; two instances send the same
//! alerts as one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use common::*;
use tracewarden::clock::Clock;
use tracewarden::config::Config;
use tracewarden::pipeline::Pipeline;
use tracewarden::slo::aggregate::owner_partition;
use tracewarden::testing::{shop_requests, SHOP_AVAILABILITY_SLO};

/// Requests to shop GET /buy ending `ago` before the clock's time (see `shop_requests`).
fn requests(
    harness: &Harness,
    first_trace: u8,
    count: usize,
    faults: usize,
    slow: bool,
    ago: Duration,
) -> Vec<(String, Bytes)> {
    shop_requests(harness.clock.now().0 - ago.as_nanos() as u64, first_trace, count, faults, slow)
}

fn start(config: &Config, harness: &Harness) -> Pipeline {
    let pipeline = tracewarden::pipeline::start(config, harness.clock.clone()).expect("pipeline starts");
    wait_for("the pipeline to join the group", WAIT, || pipeline.handles.ready.is_ready());
    pipeline
}

/// The SLO's gauge on whichever instance evaluates it.
fn gauge(pipelines: &[&Pipeline], name: &str, slo: &str) -> Option<f64> {
    pipelines.iter().find_map(|p| metric(p, name, &[("slo", slo)]))
}

fn wait_for_attainment(pipelines: &[&Pipeline], slo: &str, expected: f64) {
    wait_for_counts(pipelines, slo, None, expected);
}

/// Waits until the SLO's owner has merged `requests` requests in the last hour (when given) and
/// shows the expected attainment: a ratio alone can be reached by part of the counts.
fn wait_for_counts(pipelines: &[&Pipeline], slo: &str, requests: Option<u64>, attainment: f64) {
    let seen = || {
        let report = pipelines.iter().find_map(|p| {
            let now = p.handles.clock.now().unix_seconds();
            p.handles.slos.lock().unwrap().reports(now).into_iter().find(|r| r.name == slo)
        });
        report.map(|r| (r.burn_rates.first().map(|b| b.total), r.attainment))
    };
    let what = explained(|| {
        format!("{slo}: (requests in the last hour, attainment) = {:?}, expected ({requests:?}, {attainment})", seen())
    });
    wait_for(what, WAIT, || match seen() {
        Some((total, Some(a))) => (a - attainment).abs() < 1e-9 && requests.is_none_or(|n| total == Some(n)),
        _ => false,
    });
}

fn alerts(harness: &Harness, topic: &str, expected: usize) -> Vec<Value> {
    harness.read_all(topic, expected).iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect()
}

/// Per alert (tier, or budget severity): its statuses in order.
fn lifecycle(alerts: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_alert: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in alerts {
        let labels = &a["labels"];
        let name = format!(
            "{}/{}",
            labels["slo"].as_str().unwrap(),
            labels.get("tier").or(labels.get("severity")).and_then(Value::as_str).unwrap()
        );
        by_alert.entry(name).or_default().push(a["status"].as_str().unwrap().to_string());
    }
    by_alert
}

#[test]
fn a_restarted_owner_sends_no_alert_twice_and_resolves_every_one() {
    let mut harness = Harness::new("slo-restart");
    harness.config.slo = tracewarden::slo::config::parse_slos(SHOP_AVAILABILITY_SLO).unwrap();
    let first = harness.start();
    // 100 requests, 5 faults: 5 % bad against 0.1 % allowed — every tier and the budget fire.
    harness.produce_all(&requests(&harness, 1, 100, 5, false, Duration::from_secs(20)));
    wait_for_attainment(&[&first], "buy-availability", 0.95);
    harness.advance(Duration::from_secs(11));
    let fired = alerts(&harness, "slo_alerts", 4);
    assert_eq!(fired.len(), 4, "{fired:#?}");
    assert!(fired.iter().all(|a| a["status"] == "firing"));
    let evaluations = |pipeline: &Pipeline| -> Vec<i64> {
        let slos = pipeline.handles.slos.lock().unwrap();
        slos.history("buy-availability").unwrap().points().map(|p| p.at).collect()
    };
    let before = evaluations(&first);
    assert!(!before.is_empty(), "the first owner evaluated the SLO");
    // The owner goes away mid-incident; its successor restores the state from the state topic,
    // the chart of its history included.
    first.stop().unwrap();
    let second = harness.start();
    wait_for("the successor to evaluate the SLO", WAIT, || {
        gauge(&[&second], "tracewarden_slo_goal_ratio", "buy-availability").is_some()
    });
    let after = evaluations(&second);
    assert!(after.starts_with(&before), "the successor's history {after:?} goes on from {before:?}");
    assert_eq!(
        metric(&second, "tracewarden_slo_alert_firing", &[("slo", "buy-availability"), ("tier", "page-fast")]),
        Some(1.0),
        "restored as firing"
    );
    wait_for_attainment(&[&second], "buy-availability", 0.95);
    harness.advance(Duration::from_secs(11));
    // The incident ends: 12 000 good requests bring every burn rate under its threshold and the
    // budget back over half (1 − (5/12 100)/0.001 = 0.59). Counted twice, the 5 faults would leave
    // the budget at WARNING.
    harness.produce_all(&requests(&harness, 101, 12_000, 0, false, Duration::from_secs(5)));
    wait_for_attainment(&[&second], "buy-availability", 1.0 - 5.0 / 12_100.0);
    harness.advance(Duration::from_secs(11));
    let all = alerts(&harness, "slo_alerts", 8);
    let expected: BTreeMap<String, Vec<String>> = ["breached", "page-fast", "page-slow", "ticket"]
        .iter()
        .map(|a| (format!("buy-availability/{a}"), vec!["firing".to_string(), "resolved".to_string()]))
        .collect();
    assert_eq!(lifecycle(&all), expected, "{all:#?}");
    for resolved in all.iter().filter(|a| a["status"] == "resolved") {
        let firing =
            all.iter().find(|a| a["status"] == "firing" && a["fingerprint"] == resolved["fingerprint"]).unwrap();
        assert_eq!(firing["startsAt"], resolved["startsAt"]);
        assert_eq!(firing["labels"], resolved["labels"]);
    }
    second.stop().unwrap();
}

/// Three SLO names, one per aggregates partition.
fn spread_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for i in 0.. {
        let name = format!("buy-{i}");
        let partition = owner_partition(&name, PARTITIONS);
        if names.iter().all(|n| owner_partition(n, PARTITIONS) != partition) {
            names.push(name);
        }
        if names.len() == PARTITIONS as usize {
            return names;
        }
    }
    unreachable!()
}

#[test]
fn two_instances_send_the_same_alerts_as_one() {
    let harness = Harness::new("slo-one");
    let names = spread_names();
    let definitions = format!(
        r#"
        [[slo]]
        name = "{}"
        service = "shop"
        sli = "availability"
        goal = 0.999
        window = "30d"

        [[slo]]
        name = "{}"
        service = "shop"
        operation = "GET /buy"
        sli = "latency"
        threshold = "100ms"
        goal = 0.95
        window = "1d"

        [[slo]]
        name = "{}"
        service = "shop"
        sli = "latency"
        threshold = "10ms"
        goal = 0.99
        window = "1d"
        budgeting = "periods"
        period = "1m"
        statistic = "avg"
        "#,
        names[0], names[1], names[2]
    );
    let config_for = |group: &str| {
        let mut config = harness.config.clone();
        config.kafka.group_id = group.into();
        for (topic, partitions) in [("aggregates", PARTITIONS), ("state", 1), ("alerts", 1), ("out", 1)] {
            harness.cluster().create_topic(&format!("{group}-{topic}"), partitions, 1).unwrap();
        }
        config.kafka.aggregates_topic = format!("{group}-aggregates");
        config.kafka.slo_state_topic = format!("{group}-state");
        config.kafka.alerts_topic = format!("{group}-alerts");
        config.kafka.output_topic = format!("{group}-out");
        config.slo = tracewarden::slo::config::parse_slos(&definitions).unwrap();
        config
    };
    let one = config_for("one");
    let two = config_for("two");
    let single = start(&one, &harness);
    let pair = [start(&two, &harness), start(&two, &harness)];
    wait_for("the pair to share the partitions", WAIT, || {
        let held: Vec<usize> = pair.iter().map(|p| p.handles.ready.assignment().len()).collect();
        held.iter().all(|&n| n > 0) && held.iter().sum::<usize>() == 2 * PARTITIONS as usize
    });
    let owners = |name: &str| {
        pair.iter().filter(|p| metric(p, "tracewarden_slo_goal_ratio", &[("slo", name)]).is_some()).count()
    };
    wait_for("each SLO evaluated by exactly one of the pair", WAIT, || names.iter().all(|n| owners(n) == 1));
    let counted = |requests: u64, expected: &[f64]| {
        assert_eq!(expected.len(), names.len(), "one expected attainment per SLO");
        for (name, attainment) in names.iter().zip(expected) {
            wait_for_counts(&[&single], name, Some(requests), *attainment);
            wait_for_counts(&[&pair[0], &pair[1]], name, Some(requests), *attainment);
        }
    };
    let same_alerts = |expected: usize| {
        let from_one = alerts(&harness, "one-alerts", expected);
        let from_two = alerts(&harness, "two-alerts", expected);
        assert_eq!(from_one.len(), expected, "{:#?}", lifecycle(&from_one));
        let key = |a: &Value| {
            (
                a["fingerprint"].to_string(),
                a["status"].to_string(),
                a["startsAt"].to_string(),
                a["evaluation"].to_string(),
            )
        };
        let mut a: Vec<_> = from_one.iter().map(key).collect();
        let mut b: Vec<_> = from_two.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the same alerts, with the same figures");
        from_one
    };
    // The third SLO counts periods: attainment = good periods / periods elapsed, and a rolling
    // day holds 1 440 one-minute periods (slo.md, "Budget arithmetic"). Its one bad minute
    // leaves 1 439 of 1 440 good for the rest of the test.
    let one_bad_minute_a_day = 1439.0 / 1440.0;
    // A bad minute: 300 requests over six traces (spread over the input partitions), 30 faults,
    // every tenth slow (250 ms): availability 0.9, latency 0.9, mean latency 29.5 ms > 10 ms.
    harness.produce_all(&requests(&harness, 1, 300, 30, true, Duration::from_secs(20)));
    counted(300, &[0.9, 0.9, one_bad_minute_a_day]);
    harness.advance(Duration::from_secs(11));
    // Every tier and the budget of the first two; page-fast and page-slow of the third (one bad
    // minute of 1 440 burns its 1 % at 20x over 5 min, 1.7x over 1 h; 0.02x over 3 d).
    same_alerts(10);
    // A minute later, 20 000 fast good requests.
    harness.advance(Duration::from_secs(60));
    harness.produce_all(&requests(&harness, 50, 20_000, 0, false, Duration::from_secs(5)));
    // These end 66 s after T0 (a whole minute: T0 is 30 000 000 minutes after the epoch), the bad
    // ones 20 s before it: the good requests make a period of their own, a good one.
    counted(20_300, &[1.0 - 30.0 / 20_300.0, 1.0 - 30.0 / 20_300.0, one_bad_minute_a_day]);
    harness.advance(Duration::from_secs(11));
    // Resolved: page-fast and page-slow of the first (its ticket tier and budget still burn),
    // everything of the second; the third still has its bad minute within 5 min.
    let all = same_alerts(16);
    assert_eq!(all.iter().filter(|a| a["status"] == "resolved").count(), 6);
    for p in pair {
        p.stop().unwrap();
    }
    single.stop().unwrap();
}

/// The largest SLO state the configuration allows crosses the broker and is restored whole: a
/// 31-day window of minute periods, every one bad, eight tiers up to 7 days (about 2 MB as
/// JSON; librdkafka refuses a record over `message.max.bytes`, 1 MB by default, as a broker does).
/// The checkpoint is written to the state topic as its owner would, and an instance taking the
/// SLO over reports exactly what that owner reported.
#[test]
fn the_largest_slo_state_crosses_the_broker_and_is_restored() {
    use tracewarden::slo::aggregate::{AggregateRecord, SourceCounts};
    use tracewarden::slo::engine::SloEngine;
    let mut harness = Harness::new("slo-largest");
    let tiers = tracewarden::testing::tiers_at_the_bounds("slo.alerts");
    let text = format!(
        "[[slo]]\nname = \"largest\"\nservice = \"shop\"\nsli = \"availability\"\ngoal = 0.999\nwindow = \"31d\"\nbudgeting = \"periods\"\nperiod = \"1m\"\n{tiers}"
    );
    harness.config.slo = tracewarden::slo::config::parse_slos(&text).unwrap();
    assert!(harness.config.slo[0].validate(0).is_empty(), "{:?}", harness.config.slo[0].validate(0));

    // The previous owner: counts in every minute of the window, every minute bad.
    let now = harness.clock.now().unix_seconds();
    let mut owner = SloEngine::new(&harness.config.slo);
    owner.take_over(0, None, &[]);
    let minutes = 31 * 24 * 60 + 60;
    let first = now / 60 * 60 - minutes * 60;
    let buckets = (0..minutes).map(|m| (first + m * 60, 400_000 + m as u64, 900_000 + 7 * m as u64, 0)).collect();
    let sources = vec![SourceCounts { topic: "spans".into(), partition: 0, floor: 1, offsets: vec![(0, buckets)] }];
    assert!(owner.merge(&AggregateRecord { slo: "largest".into(), sources }).is_some());
    owner.evaluate(now);
    let checkpoint = owner.checkpoint(0, now, true).unwrap();
    let json = serde_json::to_vec(&checkpoint).unwrap().len();
    assert!(json > 1_000_000, "as JSON the state is larger than a Kafka message: {json} bytes");
    let expected = owner.reports(now).remove(0);
    assert!(expected.attainment.is_some() && !expected.firing.is_empty(), "{expected:?}");
    harness.produce_topic("tracewarden_slo_state", "largest", &checkpoint.encode());

    let successor = start(&harness.config, &harness);
    let report = || {
        let slos = successor.handles.slos.lock().unwrap();
        slos.reports(now).into_iter().find(|r| r.name == "largest")
    };
    wait_for("the successor to take the SLO over", WAIT, || report().is_some());
    assert_eq!(report(), Some(expected), "the state restored whole");
    let history = successor.handles.slos.lock().unwrap().history("largest").unwrap().len();
    assert!(history >= 1, "the owner's evaluation restored with it");
    successor.stop().unwrap();
}

/// A new owner reads back the alerts of the last minutes (by record time), each SLO's in the
/// order written; older ones, and messages that are not SLO alerts, are passed over.
#[test]
fn the_alerts_sent_lately_are_read_back_by_slo_in_order() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::{SystemTime, UNIX_EPOCH};
    let harness = Harness::new("slo-sent");
    let topic = "slo_alerts_sent";
    harness.cluster().create_topic(topic, 3, 1).expect("alerts topic");
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &harness.config.kafka.brokers).create().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let alert = |slo: &str, tier: &str, status: &str| {
        serde_json::json!({"status": status, "fingerprint": format!("{slo}-{tier}"), "startsAt": "2026-12-07T10:00:00Z",
            "labels": {"alertname": "SLOBurnRate", "slo": slo, "tier": tier}})
        .to_string()
    };
    let deployment = serde_json::json!({"type": "deployment", "status": "firing", "fingerprint": "d1",
        "labels": {"alertname": "DeploymentDegraded", "service": "customers"}, "startsAt": "2026-12-07T10:00:00Z"})
    .to_string();
    let records = [
        (alert("buy", "page-fast", "firing"), now_ms - 20 * 60_000),
        (alert("buy", "page-fast", "resolved"), now_ms - 19 * 60_000),
        (alert("buy", "page-fast", "firing"), now_ms - 60_000),
        (deployment, now_ms - 50_000),
        (alert("other", "ticket", "firing"), now_ms - 40_000),
        (alert("buy", "page-fast", "resolved"), now_ms - 30_000),
    ];
    for (payload, at) in &records {
        let key = serde_json::from_str::<Value>(payload).unwrap()["fingerprint"].as_str().unwrap().to_string();
        producer.send(BaseRecord::to(topic).key(&key).payload(payload).timestamp(*at)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let session = tracewarden::kafka_client::KafkaSession::for_kafka(&harness.config.kafka).unwrap();
    let client = rdkafka::ClientConfig::new().set("bootstrap.servers", &harness.config.kafka.brokers).clone();
    let sent = tracewarden::slo::sent::read_sent(client, &session, topic, Duration::from_secs(20)).unwrap();
    let statuses = |slo: &str| sent.get(slo).map(|a| a.iter().map(|a| a.status.as_str()).collect::<Vec<_>>());
    assert_eq!(statuses("buy"), Some(vec!["firing", "resolved"]), "the last 15 minutes' alerts only");
    assert_eq!(statuses("other"), Some(vec!["firing"]));
    assert_eq!(sent.len(), 2, "no deployment alert among them");
    assert_eq!(sent["buy"][0].starts_at_seconds(), Some(1_796_637_600), "2026-12-07T10:00:00Z");
}
