//! The SLO gauges of slo.md, rendered at scrape time from the engine's reports.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use super::engine::{distinct_windows, SloEngine};
use crate::clock::SharedClock;
use crate::signals::exposition::{desc, family, gauge};
use crate::telemetry::families::{self, FamilySpec};

/// In the order `collect` fills them.
const FAMILIES: [FamilySpec; 8] = [
    families::SLO_ATTAINMENT,
    families::SLO_GOAL,
    families::SLO_ERROR_BUDGET,
    families::SLO_ERROR_BUDGET_REMAINING,
    families::SLO_ERROR_BUDGET_REMAINING_RATIO,
    families::SLO_BURN_RATE,
    families::SLO_STATUS,
    families::SLO_ALERT_FIRING,
];

const STATUSES: [&str; 4] = ["OK", "WARNING", "BREACHED", "INSUFFICIENT_DATA"];

pub struct SloCollector {
    engine: Arc<Mutex<SloEngine>>,
    clock: SharedClock,
    descs: Vec<Desc>,
}

impl SloCollector {
    pub fn new(engine: Arc<Mutex<SloEngine>>, clock: SharedClock) -> Self {
        let descs = FAMILIES.iter().map(desc).collect();
        Self { engine, clock, descs }
    }
}

impl Collector for SloCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = (self.clock.now().0 / 1_000_000_000) as i64;
        let reports = self.engine.lock().expect("slo engine lock").reports(now);
        let mut metrics: Vec<Vec<prometheus::proto::Metric>> = vec![Vec::new(); FAMILIES.len()];
        for r in &reports {
            let slo = r.name.as_str();
            let unit = r.error_budget.unit;
            if let Some(a) = r.attainment {
                metrics[0].push(gauge(&[("slo", slo)], a));
            }
            metrics[1].push(gauge(&[("slo", slo)], r.goal));
            metrics[2].push(gauge(&[("slo", slo), ("unit", unit)], r.error_budget.total));
            metrics[3].push(gauge(&[("slo", slo), ("unit", unit)], r.error_budget.remaining));
            metrics[4].push(gauge(&[("slo", slo)], r.error_budget.remaining_ratio));
            for burn in distinct_windows(&r.burn_rates) {
                metrics[5].push(gauge(&[("slo", slo), ("window", &burn.window)], burn.burn_rate));
            }
            for status in STATUSES {
                metrics[6].push(gauge(&[("slo", slo), ("status", status)], (r.status == status) as u8 as f64));
            }
            for tier in &r.tiers {
                metrics[7].push(gauge(&[("slo", slo), ("tier", tier)], r.firing.contains(tier) as u8 as f64));
            }
        }
        FAMILIES.iter().zip(metrics).filter(|(_, m)| !m.is_empty()).map(|(spec, m)| family(spec, m)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Nanos};

    #[test]
    fn window_labels_are_written_as_in_the_configuration() {
        let config: crate::slo::config::SloConfig = toml::from_str(
            "name = \"api\"\nservice = \"api\"\nsli = \"availability\"\ngoal = 0.99\nwindow = \"30d\"\n",
        )
        .unwrap();
        let mut engine = SloEngine::new(&[config]);
        engine.take_over(0, None, &[]);
        let clock: SharedClock = Arc::new(ManualClock::new(Nanos(1_777_593_600_000_000_000)));
        let registry = prometheus::Registry::new();
        registry.register(Box::new(SloCollector::new(Arc::new(Mutex::new(engine)), clock))).unwrap();
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        let mut windows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tracewarden_slo_burn_rate{"))
            .filter_map(|l| l.split("window=\"").nth(1)?.split('"').next())
            .collect();
        windows.sort_unstable();
        assert_eq!(windows, ["1h", "30m", "3d", "5m", "6h"], "one gauge per distinct window: {text}");
    }
}
