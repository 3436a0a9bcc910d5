//! One view per consumer group, at any size (investigation.md "One view per consumer group").
//!
//! ```text
//! SignalStore ─ worker, every 2 s ─▶ points topic (partition = the series' service) ─▶ owner (group {group_id}-series)
//!                                                                                    │ merges into its OwnedTimeline
//!                        timeline topic (compacted changelog) ◀── checkpoint ─────────┤
//!                        rollups topic ◀── every 10 s: window rollup + announcement ──┘
//! rollups topic ─▶ every instance's GroupView: /api/services, /api/series, /api/service-map, /api/slos
//! /api/history, /api/contributors, /api/slos/{name}/history ─▶ the owner (forwarded over HTTP)
//! /api/traces ─▶ every live member, in parallel
//! ```
//! The workers publish the points measured here through their delivery ledgers
//! ([`publish::PointsPublisher`]); [`member::GroupMember`] runs the rest on one thread; [`GroupView`] is what the HTTP
//! answers read: the latest rollup of every series, and who owns what, from the announcements
//! every member sends with its rollups.
//!
//! Invariants:
//! - what an instance reads and keeps grows with its share of the series (the points of the
//!   partitions it owns) and with the rollups (one per series per 10 s for the whole group),
//!   never with the number of instances;
//! - a member is live while its latest announcement is younger than [`PEER_TIMEOUT`] by the
//!   announcement's own time, so a message read again after a restart never revives a departed
//!   member; an owner that announces no longer owning a partition stops being routed to at once;
//! - a series' rollup is answered only while younger than [`ROLLUP_TTL`], so a series whose owner
//!   is gone (or went quiet) leaves the group view instead of freezing in it.

pub mod forward;
pub mod gauges;
pub mod member;
pub mod publish;
pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::Nanos;
use crate::model::RemoteKind;
use crate::signals::SeriesId;
use crate::slo::engine::{SloEngine, SloReport};

use super::timeline::{Aggregate, WindowSeries};
use wire::{service_partition, RollupMessage};

/// How long a member's announcement keeps it live (three rollup periods).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a series' rollup is answered after it was sent (two and a half rollup periods).
pub const ROLLUP_TTL: Duration = Duration::from_secs(25);

/// What this instance owns of the points topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// The points topic's partition count, once known.
    pub partition_count: Option<i32>,
    pub partitions: BTreeSet<i32>,
    /// Whether the series group has given this instance its first assignment (possibly empty):
    /// until then it cannot know which series it owns, nor route a question to their owner.
    pub joined: bool,
    /// Partitions assigned whose history is being restored from the changelog.
    pub restoring: BTreeSet<i32>,
}

/// Where a request about a series (or an SLO) is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Here,
    /// At the owner's `http.advertised_url`.
    There(Arc<str>),
    /// No live member owns it at the moment (the group is rebalancing).
    Nobody {
        partition: i32,
    },
}

struct Member {
    url: Option<Arc<str>>,
    sent: Nanos,
    partitions: Vec<i32>,
    slos: Vec<String>,
}

struct Rollup {
    sent: Nanos,
    remote_kind: RemoteKind,
    aggregate: Aggregate,
}

#[derive(Default)]
struct Members {
    by_instance: HashMap<u64, Member>,
    rollups: HashMap<SeriesId, Rollup>,
}

/// The group as this instance knows it (module docs).
pub struct GroupView {
    /// This process's id in announcements (random, new at every start).
    pub instance: u64,
    url: RwLock<Option<Arc<str>>>,
    ownership: RwLock<Ownership>,
    members: Mutex<Members>,
}

impl Default for GroupView {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupView {
    pub fn new() -> Self {
        Self {
            instance: rand::random::<u64>(),
            url: RwLock::new(None),
            ownership: RwLock::new(Ownership::default()),
            members: Mutex::default(),
        }
    }

    /// Where this instance's API is reached (`http.advertised_url`, else the bound address).
    pub fn set_url(&self, url: &str) {
        *self.url.write().expect("url lock") = Some(Arc::from(url.trim_end_matches('/')));
    }

    pub fn url(&self) -> Option<Arc<str>> {
        self.url.read().expect("url lock").clone()
    }

    pub fn ownership(&self) -> Ownership {
        self.ownership.read().expect("ownership lock").clone()
    }

    pub(crate) fn update_ownership(&self, change: impl FnOnce(&mut Ownership)) {
        change(&mut self.ownership.write().expect("ownership lock"));
    }

    /// Why this instance's answers are not complete yet: the series group has not assigned it
    /// its partitions yet, or partitions whose history is being restored (`/readyz`).
    pub fn restoring(&self) -> Option<String> {
        let ownership = self.ownership.read().expect("ownership lock");
        if !ownership.joined {
            return Some("joining the series group (which series this instance owns is not known yet)".to_string());
        }
        (!ownership.restoring.is_empty()).then(|| {
            let partitions: Vec<String> = ownership.restoring.iter().map(i32::to_string).collect();
            format!("restoring the history of points partitions {} from the changelog", partitions.join(", "))
        })
    }

    /// Takes in a rollup message (this instance's own included); the SLO reports of SLOs owned
    /// elsewhere go to `slos`.
    pub fn apply(&self, message: RollupMessage, slos: &Mutex<SloEngine>, now: Nanos) {
        let from = message.from;
        let sent = Nanos(from.sent);
        {
            let mut members = self.members.lock().expect("members lock");
            let newer = members.by_instance.get(&from.instance).is_none_or(|m| m.sent <= sent);
            if newer {
                members.by_instance.insert(
                    from.instance,
                    Member {
                        url: from.url.as_deref().map(Arc::from),
                        sent,
                        partitions: from.partitions,
                        slos: from.slos,
                    },
                );
            }
            for series in message.series {
                let (id, remote_kind, counts, latency) = series.into_parts();
                if members.rollups.get(&id).is_some_and(|r| r.sent > sent) {
                    continue;
                }
                let aggregate = Aggregate { counts, latency, examples: Default::default() };
                members.rollups.insert(id, Rollup { sent, remote_kind, aggregate });
            }
            members.rollups.retain(|_, r| now.since(r.sent) < ROLLUP_TTL * 2);
            members.by_instance.retain(|_, m| now.since(m.sent) < PEER_TIMEOUT * 10);
        }
        if from.instance != self.instance && !from.slo_reports.is_empty() {
            let mut engine = slos.lock().expect("slo engine lock");
            for report in from.slo_reports.iter().filter_map(|json| serde_json::from_str::<SloReport>(json).ok()) {
                engine.set_remote_report(report);
            }
        }
    }

    /// Every series' latest rollup over `metrics.window`, group-wide.
    pub fn window(&self, now: Nanos) -> Vec<WindowSeries> {
        let members = self.members.lock().expect("members lock");
        members
            .rollups
            .iter()
            .filter(|(_, r)| now.since(r.sent) < ROLLUP_TTL && r.aggregate.counts.requests > 0)
            .map(|(id, r)| (id.clone(), r.remote_kind, r.aggregate.clone()))
            .collect()
    }

    /// The live members other than this one, by URL.
    pub fn live_peers(&self, now: Nanos) -> Vec<Arc<str>> {
        let members = self.members.lock().expect("members lock");
        let here = self.url();
        let mut urls: Vec<Arc<str>> = members
            .by_instance
            .iter()
            .filter(|(id, m)| **id != self.instance && now.since(m.sent) < PEER_TIMEOUT)
            .filter_map(|(_, m)| m.url.clone())
            .filter(|url| Some(url) != here.as_ref())
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Whether the member at `url` is live.
    pub fn is_live(&self, url: &str, now: Nanos) -> bool {
        if self.url().as_deref() == Some(url) {
            return true;
        }
        let members = self.members.lock().expect("members lock");
        members.by_instance.values().any(|m| m.url.as_deref() == Some(url) && now.since(m.sent) < PEER_TIMEOUT)
    }

    /// Where the series of `service` are answered.
    pub fn route_service(&self, service: &str, now: Nanos) -> Route {
        let ownership = self.ownership();
        let Some(count) = ownership.partition_count else { return Route::Here };
        let partition = service_partition(service, count);
        if ownership.partitions.contains(&partition) {
            return Route::Here;
        }
        self.newest_live(now, |m| m.partitions.contains(&partition)).map_or(Route::Nobody { partition }, Route::There)
    }

    /// Where the history of SLO `name` is answered (`owned_here`: this instance evaluates it).
    pub fn route_slo(&self, name: &str, owned_here: bool, now: Nanos) -> Route {
        if owned_here {
            return Route::Here;
        }
        self.newest_live(now, |m| m.slos.iter().any(|s| s == name))
            .map_or(Route::Nobody { partition: -1 }, Route::There)
    }

    /// The URL of the live member (not this one) with the newest announcement that `claims`.
    fn newest_live(&self, now: Nanos, claims: impl Fn(&Member) -> bool) -> Option<Arc<str>> {
        let members = self.members.lock().expect("members lock");
        members
            .by_instance
            .iter()
            .filter(|(id, m)| **id != self.instance && now.since(m.sent) < PEER_TIMEOUT && claims(m))
            .max_by_key(|(_, m)| m.sent)
            .and_then(|(_, m)| m.url.clone())
    }
}

#[cfg(test)]
mod tests;
