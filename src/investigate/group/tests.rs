use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wire::{Announcement, RollupMessage, RollupSeries};
use super::*;
use crate::signals::point::Counts;
use crate::signals::sketch::LatencySketch;
use crate::signals::ServiceKey;

const T: Nanos = Nanos(1_800_000_000_000_000_000);

fn series(service: &str, operation: &str) -> SeriesId {
    SeriesId::Service(ServiceKey {
        service: Arc::from(service),
        operation: Arc::from(operation),
        environment: Arc::from("production"),
    })
}

fn rollup(instance: u64, sent: Nanos, partitions: Vec<i32>, requests: u64) -> RollupMessage {
    let counts = Counts { requests, faults: 1, errors: 0, throttles: 0 };
    RollupMessage {
        from: Announcement {
            instance,
            url: Some(format!("http://instance-{instance}:9464")),
            sent: sent.0,
            partitions,
            partition_count: 8,
            slos: vec![format!("slo-of-{instance}")],
            slo_reports: Vec::new(),
        },
        series: vec![RollupSeries::of(
            &series("frontend", "GET /"),
            RemoteKind::Remote,
            &counts,
            &LatencySketch::default(),
        )],
    }
}

fn engine() -> Mutex<SloEngine> {
    Mutex::new(SloEngine::new(&[]))
}

fn owned_here(view: &GroupView, partitions: &[i32]) {
    view.update_ownership(|o| {
        o.partition_count = Some(8);
        o.partitions = partitions.iter().copied().collect();
    });
}

#[test]
fn a_series_is_answered_by_the_member_that_announced_its_partition() {
    let view = GroupView::new();
    owned_here(&view, &[]);
    let partition = service_partition("frontend", 8);
    view.apply(rollup(1, T, vec![partition], 10), &engine(), T);
    assert_eq!(view.route_service("frontend", T), Route::There(Arc::from("http://instance-1:9464")));
    owned_here(&view, &[partition]);
    assert_eq!(view.route_service("frontend", T), Route::Here, "owned here: answered here");
}

#[test]
fn a_member_silent_for_the_peer_timeout_is_gone_and_an_old_message_does_not_revive_it() {
    let view = GroupView::new();
    owned_here(&view, &[]);
    let partition = service_partition("frontend", 8);
    view.apply(rollup(1, T, vec![partition], 10), &engine(), T);
    let later = T.saturating_add(PEER_TIMEOUT);
    assert_eq!(view.route_service("frontend", later), Route::Nobody { partition });
    assert!(view.live_peers(later).is_empty());
    // Its announcement read again (a restarted reader replaying the topic) is still old.
    view.apply(rollup(1, T, vec![partition], 10), &engine(), later);
    assert!(view.live_peers(later).is_empty(), "liveness is judged by the announcement's own time");
    assert!(!view.is_live("http://instance-1:9464", later));
}

#[test]
fn the_newest_claim_of_a_partition_wins_and_giving_it_up_stops_the_routing_at_once() {
    let view = GroupView::new();
    owned_here(&view, &[]);
    let partition = service_partition("frontend", 8);
    let engine = engine();
    view.apply(rollup(1, T, vec![partition], 10), &engine, T);
    let moved = T.saturating_add(Duration::from_secs(3));
    view.apply(rollup(2, moved, vec![partition], 10), &engine, moved);
    assert_eq!(view.route_service("frontend", moved), Route::There(Arc::from("http://instance-2:9464")));
    view.apply(rollup(2, moved.saturating_add(Duration::from_secs(1)), vec![], 10), &engine, moved);
    view.apply(rollup(1, moved.saturating_add(Duration::from_secs(1)), vec![], 10), &engine, moved);
    assert_eq!(view.route_service("frontend", moved), Route::Nobody { partition });
    assert_eq!(view.route_slo("slo-of-2", false, moved), Route::There(Arc::from("http://instance-2:9464")));
    assert_eq!(view.route_slo("slo-of-2", true, moved), Route::Here);
}

#[test]
fn the_window_holds_each_series_newest_rollup_until_it_is_too_old() {
    let view = GroupView::new();
    let engine = engine();
    view.apply(rollup(1, T, vec![0], 10), &engine, T);
    let later = T.saturating_add(Duration::from_secs(10));
    view.apply(rollup(2, later, vec![0], 25), &engine, later);
    // A late message from the previous owner does not replace the newer rollup.
    view.apply(rollup(1, T, vec![0], 99), &engine, later);
    let window = view.window(later);
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].2.counts.requests, 25);
    assert!(view.window(later.saturating_add(ROLLUP_TTL)).is_empty(), "a rollup not renewed leaves the view");
}

#[test]
fn not_ready_before_the_first_assignment_nor_while_restoring() {
    let view = GroupView::new();
    assert!(view.restoring().unwrap().starts_with("joining the series group"), "not ready before joining");
    view.update_ownership(|o| o.joined = true);
    assert_eq!(view.restoring(), None, "an empty first assignment is ready");
    view.update_ownership(|o| {
        o.restoring.insert(3);
    });
    assert_eq!(view.restoring().unwrap(), "restoring the history of points partitions 3 from the changelog");
}
