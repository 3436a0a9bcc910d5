//! `tracewarden run` while Kafka cannot be reached: one clear line every few seconds, readiness
//! 503, and the pipeline starts by itself once the brokers answer.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

const BIN: &str = env!("CARGO_BIN_EXE_tracewarden");

fn status(addr: &str, path: &str) -> Option<u16> {
    common::http_get(addr, path).map(|(status, _)| status)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_unreachable_cluster_is_one_line_every_few_seconds_and_the_pipeline_waits_for_it() {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
    cluster.create_topic("otlp_spans", 1, 1).unwrap();
    // The topics tracewarden would create exist already: once a mock broker has been down,
    // librdkafka's mock cluster never answers CreateTopics again (observed: every attempt times
    // out while consumers and producers work), and the series group cannot start without them.
    let defaults = tracewarden::config::Config::from_toml("").unwrap().kafka;
    for (topic, partitions) in [
        (&defaults.output_topic, 1),
        (&defaults.dead_letter_topic, 1),
        (&defaults.alerts_topic, 1),
        (&defaults.points_topic, 4),
        (&defaults.timeline_topic, 4),
        (&defaults.rollups_topic, 1),
    ] {
        cluster.create_topic(topic, partitions, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    cluster.broker_down(1).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let config = std::env::temp_dir().join(format!("tw-unreachable-{}.toml", std::process::id()));
    std::fs::write(&config, format!("[kafka]\nbrokers = \"{brokers}\"\n[http]\nlisten = \"{http}\"\n")).unwrap();
    let log = std::env::temp_dir().join(format!("tw-unreachable-{}.log", std::process::id()));
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // Without brokers: still running, alive but not ready, until it has said so a second time
    // (the line of a second period of the limiter, with the failures it held back since the first).
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let said = |text: &str| text.lines().filter(|l| l.contains("Kafka unreachable")).count();
    let what = common::explained(|| format!("a second \"Kafka unreachable\" line:\n{}", read()));
    common::wait_for(what, Duration::from_secs(60), || {
        assert!(child.try_wait().unwrap().is_none(), "exited while Kafka was unreachable:\n{}", read());
        said(&read()) >= 2
    });
    assert_eq!(status(&http, "/healthz"), Some(200));
    assert_eq!(status(&http, "/readyz"), Some(503), "not ready without Kafka");
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    let unreachable: Vec<&&str> = lines.iter().filter(|l| l.contains("Kafka unreachable")).collect();
    assert!(unreachable[0].contains(&brokers), "the line names the brokers: {}", unreachable[0]);
    assert!(unreachable[0].contains("retrying"), "and says it retries: {}", unreachable[0]);
    // Not a flood: the failures between the two lines were held back and counted in the second.
    // The count that follows `repeats`, the terminal's colour codes (ESC [ … m) left out.
    let plain: String = unreachable[1]
        .split('\x1b')
        .enumerate()
        .map(|(i, part)| if i == 0 { part } else { part.split_once('m').map_or(part, |(_, rest)| rest) })
        .collect();
    let repeats = plain.split_once("repeats").and_then(|(_, rest)| {
        rest.trim_start_matches(|c: char| !c.is_ascii_digit()).split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    });
    assert!(repeats > Some(0u64), "the repeats held back are counted: {}", unreachable[1]);
    assert!(lines.len() <= 8, "nothing else repeats: {} lines\n{text}", lines.len());

    // The brokers come back: the instance joins its group by itself.
    cluster.broker_up(1).unwrap();
    common::wait_for("ready once the brokers came back", Duration::from_secs(40), || {
        assert!(child.try_wait().unwrap().is_none(), "exited");
        status(&http, "/readyz") == Some(200)
    });
    unsafe_terminate(&child);
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "a clean shutdown");
    std::fs::remove_file(&config).ok();
    std::fs::remove_file(&log).ok();
}

/// SIGTERM, as an orchestrator stops the process.
fn unsafe_terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}
