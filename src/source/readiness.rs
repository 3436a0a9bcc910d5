//! Readiness (`/readyz`): whether every worker of this instance is a consuming member of its
//! group, in touch with its coordinator, and which partitions it holds; and why not, naming a
//! refusal by the brokers when there is one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::kafka_client::KafkaSession;

/// Whether every worker of this instance is a consuming member of its group, in touch with its
/// group coordinator, and what they hold (`/readyz`).
pub struct Readiness {
    /// The group members of this instance (its workers).
    members: usize,
    /// The members that have joined (an assignment arrived, even an empty one).
    joined: Mutex<BTreeSet<usize>>,
    /// What each member holds: (member, topic, partition). Per member, since two members of one
    /// instance may hold a partition at once for a moment (the group moves it from one to the
    /// other), and one's revocation must not hide the other's holding.
    assignment: Mutex<BTreeSet<(usize, String, i32)>>,
    /// Each member's group state as librdkafka last reported it (`/readyz` shows it).
    states: Mutex<Vec<GroupState>>,
    /// Where a recent refusal by the brokers (TLS, SASL) is found, to say why.
    kafka_session: Option<Arc<KafkaSession>>,
}

/// A member's group state from librdkafka's statistics (empty before the first).
#[derive(Clone, Debug, Default)]
pub struct GroupState {
    /// `steady` once settled in the group.
    pub join_state: String,
    /// The link to the group coordinator: `up`, or `query-coord`, `wait-coord`, … while it is
    /// being found again (the network or the broker is failing).
    pub coordinator: String,
}

impl GroupState {
    /// Whether the member is in touch with its coordinator (or has not reported yet).
    fn connected(&self) -> bool {
        matches!(self.coordinator.as_str(), "" | "up")
    }
}

/// One member as `/readyz` shows it.
pub struct MemberReadiness {
    pub worker: usize,
    pub joined: bool,
    pub state: GroupState,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Readiness {
    pub fn new(members: usize) -> Self {
        Self {
            members,
            joined: Mutex::default(),
            assignment: Mutex::default(),
            states: Mutex::new(vec![GroupState::default(); members]),
            kafka_session: None,
        }
    }

    /// Says, while not ready, why the brokers refuse this instance when they do.
    pub fn with_kafka_session(mut self, kafka_session: Arc<KafkaSession>) -> Self {
        self.kafka_session = Some(kafka_session);
        self
    }

    /// Each member (worker): whether it has joined, and its group state.
    pub fn members(&self) -> Vec<MemberReadiness> {
        let joined = self.joined.lock().expect("joined lock");
        let states = self.states.lock().expect("group states lock");
        (0..self.members)
            .map(|m| MemberReadiness {
                worker: m,
                joined: joined.contains(&m),
                state: states.get(m).cloned().unwrap_or_default(),
            })
            .collect()
    }

    pub(super) fn set_group_state(&self, member: usize, join_state: &str, coordinator: &str) {
        if let Some(slot) = self.states.lock().expect("group states lock").get_mut(member) {
            slot.join_state.clear();
            slot.join_state.push_str(join_state);
            slot.coordinator.clear();
            slot.coordinator.push_str(coordinator);
        }
    }

    /// Why the instance is not ready, if it is not: a member has not joined its group (or has
    /// left it: shutdown), or has lost its group coordinator.
    pub fn not_ready(&self) -> Option<String> {
        let reason = self.membership()?;
        match self.kafka_session.as_ref().and_then(|log| log.refusal()) {
            Some(refusal) => Some(format!("{reason}; {refusal}")),
            None => Some(reason),
        }
    }

    fn membership(&self) -> Option<String> {
        let joined = self.joined.lock().expect("joined lock");
        if let Some(m) = (0..self.members).find(|m| !joined.contains(m)) {
            return Some(format!("worker {m} is not (or no longer) a member of the consumer group"));
        }
        let states = self.states.lock().expect("group states lock");
        states.iter().enumerate().find(|(_, s)| !s.connected()).map(|(m, s)| {
            format!("worker {m} has lost its group coordinator ({}): the brokers are unreachable", s.coordinator)
        })
    }

    /// Ready once every member has joined its group, while each is in touch with its
    /// coordinator, until shutdown starts.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// The partitions this instance holds now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let assignment = self.assignment.lock().expect("assignment lock");
        let held: BTreeSet<(String, i32)> = assignment.iter().map(|(_, t, p)| (t.clone(), *p)).collect();
        held.into_iter().collect()
    }

    pub(super) fn assign(&self, member: usize, partitions: &[(String, i32)]) {
        let mut assignment = self.assignment.lock().expect("assignment lock");
        assignment.extend(partitions.iter().map(|(t, p)| (member, t.clone(), *p)));
        self.joined.lock().expect("joined lock").insert(member);
    }

    pub(super) fn revoke(&self, member: usize, partitions: &[(String, i32)]) {
        let mut assignment = self.assignment.lock().expect("assignment lock");
        for (topic, partition) in partitions {
            assignment.remove(&(member, topic.clone(), *partition));
        }
    }

    /// A member leaves (the instance shuts down): not ready from now on.
    pub(super) fn leave(&self, member: usize) {
        self.joined.lock().expect("joined lock").remove(&member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_worker_joined_and_in_touch_with_its_coordinator() {
        let ready = Readiness::new(2);
        assert!(ready.not_ready().is_some_and(|r| r.contains("worker 0")), "nobody joined yet");
        ready.assign(0, &[("in".into(), 0)]);
        assert!(ready.not_ready().is_some_and(|r| r.contains("worker 1")), "worker 1 has not joined");
        ready.assign(1, &[]);
        assert_eq!(ready.not_ready(), None, "joined, no statistics yet");
        ready.set_group_state(1, "steady", "up");
        assert!(ready.is_ready());
        // The network fails: librdkafka looks for the coordinator again.
        ready.set_group_state(1, "steady", "query-coord");
        let reason = ready.not_ready().expect("not ready while the coordinator is lost");
        assert!(reason.contains("worker 1") && reason.contains("query-coord"), "{reason}");
        ready.set_group_state(1, "steady", "up");
        assert!(ready.is_ready(), "ready again once the link is back");
        ready.leave(0);
        assert!(!ready.is_ready(), "not ready once shutdown starts");
    }

    #[test]
    fn a_partition_two_members_held_stays_listed_until_both_let_it_go() {
        let ready = Readiness::new(2);
        let partition = ("in".to_string(), 0);
        // The group gives partition 0 to member 0 before member 1 has revoked it.
        ready.assign(1, &[partition.clone(), ("in".into(), 1)]);
        ready.assign(0, std::slice::from_ref(&partition));
        ready.revoke(1, std::slice::from_ref(&partition));
        assert_eq!(ready.assignment(), vec![partition.clone(), ("in".into(), 1)], "member 0 still holds it");
        ready.revoke(0, std::slice::from_ref(&partition));
        assert_eq!(ready.assignment(), vec![("in".to_string(), 1)]);
    }
}
