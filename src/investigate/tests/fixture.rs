//! The series the investigation views' tests answer about, built through the signal store as
//! the pipeline records it.

use std::time::Duration;

use crate::clock::Nanos;
use crate::config::Config;
use crate::signals::point::TableKeys;
use crate::signals::SignalStore;
use crate::testing::{spans, AttrSpec, SpanSpec, SERVER};

use crate::investigate::timeline::Timeline;

pub const NOW: Nanos = Nanos(1_700_000_000_000_000_000);

/// 20 requests of customers `GET /owners` at [`NOW`]: pod-1 serves 8 (1 fault, its first), pod-2
/// (the bad version, 1.4.0-rc1, 200 ms) 6 (5 faults, its first five), pod-3 4 (0 faults), and 2
/// (one a 404) come from a resource without a pod name; all but pod-2 run 1.3.2, in 10 ms. The
/// mobile app (`user_agent.original` = `petclinic-mobile/2.1`) sent pod-2's first four requests
/// and pod-1's second; the other pods' requests came from `Mozilla/5.0`, the two without a pod
/// from no user agent. Tables hold `capacity` values per dimension.
pub fn customers_timeline(capacity: usize) -> (Timeline, TableKeys) {
    let mut config = Config::default();
    config.investigation.max_values_per_dimension = capacity;
    customers_timeline_of(&config)
}

/// [`customers_timeline`] as an instance configured with `config` records it.
pub fn customers_timeline_of(config: &Config) -> (Timeline, TableKeys) {
    let mut store = SignalStore::new(config.signal_settings());
    let mut trace = 0u8;
    let mut request = |pod: Option<&'static str>, i: usize, status: i64, micros: u64| {
        trace += 1;
        let mut span = SpanSpec::new("customers", trace, 1, None, SERVER, "x")
            .http("GET", "/owners", status)
            .micros(micros)
            .resource("service.version", if pod == Some("pod-2") { "1.4.0-rc1" } else { "1.3.2" });
        if let Some(pod) = pod {
            let mobile = (pod == "pod-2" && i < 4) || (pod == "pod-1" && i == 1);
            let agent = if mobile { "petclinic-mobile/2.1" } else { "Mozilla/5.0" };
            span = span.resource("k8s.pod.name", pod).attr("user_agent.original", AttrSpec::Str(agent));
        }
        store.record_trace(&spans(&[span]), NOW);
    };
    for i in 0..8 {
        request(Some("pod-1"), i, if i == 0 { 500 } else { 200 }, 10_000);
    }
    for i in 0..6 {
        request(Some("pod-2"), i, if i < 5 { 503 } else { 200 }, 200_000);
    }
    for i in 0..4 {
        request(Some("pod-3"), i, 200, 10_000);
    }
    request(None, 0, 200, 10_000);
    request(None, 1, 404, 10_000);
    let mut timeline = Timeline::new(Duration::from_secs(3600), Duration::from_secs(60), 100);
    timeline.merge(&store.flush_points(), NOW);
    (timeline, store.table_keys())
}
