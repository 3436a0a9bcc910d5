use super::*;
use crate::testing::{spans, SpanSpec, SERVER};

fn engine(definition: &str) -> SloEngine {
    let config: SloConfig = toml::from_str(definition).unwrap();
    assert!(config.validate(0).is_empty(), "{:?}", config.validate(0));
    let mut engine = SloEngine::new(&[config]);
    engine.take_over(0, None);
    engine
}

/// A request of `service` ending at `at` (Unix seconds) with an HTTP status.
fn request(template: &Span, at: Seconds) -> Span {
    let mut span = template.clone();
    span.end_unix_nano = at as u64 * 1_000_000_000;
    span.start_unix_nano = span.end_unix_nano - 1_000_000;
    span
}

const CHECKOUT: &str = r#"
name = "checkout-availability"
service = "checkout"
operation = "POST /pay"
environment = "*"
sli = "availability"
goal = 0.999
window = "30d"
"#;

#[test]
fn a_burst_fires_page_fast_once_and_resolves_it_once() {
    let mut slos = engine(CHECKOUT);
    let ok = spans(&[SpanSpec::new("checkout", 1, 1, None, SERVER, "x").http("POST", "/pay", 200)]).remove(0);
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let other = spans(&[SpanSpec::new("checkout", 3, 1, None, SERVER, "x").http("GET", "/cart", 503)]).remove(0);
    let t0: Seconds = 1_777_593_600; // 2026-05-01T00:00:00Z
    let mut messages = Vec::new();
    for minute in 0..240 {
        let now = t0 + minute * 60;
        let bad = if (120..130).contains(&minute) { 15 } else { 0 };
        let trace: Vec<Span> = (0..100)
            .map(|i| request(if i < bad { &fault } else { &ok }, now + 30))
            .chain(std::iter::once(request(&other, now + 30)))
            .collect();
        slos.record_trace(&trace);
        for m in slos.evaluate(now + 59) {
            messages.push((minute, m));
        }
    }
    let page_fast: Vec<&(i64, AlertMessage)> =
        messages.iter().filter(|(_, m)| m.labels.get("tier").map(String::as_str) == Some("page-fast")).collect();
    assert_eq!(page_fast.len(), 2, "one firing, one resolved: {page_fast:#?}");
    let (fired_minute, fired) = page_fast[0];
    let (resolved_minute, resolved) = page_fast[1];
    assert_eq!((fired.status, resolved.status), ("firing", "resolved"));
    assert!(
        *fired_minute - 120 <= 6 && (4..=6).contains(&(*resolved_minute - 130)),
        "{fired_minute} {resolved_minute}"
    );
    assert_eq!(fired.fingerprint, resolved.fingerprint);
    assert_eq!(fired.labels, resolved.labels);
    assert_eq!(fired.starts_at, resolved.starts_at);
    assert_eq!(fired.ends_at, None);
    assert!(resolved.ends_at.is_some());
    assert_eq!(fired.labels["alertname"], "SLOBurnRate");
    assert_eq!(fired.labels["severity"], "page");
    assert_eq!(fired.labels["operation"], "POST /pay");
    assert!((fired.evaluation.windows[0].threshold - 14.4).abs() < 1e-9);
    assert_eq!(fired.evaluation.windows[1].window, "5m");
    assert_eq!(fired.evaluation.error_budget.unit, "requests");
    assert!(fired.annotations["summary"].starts_with("checkout POST /pay is burning its error budget at"));
    // The budget family: 150 bad requests against (1 − 0.999) × 24 000 = 24 allowed.
    let budget: Vec<&AlertMessage> =
        messages.iter().map(|(_, m)| m).filter(|m| m.labels["alertname"] == "SLOErrorBudget").collect();
    assert!(budget.iter().any(|m| m.status == "firing" && m.labels["severity"] == "breached"), "{budget:#?}");
    assert!(budget.iter().all(|m| !m.labels.contains_key("tier")));
    // GET /cart faults are not this SLO's.
    let report = &slos.reports(t0 + 240 * 60)[0];
    assert_eq!(report.status, "BREACHED");
    assert!((report.attainment.unwrap() - (1.0 - 150.0 / 24_000.0)).abs() < 1e-9);
}

#[test]
fn messages_follow_the_alert_schema() {
    let mut slos = engine(CHECKOUT);
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let now: Seconds = 1_777_629_720; // 2026-05-01T10:02:00Z
    slos.record_trace(&(0..50).map(|_| request(&fault, now - 10)).collect::<Vec<_>>());
    let messages = slos.evaluate(now);
    let json = serde_json::to_value(&messages[0]).unwrap();
    for key in
        ["schemaVersion", "status", "fingerprint", "labels", "annotations", "startsAt", "endsAt", "slo", "evaluation"]
    {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(json["schemaVersion"], 1);
    assert_eq!(json["startsAt"], "2026-05-01T10:02:00Z");
    assert!(json["endsAt"].is_null());
    assert_eq!(json["slo"], serde_json::json!({"goal": 0.999, "window": "30d", "budgeting": "requests"}));
    for key in ["evaluatedAt", "windows", "errorBudget", "attainment", "budgetStatus"] {
        assert!(json["evaluation"].get(key).is_some(), "missing evaluation.{key}");
    }
    assert_eq!(json["fingerprint"].as_str().unwrap().len(), 16);
    assert!(slos.evaluate(now + 60).is_empty(), "no state change, no message");
}

/// Prometheus's `labelSetToFingerprint` test vector (prometheus/common, model/signature_test.go):
/// 5799056148416392346 = 0x507a62d79ee76c9a; the empty set is the FNV-1a offset basis.
#[test]
fn fingerprints_are_the_prometheus_label_set_fingerprint() {
    let labels = BTreeMap::from([
        ("name".to_string(), "garland, briggs".to_string()),
        ("fear".to_string(), "love is not enough".to_string()),
    ]);
    assert_eq!(fingerprint(&labels), "507a62d79ee76c9a");
    assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
}

#[test]
fn an_slo_without_operation_has_no_operation_label() {
    let mut slos = engine(&CHECKOUT.replace("operation = \"POST /pay\"\n", ""));
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let now: Seconds = 1_777_629_720;
    slos.record_trace(&(0..50).map(|_| request(&fault, now - 10)).collect::<Vec<_>>());
    let messages = slos.evaluate(now);
    let page_fast = messages.iter().find(|m| m.labels.get("tier").map(String::as_str) == Some("page-fast")).unwrap();
    let expected: BTreeMap<String, String> = [
        ("alertname", "SLOBurnRate"),
        ("environment", "*"),
        ("service", "checkout"),
        ("severity", "page"),
        ("sli", "availability"),
        ("slo", "checkout-availability"),
        ("tier", "page-fast"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(page_fast.labels, expected);
    // FNV-1a 64 of "alertname\xffSLOBurnRate\xffenvironment\xff*\xff...tier\xffpage-fast\xff", worked
    // out independently of this code.
    assert_eq!(page_fast.fingerprint, "ae30c95e0eeef7bc");
    assert!(messages.iter().all(|m| !m.labels.contains_key("operation")), "{messages:#?}");
}

/// slo.md: durations are written as in the configuration, in the largest unit that divides them.
#[test]
fn windows_are_written_as_in_the_configuration() {
    let slos = engine(CHECKOUT);
    let report = &slos.reports(1_777_593_600)[0];
    assert_eq!(report.window, "30d");
    let windows: Vec<&str> = report.burn_rates.iter().map(|b| b.window.as_str()).collect();
    // page-fast 1h/5m, page-slow 6h/30m, ticket 3d/6h (long, long/12).
    assert_eq!(windows, ["1h", "5m", "6h", "30m", "3d", "6h"]);
}

/// interfaces.md: `/api/slos`, like every API, uses camelCase field names throughout.
#[test]
fn reports_use_camel_case_fields() {
    let slos = engine(CHECKOUT);
    let json = serde_json::to_value(&slos.reports(1_777_593_600)[0]).unwrap();
    let keys = |value: &serde_json::Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort_unstable();
        keys
    };
    assert_eq!(
        keys(&json),
        [
            "attainment",
            "burnRates",
            "errorBudget",
            "firing",
            "goal",
            "name",
            "operation",
            "service",
            "sli",
            "status",
            "tiers",
            "window"
        ]
    );
    assert_eq!(keys(&json["errorBudget"]), ["remaining", "remainingRatio", "total", "unit"]);
    assert_eq!(keys(&json["burnRates"][0]), ["bad", "burnRate", "threshold", "total", "window"]);
}

/// The burst of `a_burst_fires_page_fast_once_and_resolves_it_once`, minute by minute, counted
/// through aggregate records (every record sent twice when `replay`, as after a crash), with the
/// engine replaced at `restart` by one restored from a JSON checkpoint of the old one.
fn burst_through_records(restart: Option<i64>, replay: bool) -> Vec<(i64, AlertMessage)> {
    use crate::slo::aggregate::{AggregateBatch, AggregateRecord, Checkpoint, SourceCounts};
    let mut slos = engine(CHECKOUT);
    let ok = spans(&[SpanSpec::new("checkout", 1, 1, None, SERVER, "x").http("POST", "/pay", 200)]).remove(0);
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let mut counter = slos.counter();
    let t0: Seconds = 1_777_593_600;
    let mut messages = Vec::new();
    let mut tally = Vec::new();
    for minute in 0..240 {
        let now = t0 + minute * 60;
        if Some(minute) == restart {
            let json = serde_json::to_vec(&slos.checkpoint(0, now, true).unwrap()).unwrap();
            slos = engine(CHECKOUT);
            slos.take_over(0, Some(serde_json::from_slice::<Checkpoint>(&json).unwrap()));
        }
        let bad = if (120..130).contains(&minute) { 15 } else { 0 };
        // One source message (offset = minute) per minute.
        let trace: Vec<Span> = (0..100).map(|i| request(if i < bad { &fault } else { &ok }, now + 30)).collect();
        counter.count(&trace, &mut tally);
        let mut batch = AggregateBatch::new(1);
        batch.add(minute, &mut tally);
        let (per_slo, _) = batch.take();
        let offsets: Vec<(i64, Vec<_>)> = per_slo.into_iter().flat_map(|(_, e)| e).collect();
        let record = |floor: i64| AggregateRecord {
            slo: "checkout-availability".into(),
            sources: vec![SourceCounts { topic: "spans".into(), partition: 0, floor, offsets: offsets.clone() }],
        };
        assert_eq!(slos.merge(&record(minute)), Some((0, 1)));
        if replay {
            // The same message again, from a replay that starts below the floor seen so far.
            assert_eq!(slos.merge(&record(minute.saturating_sub(3))), Some((0, 0)));
        }
        for m in slos.evaluate(now + 59) {
            messages.push((minute, m));
        }
    }
    messages
}

#[test]
fn replayed_counts_and_a_restart_mid_incident_change_no_alert() {
    let reference = burst_through_records(None, false);
    let tiers: Vec<_> = reference.iter().filter_map(|(_, m)| m.labels.get("tier")).collect();
    assert!(tiers.contains(&&"page-fast".to_string()), "the reference run fires: {reference:#?}");
    let same = |other: &[(i64, AlertMessage)]| {
        other.len() == reference.len()
            && other.iter().zip(&reference).all(|((a, m), (b, n))| {
                a == b
                    && m.status == n.status
                    && m.fingerprint == n.fingerprint
                    && m.starts_at == n.starts_at
                    && m.evaluation == n.evaluation
            })
    };
    assert!(same(&burst_through_records(None, true)), "replays count nothing twice");
    for restart in [121, 125, 129, 133] {
        assert!(same(&burst_through_records(Some(restart), true)), "restart at minute {restart}");
    }
}

/// `total` requests of the SLO ending at `at`, the first `bad` of them faults.
fn requests(slos: &mut SloEngine, at: Seconds, total: usize, bad: usize) {
    let ok = spans(&[SpanSpec::new("checkout", 1, 1, None, SERVER, "x").http("POST", "/pay", 200)]).remove(0);
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let trace: Vec<Span> = (0..total).map(|i| request(if i < bad { &fault } else { &ok }, at)).collect();
    slos.record_trace(&trace);
}

const T0: Seconds = 1_777_629_600; // 2026-05-01T10:00:00Z

#[test]
fn reports_read_back_are_the_reports_written() {
    let mut slos = engine(CHECKOUT);
    requests(&mut slos, T0 - 30, 100, 1);
    slos.evaluate(T0);
    let report = slos.reports(T0).remove(0);
    // Read from a JSON value: read from text, serde_json's default float parsing may move the
    // last bit of a figure (0.1000…09 comes back 0.1000…07).
    let json = serde_json::to_value(&report).unwrap();
    let back: SloReport = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, report);
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    let mut unknown = json;
    unknown["errorBudget"]["unit"] = "minutes".into();
    assert!(serde_json::from_value::<SloReport>(unknown).is_err());
}
