use super::*;

/// 2026-05-01T10:00:00Z.
const T0: Seconds = 1_777_629_600;

/// A point at `at` whose attainment tells points of the same second apart.
fn point(at: Seconds, attainment: f64) -> HistoryPoint {
    HistoryPoint {
        at,
        attainment: Some(attainment),
        error_budget: ErrorBudget { unit: "requests", total: 25.0, remaining: 15.0, remaining_ratio: 0.6 },
        burn_rates: vec![
            WindowRate { window: "1h".into(), burn_rate: 2.0 },
            WindowRate { window: "5m".into(), burn_rate: 10.0 },
        ],
        status: "OK",
        firing: vec!["ticket".into()],
    }
}

fn times(history: &SloHistory) -> Vec<Seconds> {
    history.points().map(|p| p.at).collect()
}

#[test]
fn an_hour_of_points_rolls_over_by_time() {
    let mut history = SloHistory::default();
    // Two hours of evaluations every 10 s.
    for step in 0..720 {
        history.record(point(T0 + step * 10, 0.999));
    }
    let newest = T0 + 7190;
    assert_eq!(history.len(), 360, "one point per 10 s over an hour");
    assert_eq!(history.points().next().unwrap().at, newest - 3590, "an hour before the newest is out");
    assert_eq!(history.points().last().unwrap().at, newest);
}

#[test]
fn a_point_exactly_an_hour_old_is_dropped() {
    let mut history = SloHistory::default();
    history.record(point(T0, 0.9));
    history.record(point(T0 + 1, 0.9));
    history.record(point(T0 + 3600, 0.9));
    assert_eq!(times(&history), [T0 + 1, T0 + 3600]);
}

#[test]
fn a_history_no_longer_fed_expires_with_time() {
    let mut history = SloHistory::default();
    history.merge([point(T0, 0.9), point(T0 + 10, 0.9), point(T0 + 20, 0.9)]);
    history.expire(T0 + 3599);
    assert_eq!(times(&history), [T0, T0 + 10, T0 + 20]);
    history.expire(T0 + 3610);
    assert_eq!(times(&history), [T0 + 20]);
    history.expire(T0 + 7200);
    assert!(history.is_empty());
}

#[test]
fn one_point_a_second_for_an_hour_fills_the_cap() {
    let mut history = SloHistory::default();
    for second in 0..=HISTORY_POINTS as Seconds {
        history.record(point(T0 + second, 0.9));
    }
    assert_eq!(history.len(), HISTORY_POINTS);
    assert_eq!(history.points().next().unwrap().at, T0 + 1, "the oldest went first");
}

#[test]
fn the_cap_drops_the_oldest_points() {
    let mut history = SloHistory::default();
    for second in 0..5 {
        history.insert(point(T0 + second, 0.9), true);
    }
    history.bound(HISTORY_SPAN, 3);
    assert_eq!(times(&history), [T0 + 2, T0 + 3, T0 + 4]);
}

#[test]
fn an_evaluation_replaces_a_point_of_the_same_second() {
    let mut history = SloHistory::default();
    history.record(point(T0, 0.9));
    history.record(point(T0, 0.8));
    assert_eq!(history.len(), 1);
    assert_eq!(history.points().next().unwrap().attainment, Some(0.8), "the later evaluation stands");
}

#[test]
fn merged_points_take_their_place_in_time_and_never_replace_one_held() {
    let mut history = SloHistory::default();
    history.record(point(T0 + 20, 0.9));
    history.record(point(T0 + 40, 0.9));
    // Out of order, one at a second already held, one twice.
    let added = history.merge([point(T0 + 30, 0.5), point(T0 + 10, 0.5), point(T0 + 20, 0.5), point(T0 + 30, 0.4)]);
    assert_eq!(added, 2);
    assert_eq!(times(&history), [T0 + 10, T0 + 20, T0 + 30, T0 + 40]);
    let attainments: Vec<Option<f64>> = history.points().map(|p| p.attainment).collect();
    assert_eq!(attainments, [Some(0.5), Some(0.9), Some(0.5), Some(0.9)], "the first of each second stays");
    assert_eq!(history.merge([point(T0 + 30, 0.1)]), 0, "all duplicates");
}

#[test]
fn merged_points_an_hour_older_than_the_newest_are_not_kept() {
    let mut history = SloHistory::default();
    history.record(point(T0 + 3600, 0.9));
    assert_eq!(history.merge([point(T0, 0.9), point(T0 + 1, 0.9)]), 1);
    assert_eq!(times(&history), [T0 + 1, T0 + 3600]);
    // A newer point received pushes the older ones out.
    assert_eq!(history.merge([point(T0 + 3610, 0.9)]), 1);
    assert_eq!(times(&history), [T0 + 3600, T0 + 3610]);
}

#[test]
fn thinned_keeps_the_newest_point_of_each_step() {
    let mut history = SloHistory::default();
    // T0 is a multiple of 10: steps [T0, T0 + 10), [T0 + 10, T0 + 20), [T0 + 20, T0 + 30).
    for at in [T0, T0 + 4, T0 + 9, T0 + 10, T0 + 25] {
        history.record(point(at, 0.9));
    }
    let thinned = |step: Seconds| history.thinned(step).map(|p| p.at).collect::<Vec<_>>();
    assert_eq!(thinned(10), [T0 + 9, T0 + 10, T0 + 25]);
    assert_eq!(thinned(1), [T0, T0 + 4, T0 + 9, T0 + 10, T0 + 25], "a step of a second keeps every point");
    assert_eq!(thinned(3600).len(), 1);
    assert!(SloHistory::default().thinned(10).next().is_none());
}

#[test]
fn points_travel_as_camel_case_json_with_rfc3339_times() {
    let json = serde_json::to_value(point(T0, 0.9996)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "time": "2026-05-01T10:00:00Z",
            "attainment": 0.9996,
            "errorBudget": {"unit": "requests", "total": 25.0, "remaining": 15.0, "remainingRatio": 0.6},
            "burnRates": [{"window": "1h", "burnRate": 2.0}, {"window": "5m", "burnRate": 10.0}],
            "status": "OK",
            "firing": ["ticket"]
        })
    );
    let back: HistoryPoint = serde_json::from_slice(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(back, point(T0, 0.9996));
}

#[test]
fn a_history_read_back_keeps_its_invariants() {
    // Written by hand: out of order, a duplicate second, and a point over an hour old.
    let text = format!(
        "[{}, {}, {}, {}]",
        serde_json::to_string(&point(T0 + 20, 0.9)).unwrap(),
        serde_json::to_string(&point(T0 - 3600, 0.9)).unwrap(),
        serde_json::to_string(&point(T0 + 10, 0.9)).unwrap(),
        serde_json::to_string(&point(T0 + 20, 0.1)).unwrap(),
    );
    let history: SloHistory = serde_json::from_str(&text).unwrap();
    assert_eq!(times(&history), [T0 + 10, T0 + 20]);
    assert_eq!(history.points().last().unwrap().attainment, Some(0.9));
    assert_eq!(serde_json::from_str::<SloHistory>(&serde_json::to_string(&history).unwrap()).unwrap(), history);
}

#[test]
fn unknown_statuses_and_bad_times_are_refused() {
    let mut json = serde_json::to_value(point(T0, 0.9)).unwrap();
    json["status"] = "FINE".into();
    assert!(serde_json::from_value::<HistoryPoint>(json.clone()).is_err());
    json["status"] = "BREACHED".into();
    assert_eq!(serde_json::from_value::<HistoryPoint>(json.clone()).unwrap().status, "BREACHED");
    json["time"] = "yesterday".into();
    assert!(serde_json::from_value::<HistoryPoint>(json).is_err());
}
