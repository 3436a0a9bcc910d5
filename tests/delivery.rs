//! Delivery against the real Kafka protocol (librdkafka's mock cluster, with its error
//! injection): a retriable produce failure is retried after a backoff read from the injected
//! clock, never in a tight loop; an error that retrying cannot fix is reported once, counted, and
//! the partition moves on.

mod common;

use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use common::*;
use tracewarden::testing::{encode, AttrSpec, SpanSpec, SERVER};

fn trace(t: u8) -> (String, bytes::Bytes) {
    let span =
        SpanSpec::new("shop", t, 1, None, SERVER, "GET /buy").http("GET", "/buy", 200).starting(T0.0 - 1_000_000_000);
    (format!("{:032x}", u128::from_be_bytes([t; 16])), encode(&[span]))
}

fn received(pipeline: &tracewarden::pipeline::Pipeline) -> f64 {
    metric(pipeline, "tracewarden_spans_received_total", &[("encoding", "otlp_proto")]).unwrap_or(0.0)
}

/// A started pipeline that has read one trace (`t`), buffered and not yet decided.
fn one_trace_read(group: &str, t: u8) -> (Harness, tracewarden::pipeline::Pipeline) {
    let harness = Harness::new(group);
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    let pipeline = harness.start();
    let (key, payload) = trace(t);
    harness.produce(&key, &payload);
    wait_for("the trace to be read", WAIT, || received(&pipeline) == 1.0);
    (harness, pipeline)
}

#[test]
fn a_retriable_produce_failure_is_retried_after_its_backoff_and_loses_nothing() {
    let mut harness = Harness::new("delivery-retriable");
    // Our layer sees each broker error (librdkafka would otherwise retry on its own).
    harness.config.kafka.client.insert("message.send.max.retries".into(), "0".into());
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    let pipeline = harness.start();
    let (key, payload) = trace(1);
    harness.produce_to(0, &key, &payload);
    wait_for("the trace to be read", WAIT, || received(&pipeline) == 1.0);

    // Produce requests fail with a retriable error until cleared. (The injected errors answer
    // every producer of the process, the snapshot exchange's too, so they are many rather than
    // counted: which producer meets which one depends on timing.)
    let retriable = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 1000];
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &retriable);
    harness.advance(Duration::from_secs(5));
    let retries = || metric(&pipeline, "tracewarden_forward_retries_total", &[]).unwrap_or(0.0);
    wait_for("the first failure", WAIT, || retries() == 1.0);
    let waiting = || metric(&pipeline, "tracewarden_partitions_waiting_for_retry", &[]);
    wait_for("the trace's partition to pause", WAIT, || waiting() == Some(1.0));
    // Only that partition waits: another one is still read. (This test's producer meets the
    // injected errors too: they are set aside while it writes, then put back.)
    harness.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    let (other_key, other_payload) = trace(2);
    harness.produce_to(1, &other_key, &other_payload);
    wait_for("a message on another partition to be read", WAIT, || received(&pipeline) == 2.0);
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &retriable);
    // The clock has not moved: no attempt before the 100 ms backoff, however many times the
    // worker holding the record looks at its retries (every turn of its loop).
    wait_for("the held position committed", WAIT, || harness.committed()[0] == 0);
    wait_for_polls(&pipeline, INPUT, [0]);
    assert_eq!(retries(), 1.0, "not sent again before its backoff");
    harness.advance(Duration::from_millis(100));
    wait_for("the second failure", WAIT, || retries() == 2.0);
    harness.advance(Duration::from_millis(200));
    wait_for("the third failure", WAIT, || retries() == 3.0);
    // The backoff doubles: nothing is sent before 400 ms more, so clearing the errors now lets
    // the next attempt through.
    harness.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    harness.advance(Duration::from_millis(400));
    wait_for("the trace forwarded", WAIT, || metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(1.0));
    assert_eq!(retries(), 3.0, "one retry per failed attempt");
    harness.advance(Duration::from_secs(5));
    wait_for("the other trace forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(2.0)
    });
    assert_eq!(metric(&pipeline, "tracewarden_forward_failures_total", &[("destination", "output")]), None);
    wait_for("the partition to resume", WAIT, || waiting() == Some(0.0));
    let output = harness.read_all("sampled_spans", 2);
    let mut keys: Vec<Vec<u8>> = output.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec![key.into_bytes(), other_key.into_bytes()], "exactly one copy of each");
    wait_for("offsets committed to the end", WAIT, || harness.committed_to_end());
    pipeline.stop().unwrap();
}

#[test]
fn a_record_too_large_even_split_is_reported_once_and_the_partition_moves_on() {
    let mut harness = Harness::new("delivery-too-large");
    harness.config.kafka.client.insert("message.max.bytes".into(), "4000".into());
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    let pipeline = harness.start();
    // One span bigger than message.max.bytes: no split can make it fit.
    let huge = "x".repeat(6_000);
    let huge: &'static str = Box::leak(huge.into_boxed_str());
    let big = SpanSpec::new("shop", 1, 1, None, SERVER, "GET /big")
        .attr("payload", AttrSpec::Str(huge))
        .starting(T0.0 - 1_000_000_000);
    harness.produce(&format!("{:032x}", u128::from_be_bytes([1; 16])), &encode(&[big]));
    let (key, payload) = trace(2);
    harness.produce(&key, &payload);
    wait_for("both traces read", WAIT, || received(&pipeline) == 2.0);
    harness.advance(Duration::from_secs(5));
    wait_for("the small trace forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(1.0)
    });
    let failures = || metric(&pipeline, "tracewarden_forward_failures_total", &[("destination", "output")]);
    wait_for("the large one abandoned", WAIT, || failures() == Some(1.0));
    assert_eq!(metric(&pipeline, "tracewarden_forward_retries_total", &[]), Some(0.0), "never re-sent");
    // Time passes: still one failure, never a re-send.
    for _ in 0..5 {
        harness.advance(Duration::from_secs(30));
    }
    wait_for("offsets committed past both", WAIT, || harness.committed_to_end());
    // Every worker has turned its loop (where a re-send would be made) since the clock moved.
    wait_for_polls(&pipeline, INPUT, harness.partitions_with_messages());
    assert_eq!(failures(), Some(1.0));
    assert_eq!(metric(&pipeline, "tracewarden_forward_retries_total", &[]), Some(0.0), "never re-sent");
    let output = harness.read_all("sampled_spans", 1);
    assert_eq!(output.iter().map(|r| r.key.clone().unwrap()).collect::<Vec<_>>(), vec![key.into_bytes()]);
    pipeline.stop().unwrap();
}

#[test]
fn an_authorization_failure_is_not_retried() {
    let (harness, pipeline) = one_trace_read("delivery-unauthorized", 3);
    // Many, as the snapshot exchange's producer may meet some (see above).
    let unauthorized = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50];
    harness.cluster().request_errors(RDKafkaApiKey::Produce, &unauthorized);
    harness.advance(Duration::from_secs(5));
    let failures = || metric(&pipeline, "tracewarden_forward_failures_total", &[("destination", "output")]);
    wait_for("the record abandoned", WAIT, || failures() == Some(1.0));
    harness.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    for _ in 0..5 {
        harness.advance(Duration::from_secs(30));
    }
    wait_for("offsets committed: the partition does not stall", WAIT, || harness.committed_to_end());
    // Every worker has turned its loop (where a re-send would be made) since the clock moved.
    wait_for_polls(&pipeline, INPUT, harness.partitions_with_messages());
    assert_eq!(metric(&pipeline, "tracewarden_forward_retries_total", &[]), Some(0.0), "never re-sent");
    assert_eq!(failures(), Some(1.0));
    pipeline.stop().unwrap();
}

/// A commit the broker refuses (here twice) is made again, although the partition went quiet:
/// otherwise its committed offset would stay behind for good, and the next owner would replay
/// what was long forwarded.
#[test]
fn a_refused_commit_is_made_again_after_the_partition_went_quiet() {
    let (harness, pipeline) = one_trace_read("delivery-commit-refused", 1);
    // Held until decided: the position committed is the message's own.
    wait_for("the held position committed", WAIT, || harness.committed().contains(&0));
    let refused = RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
    harness.cluster().request_errors(RDKafkaApiKey::OffsetCommit, &[refused, refused]);
    // Decided and forwarded: the position moves past the message, and that is the last it moves.
    harness.advance(Duration::from_secs(5));
    wait_for("the trace forwarded", WAIT, || metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(1.0));
    wait_for("offsets committed to the end", WAIT, || harness.committed_to_end());
    assert_eq!(received(&pipeline), 1.0, "nothing more was read");
    pipeline.stop().unwrap();
}

/// `kafka.exactly_once`: the group coordinator refuses a transaction's offsets as a zombie's
/// (ILLEGAL_GENERATION, what a member fenced by a rebalance gets): the transaction is aborted,
/// counted, its records staged again and written in a later transaction after the backoff (read
/// from the injected clock) — nothing is lost. (The mock cluster keeps an aborted
/// transaction's records readable, so it cannot show that they are hidden from `read_committed`
/// consumers; `delivery::transaction_tests` proves what a consumer sees.)
#[test]
fn an_aborted_transaction_is_written_again_by_the_next() {
    let mut harness = Harness::new("delivery-abort");
    harness.config.kafka.exactly_once = true;
    harness.config.kafka.transactional_id = Some("delivery-abort".into());
    harness.cluster().create_topic("sampled_spans", PARTITIONS, 1).unwrap();
    let pipeline = harness.start();
    let traces: Vec<(String, bytes::Bytes)> = (1..=6).map(trace).collect();
    harness.produce_all(&traces);
    wait_for("the traces to be read", WAIT, || received(&pipeline) == 6.0);
    // The group has settled (no rebalance will flush); from now on offsets are refused until
    // cleared, and while the injected clock stands still a failed transaction's backoff keeps
    // the next from starting.
    harness
        .cluster()
        .request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION; 100]);
    let aborted = || metric(&pipeline, "tracewarden_transactions_total", &[("result", "aborted")]).unwrap_or(0.0);
    // The traces are decided and staged; the next transaction carries them, and is aborted.
    harness.advance(Duration::from_secs(6));
    wait_for("a transaction with the traces aborted", WAIT, || aborted() >= 1.0);
    let forwarded = metric(&pipeline, "tracewarden_traces_forwarded_total", &[]).unwrap_or(0.0);
    assert_eq!(forwarded, 0.0, "nothing committed yet");
    harness.cluster().clear_request_errors(RDKafkaApiKey::TxnOffsetCommit);
    harness.advance(Duration::from_secs(1));
    wait_for("every trace forwarded", WAIT, || {
        metric(&pipeline, "tracewarden_traces_forwarded_total", &[]) == Some(6.0)
    });
    let output = harness.read_all("sampled_spans", 6);
    let keys: std::collections::BTreeSet<Vec<u8>> = output.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), 6, "every trace written");
    assert!(metric(&pipeline, "tracewarden_transactions_total", &[("result", "committed")]).unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(&pipeline, "tracewarden_forward_failures_total", &[("destination", "output")]), None);
    pipeline.stop().unwrap();
}
