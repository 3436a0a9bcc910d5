//! SLOs (slo.md): error budgets and multi-window, multi-burn-rate alerts, evaluated once per
//! consumer group and surviving restarts.
//!
//! - [`config`]: `[[slo]]` definitions and their validation;
//! - [`budget`]: the pure arithmetic — event-time buckets, rolling and calendar (UTC) windows,
//!   request- and period-based budgets, burn rates, status, tiers — tested by hand-computed
//!   examples with time as a parameter;
//! - [`engine`]: SLIs from entry spans, alert state machines, alert messages, checkpoints;
//! - [`history`]: one point per evaluation over the last hour, recorded by the owner and carried
//!   to the next owner in the SLO's checkpoint;
//! - [`aggregate`]: the records of the aggregates topic, the owner's once-per-message ledger,
//!   the checkpoint format, and which partition owns an SLO;
//! - [`exchange`]: the SLO side of the span path — count, publish, merge, evaluate, checkpoint,
//!   take over and hand over;
//! - [`state`]: reading checkpoints back from the compacted state topic;
//! - [`sent`]: reading back, at a takeover, the alerts written since the last checkpoint;
//! - [`gauges`]: the `tracewarden_slo_*` gauges.

pub mod aggregate;
pub mod budget;
pub mod config;
pub mod engine;
pub mod exchange;
pub mod gauges;
pub mod history;
pub mod sent;
pub mod state;
