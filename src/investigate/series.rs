//! The series of the timeline over `metrics.window` (`/api/series`): a service's operations and
//! its dependencies, each with its figures — the tables of the console's service page, group-wide.

use serde::Serialize;

use crate::signals::SeriesId;

use super::query::QueryError;
use super::timeline::{Aggregate, Figures, WindowSeries};

/// What `/api/series` asks for: every series, or one service's (and environment's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesQuery {
    pub service: Option<String>,
    pub environment: Option<String>,
}

impl SeriesQuery {
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let mut query = Self::default();
        for (name, value) in parameters {
            match name {
                "service" => query.service = Some(value.to_string()),
                "environment" => query.environment = Some(value.to_string()),
                _ => return Err(QueryError::new(name, "unknown; expected service or environment")),
            }
        }
        Ok(query)
    }
}

/// One series' figures over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesRow {
    pub service: String,
    pub operation: String,
    pub environment: String,
    /// For dependencies: the callee and what it is (`service`, `database`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_operation: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The `/api/series` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesAnswer {
    /// The length of `metrics.window` the figures cover (so a client can make rates).
    pub window_seconds: u64,
    pub operations: Vec<SeriesRow>,
    pub dependencies: Vec<SeriesRow>,
}

fn row(
    (service, operation, environment): (&str, &str, &str),
    remote: Option<(&str, &str)>,
    figures: &Aggregate,
) -> SeriesRow {
    SeriesRow {
        service: service.to_string(),
        operation: operation.to_string(),
        environment: environment.to_string(),
        remote_service: remote.map(|(s, _)| s.to_string()),
        remote_operation: remote.map(|(_, o)| o.to_string()),
        figures: figures.figures(),
    }
}

/// The selected series over `metrics.window` (`window`: each series' rollup, `window_seconds`
/// long), busiest first.
pub fn series(window: &[WindowSeries], window_seconds: u64, query: &SeriesQuery) -> SeriesAnswer {
    let wanted = |service: &str, environment: &str| {
        query.service.as_deref().is_none_or(|s| s == service)
            && query.environment.as_deref().is_none_or(|e| e == environment)
    };
    let (mut operations, mut dependencies) = (Vec::new(), Vec::new());
    for (id, _, figures) in window {
        match id {
            SeriesId::Service(k) if wanted(&k.service, &k.environment) => {
                operations.push(row((&k.service, &k.operation, &k.environment), None, figures))
            }
            SeriesId::Dependency(k) if wanted(&k.service, &k.environment) => dependencies.push(row(
                (&k.service, &k.operation, &k.environment),
                Some((&k.remote_service, &k.remote_operation)),
                figures,
            )),
            _ => {}
        }
    }
    let order = |a: &SeriesRow, b: &SeriesRow| {
        b.figures
            .requests
            .cmp(&a.figures.requests)
            .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
    };
    operations.sort_by(order);
    dependencies.sort_by(order);
    SeriesAnswer { window_seconds, operations, dependencies }
}
