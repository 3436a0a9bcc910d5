//! The service map (investigation.md "Service map"): nodes and edges built from the group-wide
//! timeline of service and dependency points over `metrics.window`.
//!
//! - a service node per (service, environment) with entry spans: its operations' points merged;
//! - a remote node per dependency target that is not an instrumented service of the environment,
//!   typed by the call's attributes (`database`, `queue`, `aws`, `remote`), measured by the calls
//!   into it (client-side latency);
//! - one `client` node per environment, and a client → service edge for requests entering from
//!   outside (root entry spans);
//! - an edge per caller → callee, from the client side of the calls;
//! - a `queue` node per queue (`{messaging.system}:{messaging.destination.name}`) that spans
//!   publish to, with an edge producer → queue (publishes: the producer spans, their outcome and
//!   duration) and queue → consumer (deliveries: the consumer spans that follow a publish, their
//!   outcome, and as latency the delay from the start of the publish to the start of the
//!   consumption). A service that publishes to queues has no direct edge to its consumers
//!   (its dependency series whose remote side is a queue): the queue stands between them.
//!
//! Ids are stable strings: `service:environment` for nodes, `from->to` for edges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use crate::matcher::Wildcard;
use crate::model::RemoteKind;
use crate::signals::SeriesId;

use super::query::QueryError;
use super::timeline::{Aggregate, Figures, WindowSeries};

/// The name of the node requests come from when they enter from outside.
pub const CLIENT: &str = "client";

/// What `/api/service-map` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapQuery {
    pub environment: Option<String>,
    /// Only nodes within `depth` hops (either direction) of this service.
    pub focus: Option<(String, usize)>,
}

/// The default `depth` around a focused service.
pub const DEFAULT_DEPTH: usize = 1;

impl MapQuery {
    /// Parses `/api/service-map` query parameters; an unknown or invalid one is named.
    pub fn parse<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, QueryError> {
        let (mut environment, mut service, mut depth) = (None, None, None);
        for (name, value) in parameters {
            let invalid = |message: &str| QueryError { parameter: name.to_string(), message: message.to_string() };
            match name {
                "environment" => environment = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                "depth" => {
                    depth = Some(
                        value
                            .parse::<usize>()
                            .ok()
                            .filter(|d| (1..=10).contains(d))
                            .ok_or_else(|| invalid("expected 1 to 10"))?,
                    )
                }
                _ => return Err(invalid("unknown; expected environment, service or depth")),
            }
        }
        let focus = match (service, depth) {
            (Some(service), depth) => Some((service, depth.unwrap_or(DEFAULT_DEPTH))),
            (None, Some(_)) => {
                return Err(QueryError {
                    parameter: "depth".into(),
                    message: "needs service (the node to focus on)".into(),
                })
            }
            (None, None) => None,
        };
        Ok(Self { environment, focus })
    }
}

/// A node of the map.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapNode {
    pub id: String,
    pub name: String,
    pub environment: String,
    /// `service` | `database` | `queue` | `aws` | `remote` | `client`.
    pub kind: &'static str,
    #[serde(flatten)]
    pub figures: Figures,
    /// The worst status of the SLOs (evaluated here) that select the service.
    pub slo_status: Option<&'static str>,
}

/// An edge of the map.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEdge {
    pub id: String,
    pub source: String,
    pub target: String,
    /// `call` (caller → callee, and client → service), `publish` (producer → queue) or
    /// `delivery` (queue → consumer: its latency is the delay from publish to consumption).
    pub kind: &'static str,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceMap {
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
}

fn node_id(name: &str, environment: &str) -> String {
    format!("{name}:{environment}")
}

fn severity(status: &str) -> u8 {
    match status {
        "BREACHED" => 3,
        "WARNING" => 2,
        "OK" => 1,
        _ => 0,
    }
}

/// The map of what the group measured over `metrics.window` (`window`: each series' rollup); `slos` holds the service
/// pattern and status of each SLO (evaluated by whichever instance owns it).
pub fn service_map(window: &[WindowSeries], slos: &[(String, &'static str)], query: &MapQuery) -> ServiceMap {
    let in_environment = |environment: &str| query.environment.as_deref().is_none_or(|e| e == environment);
    // Service nodes: every operation's points merged.
    let mut services: BTreeMap<(String, String), Aggregate> = BTreeMap::new();
    for (series, _, aggregate) in window {
        if let SeriesId::Service(key) = series {
            if in_environment(&key.environment) {
                let node = services.entry((key.service.to_string(), key.environment.to_string())).or_default();
                node.add_aggregate(aggregate);
            }
        }
    }
    // Edges caller -> callee; remote nodes for callees that are not services here; one client
    // node per environment for requests entering from outside.
    let mut edges: BTreeMap<(String, String), (&'static str, Aggregate)> = BTreeMap::new();
    let mut remotes: BTreeMap<(String, String), (&'static str, Aggregate)> = BTreeMap::new();
    let mut clients: BTreeMap<String, Aggregate> = BTreeMap::new();
    // The services that publish to queues: their calls into queues are drawn through them.
    let publishers: BTreeSet<(&str, &str)> = window
        .iter()
        .filter_map(|(series, _, _)| match series {
            SeriesId::Queue(key) if !key.deliveries => Some((&*key.service, &*key.environment)),
            _ => None,
        })
        .collect();
    for (series, remote_kind, aggregate) in window {
        match series {
            SeriesId::Dependency(key)
                if *remote_kind == RemoteKind::Queue && publishers.contains(&(&key.service, &key.environment)) => {}
            SeriesId::Dependency(key) if in_environment(&key.environment) => {
                let environment = key.environment.to_string();
                let callee = (key.remote_service.to_string(), environment.clone());
                if !services.contains_key(&callee) {
                    let (_, node) =
                        remotes.entry(callee.clone()).or_insert((remote_kind.as_str(), Aggregate::default()));
                    node.add_aggregate(aggregate);
                }
                let edge = (node_id(&key.service, &environment), node_id(&callee.0, &callee.1));
                edges.entry(edge).or_insert(("call", Aggregate::default())).1.add_aggregate(aggregate);
            }
            SeriesId::Client { service, environment } if in_environment(environment) => {
                let edge = (node_id(CLIENT, environment), node_id(service, environment));
                edges.entry(edge).or_insert(("call", Aggregate::default())).1.add_aggregate(aggregate);
                clients.entry(environment.to_string()).or_default().add_aggregate(aggregate);
            }
            SeriesId::Queue(key) if in_environment(&key.environment) => {
                let (service, queue) = (node_id(&key.service, &key.environment), node_id(&key.queue, &key.environment));
                let (edge, kind) =
                    if key.deliveries { ((queue, service), "delivery") } else { ((service, queue), "publish") };
                edges.entry(edge).or_insert((kind, Aggregate::default())).1.add_aggregate(aggregate);
                let node = remotes
                    .entry((key.queue.to_string(), key.environment.to_string()))
                    .or_insert(("queue", Aggregate::default()));
                if !key.deliveries {
                    node.1.add_aggregate(aggregate);
                }
            }
            _ => {}
        }
    }

    let slo_status = |service: &str| {
        slos.iter()
            .filter(|(pattern, _)| Wildcard::new(pattern).matches(service))
            .map(|(_, status)| *status)
            .max_by_key(|s| severity(s))
    };
    let node =
        |name: &str, environment: &str, kind: &'static str, figures: &Aggregate, slo: Option<&'static str>| MapNode {
            id: node_id(name, environment),
            name: name.to_string(),
            environment: environment.to_string(),
            kind,
            figures: figures.figures(),
            slo_status: slo,
        };
    let mut map = ServiceMap::default();
    for ((name, environment), totals) in &services {
        map.nodes.push(node(name, environment, "service", totals, slo_status(name)));
    }
    for ((name, environment), (kind, totals)) in &remotes {
        map.nodes.push(node(name, environment, kind, totals, None));
    }
    for (environment, totals) in &clients {
        map.nodes.push(node(CLIENT, environment, "client", totals, None));
    }
    for ((source, target), (kind, figures)) in &edges {
        map.edges.push(MapEdge {
            id: format!("{source}->{target}"),
            source: source.clone(),
            target: target.clone(),
            kind,
            figures: figures.figures(),
        });
    }
    if let Some((service, depth)) = &query.focus {
        focus(&mut map, service, *depth);
    }
    map
}

/// Keeps the nodes within `depth` hops of `service` (any environment), either direction, and the
/// edges between them.
fn focus(map: &mut ServiceMap, service: &str, depth: usize) {
    let mut reached: BTreeSet<String> = map.nodes.iter().filter(|n| n.name == service).map(|n| n.id.clone()).collect();
    let mut frontier: VecDeque<(String, usize)> = reached.iter().map(|id| (id.clone(), 0)).collect();
    while let Some((id, hops)) = frontier.pop_front() {
        if hops == depth {
            continue;
        }
        for edge in &map.edges {
            let next = if edge.source == id {
                &edge.target
            } else if edge.target == id {
                &edge.source
            } else {
                continue;
            };
            if reached.insert(next.clone()) {
                frontier.push_back((next.clone(), hops + 1));
            }
        }
    }
    map.nodes.retain(|n| reached.contains(&n.id));
    map.edges.retain(|e| reached.contains(&e.source) && reached.contains(&e.target));
}

#[cfg(test)]
mod tests;
