use super::*;

const DAY: Seconds = 86_400;

fn at(rfc3339: &str) -> Seconds {
    parse_time(rfc3339).unwrap()
}

fn objective(goal: f64, window: Window, budgeting: Budgeting) -> Objective {
    Objective {
        goal,
        period_rule: PeriodRule::GoodShare(goal),
        window,
        budgeting,
        warning_threshold: 0.5,
        exclusions: Exclusions::default(),
    }
}

#[test]
fn request_budget_by_hand() {
    let now = at("2026-05-01T10:00:00Z");
    let slo = objective(0.999, Window::Rolling(Duration::from_secs(30 * DAY as u64)), Budgeting::Requests);
    let budget_with = |bad: u64| {
        let mut series = Series::default();
        series.add(now - 3600, 10_000 - bad, 10_000);
        slo.budget(&series, now)
    };
    let b = budget_with(5);
    assert!((b.attainment.unwrap() - 0.9995).abs() < 1e-12);
    assert!((b.total - 10.0).abs() < 1e-9, "(1 − T)·N = 10 requests");
    assert!((b.remaining - 5.0).abs() < 1e-9);
    assert!((b.remaining_ratio - 0.5).abs() < 1e-9);
    assert_eq!(b.status, Status::Ok, "0.5 is not under the warning threshold 0.5");
    assert_eq!(budget_with(6).status, Status::Warning);
    assert_eq!(budget_with(10).status, Status::Breached, "remaining 0");
    assert!(budget_with(12).remaining < 0.0, "may go negative");
    assert_eq!(slo.budget(&Series::default(), now).status, Status::InsufficientData);
    // Requests older than the window do not count.
    let mut old = Series::default();
    old.add(now - 31 * DAY, 0, 100);
    assert_eq!(slo.budget(&old, now).status, Status::InsufficientData);
}

#[test]
fn period_budget_by_hand() {
    let now = at("2026-05-02T00:00:00Z") - 1;
    let slo = objective(0.99, Window::Rolling(Duration::from_secs(DAY as u64)), Budgeting::Periods { period: 60 });
    let mut series = Series::default();
    for minute in 0..1440 {
        let start = now + 1 - DAY + minute * 60;
        // Minutes 100, 200, 300 are bad: 5 % of their requests fail (goal 99 %).
        let bad = if [100, 200, 300].contains(&minute) { 5 } else { 0 };
        series.add(start, 100 - bad, 100);
    }
    let b = slo.budget(&series, now);
    assert!((b.total - 864.0).abs() < 1e-9, "(1 − T)·W = 0.01 × 86 400 s");
    assert!((b.remaining - (864.0 - 180.0)).abs() < 1e-9, "3 bad minutes");
    assert!((b.remaining_ratio - (1.0 - 3.0 / 14.4)).abs() < 1e-9, "1 − b/((1 − T)·K), K = 1440");
    assert!((b.attainment.unwrap() - 1437.0 / 1440.0).abs() < 1e-9);
    // Over the last hour (no bad minute) the burn rate is 0; over the last day 3/1440/0.01.
    assert_eq!(slo.burn_rate(&series, now, 3600).rate, 0.0);
    assert!((slo.burn_rate(&series, now, DAY).rate - (3.0 / 1440.0) / 0.01).abs() < 1e-9);
}

#[test]
fn calendar_windows_use_utc_boundaries_and_real_month_lengths() {
    let month = Window::Calendar(Calendar::Month);
    assert_eq!(month.bounds(at("2026-02-15T12:00:00Z")), (at("2026-02-01T00:00:00Z"), 28 * DAY));
    assert_eq!(month.bounds(at("2026-03-31T23:59:59Z")), (at("2026-03-01T00:00:00Z"), 31 * DAY));
    assert_eq!(month.bounds(at("2028-02-29T00:00:00Z")), (at("2028-02-01T00:00:00Z"), 29 * DAY), "leap year");
    assert_eq!(
        Window::Calendar(Calendar::Week).bounds(at("2026-11-21T08:00:00Z")),
        (at("2026-11-16T00:00:00Z"), 7 * DAY),
        "ISO week: Monday"
    );
    assert_eq!(Window::Calendar(Calendar::Day).bounds(at("2026-11-21T08:00:00Z")), (at("2026-11-21T00:00:00Z"), DAY));

    // Across the month boundary: January's failures no longer count on 1 February.
    let slo = objective(0.99, month, Budgeting::Requests);
    let mut series = Series::default();
    series.add(at("2026-01-31T23:50:00Z"), 50, 100);
    series.add(at("2026-02-01T00:05:00Z"), 100, 100);
    let b = slo.budget(&series, at("2026-02-01T00:10:00Z"));
    assert_eq!((b.requests, b.status), (100, Status::Ok));
    let b = slo.budget(&series, at("2026-01-31T23:59:00Z"));
    assert_eq!(b.status, Status::Breached);
    // The period budget of a calendar month is fixed by its real length.
    let periods = objective(0.99, month, Budgeting::Periods { period: 60 });
    assert!((periods.budget(&series, at("2026-02-10T00:00:00Z")).total - 0.01 * (28 * DAY) as f64).abs() < 1e-6);
}

#[test]
fn excluded_periods_are_good() {
    let start = at("2026-12-24T00:00:00Z");
    let mut slo = objective(0.99, Window::Rolling(Duration::from_secs(DAY as u64)), Budgeting::Periods { period: 60 });
    let mut series = Series::default();
    series.add(start + 120, 0, 10);
    let now = start + 3600;
    assert!((slo.budget(&series, now).remaining - (864.0 - 60.0)).abs() < 1e-6);
    slo.exclusions = Exclusions { fixed: vec![(start, 2 * DAY)], recurring: Vec::new() };
    assert!(slo.exclusions.contains(start + 120) && !slo.exclusions.contains(start + 2 * DAY));
    assert!((slo.budget(&series, now).remaining - 864.0).abs() < 1e-6, "a period inside an exclusion is good");
}

#[test]
fn tier_thresholds_scale_with_the_window() {
    let thirty_days = 30 * DAY;
    let thresholds: Vec<f64> = Tier::defaults().iter().map(|t| t.threshold(thirty_days)).collect();
    assert!(
        (thresholds[0] - 14.4).abs() < 1e-9 && (thresholds[1] - 6.0).abs() < 1e-9 && (thresholds[2] - 1.0).abs() < 1e-9
    );
    assert_eq!(Tier::defaults()[0].short(), 300, "page-fast's short window is 5 min");
    assert!((Tier::defaults()[0].threshold(7 * DAY) - 0.02 * 7.0 * 24.0).abs() < 1e-9);
}

/// The SRE Workbook's reset-time property: a 10-minute burst of 15 % errors on a 99.9 % SLO fires
/// page-fast within minutes and resolves about 5 minutes after the burst, not an hour later.
#[test]
fn page_fast_fires_within_minutes_and_resets_five_minutes_after_the_burst() {
    let slo = objective(0.999, Window::Rolling(Duration::from_secs(30 * DAY as u64)), Budgeting::Requests);
    let page_fast = &Tier::defaults()[0];
    let mut series = Series::default();
    let t0 = at("2026-05-01T00:00:00Z");
    let (burst_start, burst_end) = (120, 130);
    let mut fired_at = None;
    let mut resolved_at = None;
    for minute in 0..240 {
        let now = t0 + minute * 60;
        let bad = if (burst_start..burst_end).contains(&minute) { 150 } else { 0 };
        series.add(now, 1000 - bad, 1000);
        let firing = page_fast.firing(&slo, &series, now + 59, 10);
        match (firing, fired_at, resolved_at) {
            (true, None, _) => fired_at = Some(minute),
            (false, Some(_), None) => resolved_at = Some(minute),
            _ => {}
        }
    }
    let fired = fired_at.expect("page-fast fires") - burst_start;
    let resolved = resolved_at.expect("page-fast resolves") - burst_end;
    assert!(fired <= 6, "fired {fired} minutes into the burst");
    assert!((4..=6).contains(&resolved), "resolved {resolved} minutes after the burst ended");
}

#[test]
fn low_traffic_keeps_alerts_quiet() {
    let slo = objective(0.999, Window::Rolling(Duration::from_secs(30 * DAY as u64)), Budgeting::Requests);
    let mut series = Series::default();
    let now = at("2026-05-01T12:00:00Z");
    series.add(now - 60, 0, 3);
    let page_fast = &Tier::defaults()[0];
    assert!(!page_fast.firing(&slo, &series, now, 10), "3 requests in the long window: under min_requests");
    assert!(page_fast.firing(&slo, &series, now, 1));
}

#[test]
fn recurring_exclusions_follow_their_cron_schedule() {
    use std::str::FromStr as _;
    // Every Sunday at 02:00 UTC, for two hours.
    let sunday = croner::Cron::from_str("0 2 * * SUN").unwrap();
    let exclusions = Exclusions { fixed: Vec::new(), recurring: vec![(sunday, 7200)] };
    assert!(exclusions.contains(at("2026-11-22T02:00:00Z")), "opens at the occurrence");
    assert!(exclusions.contains(at("2026-11-22T03:59:59Z")));
    assert!(!exclusions.contains(at("2026-11-22T04:00:00Z")), "closes after its duration");
    assert!(!exclusions.contains(at("2026-11-22T01:59:59Z")));
    assert!(!exclusions.contains(at("2026-11-23T02:30:00Z")), "a Monday");
}

#[test]
fn coarse_old_buckets_keep_the_budget() {
    let now = at("2026-05-31T12:00:00Z");
    let slo = objective(0.999, Window::Calendar(Calendar::Month), Budgeting::Requests);
    let mut series = Series::default();
    for minute in 0..(30 * 24 * 60) {
        let t = at("2026-05-01T00:00:00Z") + minute * 60;
        series.add(t, 100 - (minute % 7 == 0) as u64, 100);
    }
    let before = slo.budget(&series, now);
    let burn = slo.burn_rate(&series, now, 3600);
    series.coarsen(now - 4 * DAY, 3600);
    assert!(series.buckets().count() < 27 * 24 + 4 * 24 * 60 + 1, "hour buckets for the old part");
    assert_eq!(slo.budget(&series, now), before, "a calendar window starts on an hour: exact");
    assert_eq!(slo.burn_rate(&series, now, 3600), burn, "recent minutes untouched");
    let again = series.clone();
    series.coarsen(now - 4 * DAY, 3600);
    assert_eq!(series, again, "coarsening twice changes nothing");
}

#[test]
fn judged_old_periods_keep_their_verdicts() {
    let now = at("2026-05-02T00:00:00Z");
    let rules = [PeriodRule::GoodShare(0.99), PeriodRule::MeanAtMost(100_000)];
    for rule in rules {
        let mut slo =
            objective(0.99, Window::Rolling(Duration::from_secs(DAY as u64)), Budgeting::Periods { period: 300 });
        slo.period_rule = rule;
        let mut series = Series::default();
        for minute in 0..(24 * 60) {
            let t = now - DAY + minute * 60 + 5;
            // Every 13th minute is bad under both rules: 5 of 100 requests bad and slow (1 s).
            let bad = if minute % 13 == 0 { 5 } else { 0 };
            series.add_counts(
                t,
                Counts { good: 100 - bad, total: 100, latency_us: (100 - bad) * 10_000 + bad * 3_000_000 },
            );
        }
        let before = slo.budget(&series, now);
        series.judge_periods(now - 3 * 3600, 300, rule);
        assert!(series.buckets().count() < 21 * 12 + 3 * 60 + 1);
        let after = slo.budget(&series, now);
        assert_eq!(
            (after.remaining, after.status, after.attainment),
            (before.remaining, before.status, before.attainment),
            "{rule:?}"
        );
        let again = series.clone();
        series.judge_periods(now - 3 * 3600, 300, rule);
        assert_eq!(series, again, "judging twice changes nothing");
    }
}
