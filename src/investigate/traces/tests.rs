use std::sync::Arc;

use super::*;
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT, SERVER};

const T: u64 = 1_700_000_000_000_000_000;

/// frontend GET /owners (root, `status`) → customers GET /owners/{id} (`status`), 10 ms + 4 ms.
fn owners(trace: u8, status: i64, start: u64) -> Vec<Span> {
    spans(&[
        SpanSpec::new("frontend", trace, 1, None, SERVER, "GET")
            .http("GET", "/owners", status)
            .micros(10_000)
            .starting(start),
        SpanSpec::new("frontend", trace, 2, Some(1), CLIENT, "GET")
            .attr("server.address", AttrSpec::Str("customers"))
            .micros(5_000)
            .starting(start + 1_000_000),
        SpanSpec::new("customers", trace, 3, Some(2), SERVER, "GET")
            .http("GET", "/owners/{id}", status)
            .micros(4_000)
            .starting(start + 2_000_000),
    ])
}

fn kept() -> Decision {
    Decision::keep(Arc::from("keep-faults"), 1.0)
}

#[test]
fn a_summary_names_root_services_worst_outcome_and_decision() {
    let summary = TraceSummary::of(&owners(7, 503, T), &kept());
    assert_eq!(summary.trace_id, [7; 16]);
    assert_eq!(summary.start_unix_nano, T);
    assert_eq!(summary.duration_nanos, 10_000_000, "the root's 10 ms span covers the others");
    assert_eq!(summary.span_count, 3);
    assert_eq!((&*summary.root_service, &*summary.root_operation), ("frontend", "GET /owners"));
    assert_eq!(summary.http_status, 503);
    let services: Vec<&str> = summary.services.iter().map(|s| &**s).collect();
    assert_eq!(services, vec!["frontend", "customers"]);
    assert_eq!(summary.outcome, Outcome::Fault);
    let json = serde_json::to_value(summary.json(Some("http://a:9464"))).unwrap();
    assert_eq!(json["traceId"], "07070707070707070707070707070707");
    assert_eq!(json["startUnixNano"], "1700000000000000000", "a decimal string, as in OTLP/JSON");
    assert_eq!(json["durationSeconds"], 0.01);
    assert_eq!(json["outcome"], "fault");
    assert_eq!(json["decision"], "kept");
    assert_eq!(json["rule"], "keep-faults");
    assert_eq!(json["heldBy"], "http://a:9464");
}

#[test]
fn search_matches_any_entry_span_newest_first() {
    let mut index = TraceIndex::new(100);
    index.insert(TraceSummary::of(&owners(1, 200, T), &kept()));
    index.insert(TraceSummary::of(&owners(2, 503, T + 1_000_000_000), &Decision::drop(Arc::from("drop-ok"))));
    index.insert(TraceSummary::of(&owners(3, 404, T + 2_000_000_000), &kept()));
    let ids = |query: &TraceQuery| index.search(query).iter().map(|s| s.trace_id[0]).collect::<Vec<_>>();

    assert_eq!(ids(&TraceQuery::default()), vec![3, 2, 1], "newest first");
    let customers = TraceQuery { service: Some("customers".into()), ..TraceQuery::default() };
    assert_eq!(ids(&customers), vec![3, 2, 1], "customers is never the root, but an entry span of each");
    let op = TraceQuery {
        service: Some("customers".into()),
        operation: Some("GET /owners".into()),
        ..TraceQuery::default()
    };
    assert!(ids(&op).is_empty(), "service and operation must hold for the same entry span");
    assert_eq!(ids(&TraceQuery { outcome: Some(Outcome::Fault), ..TraceQuery::default() }), vec![2]);
    assert_eq!(ids(&TraceQuery { outcome: Some(Outcome::Error), ..TraceQuery::default() }), vec![3]);
    assert_eq!(ids(&TraceQuery { kept: Some(false), ..TraceQuery::default() }), vec![2]);
    let from = (T / 1_000_000_000) as i64 + 1;
    assert_eq!(ids(&TraceQuery { from: Some(from), to: Some(from + 1), ..TraceQuery::default() }), vec![2]);
    assert_eq!(ids(&TraceQuery { min_duration_nanos: Some(10_000_001), ..TraceQuery::default() }), Vec::<u8>::new());
    assert_eq!(
        ids(&TraceQuery { max_duration_nanos: Some(10_000_000), limit: 2, ..TraceQuery::default() }),
        vec![3, 2]
    );
}

#[test]
fn the_index_forgets_the_oldest_decided_first() {
    let mut index = TraceIndex::new(2);
    for trace in 1..=3 {
        index.insert(TraceSummary::of(&owners(trace, 200, T), &kept()));
    }
    assert_eq!(index.len(), 2);
    assert!(index.get(&[1; 16]).is_none(), "the oldest went first");
    assert_eq!(index.get(&[3; 16]).map(|s| s.trace_id), Some([3; 16]));
}

#[test]
fn bad_parameters_are_named() {
    let parse = |pairs: &[(&str, &str)]| TraceQuery::parse(pairs.iter().copied());
    let query = parse(&[("service", "frontend"), ("outcome", "fault"), ("min_duration", "250ms"), ("limit", "5")]);
    assert_eq!(
        query,
        Ok(TraceQuery {
            service: Some("frontend".into()),
            outcome: Some(Outcome::Fault),
            min_duration_nanos: Some(250_000_000),
            limit: 5,
            ..TraceQuery::default()
        })
    );
    for (pairs, parameter) in [
        (&[("outcome", "bad")][..], "outcome"),
        (&[("limit", "0")][..], "limit"),
        (&[("min_duration", "soon")][..], "min_duration"),
        (&[("from", "yesterday")][..], "from"),
        (&[("decision", "maybe")][..], "decision"),
        (&[("colour", "red")][..], "colour"),
    ] {
        let error = parse(pairs).unwrap_err();
        assert_eq!(error.parameter, parameter);
        assert!(error.to_string().contains(&format!("{parameter:?}")), "{error}");
    }
}
