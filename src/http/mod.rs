//! HTTP: `/metrics`, `/healthz`, `/readyz`, `/api/services`, `/api/slos` (interfaces.md "HTTP").
//!
//! [`serve`] is the entry point; [`router`] and [`serve_router`] let a caller add routes of its
//! own (the demo's fault switch). Handlers only read shared state: the registry (which renders
//! the signal store at scrape time), the readiness flag, the signal store and the SLO engine.

pub mod access;
mod config;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::clock::{Nanos, SharedClock};
use crate::investigate::contributors::{dimensions_seen, parse_selection, top_contributors, ContributorQuery};
use crate::investigate::exchange::Peers;
use crate::investigate::history::{history, HistoryQuery};
use crate::investigate::map::MapQuery;
use crate::investigate::query::QueryError;
use crate::investigate::timeline::Timeline;
use crate::investigate::traces::TraceQuery;
use crate::investigate::{GroupTimeline, TraceStore};
use crate::signals::exposition::{render_openmetrics, service_summaries, OPENMETRICS_CONTENT_TYPE};
use crate::signals::SignalStore;
use crate::slo::engine::SloEngine;
use crate::source::Readiness;
use crate::telemetry::PipelineMetrics;
pub use config::HttpConfig;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve HTTPS ([http] tls_cert_file, tls_key_file): {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What the HTTP server and the caller see of a running pipeline.
#[derive(Clone)]
pub struct Handles {
    pub signals: Arc<Mutex<SignalStore>>,
    pub slos: Arc<Mutex<SloEngine>>,
    /// Summaries of decided traces and the records of kept ones (`/api/traces`).
    pub traces: Arc<Mutex<TraceStore>>,
    /// The group-wide 10 s points: the map, contributors and history.
    pub timeline: Arc<GroupTimeline>,
    /// This instance's URL and the other instances heard of (`heldBy`, redirects).
    pub peers: Arc<Peers>,
    pub telemetry: Arc<PipelineMetrics>,
    pub ready: Arc<Readiness>,
    pub clock: SharedClock,
}

pub fn router(handles: Handles) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/services", get(services))
        .route("/api/slos", get(slos))
        .route("/api/slos/{name}/history", get(slo_history))
        .route("/api/service-map", get(service_map))
        .route("/api/traces", get(traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/contributors", get(contributors))
        .route("/api/contributors/dimensions", get(contributor_dimensions))
        .route("/api/history", get(series_history))
        .route("/api/pipeline", get(pipeline))
        .route("/api/series", get(series_figures))
        .merge(crate::console::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(handles)
}

/// Largest request body accepted (only the demo's fault switch takes one).
const MAX_BODY_BYTES: usize = 64 << 10;

/// The console's Content-Security-Policy: everything from this instance only, no inline script, no
/// framing, no form posts (the console and the APIs only read).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Restrictive headers on every response.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    response
}

/// Binds `http.listen` and serves [`router`] until `shutdown` resolves, to the clients `[http]`
/// admits. Returns the bound address (port 0 allowed) and the server task.
pub async fn serve(
    http: &HttpConfig,
    handles: Handles,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), HttpError> {
    serve_router(http, router(handles), shutdown).await
}

/// Binds `http.listen` and serves `app` until `shutdown` resolves, as [`serve`] does.
pub async fn serve_router(
    http: &HttpConfig,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), HttpError> {
    let addr = http.listen;
    let access = Arc::new(access::Access::new(http));
    let app = app
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let tls = http.tls().map(|files| files.server_config()).transpose()?;
    let listener = TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
    let task = crate::tls::spawn_axum(listener, tls, app, shutdown, "HTTP")
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok((bound, task))
}

async fn metrics(State(handles): State<Handles>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        let body = tokio::task::spawn_blocking(move || {
            let families = handles.telemetry.registry.gather();
            let store = handles.signals.lock().expect("signal store lock");
            render_openmetrics(&families, &store)
        })
        .await
        .unwrap_or_default();
        return ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response();
    }
    let families = tokio::task::spawn_blocking(move || handles.telemetry.registry.gather()).await.unwrap_or_default();
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&families, &mut body) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_string())], body).into_response()
}

async fn readyz(State(handles): State<Handles>) -> Response {
    let partitions: Vec<String> =
        handles.ready.assignment().into_iter().map(|(topic, partition)| format!("{topic}/{partition}")).collect();
    let members: Vec<serde_json::Value> = handles
        .ready
        .members()
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "worker": m.worker,
                "joined": m.joined,
                "joinState": m.state.join_state,
                "coordinator": m.state.coordinator,
            })
        })
        .collect();
    match handles.ready.not_ready() {
        None => {
            let body = serde_json::json!({ "status": "ready", "partitions": partitions, "workers": members });
            (StatusCode::OK, Json(body)).into_response()
        }
        Some(reason) => {
            let body = serde_json::json!({ "status": format!("not ready: {reason}"), "partitions": partitions, "workers": members });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn services(State(handles): State<Handles>) -> Response {
    let summaries = tokio::task::spawn_blocking(move || {
        let now = handles.clock.now();
        let mut store = handles.signals.lock().expect("signal store lock");
        service_summaries(&mut store, now)
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "services": summaries })).into_response()
}

async fn slos(State(handles): State<Handles>) -> Response {
    let reports = tokio::task::spawn_blocking(move || {
        let now = (handles.clock.now().0 / 1_000_000_000) as i64;
        handles.slos.lock().expect("slo engine lock").group_reports(now)
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "slos": reports })).into_response()
}

/// `GET /api/slos/{name}/history`: the SLO's evaluations over the last hour (from its owner,
/// wherever it runs); 404 for a name not configured.
async fn slo_history(State(handles): State<Handles>, Path(name): Path<String>) -> Response {
    let found = tokio::task::spawn_blocking(move || handles.slos.lock().expect("slo engine lock").history_json(&name))
        .await
        .ok()
        .flatten();
    match found {
        Some(body) => Json(body).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no SLO of that name" }))).into_response(),
    }
}

/// `GET /api/traces`: summaries of decided traces, newest first; a bad parameter is a 400 naming it.
async fn traces(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = match TraceQuery::parse(pairs(&parameters)) {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    let summaries = tokio::task::spawn_blocking(move || {
        let here = handles.peers.url();
        let store = handles.traces.lock().expect("trace store lock");
        store.index.search(&query).into_iter().map(|s| s.json(here.as_deref())).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "traces": summaries })).into_response()
}

/// What `/api/traces/{id}` found.
enum TraceAnswer {
    /// The summary, with the spans when held here.
    Here(serde_json::Value),
    /// Kept and held by another live instance: its URL.
    Elsewhere(String),
    Unknown,
}

/// `GET /api/traces/{id}`: a trace's summary and, while its records are held, its spans; a 307 to
/// the instance holding them when that is another live one (with the summary alone when it is
/// gone, or with `?redirect=false`: the console links to the holder instead, since it only talks
/// to its own instance); 404 for a trace the group never decided (or forgot), 400 for a malformed id.
async fn trace(
    State(handles): State<Handles>,
    Path(id): Path<String>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Response {
    let mut follow = true;
    for (name, value) in &parameters {
        match (name.as_str(), value.as_str()) {
            ("redirect", "false") => follow = false,
            ("redirect", "true") => follow = true,
            ("redirect", _) => return bad_query(QueryError::new("redirect", "expected true or false")),
            _ => return bad_query(QueryError::new(name, "unknown; expected redirect")),
        }
    }
    let mut trace_id = [0u8; 16];
    if id.len() != 32 || hex::decode_to_slice(&id, &mut trace_id).is_err() {
        let body = serde_json::json!({ "error": "expected a 32-hex-digit trace id", "parameter": "traceId" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let found = tokio::task::spawn_blocking(move || {
        let here = handles.peers.url();
        let store = handles.traces.lock().expect("trace store lock");
        let Some(summary) = store.index.get(&trace_id) else {
            return TraceAnswer::Unknown;
        };
        if let (true, Some(holder)) = (summary.kept, &summary.held_by) {
            if follow && Some(holder) != here.as_ref() && handles.peers.is_alive(holder, handles.clock.now()) {
                return TraceAnswer::Elsewhere(holder.to_string());
            }
        }
        let mut body = serde_json::to_value(summary.json(here.as_deref())).expect("summaries serialise");
        body["spans"] = match (&summary.held_by, store.held.spans(&trace_id)) {
            (None, Some(spans)) => serde_json::to_value(spans).expect("spans serialise"),
            _ => serde_json::Value::Null,
        };
        TraceAnswer::Here(body)
    })
    .await
    .unwrap_or(TraceAnswer::Unknown);
    match found {
        TraceAnswer::Here(body) => Json(body).into_response(),
        TraceAnswer::Elsewhere(holder) => {
            let location = format!("{holder}/api/traces/{id}");
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()
        }
        TraceAnswer::Unknown => {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such trace in the group" }))).into_response()
        }
    }
}

/// A 400 naming the query parameter that cannot be used.
fn bad_query(error: QueryError) -> Response {
    let body = serde_json::json!({ "error": error.to_string(), "parameter": error.parameter });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Query parameters as name/value pairs.
type Parameters = Query<Vec<(String, String)>>;

fn pairs(parameters: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    parameters.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// An answer from the group-wide timeline: a query that did not parse is a 400 naming its
/// parameter; otherwise the timeline is refreshed and `answer` computed off the async runtime.
async fn from_timeline<Q, A>(
    handles: Handles,
    query: Result<Q, QueryError>,
    answer: impl FnOnce(&Handles, &Timeline, Q, Nanos) -> A + Send + 'static,
) -> Response
where
    Q: Send + 'static,
    A: serde::Serialize + Send + 'static,
{
    let query = match query {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    let body = tokio::task::spawn_blocking(move || {
        let now = handles.clock.now();
        let timeline = handles.timeline.refresh(&handles.signals, now);
        serde_json::to_value(answer(&handles, &timeline, query, now)).expect("answers serialise")
    })
    .await
    .unwrap_or_default();
    Json(body).into_response()
}

/// `GET /api/service-map`: nodes and edges over `metrics.window` (investigation.md).
async fn service_map(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = MapQuery::parse(pairs(&parameters));
    from_timeline(handles, query, |handles, timeline, query, now| {
        let reports = handles.slos.lock().expect("slo engine lock").group_reports(now.unix_seconds());
        let statuses: Vec<(String, &'static str)> = reports.into_iter().map(|r| (r.service, r.status)).collect();
        crate::investigate::map::service_map(timeline, &statuses, &query, now)
    })
    .await
}

/// `GET /api/contributors`: the values of a dimension behind a series, ranked.
async fn contributors(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = ContributorQuery::parse(pairs(&parameters), &handles.timeline.dimensions);
    from_timeline(handles, query, |handles, timeline, query, now| {
        top_contributors(timeline, &handles.timeline.dimensions, &query, now)
    })
    .await
}

/// `GET /api/contributors/dimensions`: the configured dimensions the selected series has seen.
async fn contributor_dimensions(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    from_timeline(handles, parse_selection(pairs(&parameters)), |handles, timeline, selection, now| {
        serde_json::json!({ "dimensions": dimensions_seen(timeline, &handles.timeline.dimensions, &selection, now) })
    })
    .await
}

/// `GET /api/history`: 10 s points of a series or edge over the history.
async fn series_history(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    from_timeline(handles, HistoryQuery::parse(pairs(&parameters)), |_, timeline, query, now| {
        history(timeline, &query, now)
    })
    .await
}

/// `GET /api/series`: operations and dependencies (of a service) over `metrics.window`.
async fn series_figures(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = crate::investigate::series::SeriesQuery::parse(pairs(&parameters));
    from_timeline(handles, query, |_, timeline, query, now| crate::investigate::series::series(timeline, &query, now))
        .await
}

/// `GET /api/pipeline`: the pipeline's own figures (totals; the console computes rates between
/// refreshes): spans in and out, traces decided by decision and rule, dead letters, what is
/// buffered, consumer lag by partition.
async fn pipeline(State(handles): State<Handles>) -> Response {
    let families = tokio::task::spawn_blocking(move || handles.telemetry.registry.gather()).await.unwrap_or_default();
    let value = |m: &prometheus::proto::Metric| {
        if m.get_counter().get_value() != 0.0 {
            m.get_counter().get_value()
        } else {
            m.get_gauge().get_value()
        }
    };
    let total = |name: &str| -> f64 {
        families.iter().filter(|f| f.name() == name).flat_map(|f| f.get_metric()).map(value).sum()
    };
    let by_labels = |name: &str| -> Vec<serde_json::Value> {
        families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let mut row = serde_json::Map::new();
                for label in m.get_label() {
                    row.insert(label.name().to_string(), label.value().into());
                }
                row.insert("value".into(), value(m).into());
                serde_json::Value::Object(row)
            })
            .collect()
    };
    Json(serde_json::json!({
        "spansReceived": total("tracewarden_spans_received_total"),
        "spansRejected": total("tracewarden_spans_rejected_total"),
        "spansForwarded": total("tracewarden_spans_forwarded_total"),
        "tracesForwarded": total("tracewarden_traces_forwarded_total"),
        "deadLetters": total("tracewarden_messages_dead_lettered_total"),
        "bufferedSpans": total("tracewarden_buffered_spans"),
        "bufferedTraces": total("tracewarden_buffered_traces"),
        "forwardRetries": total("tracewarden_forward_retries_total"),
        "decisions": by_labels("tracewarden_traces_decided_total"),
        "consumerLag": by_labels("tracewarden_consumer_lag"),
    }))
    .into_response()
}
