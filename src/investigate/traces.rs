//! The trace index (investigation.md "Correlated traces"): a summary of every decided trace, in a
//! bounded, recency-ordered store, searchable by any entry span of the trace.
//!
//! Invariants:
//! - at most `max_trace_summaries` summaries are held; the oldest decided goes first;
//! - a summary is built once per decided trace, from its spans' facts (no per-span allocation but
//!   for the distinct entry names of the trace);
//! - answers are newest first, at most `limit` long.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::query::QueryError;
use crate::decision::Decision;
use crate::model::{trace_id_hex, Outcome, Role, Span, TraceId};

/// One decided trace, as the index keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// The earliest span start, Unix nanoseconds.
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub span_count: usize,
    /// The root span's service and operation, else the earliest entry span's, else the earliest
    /// span's.
    pub root_service: Arc<str>,
    pub root_operation: Arc<str>,
    /// The root's HTTP status (0 when none).
    pub http_status: u16,
    /// The services the trace touches, each once.
    pub services: Vec<Arc<str>>,
    /// (service, operation, environment) of every distinct entry span: what a search matches.
    pub entries: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// The worst outcome of its measured spans.
    pub outcome: Outcome,
    pub kept: bool,
    pub rule: Arc<str>,
}

impl TraceSummary {
    /// The summary of a decided trace (`spans` non-empty).
    pub fn of(spans: &[Span], decision: &Decision) -> Self {
        let rank = |s: &Span| match (s.is_root(), s.facts.role) {
            (true, _) => 0,
            (false, Role::Entry) => 1,
            _ => 2,
        };
        let root = spans.iter().min_by_key(|s| (rank(s), s.start_unix_nano)).expect("a trace has spans");
        let (mut start, mut end) = (u64::MAX, 0);
        let mut services: Vec<Arc<str>> = Vec::new();
        let mut entries: Vec<(Arc<str>, Arc<str>, Arc<str>)> = Vec::new();
        let mut outcome = Outcome::Ok;
        for span in spans {
            start = start.min(span.start_unix_nano);
            end = end.max(span.end_unix_nano);
            if !services.iter().any(|s| Arc::ptr_eq(s, span.service()) || s == span.service()) {
                services.push(span.service().clone());
            }
            if span.facts.role == Role::Entry {
                let seen = entries
                    .iter()
                    .any(|(s, o, e)| s == span.service() && *o == span.operation && e == span.environment());
                if !seen {
                    entries.push((span.service().clone(), span.operation.clone(), span.environment().clone()));
                }
            }
            if span.facts.role != Role::Internal && span.facts.outcome.severity() > outcome.severity() {
                outcome = span.facts.outcome;
            }
        }
        Self {
            trace_id: spans[0].trace_id,
            start_unix_nano: start,
            duration_nanos: end.saturating_sub(start),
            span_count: spans.len(),
            root_service: root.service().clone(),
            root_operation: root.operation.clone(),
            http_status: root.http_status,
            services,
            entries,
            outcome,
            kept: decision.keep,
            rule: decision.rule.clone(),
        }
    }

    /// The JSON shape of investigation.md; `heldBy` names the instance that holds a kept trace's
    /// spans: the one that decided it (`here` when this instance did).
    pub fn json(&self, here: Option<&str>) -> TraceSummaryJson {
        // Summaries stay with the instance that decided the trace: a kept one's spans are here.
        let held_by = if self.kept { here } else { None };
        TraceSummaryJson {
            trace_id: trace_id_hex(&self.trace_id),
            start_unix_nano: self.start_unix_nano.to_string(),
            duration_seconds: self.duration_nanos as f64 / 1e9,
            span_count: self.span_count,
            root_service: self.root_service.to_string(),
            root_operation: self.root_operation.to_string(),
            services: self.services.iter().map(|s| s.to_string()).collect(),
            outcome: self.outcome.as_str(),
            http_status: (self.http_status != 0).then_some(self.http_status),
            decision: if self.kept { "kept" } else { "dropped" },
            rule: self.rule.to_string(),
            held_by: held_by.map(str::to_string),
        }
    }
}

/// A summary as `/api/traces` writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummaryJson {
    pub trace_id: String,
    /// Decimal string, as in OTLP/JSON.
    pub start_unix_nano: String,
    pub duration_seconds: f64,
    pub span_count: usize,
    pub root_service: String,
    pub root_operation: String,
    pub services: Vec<String>,
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    pub decision: &'static str,
    pub rule: String,
    pub held_by: Option<String>,
}

/// What `/api/traces` asks for; every field optional but `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub environment: Option<String>,
    pub outcome: Option<Outcome>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    /// `Some(true)` for kept traces, `Some(false)` for dropped ones.
    pub kept: Option<bool>,
    /// Trace start at or after, Unix seconds.
    pub from: Option<i64>,
    /// Trace start before, Unix seconds.
    pub to: Option<i64>,
    pub limit: usize,
}

/// The default and the largest `limit`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1_000;

impl Default for TraceQuery {
    fn default() -> Self {
        Self {
            service: None,
            operation: None,
            environment: None,
            outcome: None,
            min_duration_nanos: None,
            max_duration_nanos: None,
            kept: None,
            from: None,
            to: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl TraceQuery {
    /// Parses `/api/traces` query parameters; an unknown or invalid one is named in the error.
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let mut query = Self::default();
        for (name, value) in parameters {
            let invalid = |message: &str| QueryError { parameter: name.to_string(), message: message.to_string() };
            let duration = |value: &str| {
                humantime::parse_duration(value)
                    .map(|d| d.as_nanos() as u64)
                    .map_err(|_| invalid("expected a duration such as \"250ms\" or \"2s\""))
            };
            let seconds = |value: &str| value.parse::<i64>().map_err(|_| invalid("expected Unix seconds"));
            match name {
                "service" => query.service = Some(value.to_string()),
                "operation" => query.operation = Some(value.to_string()),
                "environment" => query.environment = Some(value.to_string()),
                "outcome" => {
                    query.outcome = Some(
                        Outcome::from_name(value).ok_or_else(|| invalid("expected fault, error, throttle or ok"))?,
                    )
                }
                "min_duration" => query.min_duration_nanos = Some(duration(value)?),
                "max_duration" => query.max_duration_nanos = Some(duration(value)?),
                "decision" => {
                    query.kept = Some(match value {
                        "kept" => true,
                        "dropped" => false,
                        _ => return Err(invalid("expected kept or dropped")),
                    })
                }
                "from" => query.from = Some(seconds(value)?),
                "to" => query.to = Some(seconds(value)?),
                "limit" => {
                    query.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| invalid(&format!("expected a whole number from 1 to {MAX_LIMIT}")))?
                }
                _ => {
                    return Err(invalid(
                        "unknown; expected service, operation, environment, outcome, min_duration, max_duration, \
                         decision, from, to or limit",
                    ))
                }
            }
        }
        Ok(query)
    }

    /// Whether a summary answers the query.
    pub fn matches(&self, summary: &TraceSummary) -> bool {
        let entry = |s: &(Arc<str>, Arc<str>, Arc<str>)| {
            self.service.as_deref().is_none_or(|v| &*s.0 == v)
                && self.operation.as_deref().is_none_or(|v| &*s.1 == v)
                && self.environment.as_deref().is_none_or(|v| &*s.2 == v)
        };
        let by_entry = self.service.is_none() && self.operation.is_none() && self.environment.is_none();
        let start_seconds = (summary.start_unix_nano / 1_000_000_000) as i64;
        (by_entry || summary.entries.iter().any(entry))
            && self.outcome.is_none_or(|o| summary.outcome == o)
            && self.min_duration_nanos.is_none_or(|d| summary.duration_nanos >= d)
            && self.max_duration_nanos.is_none_or(|d| summary.duration_nanos <= d)
            && self.kept.is_none_or(|k| summary.kept == k)
            && self.from.is_none_or(|from| start_seconds >= from)
            && self.to.is_none_or(|to| start_seconds < to)
    }
}

/// The bounded index of decided traces.
pub struct TraceIndex {
    capacity: usize,
    /// Oldest decided first.
    summaries: VecDeque<TraceSummary>,
}

impl TraceIndex {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), summaries: VecDeque::new() }
    }

    /// Adds a decided trace's summary, forgetting the oldest when full.
    pub fn insert(&mut self, summary: TraceSummary) {
        if self.summaries.len() >= self.capacity {
            self.summaries.pop_front();
        }
        self.summaries.push_back(summary);
    }

    pub fn len(&self) -> usize {
        self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.summaries.is_empty()
    }

    /// The summaries answering `query`, newest decided first.
    pub fn search(&self, query: &TraceQuery) -> Vec<&TraceSummary> {
        self.summaries.iter().rev().filter(|s| query.matches(s)).take(query.limit).collect()
    }

    /// The newest summary of a trace.
    pub fn get(&self, trace_id: &TraceId) -> Option<&TraceSummary> {
        self.summaries.iter().rev().find(|s| &s.trace_id == trace_id)
    }
}

#[cfg(test)]
mod tests;
