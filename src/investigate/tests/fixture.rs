//! The series the investigation views' tests answer about, built through the signal store as
//! the pipeline records it.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Nanos;
use crate::config::Config;
use crate::signals::SignalStore;
use crate::testing::{spans, SpanSpec, SERVER};

use crate::investigate::timeline::Timeline;

pub const NOW: Nanos = Nanos(1_700_000_000_000_000_000);

/// 20 requests of customers `GET /owners` at [`NOW`]: pod-1 serves 8 (1 fault), pod-2 (the bad
/// version, 1.4.0-rc1, 200 ms) 6 (5 faults), pod-3 4 (0 faults), and 2 (one a 404) come from a
/// resource without a pod name; all but pod-2 run 1.3.2, in 10 ms. Contributor tables hold
/// `capacity` values per dimension.
pub fn customers_timeline(capacity: usize) -> (Timeline, Arc<[Arc<str>]>) {
    let mut config = Config::default();
    config.investigation.max_values_per_dimension = capacity;
    let mut store = SignalStore::new(config.signal_settings());
    let mut trace = 0u8;
    let mut request = |pod: Option<&'static str>, status: i64, micros: u64| {
        trace += 1;
        let mut span = SpanSpec::new("customers", trace, 1, None, SERVER, "x")
            .http("GET", "/owners", status)
            .micros(micros)
            .resource("service.version", if pod == Some("pod-2") { "1.4.0-rc1" } else { "1.3.2" });
        if let Some(pod) = pod {
            span = span.resource("k8s.pod.name", pod);
        }
        store.record_trace(&spans(&[span]), NOW);
    };
    for i in 0..8 {
        request(Some("pod-1"), if i == 0 { 500 } else { 200 }, 10_000);
    }
    for i in 0..6 {
        request(Some("pod-2"), if i < 5 { 503 } else { 200 }, 200_000);
    }
    for _ in 0..4 {
        request(Some("pod-3"), 200, 10_000);
    }
    request(None, 200, 10_000);
    request(None, 404, 10_000);
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    timeline.merge(&store.flush_points(), NOW);
    (timeline, store.dimensions().clone())
}
