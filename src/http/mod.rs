//! HTTP: `/metrics`, `/healthz`, `/readyz`, `/api/services`, `/api/slos` (interfaces.md "HTTP").
//!
//! [`serve`] is the entry point; [`router`] and [`serve_router`] let a caller add routes of its
//! own (the demo's fault switch). Handlers only read shared state: the registry (which renders
//! the signal store at scrape time), the readiness flag, the signal store and the SLO engine.

pub mod access;
mod config;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::investigate::group::forward::PeerClient;
use crate::investigate::group::GroupView;
use crate::investigate::query::QueryError;
use crate::investigate::{OwnedTimeline, TraceStore};
use crate::signals::exposition::{render_openmetrics, OPENMETRICS_CONTENT_TYPE};
use crate::signals::SignalStore;
use crate::slo::engine::SloEngine;
use crate::source::Readiness;
use crate::telemetry::families::PipelineField;
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
    /// The 10 s points of the series owned here: their history and contributors.
    pub timeline: Arc<OwnedTimeline>,
    /// The group: its rollups (map, series, services), who owns what, who is live.
    pub group: Arc<GroupView>,
    /// Asks the other members (series owners, trace holders).
    pub peers: PeerClient,
    pub telemetry: Arc<PipelineMetrics>,
    pub ready: Arc<Readiness>,
    pub clock: SharedClock,
}

pub fn router(handles: Handles) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/services", get(views::services))
        .route("/api/services/overview", get(views::services_overview))
        .route("/api/services/trends", get(views::services_trends))
        .route("/api/slos", get(slos))
        .route("/api/slos/{name}/history", get(views::slo_history))
        .route("/api/service-map", get(views::service_map))
        .route("/api/traces", get(views::traces))
        .route("/api/traces/{trace_id}", get(views::trace))
        .route("/api/compare", get(views::compare))
        .route("/api/exceptions", get(views::exceptions))
        .route("/api/deployments", get(views::deployments))
        .route("/api/contributors", get(views::contributors))
        .route("/api/contributors/dimensions", get(views::contributor_dimensions))
        .route("/api/history", get(views::series_history))
        .route("/api/pipeline", get(pipeline))
        .route("/api/series", get(views::series_figures))
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
    let series: Vec<i32> = handles.group.ownership().partitions.into_iter().collect();
    let (status, code) = match handles.ready.not_ready().or_else(|| handles.group.restoring()) {
        None => ("ready".to_string(), StatusCode::OK),
        Some(reason) => (format!("not ready: {reason}"), StatusCode::SERVICE_UNAVAILABLE),
    };
    let body = serde_json::json!({
        "status": status,
        "partitions": partitions,
        "seriesPartitions": series,
        "workers": members,
    });
    (code, Json(body)).into_response()
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

/// `GET /api/pipeline`: the pipeline's own figures (totals; the console computes rates between
/// refreshes): spans in and out, traces decided by decision and rule, dead letters, what is
/// buffered, consumer lag by partition — the families whose declaration names a pipeline field.
async fn pipeline(State(handles): State<Handles>) -> Response {
    let families = tokio::task::spawn_blocking(move || handles.telemetry.registry.gather()).await.unwrap_or_default();
    let value = |m: &prometheus::proto::Metric| {
        if m.get_counter().get_value() != 0.0 {
            m.get_counter().get_value()
        } else {
            m.get_gauge().get_value()
        }
    };
    let series = |name: &'static str| families.iter().filter(move |f| f.name() == name).flat_map(|f| f.get_metric());
    let mut answer = serde_json::Map::new();
    for family in crate::telemetry::families::ALL {
        match family.pipeline {
            PipelineField::None => {}
            PipelineField::Total(key) => {
                answer.insert(key.into(), series(family.name).map(value).sum::<f64>().into());
            }
            PipelineField::ByLabels(key) => {
                let rows: Vec<serde_json::Value> = series(family.name)
                    .map(|m| {
                        let mut row = serde_json::Map::new();
                        for label in m.get_label() {
                            row.insert(label.name().to_string(), label.value().into());
                        }
                        row.insert("value".into(), value(m).into());
                        serde_json::Value::Object(row)
                    })
                    .collect();
                answer.insert(key.into(), rows.into());
            }
        }
    }
    Json(serde_json::Value::Object(answer)).into_response()
}
