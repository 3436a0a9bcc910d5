//! Group-wide latency quantiles on `/metrics` (investigation.md "Group-wide quantiles"): the
//! owner of a series has the whole group's latency sketch of it, so it alone exposes the series'
//! quantiles over `metrics.window`. A Prometheus scraping every instance sees each series once,
//! from whichever instance owns it now; the per-instance `tracewarden_latency_quantile_seconds`
//! describes only that instance's share of the traces.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::clock::SharedClock;
use crate::investigate::OwnedTimeline;
use crate::signals::exposition::{desc, family, gauge, LabelSet};
use crate::signals::SeriesId;
use crate::signals::QUANTILES;
use crate::telemetry::families::{GROUP_DEPENDENCY_LATENCY_QUANTILE as DEPENDENCY, GROUP_LATENCY_QUANTILE as SERVICE};

/// Renders the owned series' group-wide quantiles at scrape time.
pub struct GroupQuantileCollector {
    timeline: Arc<OwnedTimeline>,
    clock: SharedClock,
    descs: Vec<Desc>,
}

impl GroupQuantileCollector {
    pub fn new(timeline: Arc<OwnedTimeline>, clock: SharedClock) -> Self {
        let descs = vec![desc(&SERVICE), desc(&DEPENDENCY)];
        Self { timeline, clock, descs }
    }
}

impl Collector for GroupQuantileCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = self.clock.now();
        let window = self.timeline.at(now).window_rollup(now);
        let (mut services, mut dependencies) = (Vec::new(), Vec::new());
        for (id, _, aggregate) in &window {
            let (pairs, into) = match id {
                SeriesId::Service(key) => (key.pairs(), &mut services),
                SeriesId::Dependency(key) => (key.pairs(), &mut dependencies),
                SeriesId::Client { .. } | SeriesId::Queue(_) => continue,
            };
            for q in QUANTILES {
                let Some(seconds) = aggregate.latency.quantile(q) else { continue };
                let q_text = q.to_string();
                let mut with_q = pairs.clone();
                with_q.push(("quantile", &q_text));
                into.push(gauge(&with_q, seconds));
            }
        }
        let mut families = vec![family(&SERVICE, services), family(&DEPENDENCY, dependencies)];
        families.retain(|f| !f.get_metric().is_empty());
        families
    }
}
