//! SLOs (slo.md): error budgets and multi-window, multi-burn-rate alerts.
//!
//! This module holds the budget arithmetic, [`budget`]: event-time buckets of good and total
//! requests, rolling and calendar (UTC) windows, request- and period-based budgeting, burn rates,
//! status, and the burn-rate tiers of the SRE Workbook. It is pure: time is a parameter, so every
//! figure is tested against hand-computed examples. Wiring into the configuration (`[[slo]]`), the
//! alert messages, the state and aggregates topics and the gauges build on it.

pub mod aggregate;
pub mod budget;
pub mod config;
pub mod engine;
pub mod exchange;
pub mod gauges;
pub mod state;
