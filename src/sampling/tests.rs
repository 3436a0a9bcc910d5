use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::assemble::{DecisionReason, ReadyTrace};
use crate::format::tracestate_with_threshold;
use crate::testing::{spans, AttrSpec, SpanSpec, CLIENT, SERVER};

fn sampler(toml_rules: &str) -> Sampler {
    let config: SamplingConfig = toml::from_str(toml_rules).unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    Sampler::new(&config)
}

fn trace(specs: &[SpanSpec]) -> ReadyTrace {
    let spans = spans(specs);
    ReadyTrace {
        trace_id: spans[0].trace_id,
        root_present: spans.iter().any(|s| s.is_root()),
        spans,
        reason: DecisionReason::Complete,
        sources: Vec::new(),
        prior: None,
    }
}

fn with_id(mut t: ReadyTrace, id: [u8; 16]) -> ReadyTrace {
    t.trace_id = id;
    t
}

const T: Nanos = Nanos(1_800_000_000_000_000_000);

fn checkout(status: i64, micros: u64) -> ReadyTrace {
    trace(&[
        SpanSpec::new("Checkout-Service", 1, 1, None, SERVER, "h")
            .http("POST", "/pay", status)
            .attr("url.path", AttrSpec::Str("/pay/42"))
            .attr("server.address", AttrSpec::Str("shop.example.com"))
            .micros(micros),
        SpanSpec::new("payments", 1, 2, Some(1), CLIENT, "charge").attr("peer.service", AttrSpec::Str("bank")),
    ])
}

fn rule_for(when: &str) -> Sampler {
    sampler(&format!("[[rules]]\nname = \"r\"\nwhen = {{ {when} }}\nkeep = \"none\""))
}

fn matches(when: &str, t: &ReadyTrace) -> bool {
    let decision = rule_for(when).decide(t, T);
    decision.rule.as_ref() == "r"
}

#[test]
fn every_condition() {
    let ok = checkout(200, 900_000);
    let fault = checkout(503, 1_000);
    assert!(matches(r#"service = "checkout*""#, &ok), "wildcard, case-insensitive");
    assert!(!matches(r#"service = "payments""#, &ok), "the root span's service, not any span's");
    assert!(matches(r#"operation = "POST /p?y""#, &ok));
    assert!(matches(r#"http_method = "post""#, &ok));
    assert!(matches(r#"url_path = "/pay/*""#, &ok));
    assert!(matches(r#"host = "*.example.com""#, &ok));
    assert!(matches(r#"outcome = "fault""#, &fault) && !matches(r#"outcome = "fault""#, &ok));
    assert!(matches(r#"outcome = "ok""#, &ok));
    let throttled = checkout(429, 1_000);
    assert!(matches(r#"outcome = "throttle""#, &throttled) && matches(r#"outcome = "error""#, &throttled));
    assert!(!matches(r#"outcome = "error""#, &fault));
    assert!(matches(r#"status = "UNSET""#, &ok) && !matches(r#"status = "ERROR""#, &ok));
    assert!(matches(r#"min_duration = "800ms""#, &ok) && !matches(r#"min_duration = "800ms""#, &fault));
    assert!(matches(r#"max_duration = "2ms""#, &fault));
    assert!(matches("min_spans = 2, max_spans = 2", &ok) && !matches("min_spans = 3", &ok));
    assert!(matches(r#"attribute = { key = "peer.service", equals = "bank" }"#, &ok), "any span's attribute");
    assert!(matches(r#"attribute = { key = "service.name", matches = "pay*" }"#, &ok), "resource attributes too");
    assert!(matches("root_present = true", &ok));
    let rootless = trace(&[SpanSpec::new("api", 2, 5, Some(4), SERVER, "GET /x")]);
    assert!(matches("root_present = false", &rootless));
    assert!(matches(r#"service = "api""#, &rootless), "no root: the earliest entry span");
    assert!(matches(r#"outcome = "fault", min_duration = "1ms""#, &fault), "all conditions must hold");
    assert!(!matches(r#"outcome = "fault", min_duration = "1s""#, &fault));
}

#[test]
fn first_match_wins_and_no_match_keeps() {
    let mut s = sampler(
        r#"
        [[rules]]
        name = "faults"
        when = { outcome = "fault" }
        keep = "all"
        [[rules]]
        name = "health"
        when = { operation = "GET /health" }
        keep = "none"
        "#,
    );
    let d = s.decide(&checkout(500, 1), T);
    assert_eq!((d.keep, d.rule.as_ref(), d.sample_rate, d.threshold), (true, "faults", 1.0, None));
    let health = trace(&[SpanSpec::new("lb", 3, 1, None, SERVER, "x").http("GET", "/health", 200)]);
    let d = s.decide(&health, T);
    assert_eq!((d.keep, d.rule.as_ref()), (false, "health"));
    let d = s.decide(&checkout(200, 1), T);
    assert_eq!((d.keep, d.rule.as_ref(), d.sample_rate), (true, NO_MATCH, 1.0));
}

fn random_ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// A trace id's randomness as the OpenTelemetry specification defines it, written out here so the
/// tests do not take it from the code under test: the least-significant 56 bits of the id
/// (`specification/trace/tracestate-probability-sampling.md`, "Randomness Value (R)").
fn spec_randomness(id: &[u8; 16]) -> u64 {
    id[9..].iter().fold(0, |r, b| r << 8 | u64::from(*b))
}

#[test]
fn rate_is_deterministic_accurate_and_marked_in_tracestate() {
    // p = 0.1: rejection threshold (1 − 0.1)·2^56 = 0xe6666666666666.66…, whole part
    // (tracestate-handling.md, "Sampling threshold value th": Threshold = MaxAdjustedCount·(1 − p)).
    const THRESHOLD: u64 = 0xe6666666666666;
    let rules = "[[rules]]\nname = \"default\"\nkeep = \"rate\"\nrate = 0.1";
    let (mut a, mut b) = (sampler(rules), sampler(rules));
    let ids = random_ids(100_000, 1);
    let mut kept = 0;
    for id in &ids {
        let t = with_id(checkout(200, 1), *id);
        let (da, db) = (a.decide(&t, T), b.decide(&t, T));
        assert_eq!(da, db, "every instance decides the same");
        // "Testing randomness vs threshold": sample when randomness >= threshold.
        assert_eq!(da.keep, spec_randomness(id) >= THRESHOLD, "the OpenTelemetry consistent rule");
        if da.keep {
            kept += 1;
            assert!((da.sample_rate - 10.0).abs() < 1e-9);
            assert_eq!(da.threshold, Some(THRESHOLD));
        }
    }
    // Binomial(100 000, 0.1): σ ≈ 95; allow 5σ.
    assert!((kept as f64 - 10_000.0).abs() < 475.0, "kept {kept}");
    assert_eq!(tracestate_with_threshold("", THRESHOLD), "ot=th:e6666666666666");
    assert_eq!(
        tracestate_with_threshold("vendor=x, ot=rv:abcdef;th:c , other=y", 0xc0000000000000),
        "ot=th:c;rv:abcdef,vendor=x,other=y"
    );
}

/// The 1-in-N table of `specification/trace/tracestate-probability-sampling.md`, "Converting
/// floating-point probability to threshold value": input probability and its threshold rounded to
/// precision 3, 4 and 5 (more digits where the threshold starts with f's; trailing zeros removed).
const SPEC_THRESHOLD_TABLE: [(f64, [&str; 3]); 13] = [
    (1.0, ["0", "0", "0"]),
    (0.5, ["8", "8", "8"]),
    (0.3333333333333333, ["aab", "aaab", "aaaab"]),
    (0.25, ["c", "c", "c"]),
    (0.2, ["ccd", "cccd", "ccccd"]),
    (0.125, ["e", "e", "e"]),
    (0.1, ["e66", "e666", "e6666"]),
    (0.0625, ["f", "f", "f"]),
    (0.01, ["fd71", "fd70a", "fd70a4"]),
    (0.001, ["ffbe7", "ffbe77", "ffbe76d"]),
    (0.0001, ["fff972", "fff9724", "fff97247"]),
    (0.00001, ["ffff584", "ffff583a", "ffff583a5"]),
    (0.000001, ["ffffef4", "ffffef39", "ffffef391"]),
];

#[test]
fn thresholds_match_the_opentelemetry_specification() {
    // tracestate writes the threshold in full (14 digits, trailing zeros removed); the table's
    // entries are that threshold rounded half up to their number of digits.
    let rounded = |threshold: u64, digits: usize| {
        let shift = 4 * (14 - digits as u32);
        let half = (1u64 << shift) >> 1;
        format!("{:0digits$x}", (threshold + half) >> shift)
    };
    for (probability, entries) in SPEC_THRESHOLD_TABLE {
        let threshold = threshold_for(probability);
        for expected in entries {
            assert_eq!(rounded(threshold, expected.len()), expected, "p = {probability}: threshold {threshold:#016x}");
        }
    }
    // Exact ones, through a rule: `th` as the specification writes it, and the adjusted count
    // (sample rate) 2^56 / (2^56 − threshold) = 1/p ("Converting threshold to an adjusted count").
    let kept_by_any_rate = [0xff; 16];
    for (probability, th, adjusted_count) in [(0.5, "8", 2.0), (0.25, "c", 4.0), (0.125, "e", 8.0), (0.0625, "f", 16.0)]
    {
        let mut s = sampler(&format!("[[rules]]\nname = \"r\"\nkeep = \"rate\"\nrate = {probability}"));
        let d = s.decide(&with_id(checkout(200, 1), kept_by_any_rate), T);
        assert!(d.keep);
        assert_eq!(tracestate_with_threshold("", d.threshold.unwrap()), format!("ot=th:{th}"), "p = {probability}");
        assert_eq!(d.sample_rate, adjusted_count, "p = {probability}");
    }
    // tracestate-handling.md: "ot=th:0" is 100 % sampling; "ot=th:c" is 25 % (threshold
    // 0xc0000000000000, 75 % rejected).
    assert_eq!(tracestate_with_threshold("", threshold_for(1.0)), "ot=th:0");
    assert_eq!(threshold_for(0.25), 0xc0000000000000);
    // tracestate-probability-sampling.md, "Rejection Threshold (T)": 1 % at 5 digits of precision
    // (one more for the leading f) is 0xfd70a400000000, `ot=th:fd70a4`.
    assert_eq!(rounded(threshold_for(0.01), 6), "fd70a4");
}

#[test]
fn the_specifications_randomness_example_is_kept_from_56_9_percent() {
    // tracestate-handling.md, "Explicit randomness value rv": randomness 0x6e6d1a75832a2f (43.1 % of
    // 2^56) "supports making a consistent positive sampling decision at probabilities ranging
    // from 56.9% through 100% ... the same as for a hexadecimal TraceID ending in 6e6d1a75832a2f".
    let id: [u8; 16] = hex::decode("4bf92f3577b34da6a36e6d1a75832a2f").unwrap().try_into().unwrap();
    assert_eq!(randomness(&id), 0x6e6d1a75832a2f);
    let decide = |probability: f64| {
        let mut s = sampler(&format!("[[rules]]\nname = \"r\"\nkeep = \"rate\"\nrate = {probability}"));
        s.decide(&with_id(checkout(200, 1), id), T).keep
    };
    for kept in [1.0, 0.75, 0.6, 0.569] {
        assert!(decide(kept), "kept at p = {kept}");
    }
    for dropped in [0.568, 0.5, 0.25, 0.1] {
        assert!(!decide(dropped), "dropped at p = {dropped}");
    }
}

#[test]
fn reservoir_keeps_the_first_traces_of_each_second() {
    let mut s = sampler("[[rules]]\nname = \"xray\"\nkeep = \"rate\"\nrate = 0.0\nreservoir_per_second = 5");
    let ids = random_ids(300, 2);
    let kept_in = |s: &mut Sampler, ids: &[[u8; 16]], second: u64| {
        ids.iter()
            .filter(|id| s.decide(&with_id(checkout(200, 1), **id), Nanos(T.0 + second * 1_000_000_000)).keep)
            .count()
    };
    assert_eq!(kept_in(&mut s, &ids[..100], 0), 5);
    assert_eq!(kept_in(&mut s, &ids[100..200], 0), 0, "the same second: reservoir used up, rate 0");
    assert_eq!(kept_in(&mut s, &ids[200..], 1), 5, "a new second, a new reservoir");
}

/// Sum of sample_rate over kept traces, per rule, against the number of traces each rule saw.
fn estimate(s: &mut Sampler, traces: impl Iterator<Item = (ReadyTrace, Nanos)>) -> (f64, usize, usize) {
    let (mut estimate, mut seen, mut kept) = (0.0, 0, 0);
    for (t, now) in traces {
        seen += 1;
        let d = s.decide(&t, now);
        if d.keep {
            kept += 1;
            estimate += d.sample_rate;
        }
    }
    (estimate, seen, kept)
}

#[test]
fn rate_with_reservoir_estimates_are_unbiased() {
    let mut s = sampler("[[rules]]\nname = \"default\"\nkeep = \"rate\"\nrate = 0.05\nreservoir_per_second = 1");
    let ids = random_ids(100_000, 3);
    let traffic =
        ids.iter().enumerate().map(|(i, id)| (with_id(checkout(200, 1), *id), Nanos(T.0 + i as u64 * 1_000_000)));
    let (estimate, seen, kept) = estimate(&mut s, traffic);
    assert!(kept < seen / 10);
    assert!((estimate / seen as f64 - 1.0).abs() < 0.05, "estimate {estimate} for {seen} traces");
}

fn keyed(operation: &'static str, id: [u8; 16]) -> ReadyTrace {
    with_id(trace(&[SpanSpec::new("shop", 1, 1, None, SERVER, operation)]), id)
}

#[test]
fn dynamic_keeps_rare_keys_and_averages_near_the_goal() {
    let mut s = sampler("[[rules]]\nname = \"dyn\"\nkeep = \"dynamic\"\ngoal_rate = 20\nkey = [\"service\", \"operation\"]\nadjust_every = \"10s\"");
    let rare = ["rare-a", "rare-b", "rare-c", "rare-d", "rare-e"];
    let mut rng = SmallRng::seed_from_u64(4);
    let (mut estimate_common, mut kept_common, mut seen_common) = (0.0, 0, 0);
    let mut kept_rare_per_period = Vec::new();
    for period in 0..12u64 {
        let mut kept_rare = std::collections::HashMap::new();
        for i in 0..5000u64 {
            let now = Nanos(T.0 + period * 10_000_000_000 + i * 1_000_000);
            let id: [u8; 16] = rng.random();
            let operation = if i % 1000 == 0 { rare[(i / 1000) as usize % rare.len()] } else { "GET /common" };
            let d = s.decide(&keyed(operation, id), now);
            if operation == "GET /common" {
                // Like Refinery's, the sampler keeps everything until its first period has counts.
                if period > 0 {
                    seen_common += 1;
                    if d.keep {
                        kept_common += 1;
                        estimate_common += d.sample_rate;
                    }
                }
            } else if d.keep {
                *kept_rare.entry(operation).or_insert(0) += 1;
            }
        }
        kept_rare_per_period.push(kept_rare.len());
    }
    assert!(
        kept_rare_per_period.iter().all(|&k| k == rare.len()),
        "every key seen in a period is kept at least once: {kept_rare_per_period:?}"
    );
    let ratio = seen_common as f64 / kept_common as f64;
    assert!((15.0..=25.0).contains(&ratio), "the common key is kept about 1 in goal_rate (20): 1 in {ratio}");
    assert!((estimate_common / seen_common as f64 - 1.0).abs() < 0.1, "unbiased: {estimate_common} for {seen_common}");
}

#[test]
fn throughput_converges_to_its_goal_under_changing_load() {
    let mut s = sampler("[[rules]]\nname = \"tp\"\nkeep = \"throughput\"\ntraces_per_second = 50");
    let mut rng = SmallRng::seed_from_u64(5);
    let mut kept_per_second = Vec::new();
    for second in 0..20u64 {
        let load = if second < 10 { 2000 } else { 400 };
        let mut kept = 0;
        for i in 0..load {
            let now = Nanos(T.0 + second * 1_000_000_000 + i * (1_000_000_000 / load));
            if s.decide(&with_id(checkout(200, 1), rng.random()), now).keep {
                kept += 1;
            }
        }
        kept_per_second.push(kept);
    }
    for (second, kept) in kept_per_second.iter().enumerate() {
        if second != 0 && second != 10 {
            assert!((30..=75).contains(kept), "second {second}: kept {kept} (goal 50): {kept_per_second:?}");
        }
    }
}

#[test]
fn invalid_rules_name_the_rule_and_key() {
    let config: SamplingConfig = toml::from_str(
        r#"
        [[rules]]
        name = "a"
        keep = "rate"
        [[rules]]
        name = "b"
        keep = "all"
        rate = 0.5
        [[rules]]
        name = "c"
        keep = "dynamic"
        [[rules]]
        name = "a"
        keep = "rate"
        rate = 1.5
        when = { attribute = { key = "k" } }
        "#,
    )
    .unwrap();
    let problems: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
    for expected in [
        r#"sampling.rules[0] ("a").rate: is required"#,
        r#"sampling.rules[1] ("b").rate: does not apply"#,
        r#"sampling.rules[2] ("c").goal_rate: is required"#,
        r#"sampling.rules[3] ("a").name"#,
        r#"sampling.rules[3] ("a").rate: 1.5 is not a probability"#,
        r#"sampling.rules[3] ("a").when.attribute"#,
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "missing {expected}: {problems:#?}");
    }
    assert!(config.warnings().is_empty(), "rules without `when` are catch-alls");
    let no_catch_all: SamplingConfig =
        toml::from_str("[[rules]]\nname = \"f\"\nkeep = \"all\"\nwhen = { outcome = \"fault\" }").unwrap();
    assert_eq!(no_catch_all.warnings().len(), 1, "no catch-all rule");
    assert!(toml::from_str::<SamplingConfig>("[[rules]]\nname = \"x\"\nkeep = \"maybe\"").is_err());
    assert!(toml::from_str::<SamplingConfig>("[[rules]]\nname = \"x\"\nkeep = \"all\"\nwhen = { colour = \"red\" }")
        .is_err());
}
