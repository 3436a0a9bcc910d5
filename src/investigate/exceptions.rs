//! Exceptions (`/api/exceptions`, investigation.md "What changed"): the faults of the selected
//! services grouped by the exception their entry span recorded, over `metrics.window`.
//!
//! The groups come from the series' points ([`crate::signals::exception`]): the owner of a
//! service's series merges every instance's groups, so the answer is the group's. One key seen in
//! two operations is two groups (each names its service and operation). Groups are ranked by
//! count, most first; `estimated` says when a point's table had to let a group go.

use serde::Serialize;

use crate::clock::Nanos;
use crate::model::trace_id_hex;
use crate::signals::SeriesId;

use super::query::{whole_number, QueryError, Selection};
use super::timeline::Timeline;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1_000;

/// What `/api/exceptions` asks for: `service` (required), `operation`, `environment`, `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExceptionsQuery {
    pub selection: Selection,
    pub limit: usize,
}

impl ExceptionsQuery {
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let (mut selection, mut limit) = (Selection::default(), None);
        for (name, value) in parameters {
            match name {
                "service" | "operation" | "environment" => {
                    selection.accept(name, value)?;
                }
                "limit" => limit = Some(whole_number(name, value, MAX_LIMIT)?),
                _ => return Err(QueryError::new(name, "unknown; expected service, operation, environment or limit")),
            }
        }
        selection.validate()?;
        Ok(Self { selection, limit: limit.unwrap_or(DEFAULT_LIMIT) })
    }
}

/// One group in the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionGroupAnswer {
    pub id: String,
    pub service: String,
    pub operation: String,
    pub environment: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The templated message.
    pub message: String,
    pub frame: String,
    pub count: u64,
    /// RFC 3339 UTC.
    pub first_seen: String,
    pub last_seen: String,
    pub versions: Vec<String>,
    pub instances: Vec<String>,
    pub trace_ids: Vec<String>,
    pub example_message: String,
    pub example_stack: String,
}

/// The `/api/exceptions` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exceptions {
    pub estimated: bool,
    pub groups: Vec<ExceptionGroupAnswer>,
}

fn rfc3339(unix_nanos: u64) -> String {
    chrono::DateTime::from_timestamp_nanos(unix_nanos as i64).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The answer at `now`: the entry series the selection names.
pub fn exceptions(timeline: &Timeline, query: &ExceptionsQuery, now: Nanos) -> Exceptions {
    let selected = |id: &SeriesId| matches!(id, SeriesId::Service(_)) && query.selection.selects(id);
    let mut estimated = false;
    let mut groups = Vec::new();
    for (series, table) in timeline.exceptions(selected, now) {
        let SeriesId::Service(key) = series else { continue };
        estimated |= table.estimated;
        for group in table.groups() {
            groups.push(ExceptionGroupAnswer {
                id: group.key.id(),
                service: key.service.to_string(),
                operation: key.operation.to_string(),
                environment: key.environment.to_string(),
                type_name: group.key.type_name.clone(),
                message: group.key.message.clone(),
                frame: group.key.frame.clone(),
                count: group.count,
                first_seen: rfc3339(group.first_seen),
                last_seen: rfc3339(group.last_seen),
                versions: group.versions.clone(),
                instances: group.instances.clone(),
                trace_ids: group.examples.trace_ids().iter().map(trace_id_hex).collect(),
                example_message: group.example_message.clone(),
                example_stack: group.example_stack.clone(),
            });
        }
    }
    // Most first; then by service, operation and id: stable answers.
    groups.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| (&a.service, &a.operation, &a.id).cmp(&(&b.service, &b.operation, &b.id)))
    });
    groups.truncate(query.limit);
    Exceptions { estimated, groups }
}

#[cfg(test)]
mod tests;
