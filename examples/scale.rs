//! Scale harness (SCALING.md): what one instance reads, publishes, spends and keeps for the
//! group-wide views as the group grows.
//!
//! ```text
//! scripts/broker.sh is sourced by scripts/test.sh; by hand:
//!   tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ &
//!   TRACEWARDEN_TEST_BROKERS=127.0.0.1:9092 cargo run --release --example scale -- 1,2,4 2000 60
//! ```
//! Arguments: the group sizes to measure (default `1,2,4`), the busy series S (default 2 000:
//! 40 services × 50 operations, each one request a second) and the seconds measured after a
//! 20 s warm-up (default 60). The binary run is `TRACEWARDEN_BIN` (default the release build).
//!
//! For each group size N it starts N `tracewarden run` processes in one group on the broker,
//! feeds S series at a steady rate, and prints per instance: bytes of the group view read and
//! published per second (`tracewarden_group_view_bytes_total`), CPU seconds per second of the
//! whole process and of its group-view thread, RSS, and the series partitions owned. Then it
//! lengthens the history to an hour — for every series, copies of its newest checkpoint written
//! to the changelog at each 10 s step of the hour before, as its owner would have written them —
//! kills one instance with kill -9, starts it again, and prints how long it took to be ready (its
//! share of that hour restored) and to answer `/api/history` for a series it owns with every step
//! of the hour.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, TracesData};
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const OPERATIONS_PER_SERVICE: usize = 50;
/// The history the restart restores: an hour of 10 s steps.
const HISTORY_STEPS: u64 = 360;
const INPUT_PARTITIONS: i32 = 8;
const WARM_UP: Duration = Duration::from_secs(20);

struct Instance {
    child: Child,
    http: String,
    env: Vec<(String, String)>,
}

fn get(http: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(http).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_string()))
}

/// The sum of a family's samples whose line contains `filter`.
fn metric(http: &str, name: &str, filter: &str) -> f64 {
    let body = get(http, "/metrics").map(|(_, b)| b).unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// CPU seconds of the process, and of its threads whose name starts with `thread`.
fn cpu_seconds(pid: u32, thread: &str) -> (f64, f64) {
    let ticks = |stat: &str| -> f64 {
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (field(11) + field(12)) / 100.0
    };
    let process = ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    let mut threads = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(thread) {
            threads += ticks(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default());
        }
    }
    (process, threads)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn spawn(binary: &str, env: &[(String, String)], log: &str) -> Child {
    let mut command = Command::new(binary);
    command.arg("run").stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("the tracewarden binary runs (build it: cargo build --release)")
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn string(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

/// One OTLP message of `traces` single-span traces, one per series starting at `first`.
fn message(first: usize, traces: usize, series: usize, now: u64, seed: u64) -> Vec<u8> {
    let mut resource_spans = Vec::new();
    for i in 0..traces {
        let s = (first + i) % series;
        let (service, operation) = (s / OPERATIONS_PER_SERVICE, s % OPERATIONS_PER_SERVICE);
        let id = (seed << 32) | (first + i) as u64;
        let duration = 1_000_000 + (id % 97) * 300_000;
        let status = if id.is_multiple_of(50) { 500 } else { 200 };
        resource_spans.push(ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", &format!("svc-{service:02}")),
                    string("k8s.pod.name", &format!("svc-{service:02}-pod-{}", id % 3)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: [id.to_be_bytes(), (!id).to_be_bytes()].concat(),
                    span_id: id.to_be_bytes().to_vec(),
                    name: format!("GET /op-{operation:02}"),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: now - duration,
                    end_time_unix_nano: now,
                    attributes: vec![
                        string("http.request.method", "GET"),
                        string("http.route", &format!("/op-{operation:02}")),
                        attribute("http.response.status_code", any_value::Value::IntValue(status)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    TracesData { resource_spans }.encode_to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> =
        args.first().map_or("1,2,4", String::as_str).split(',').map(|n| n.parse().expect("group sizes")).collect();
    let series: usize = args.get(1).map_or(2_000, |s| s.parse().expect("series"));
    let seconds: u64 = args.get(2).map_or(60, |s| s.parse().expect("seconds"));
    let brokers = std::env::var("TRACEWARDEN_TEST_BROKERS").expect("TRACEWARDEN_TEST_BROKERS names the broker");
    let binary = std::env::var("TRACEWARDEN_BIN").unwrap_or_else(|_| "target/release/tracewarden".into());
    std::fs::create_dir_all("target/scale").unwrap();
    println!(
        "brokers {brokers}, binary {binary}, S = {series} series (one request a second each), {seconds} s measured"
    );
    println!(
        "N  inst  read B/s  published B/s  read/published  cpu s/s (process)  cpu s/s (group view)  RSS MiB  owned"
    );
    for &n in &sizes {
        let run = format!("scale-{}-{n}", std::process::id());
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let input = format!("{run}-in");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(&input, INPUT_PARTITIONS, TopicReplication::Fixed(-1))],
                &AdminOptions::new(),
            ))
            .unwrap();
        let mut instances: Vec<Instance> = (0..n)
            .map(|i| {
                let http = format!("127.0.0.1:{}", free_port());
                let env: Vec<(String, String)> = [
                    ("TRACEWARDEN__KAFKA__BROKERS", brokers.as_str()),
                    ("TRACEWARDEN__KAFKA__GROUP_ID", &run),
                    ("TRACEWARDEN__KAFKA__INPUT_TOPICS", &input),
                    ("TRACEWARDEN__KAFKA__OUTPUT_TOPIC", &format!("{run}-out")),
                    ("TRACEWARDEN__KAFKA__DEAD_LETTER_TOPIC", &format!("{run}-dlq")),
                    ("TRACEWARDEN__KAFKA__POINTS_TOPIC", &format!("{run}-points")),
                    ("TRACEWARDEN__KAFKA__TIMELINE_TOPIC", &format!("{run}-timeline")),
                    ("TRACEWARDEN__KAFKA__ROLLUPS_TOPIC", &format!("{run}-rollups")),
                    ("TRACEWARDEN__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "6000"),
                    ("TRACEWARDEN__KAFKA__CLIENT__HEARTBEAT_INTERVAL_MS", "500"),
                    ("TRACEWARDEN__WINDOW__DECISION_WAIT", "1s"),
                    ("TRACEWARDEN__WORKERS", "1"),
                    ("TRACEWARDEN__HTTP__LISTEN", &http),
                    ("TRACEWARDEN__LOG__FORMAT", "json"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let child = spawn(&binary, &env, &format!("target/scale/{run}-{i}.log"));
                Instance { child, http, env }
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !instances.iter().all(|i| get(&i.http, "/readyz").is_some_and(|(s, _)| s == 200)) {
            assert!(Instant::now() < deadline, "the group never became ready (logs in target/scale/)");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Traffic: every series once a second, 50 traces a message, until told to stop.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let (stop, brokers, input) = (stop.clone(), brokers.clone(), input.clone());
            std::thread::spawn(move || {
                let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("linger.ms", "20")
                    .set("compression.type", "lz4")
                    .create()
                    .unwrap();
                let mut tick = 0u64;
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                    for first in (0..series).step_by(50) {
                        let payload = message(first, 50.min(series - first), series, now as u64, tick);
                        let key = format!("{tick:016x}{first:016x}");
                        let _ = producer.send(BaseRecord::to(&input).key(&key).payload(&payload));
                    }
                    tick += 1;
                    let next = started + Duration::from_secs(tick);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                let _ = producer.flush(Duration::from_secs(10));
            })
        };
        std::thread::sleep(WARM_UP);
        let sample = |i: &Instance| {
            let pid = i.child.id();
            let read = metric(&i.http, "tracewarden_group_view_bytes_total", "direction=\"read\"");
            let published = metric(&i.http, "tracewarden_group_view_bytes_total", "direction=\"published\"");
            let (process, view) = cpu_seconds(pid, "tracewarden-gro");
            (read, published, process, view)
        };
        let before: Vec<_> = instances.iter().map(sample).collect();
        std::thread::sleep(Duration::from_secs(seconds));
        let after: Vec<_> = instances.iter().map(sample).collect();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let s = seconds as f64;
            let (read, published) = ((a.0 - b.0) / s, (a.1 - b.1) / s);
            let owned = metric(&instances[i].http, "tracewarden_series_partitions_owned", "");
            println!(
                "{n}  {i}     {read:>9.0}  {published:>13.0}  {:>14.2}  {:>17.3}  {:>20.3}  {:>7.0}  {owned}",
                read / published.max(1.0),
                (a.2 - b.2) / s,
                (a.3 - b.3) / s,
                rss_mib(instances[i].child.id()),
            );
        }
        // A restart: kill -9, start again with the same settings, and time the take-over: until
        // it is ready (its partitions' history restored), and until it answers the history of a
        // service it owns with at least the requests the group counted before the kill.
        let services: Vec<String> =
            (0..series.div_ceil(OPERATIONS_PER_SERVICE)).map(|s| format!("svc-{s:02}")).collect();
        let history_total = |http: &str, service: &str| -> Option<u64> {
            let (status, body) = get(http, &format!("/api/history?service={service}"))?;
            let body: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
            Some(body["points"].as_array()?.iter().filter_map(|p| p["requests"].as_u64()).sum())
        };
        let counted: Vec<u64> =
            services.iter().map(|s| history_total(&instances[n - 1].http, s).unwrap_or(0)).collect();
        let seeded = seed_history(&brokers, &format!("{run}-timeline"));
        // The owners' next checkpoint round ends with markers after the seeded values: only then
        // does a restore take them (values after a partition's last marker are an unfinished round).
        std::thread::sleep(Duration::from_secs(12));
        let victim = &mut instances[0];
        let _ = victim.child.kill();
        let _ = victim.child.wait();
        let restarted = Instant::now();
        victim.child = spawn(&binary, &victim.env, &format!("target/scale/{run}-0-restarted.log"));
        let http = victim.http.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        let owned = loop {
            let ready = get(&http, "/readyz").filter(|(s, _)| *s == 200);
            let owned: Option<Vec<i64>> = ready.and_then(|(_, body)| {
                let body: serde_json::Value = serde_json::from_str(&body).ok()?;
                Some(body["seriesPartitions"].as_array()?.iter().filter_map(|p| p.as_i64()).collect())
            });
            if let Some(owned) = owned.filter(|o| !o.is_empty()) {
                break owned;
            }
            assert!(Instant::now() < deadline, "the restarted instance never became ready");
            std::thread::sleep(Duration::from_millis(100));
        };
        let ready_after = restarted.elapsed();
        let partition_of = |s: &str| tracewarden::investigate::group::wire::service_partition(s, 64) as i64;
        let owned_service = services.iter().position(|s| owned.contains(&partition_of(s)));
        let steps = |http: &str, service: &str| -> Option<usize> {
            let (status, body) = get(http, &format!("/api/history?service={service}"))?;
            let body: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
            Some(body["points"].as_array()?.iter().filter(|p| p["requests"].as_u64().is_some_and(|r| r > 0)).count())
        };
        let answered_after = owned_service.map(|i| {
            while history_total(&http, &services[i]).is_none_or(|total| total < counted[i])
                || steps(&http, &services[i]).is_none_or(|n| n < HISTORY_STEPS as usize - 1)
            {
                assert!(
                    Instant::now() < deadline,
                    "the restarted instance never answered the history of {}",
                    services[i]
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            restarted.elapsed()
        });
        let restored = metric(&http, "tracewarden_series_points_restored_total", "");
        println!(
            "N = {n}: an hour of history ({seeded} checkpoints seeded for the group); after kill -9 and restart, ready ({restored} points restored) in {:.1} s; the full hour of a series it owns answered in {} (session timeout 6 s)",
            ready_after.as_secs_f64(),
            answered_after.map_or("- (it owns no service)".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        feeder.join().unwrap();
        for mut instance in instances {
            let _ = Command::new("kill").args(["-TERM", &instance.child.id().to_string()]).status();
            let _ = instance.child.wait();
        }
    }
}

/// Lengthens the group's history to [`HISTORY_STEPS`]: reads the changelog `topic` to its end
/// and, for every series, writes copies of its newest checkpointed point at each earlier step of
/// the hour that has none, on the series' partition, as its owner would have. Returns how many.
fn seed_history(brokers: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, TopicPartitionList};
    use std::collections::HashMap;
    use tracewarden::investigate::group::wire::{
        checkpoint_key, checkpoint_value, decode_checkpoint_key, decode_point, CheckpointKey, MAX_MESSAGE_BYTES,
    };
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-seeder"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let partitions =
        reader.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap().topics()[0].partitions().len();
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions as i32 {
        let (_, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if high > 0 {
            ends.insert(p, high);
            assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
        }
    }
    reader.assign(&assignment).unwrap();
    // Per series (its encoded key without the step): partition, the steps held, the newest value.
    let mut newest: HashMap<Vec<u8>, (i32, Vec<u64>, Vec<u8>)> = HashMap::new();
    while !ends.is_empty() {
        let Some(Ok(message)) = reader.poll(Duration::from_millis(500)) else { continue };
        if ends.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            ends.remove(&message.partition());
        }
        let (Some(key), Some(value)) = (message.key(), message.payload()) else { continue };
        let Some(CheckpointKey::Point { series, step }) = decode_checkpoint_key(key) else { continue };
        let entry = newest.entry(checkpoint_key(&series, 0)).or_insert((message.partition(), Vec::new(), Vec::new()));
        entry.1.push(step);
        if entry.1.iter().all(|held| *held <= step) {
            entry.2 = value.to_vec();
        }
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "50")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut seeded = 0;
    for (partition, steps, value) in newest.into_values() {
        let Some(template) = decode_point(&value) else { continue };
        let last = template.step;
        for step in (last.saturating_sub(HISTORY_STEPS - 1)..last).filter(|s| !steps.contains(s)) {
            let mut point = template.clone();
            point.step = step;
            let (key, payload) = (checkpoint_key(&point.series, step), checkpoint_value(point, MAX_MESSAGE_BYTES));
            let mut record = BaseRecord::to(topic).partition(partition).key(&key).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, returned)) => {
                        record = returned;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            seeded += 1;
        }
    }
    producer.flush(Duration::from_secs(120)).expect("the seeded history acknowledged");
    seeded
}
