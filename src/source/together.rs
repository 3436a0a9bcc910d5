//! How the members (workers) of one instance start and leave together: member 0 prepares the
//! topics before the others subscribe, so that all join in one rebalance ([`TopicsPrepared`]); on
//! shutdown every member settles and commits while the group is stable, then they leave at once
//! ([`LeaveTogether`]): once one has left, the others' commits would be refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Opens when the first member has checked and created the topics: the others subscribe only
/// then, so none subscribes to a topic that does not exist yet (it would not see it until its
/// next metadata refresh, minutes later).
#[derive(Default)]
pub struct TopicsPrepared {
    done: Mutex<bool>,
    opened: Condvar,
}

impl TopicsPrepared {
    pub(super) fn open(&self) {
        *self.done.lock().expect("topics gate lock") = true;
        self.opened.notify_all();
    }

    /// Waits until the topics are prepared (`true`) or shutdown is asked (`false`).
    pub(super) fn wait(&self, shutdown: &AtomicBool) -> bool {
        let mut done = self.done.lock().expect("topics gate lock");
        while !*done {
            if shutdown.load(Ordering::SeqCst) {
                return false;
            }
            done = self.opened.wait_timeout(done, Duration::from_millis(100)).expect("topics gate lock").0;
        }
        true
    }
}

/// How long a settled member waits for the others before leaving the group anyway (one that
/// ended on a fatal error never arrives).
pub(super) const LEAVE_TOGETHER_TIMEOUT: Duration = Duration::from_secs(10);

/// The members of one instance leave the group together, each once it has settled.
pub struct LeaveTogether {
    members: usize,
    settled: Mutex<usize>,
    all_settled: Condvar,
}

impl LeaveTogether {
    pub fn new(members: usize) -> Self {
        Self { members, settled: Mutex::new(0), all_settled: Condvar::new() }
    }

    /// Counts this member settled and waits (up to `timeout`) for every other.
    pub(super) fn arrive_and_wait(&self, timeout: Duration) {
        let mut settled = self.settled.lock().expect("leave lock");
        *settled += 1;
        self.all_settled.notify_all();
        let deadline = Instant::now() + timeout;
        while *settled < self.members {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    settled = *settled,
                    members = self.members,
                    "leaving the group before every worker settled"
                );
                return;
            }
            settled = self.all_settled.wait_timeout(settled, left).expect("leave lock").0;
        }
    }
}
