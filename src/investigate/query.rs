//! Query parameters shared by the investigation APIs: the error naming a bad parameter, and the
//! [`Selection`] of series that `/api/contributors` and `/api/history` answer for.
//!
//! A selection is either labels — `service` (required), `operation`, `environment`, and for a
//! dependency `remote_service` / `remote_operation` — or a service-map `edge` id
//! (`from:environment->to:environment`, the client edge included).

use crate::signals::SeriesId;

use super::map::CLIENT;

/// A query parameter that cannot be used; the message names it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("query parameter {parameter:?}: {message}")]
pub struct QueryError {
    pub parameter: String,
    pub message: String,
}

impl QueryError {
    pub fn new(parameter: &str, message: impl Into<String>) -> Self {
        Self { parameter: parameter.to_string(), message: message.into() }
    }
}

/// Parses a positive whole number up to `max`, naming `parameter` when it is not one.
pub fn whole_number(parameter: &str, value: &str, max: usize) -> Result<usize, QueryError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| QueryError::new(parameter, format!("expected a whole number from 1 to {max}")))
}

/// Parses Unix seconds, naming `parameter` when they are not.
pub fn unix_seconds(parameter: &str, value: &str) -> Result<i64, QueryError> {
    value.parse::<i64>().map_err(|_| QueryError::new(parameter, "expected Unix seconds"))
}

/// Which series an answer is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub environment: Option<String>,
    pub remote_service: Option<String>,
    pub remote_operation: Option<String>,
    /// A map edge: (source name, source environment, target name, target environment).
    pub edge: Option<(String, String, String, String)>,
}

/// The parameter names a selection takes.
pub const SELECTION_PARAMETERS: &str = "service, operation, environment, remote_service, remote_operation, edge";

impl Selection {
    /// Takes the parameter if it is one of the selection's; `Ok(false)` when it is not.
    pub fn accept(&mut self, name: &str, value: &str) -> Result<bool, QueryError> {
        let slot = match name {
            "service" => &mut self.service,
            "operation" => &mut self.operation,
            "environment" => &mut self.environment,
            "remote_service" => &mut self.remote_service,
            "remote_operation" => &mut self.remote_operation,
            "edge" => {
                self.edge = Some(parse_edge(value).ok_or_else(|| {
                    QueryError::new("edge", "expected a service-map edge id: from:environment->to:environment")
                })?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = Some(value.to_string());
        Ok(true)
    }

    /// Checks the combination once every parameter is in.
    pub fn validate(&self) -> Result<(), QueryError> {
        match (&self.edge, &self.service) {
            (Some(_), Some(_)) => Err(QueryError::new("edge", "give either edge or service, not both")),
            (None, None) => Err(QueryError::new("service", "required (or edge)")),
            _ if self.remote_operation.is_some() && self.remote_service.is_none() => {
                Err(QueryError::new("remote_operation", "needs remote_service"))
            }
            _ => Ok(()),
        }
    }

    /// Whether a series is selected.
    pub fn selects(&self, series: &SeriesId) -> bool {
        let is = |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        if let Some((from, from_environment, to, to_environment)) = &self.edge {
            return match series {
                SeriesId::Client { service, environment } => {
                    from == CLIENT
                        && from_environment == to_environment
                        && **service == **to
                        && **environment == **to_environment
                }
                SeriesId::Dependency(key) => {
                    *key.service == **from
                        && *key.remote_service == **to
                        && *key.environment == **from_environment
                        && from_environment == to_environment
                }
                SeriesId::Queue(key) => {
                    let (source, target) =
                        if key.deliveries { (&key.queue, &key.service) } else { (&key.service, &key.queue) };
                    **source == **from
                        && **target == **to
                        && *key.environment == **from_environment
                        && from_environment == to_environment
                }
                SeriesId::Service(_) => false,
            };
        }
        match series {
            SeriesId::Service(key) => {
                self.remote_service.is_none()
                    && is(&self.service, &key.service)
                    && is(&self.operation, &key.operation)
                    && is(&self.environment, &key.environment)
            }
            SeriesId::Dependency(key) => {
                self.remote_service.is_some()
                    && is(&self.service, &key.service)
                    && is(&self.operation, &key.operation)
                    && is(&self.environment, &key.environment)
                    && is(&self.remote_service, &key.remote_service)
                    && is(&self.remote_operation, &key.remote_operation)
            }
            SeriesId::Client { .. } | SeriesId::Queue(_) => false,
        }
    }
}

/// `from:environment->to:environment` (names may hold `:`; the environment is after the last).
fn parse_edge(value: &str) -> Option<(String, String, String, String)> {
    let (from, to) = value.split_once("->")?;
    let node = |id: &str| {
        let (name, environment) = id.rsplit_once(':')?;
        (!name.is_empty() && !environment.is_empty()).then(|| (name.to_string(), environment.to_string()))
    };
    let ((from, from_environment), (to, to_environment)) = (node(from)?, node(to)?);
    Some((from, from_environment, to, to_environment))
}
