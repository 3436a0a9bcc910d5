//! The building blocks every component's configuration shares: [`HumanDuration`] (`"500ms"`,
//! `"30d"`) and [`Problem`] (one invalid setting, named by its key). A leaf module: the components
//! own their settings, `config` composes them, and both depend on this.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as `"500ms"`, `"5s"`, `"15m"`, `"30d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: expected a number and a unit, such as \"500ms\", \"5s\", \"15m\", \"30d\""
            ))
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format_duration(self.0))
    }
}

/// A secret from the configuration (a token, a password): its `Debug` and `Display` never show
/// it, so no log line, error or answer can.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

pub fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

/// One configuration problem, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A `check(ok, key, message)` that records a problem with `key` when `ok` is false.
    pub fn checker(problems: &mut Vec<Problem>) -> impl FnMut(bool, &str, String) + '_ {
        move |ok, key, message| {
            if !ok {
                problems.push(Problem { key: key.into(), message });
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
