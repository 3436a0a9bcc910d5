//! The tests' one way to wait: poll what the code under test reports (a metric, an endpoint, a
//! committed offset, a log line) until it holds, and fail naming what was awaited. A test never
//! sleeps in place of an event, and never asserts on how long something took: the timeout only
//! turns a hang into a failure that says what never happened.

#![allow(dead_code)]

use std::fmt;
use std::time::{Duration, Instant};

/// Polls `condition` until it holds; panics after `timeout`, naming `what`.
pub fn wait_for(what: impl fmt::Display, timeout: Duration, mut condition: impl FnMut() -> bool) {
    wait_until(what, timeout, || condition().then_some(()))
}

/// Polls `value` until it gives something, and returns that; panics after `timeout`, naming `what`.
pub fn wait_until<T>(what: impl fmt::Display, timeout: Duration, value: impl FnMut() -> Option<T>) -> T {
    poll(timeout, value).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `condition` until it holds or `timeout` passes; whether it held. For a test that reports
/// its figures (a summary line) before it asserts on them.
pub fn held_within(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    poll(timeout, || condition().then_some(())).is_some()
}

/// Polls `value` until it gives something or `timeout` passes.
fn poll<T>(timeout: Duration, mut value: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(5);
    loop {
        if let Some(value) = value() {
            return Some(value);
        }
        if started.elapsed() >= timeout {
            return None;
        }
        // The polling interval, not a wait for anything: short at first for what comes at once,
        // then no faster than the conditions (HTTP requests, Kafka look-ups) are worth asking.
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// A description made only when a wait fails, from the state at that moment (what each process
/// holds, the last answer seen): `wait_for(explained(|| format!(..)), ..)`.
pub fn explained<F: Fn() -> String>(describe: F) -> Explained<F> {
    Explained(describe)
}

pub struct Explained<F>(F);

impl<F: Fn() -> String> fmt::Display for Explained<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}
