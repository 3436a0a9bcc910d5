//! The investigation answers (investigation.md), group-wide from any instance: the services, the
//! series tables and the map from the group's rollups; a series' history, contributors, compare,
//! exceptions and deployments, and an SLO's history, from their owner (asked over HTTP when that
//! is another member); trace searches from every live member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::clock::Nanos;
use crate::investigate::compare::{self, CompareQuery};
use crate::investigate::contributors::{dimensions_seen, parse_selection, top_contributors, ContributorQuery};
use crate::investigate::deployments::{self, DeploymentsQuery};
use crate::investigate::exceptions::{self, ExceptionsQuery};
use crate::investigate::group::forward::FORWARDED_HEADER;
use crate::investigate::group::Route;
use crate::investigate::history::{history, HistoryQuery};
use crate::investigate::map::{MapNode, MapQuery, ServiceMap, CLIENT};
use crate::investigate::overview::{Overview, OverviewQuery, ServiceOverview};
use crate::investigate::query::{QueryError, Selection};
use crate::investigate::series::SeriesQuery;
use crate::investigate::timeline::Timeline;
use crate::investigate::traces::TraceQuery;
use crate::signals::SeriesId;

use super::{bad_query, pairs, Handles, Parameters};

/// How long a member waits for another's answer.
pub const PEER_DEADLINE: Duration = Duration::from_secs(2);

/// One row of `/api/services` (interfaces.md): a service's operation over `metrics.window`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct OperationRow {
    service: String,
    operation: String,
    environment: String,
    requests: u64,
    availability: Option<f64>,
    fault_rate: Option<f64>,
    error_rate: Option<f64>,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
}

/// `GET /api/services`: every service and operation of the group, from the rollups.
pub async fn services(State(handles): State<Handles>) -> Response {
    let now = handles.clock.now();
    let mut rows: Vec<OperationRow> = handles
        .group
        .window(now)
        .into_iter()
        .filter_map(|(id, _, aggregate)| {
            let SeriesId::Service(key) = id else { return None };
            let figures = aggregate.figures();
            let rate = |n: u64| (figures.requests > 0).then(|| n as f64 / figures.requests as f64);
            Some(OperationRow {
                service: key.service.to_string(),
                operation: key.operation.to_string(),
                environment: key.environment.to_string(),
                requests: figures.requests,
                availability: figures.availability,
                fault_rate: rate(figures.faults),
                error_rate: rate(figures.errors),
                p50_seconds: figures.p50_seconds,
                p90_seconds: figures.p90_seconds,
                p99_seconds: figures.p99_seconds,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.service, &a.operation, &a.environment).cmp(&(&b.service, &b.operation, &b.environment)));
    Json(serde_json::json!({ "services": rows })).into_response()
}

/// `GET /api/services/overview`: the Services page in one answer (`investigate::overview`):
/// figures from the rollups, each service's trend from its owner, asked once per owning member in
/// parallel (each within [`PEER_DEADLINE`]); `partial` names the members that did not answer.
pub async fn services_overview(
    State(handles): State<Handles>,
    headers: HeaderMap,
    Query(parameters): Parameters,
) -> Response {
    let query = match OverviewQuery::parse(pairs(&parameters)) {
        Ok(query) if query.services.is_empty() => query,
        Ok(_) => return bad_query(QueryError::new("service", "unknown here; /api/services/trends takes it")),
        Err(error) => return bad_query(error),
    };
    let now = handles.clock.now();
    let (map, slos_configured) = map_now(&handles, &MapQuery::default());
    let environments: BTreeSet<String> = map.nodes.iter().map(|n| n.environment.clone()).collect();
    let in_environment = |n: &MapNode| query.environment.as_deref().is_none_or(|e| e == n.environment);
    let nodes: Vec<MapNode> = map.nodes.into_iter().filter(|n| n.kind == "service" && in_environment(n)).collect();

    // Whose timeline holds each service's trend.
    let (mut here, mut elsewhere) = (Vec::new(), BTreeMap::<std::sync::Arc<str>, Vec<(String, String)>>::new());
    for node in &nodes {
        let service = (node.name.clone(), node.environment.clone());
        match handles.group.route_service(&node.name, now) {
            Route::Here => here.push(service),
            Route::There(owner) => elsewhere.entry(owner).or_default().push(service),
            Route::Nobody { .. } => {}
        }
    }
    let asked = elsewhere.iter().map(|(owner, services)| {
        let mut path = String::from("/api/services/trends?");
        let mut form = form_urlencoded::Serializer::new(String::new());
        if let Some(from) = query.from {
            form.append_pair("from", &from.to_string());
        }
        for (service, environment) in services {
            form.append_pair("service", &format!("{service}:{environment}"));
        }
        path.push_str(&form.finish());
        let authorization = headers.get(header::AUTHORIZATION).cloned();
        let peers = handles.peers.clone();
        async move { peers.get(owner, &path, authorization.as_ref(), PEER_DEADLINE).await }
    });
    let answers = futures_util::future::join_all(asked).await;
    let (from, local) = (query.from, handles.clone());
    let mut trends = tokio::task::spawn_blocking(move || {
        let now = local.clock.now();
        crate::investigate::overview::trends(&local.timeline.at(now), &here, from, now)
    })
    .await
    .unwrap_or_default()
    .trends;
    let mut partial = Vec::new();
    for (owner, answer) in elsewhere.keys().zip(answers) {
        let answered = answer
            .ok()
            .filter(|a| a.status == StatusCode::OK)
            .and_then(|a| serde_json::from_slice::<crate::investigate::overview::Trends>(&a.body).ok());
        match answered {
            Some(answered) => trends.extend(answered.trends),
            None => partial.push(owner.to_string()),
        }
    }
    let services = nodes.into_iter().map(|node| ServiceOverview { trend: trends.remove(&node.id), node }).collect();
    let window_seconds = handles.timeline.lock().window_seconds();
    let environments = environments.into_iter().collect();
    Json(Overview { window_seconds, environments, services, partial, slos_configured }).into_response()
}

/// `GET /api/services/trends?service=name:environment&…`: the requested services' trends from
/// this instance's timeline (a member asks the owner of the services; no forwarding here).
pub async fn services_trends(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = match OverviewQuery::parse(pairs(&parameters)) {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let now = handles.clock.now();
        crate::investigate::overview::trends(&handles.timeline.at(now), &query.services, query.from, now)
    })
    .await
    .unwrap_or_default();
    Json(answer).into_response()
}

/// `GET /api/series`: operations and dependencies (of a service) over `metrics.window`, from the
/// rollups.
pub async fn series_figures(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = match SeriesQuery::parse(pairs(&parameters)) {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    let window = handles.group.window(handles.clock.now());
    let window_seconds = handles.timeline.lock().window_seconds();
    Json(crate::investigate::series::series(&window, window_seconds, &query)).into_response()
}

/// `GET /api/service-map`: nodes and edges over `metrics.window`, from the rollups.
pub async fn service_map(State(handles): State<Handles>, Query(parameters): Parameters) -> Response {
    let query = match MapQuery::parse(pairs(&parameters)) {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    Json(map_now(&handles, &query).0).into_response()
}

/// The map over `metrics.window` now, from the rollups, with the SLO statuses of the group; and
/// whether any SLO is configured.
fn map_now(handles: &Handles, query: &MapQuery) -> (ServiceMap, bool) {
    let now = handles.clock.now();
    let window = handles.group.window(now);
    let reports = handles.slos.lock().expect("slo engine lock").group_reports(now.unix_seconds());
    let slos_configured = !reports.is_empty();
    let statuses: Vec<(String, &'static str)> = reports.into_iter().map(|r| (r.service, r.status)).collect();
    (crate::investigate::map::service_map(&window, &statuses, query), slos_configured)
}

/// The service whose owner holds a selection's series: the service itself, or an edge's caller
/// (its callee for requests entering from outside).
fn home_service(selection: &Selection) -> String {
    match (&selection.service, &selection.edge) {
        (Some(service), _) => service.clone(),
        (None, Some((source, _, target, _))) if source == CLIENT => target.clone(),
        (None, Some((source, _, _, _))) => source.clone(),
        (None, None) => String::new(),
    }
}

/// An answer about the series of one service: from the timeline here when this instance owns
/// them (or the request was forwarded here), else from their owner.
async fn from_owner<Q, A>(
    handles: Handles,
    request: (HeaderMap, Uri),
    query: Result<Q, QueryError>,
    selection: impl Fn(&Q) -> &Selection,
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
    let (headers, uri) = request;
    if !headers.contains_key(FORWARDED_HEADER) {
        let now = handles.clock.now();
        match handles.group.route_service(&home_service(selection(&query)), now) {
            Route::Here => {}
            Route::There(owner) => return forward(&handles, &owner, &uri, &headers).await,
            Route::Nobody { partition } => {
                let body = serde_json::json!({
                    "error": format!("no member owns points partition {partition} at the moment (the group is rebalancing); try again shortly"),
                    "partition": partition,
                });
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
        }
    }
    let body = tokio::task::spawn_blocking(move || {
        let now = handles.clock.now();
        let timeline = handles.timeline.at(now);
        serde_json::to_value(answer(&handles, &timeline, query, now)).expect("answers serialise")
    })
    .await
    .unwrap_or_default();
    Json(body).into_response()
}

/// The owner's answer to the same request, passed back as it came; a 503 naming the owner when
/// it does not answer.
async fn forward(handles: &Handles, owner: &str, uri: &axum::http::Uri, headers: &HeaderMap) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match handles.peers.get(owner, path, headers.get(header::AUTHORIZATION), PEER_DEADLINE).await {
        Ok(answer) => (answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response(),
        Err(error) => {
            let body = serde_json::json!({
                "error": format!("the owner of these series, {owner}, did not answer: {error}"),
                "owner": owner,
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /api/contributors`: the values of a dimension behind a series, ranked.
pub async fn contributors(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    let query = ContributorQuery::parse(pairs(&parameters), &handles.timeline.keys.dimensions);
    from_owner(
        handles,
        (headers, uri),
        query,
        |q| &q.selection,
        |handles, timeline, query, now| top_contributors(timeline, &handles.timeline.keys.dimensions, &query, now),
    )
    .await
}

/// `GET /api/compare`: what the selected requests of a series (faults, errors, throttles or slow
/// ones) have in common that the others do not.
pub async fn compare(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    from_owner(
        handles,
        (headers, uri),
        CompareQuery::parse(pairs(&parameters)),
        |q| &q.selection,
        |handles, timeline, query, now| compare::compare(timeline, &handles.timeline.keys, &query, now),
    )
    .await
}

/// `GET /api/exceptions`: a service's faults grouped by the exception they recorded.
pub async fn exceptions(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    from_owner(
        handles,
        (headers, uri),
        ExceptionsQuery::parse(pairs(&parameters)),
        |q| &q.selection,
        |_, timeline, query, now| exceptions::exceptions(timeline, &query, now),
    )
    .await
}

/// `GET /api/deployments`: the new versions of a service, each judged against the one it replaced.
pub async fn deployments(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    from_owner(
        handles,
        (headers, uri),
        DeploymentsQuery::parse(pairs(&parameters)),
        |q| &q.selection,
        |_, timeline, query, now| deployments::deployments(timeline, &query, now),
    )
    .await
}

/// `GET /api/contributors/dimensions`: the configured dimensions the selected series has seen.
pub async fn contributor_dimensions(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    from_owner(
        handles,
        (headers, uri),
        parse_selection(pairs(&parameters)),
        |s| s,
        |handles, timeline, selection, now| {
            serde_json::json!({ "dimensions": dimensions_seen(timeline, &handles.timeline.keys.dimensions, &selection, now) })
        },
    )
    .await
}

/// `GET /api/history`: 10 s points of a series or edge over the history.
pub async fn series_history(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    from_owner(
        handles,
        (headers, uri),
        HistoryQuery::parse(pairs(&parameters)),
        |q| &q.selection,
        |_, timeline, query, now| history(timeline, &query, now),
    )
    .await
}

/// `GET /api/slos/{name}/history`: the SLO's evaluations over the last hour, from the instance
/// that evaluates it; 404 for a name not configured.
pub async fn slo_history(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Response {
    let (found, owned_here) = {
        let engine = handles.slos.lock().expect("slo engine lock");
        (engine.history_json(&name), engine.owned_names().contains(&name))
    };
    let Some(local) = found else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no SLO of that name" }))).into_response();
    };
    if headers.contains_key(FORWARDED_HEADER) {
        return Json(local).into_response();
    }
    match handles.group.route_slo(&name, owned_here, handles.clock.now()) {
        Route::Here => Json(local).into_response(),
        Route::There(owner) => forward(&handles, &owner, &uri, &headers).await,
        Route::Nobody { .. } => {
            let body = serde_json::json!({
                "error": format!("no member evaluates SLO {name:?} at the moment (the group is rebalancing); try again shortly"),
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /api/traces`: summaries of decided traces, newest first, from this instance and every
/// live member (asked in parallel, each within [`PEER_DEADLINE`]); `partial` names the members
/// that did not answer. A bad parameter is a 400 naming it.
pub async fn traces(
    State(handles): State<Handles>,
    headers: HeaderMap,
    uri: Uri,
    Query(parameters): Parameters,
) -> Response {
    let query = match TraceQuery::parse(pairs(&parameters)) {
        Ok(query) => query,
        Err(error) => return bad_query(error),
    };
    let limit = query.limit;
    let local = {
        let here = handles.group.url();
        let store = handles.traces.lock().expect("trace store lock");
        let found = store.index.search(&query).into_iter().map(|s| s.json(here.as_deref()));
        found.map(|s| serde_json::to_value(s).expect("summaries serialise")).collect::<Vec<_>>()
    };
    if headers.contains_key(FORWARDED_HEADER) {
        return Json(serde_json::json!({ "traces": local })).into_response();
    }
    let peers = handles.group.live_peers(handles.clock.now());
    let path = uri.path_and_query().map_or("/api/traces", |p| p.as_str()).to_string();
    let authorization = headers.get(header::AUTHORIZATION);
    let asked = peers.iter().map(|peer| handles.peers.get(peer, &path, authorization, PEER_DEADLINE));
    let answers = futures_util::future::join_all(asked).await;
    let mut traces = local;
    let mut partial = Vec::new();
    for (peer, answer) in peers.iter().zip(answers) {
        let found = answer.ok().filter(|a| a.status == StatusCode::OK).and_then(|a| {
            let body: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
            body["traces"].as_array().cloned()
        });
        match found {
            Some(found) => traces.extend(found),
            None => partial.push(peer.to_string()),
        }
    }
    let start = |t: &serde_json::Value| t["startUnixNano"].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    traces.sort_by(|a, b| start(b).cmp(&start(a)).then_with(|| a["traceId"].as_str().cmp(&b["traceId"].as_str())));
    traces.dedup_by(|a, b| a["traceId"] == b["traceId"]);
    traces.truncate(limit);
    Json(serde_json::json!({ "traces": traces, "partial": partial })).into_response()
}

/// `GET /api/traces/{id}`: a trace's summary and, while its records are held, its spans. A trace
/// decided by another live member: a 307 to it (or, with `?redirect=false`, its answer passed
/// back: the console only talks to its own instance); 404 for a trace no live member decided
/// (or remembers), 400 for a malformed id.
pub async fn trace(
    State(handles): State<Handles>,
    headers: HeaderMap,
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
    let here = {
        let url = handles.group.url();
        let store = handles.traces.lock().expect("trace store lock");
        store.index.get(&trace_id).map(|summary| {
            let mut body = serde_json::to_value(summary.json(url.as_deref())).expect("summaries serialise");
            body["spans"] = match store.held.spans(&trace_id) {
                Some(spans) => serde_json::to_value(spans).expect("spans serialise"),
                None => serde_json::Value::Null,
            };
            body
        })
    };
    if let Some(body) = here {
        return Json(body).into_response();
    }
    let not_found =
        || (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such trace in the group" }))).into_response();
    if headers.contains_key(FORWARDED_HEADER) {
        return not_found();
    }
    let peers = handles.group.live_peers(handles.clock.now());
    let path = format!("/api/traces/{id}?redirect=false");
    let authorization = headers.get(header::AUTHORIZATION);
    let asked = peers.iter().map(|peer| handles.peers.get(peer, &path, authorization, PEER_DEADLINE));
    let answers = futures_util::future::join_all(asked).await;
    for (peer, answer) in peers.iter().zip(answers) {
        let Ok(answer) = answer else { continue };
        if answer.status != StatusCode::OK {
            continue;
        }
        if follow {
            let location = format!("{peer}/api/traces/{id}");
            return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response();
        }
        return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response();
    }
    not_found()
}
