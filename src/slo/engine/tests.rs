use super::*;
use crate::slo::aggregate::{BucketCounts, SourceCounts};
use crate::slo::budget::Window;
use crate::testing::{spans, SpanSpec, SERVER};

fn engine(definition: &str) -> SloEngine {
    let config: SloConfig = toml::from_str(definition).unwrap();
    assert!(config.validate(0).is_empty(), "{:?}", config.validate(0));
    let mut engine = SloEngine::new(&[config]);
    engine.take_over(0, None, &[]);
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
            slos.take_over(0, Some(serde_json::from_slice::<Checkpoint>(&json).unwrap()), &[]);
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

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

const T0: Seconds = 1_777_629_600; // 2026-05-01T10:00:00Z
const MINUTE: Seconds = 60;
const HOUR: Seconds = 3600;
const DAY: Seconds = 86_400;

#[test]
fn every_evaluation_adds_a_point_worked_out_by_hand() {
    let mut slos = engine(CHECKOUT);
    // (how long before T0 the minute starts, requests, faults); each ends 30 s into its minute.
    for (ago, total, bad) in [
        (10 * DAY, 20_000, 2),
        (DAY, 2_000, 0),
        (2 * HOUR, 1_000, 4),
        (40 * MINUTE, 1_000, 3),
        (10 * MINUTE, 900, 0),
        (2 * MINUTE, 100, 1),
    ] {
        requests(&mut slos, T0 - ago + 30, total, bad);
    }
    slos.evaluate(T0);
    // Goal 99.9 % over 30 d: N = 25 000, B = 10. Attainment 1 − 10/25 000 = 0.9996; budget
    // (1 − T)·N = 25 requests, 15 left, ratio 1 − 0.0004/0.001 = 0.6: OK (not under 0.5).
    // Burn rates (B(w)/N(w))/0.001, a window reaching back to the minute holding its start:
    // 1h 4/2 000 → 2; 5m 1/100 → 10; 6h 8/3 000 → 8/3; 30m 1/1 000 → 1; 3d 8/5 000 → 1.6.
    // Ticket (threshold 0.1 × 30 d / 3 d = 1) fires: 1.6 and 8/3 both over 1; page-slow (6) and
    // page-fast (14.4) do not.
    let first = slos.history("checkout-availability").unwrap().points().next().unwrap().clone();
    assert_eq!(first.at, T0);
    assert!(close(first.attainment.unwrap(), 0.9996), "{first:?}");
    assert_eq!(first.error_budget.unit, "requests");
    assert!(close(first.error_budget.total, 25.0), "{first:?}");
    assert!(close(first.error_budget.remaining, 15.0), "{first:?}");
    assert!(close(first.error_budget.remaining_ratio, 0.6), "{first:?}");
    let windows: Vec<&str> = first.burn_rates.iter().map(|b| b.window.as_str()).collect();
    assert_eq!(windows, ["1h", "5m", "6h", "30m", "3d"], "each window once, in tier order");
    for (burn, expected) in first.burn_rates.iter().zip([2.0, 10.0, 8.0 / 3.0, 1.0, 1.6]) {
        assert!(close(burn.burn_rate, expected), "{}: {} ≠ {expected}", burn.window, burn.burn_rate);
    }
    assert_eq!((first.status, first.firing.as_slice()), ("OK", ["ticket".to_string()].as_slice()));

    // 50 faults of 100 in T0's minute. 30 d: N = 25 100, B = 60 > 25.1 allowed: BREACHED,
    // remaining 25.1 − 60 = −34.9. 5m: 51/200 → 255 and 1h: 54/2 100 → 25.71…, both over 14.4;
    // 6h: 58/3 100 → 18.71… and 30m: 51/1 100 → 46.36…, both over 6.
    requests(&mut slos, T0 + 5, 100, 50);
    slos.evaluate(T0 + 10);
    let history = slos.history("checkout-availability").unwrap();
    assert_eq!(history.len(), 2, "one point per evaluation");
    let second = history.points().last().unwrap();
    assert_eq!(second.at, T0 + 10);
    assert!(close(second.attainment.unwrap(), 1.0 - 60.0 / 25_100.0), "{second:?}");
    assert!(close(second.error_budget.remaining, -34.9), "{second:?}");
    assert!(close(second.error_budget.remaining_ratio, 1.0 - (60.0 / 25_100.0) / 0.001), "{second:?}");
    assert!(close(second.burn_rates[1].burn_rate, 255.0), "{second:?}");
    assert_eq!(second.status, "BREACHED");
    assert_eq!(second.firing, ["page-fast", "page-slow", "ticket", "budget-breached"]);
}

/// Points and reports as another instance receives them: through their JSON.
fn shipped<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
}

#[test]
fn the_history_outlives_changes_of_owner() {
    const NAME: &str = "checkout-availability";
    let mut owner = engine(CHECKOUT);
    let mut other = SloEngine::new(&[toml::from_str(CHECKOUT).unwrap()]);
    requests(&mut owner, T0 - 30, 100, 1);
    owner.evaluate(T0 - 20);
    owner.evaluate(T0 - 10);
    let report = shipped(&owner.reports(T0 - 10).remove(0));
    assert!(other.set_remote_report(report.clone()));
    assert_eq!(other.remote_report(NAME), Some(&report));
    other.evaluate(T0 - 5);
    assert!(other.history(NAME).unwrap().is_empty(), "no point where the SLO is not evaluated");

    // The SLO moves to `other`, through the state topic: the checkpoint carries the history.
    let checkpoint = shipped(&owner.checkpoint(0, T0 - 10, true));
    owner.release(0);
    other.take_over(0, checkpoint, &[]);
    assert_eq!(other.remote_report(NAME), None, "reports are made here now");
    assert!(!other.set_remote_report(report.clone()), "not while owned here");
    other.evaluate(T0);
    let times = |slos: &SloEngine| slos.history(NAME).unwrap().points().map(|p| p.at).collect::<Vec<_>>();
    assert_eq!(times(&other), [T0 - 20, T0 - 10, T0]);
    let restored = other.history(NAME).unwrap().points().last().unwrap().attainment.unwrap();
    assert!(close(restored, 0.99), "counts from the checkpoint: {restored}");
    assert_eq!(times(&owner), [T0 - 20, T0 - 10], "the released history stays until it expires");

    // Back to the first owner: its own points stand, the other's follow.
    let checkpoint = shipped(&other.checkpoint(0, T0, true));
    other.release(0);
    owner.take_over(0, checkpoint, &[]);
    assert_eq!(times(&owner), [T0 - 20, T0 - 10, T0]);
    let json = owner.history_json(NAME).unwrap();
    assert_eq!(json["slo"], NAME);
    let json_times: Vec<&str> =
        json["points"].as_array().unwrap().iter().map(|p| p["time"].as_str().unwrap()).collect();
    assert_eq!(json_times, ["2026-05-01T09:59:40Z", "2026-05-01T09:59:50Z", "2026-05-01T10:00:00Z"]);
    // Not evaluated here for an hour: it empties.
    other.evaluate(T0 + HOUR);
    assert!(other.history(NAME).unwrap().is_empty());
    assert_eq!(other.history_json(NAME).unwrap()["points"], serde_json::json!([]));

    assert_eq!(other.history_json("no-such-slo"), None);
    assert!(!other.set_remote_report(SloReport { name: "no-such-slo".into(), ..report }));
}

#[test]
fn a_checkpoint_keeps_one_evaluation_per_10_s_of_the_last_hour() {
    const NAME: &str = "checkout-availability";
    let mut owner = engine(CHECKOUT);
    requests(&mut owner, T0 - 30, 100, 1);
    // An evaluation a second for two hours: 7 200 evaluations, 3 600 of them in the last hour.
    for at in (T0 - HOUR)..(T0 + HOUR) {
        owner.evaluate(at);
    }
    let checkpoint = owner.checkpoint(0, T0 + HOUR, true).unwrap();
    assert_eq!(checkpoint.history.len(), 360);
    assert!(checkpoint.history.iter().all(|p| p.at.rem_euclid(10) == 9), "the newest of each 10 s");
    assert_eq!(checkpoint.history.last().map(|p| p.at), Some(T0 + HOUR - 1));
    let mut next = SloEngine::new(&[toml::from_str(CHECKOUT).unwrap()]);
    next.take_over(0, Some(shipped(&checkpoint)), &[]);
    let restored: Vec<_> = next.history(NAME).unwrap().points().cloned().collect();
    assert!(restored == checkpoint.history, "the history restored is the one checkpointed");
}

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

/// An SLO at every bound the configuration allows (`config::MAX_*`): eight tiers, the longest
/// 7 d, and counts in every minute of its window, each with large, unlike figures (what
/// compresses worst), every tier firing. Returns its checkpoint with an hour of evaluations.
fn largest_checkpoint(window_and_budgeting: &str, bad: impl Fn(u64) -> bool) -> Checkpoint {
    let tiers = crate::testing::tiers_at_the_bounds("alerts");
    let definition = format!(
        "name = \"largest\"\nservice = \"checkout\"\nsli = \"availability\"\ngoal = 0.999\n{window_and_budgeting}\n{tiers}"
    );
    let config: SloConfig = toml::from_str(&definition).unwrap();
    assert!(config.validate(0).is_empty(), "at the bounds, not beyond: {:?}", config.validate(0));
    let mut slos = SloEngine::new(&[config]);
    slos.take_over(0, None, &[]);
    let window = match slos.slos[0].objective.window {
        Window::Rolling(w) => w.as_secs() as i64,
        Window::Calendar(_) => 31 * DAY,
    };
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let start = T0 - window;
    let buckets: Vec<BucketCounts> = (0..(window + HOUR) / MINUTE)
        .map(|minute| {
            let total = 500_000 + random(500_000);
            let good = if bad(minute as u64) { total / 2 } else { total - random(100) };
            (start + minute * MINUTE, good, total, total * (1_000 + random(1_000_000)))
        })
        .collect();
    let sources = vec![SourceCounts { topic: "spans".into(), partition: 0, floor: 1, offsets: vec![(0, buckets)] }];
    assert!(slos.merge(&AggregateRecord { slo: "largest".into(), sources }).is_some());
    // An hour of evaluations every 10 s: one evaluation, its point repeated (the sums over
    // 11 000 buckets are slow unoptimised, and the point's size is what matters).
    slos.evaluate(T0);
    let point = slos.slos[0].history.points().last().unwrap().clone();
    for step in 1..360 {
        slos.slos[0].history.record(HistoryPoint { at: T0 + step * 10, ..point.clone() });
    }
    slos.checkpoint(0, T0 + HOUR, true).unwrap()
}

#[test]
fn the_largest_checkpoint_the_bounds_allow_fits_in_a_kafka_message() {
    use crate::record::MAX_MESSAGE_BYTES;
    type Case = (&'static str, &'static str, fn(u64) -> bool);
    let cases: [Case; 2] = [
        ("requests, 400 d", "window = \"400d\"", |minute| minute % 7 == 0),
        ("minute periods, 31 d, every one bad", "window = \"31d\"\nbudgeting = \"periods\"\nperiod = \"1m\"", |_| true),
    ];
    for (name, window, bad) in cases {
        let checkpoint = largest_checkpoint(window, bad);
        let json = serde_json::to_vec(&checkpoint).unwrap().len();
        let encoded = checkpoint.encode();
        eprintln!(
            "{name}: {} buckets, {} history points, {} alerts; JSON {json} bytes, written {} bytes",
            checkpoint.buckets.len(),
            checkpoint.history.len(),
            checkpoint.alerts.len(),
            encoded.len()
        );
        assert!(encoded.len() <= MAX_MESSAGE_BYTES, "{name}: {} bytes", encoded.len());
        let back = Checkpoint::decode(&encoded).unwrap();
        assert_eq!(back.history.len(), 360, "{name}: the history is kept whole");
        assert!(back == checkpoint, "{name}: read back as written");
    }
}

#[test]
fn checkpoints_of_earlier_versions_are_read_as_plain_json() {
    let mut slos = engine(CHECKOUT);
    requests(&mut slos, T0 - 30, 100, 1);
    slos.evaluate(T0);
    let checkpoint = slos.checkpoint(0, T0, true).unwrap();
    let mut plain = serde_json::to_value(&checkpoint).unwrap();
    plain.as_object_mut().unwrap().remove("history");
    let back = Checkpoint::decode(&serde_json::to_vec(&plain).unwrap()).unwrap();
    assert_eq!(back, Checkpoint { history: Vec::new(), ..checkpoint.clone() });
    assert!(Checkpoint::decode(&checkpoint.encode()[..10]).is_err(), "a cut gzip stream is refused");
}

/// Each alert's statuses in the order sent, by fingerprint.
fn lifecycles(messages: &[AlertMessage]) -> BTreeMap<String, Vec<&'static str>> {
    let mut by_fingerprint: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for m in messages {
        by_fingerprint.entry(format!("{}/{}", m.labels["alertname"], m.fingerprint)).or_default().push(m.status);
    }
    by_fingerprint
}

/// The burst of `a_burst_fires_page_fast_once_and_resolves_it_once`, its owner killed right after
/// the evaluation that sent page-fast's `kill_at` status and before that evaluation's checkpoint:
/// the next owner restores the checkpoint before (and, `with_sent`, the alerts read back from the
/// topic), re-merges the minute's counts and goes on. Every message sent, by either owner.
fn burst_with_a_kill(kill_at: &str, with_sent: bool) -> Vec<AlertMessage> {
    let mut owner = engine(CHECKOUT);
    let ok = spans(&[SpanSpec::new("checkout", 1, 1, None, SERVER, "x").http("POST", "/pay", 200)]).remove(0);
    let fault = spans(&[SpanSpec::new("checkout", 2, 1, None, SERVER, "x").http("POST", "/pay", 503)]).remove(0);
    let t0: Seconds = 1_777_593_600;
    let (mut messages, mut checkpoint, mut killed) = (Vec::new(), None, false);
    for minute in 0..240 {
        let now = t0 + minute * 60;
        let bad = if (120..130).contains(&minute) { 15 } else { 0 };
        let trace: Vec<Span> = (0..100).map(|i| request(if i < bad { &fault } else { &ok }, now + 30)).collect();
        owner.record_trace(&trace);
        let sent = owner.evaluate(now + 59);
        let kill = !killed
            && sent
                .iter()
                .any(|m| m.status == kill_at && m.labels.get("tier").map(String::as_str) == Some("page-fast"));
        messages.extend(sent.iter().cloned());
        if kill {
            killed = true;
            // What the topic holds, read back as the next owner reads it.
            let read_back: Vec<SentAlert> =
                sent.iter().map(|m| serde_json::from_slice(&serde_json::to_vec(m).unwrap()).unwrap()).collect();
            owner = SloEngine::new(&[toml::from_str(CHECKOUT).unwrap()]);
            owner.take_over(0, checkpoint.clone(), if with_sent { &read_back } else { &[] });
            owner.record_trace(&trace);
        } else {
            checkpoint = owner.checkpoint(0, now + 59, true).map(|c| shipped(&c));
        }
    }
    assert!(killed, "page-fast went {kill_at}");
    messages
}

/// Killed between an evaluation's alerts and the checkpoint recording them, an owner leaves alerts
/// its checkpoint lacks; its successor takes their state from the alerts topic and sends no
/// transition twice (and without them, it would: the test can tell).
#[test]
fn a_new_owner_goes_on_from_the_alerts_sent_after_the_checkpoint() {
    for kill_at in ["firing", "resolved"] {
        let messages = burst_with_a_kill(kill_at, true);
        for (alert, statuses) in lifecycles(&messages) {
            assert!(statuses.windows(2).all(|w| w[0] != w[1]), "killed after {kill_at}: {alert} went {statuses:?}");
        }
        let page_fast: Vec<&str> = messages
            .iter()
            .filter(|m| m.labels.get("tier").map(String::as_str) == Some("page-fast"))
            .map(|m| m.status)
            .collect();
        assert_eq!(page_fast, ["firing", "resolved"], "killed after {kill_at}");
        let without = lifecycles(&burst_with_a_kill(kill_at, false));
        assert!(
            without.values().any(|statuses| statuses.windows(2).any(|w| w[0] == w[1])),
            "without the alerts read back, killed after {kill_at}, a transition is sent twice: {without:?}"
        );
    }
}
