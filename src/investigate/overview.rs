//! The services overview (`/api/services/overview`): the console's Services page in one answer.
//! Every service node of the map over `metrics.window` (figures, SLO status) with its trend, the
//! requests of each 10 s step since `from`. Figures come from the rollups every instance reads;
//! trends from each service's owner, asked once per owning member (`/api/services/trends`), so the
//! page costs one request from the browser and one per owner from the instance, however many
//! services there are.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Nanos;

use super::history::{history, HistoryQuery};
use super::map::MapNode;
use super::query::{unix_seconds, QueryError, Selection};
use super::timeline::Timeline;

/// What `/api/services/overview` and `/api/services/trends` ask for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverviewQuery {
    /// Only the services of this environment.
    pub environment: Option<String>,
    /// Unix seconds: trends start at the step holding `from` (default: the history kept).
    pub from: Option<i64>,
    /// `/api/services/trends` only: the services (`name:environment`, a node's id) to answer for.
    pub services: Vec<(String, String)>,
}

impl OverviewQuery {
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let mut query = Self::default();
        for (name, value) in parameters {
            match name {
                "environment" => query.environment = Some(value.to_string()),
                "from" => query.from = Some(unix_seconds("from", value)?),
                "service" => {
                    let Some((service, environment)) = value.rsplit_once(':') else {
                        return Err(QueryError::new("service", "expected name:environment"));
                    };
                    query.services.push((service.to_string(), environment.to_string()));
                }
                _ => return Err(QueryError::new(name, "unknown; expected environment, from or service")),
            }
        }
        Ok(query)
    }
}

/// Each service's requests per step since `from`, keyed by node id (`name:environment`), from
/// the series this instance owns.
pub fn trends(timeline: &Timeline, services: &[(String, String)], from: Option<i64>, now: Nanos) -> Trends {
    let trend = |(service, environment): &(String, String)| {
        let selection =
            Selection { service: Some(service.clone()), environment: Some(environment.clone()), ..Default::default() };
        let answer = history(timeline, &HistoryQuery { selection, from, to: None }, now);
        (format!("{service}:{environment}"), answer.points.iter().map(|p| p.requests).collect())
    };
    Trends { trends: services.iter().map(trend).collect() }
}

/// The `/api/services/trends` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Trends {
    pub trends: BTreeMap<String, Vec<u64>>,
}

/// One service of the overview.
#[derive(Debug, Serialize)]
pub struct ServiceOverview {
    #[serde(flatten)]
    pub node: MapNode,
    /// Requests per 10 s step, oldest first; `null` when its owner did not answer.
    pub trend: Option<Vec<u64>>,
}

/// The `/api/services/overview` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// `metrics.window`, over which the figures are.
    pub window_seconds: u64,
    /// Every environment on the map (for the console's filter).
    pub environments: Vec<String>,
    pub services: Vec<ServiceOverview>,
    /// Members that did not answer for their services' trends.
    pub partial: Vec<String>,
    /// Whether any SLO is configured (the page says where to configure one when none is).
    pub slos_configured: bool,
}
