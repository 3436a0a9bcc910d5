//! Which exceptions are the same (investigation.md "What changed": exceptions): faults are grouped
//! by the exception their span recorded, and two exceptions are one group when they have the same
//! type, the same message once its variable parts are templated, and the same first frame of the
//! service's own code.
//!
//! - The message's variable parts become placeholders, in this order: quoted strings `{str}`,
//!   UUIDs `{uuid}`, hex ids (`0x…`, or eight hex digits and more with a digit among them) `{id}`,
//!   numbers `{n}`: `owner 4711 not found in 'eu-1'` and `owner 12 not found in 'us-2'` are one
//!   group, `owner {n} not found in {str}`.
//! - The frame is the innermost frame of the stack trace that is not in a library or the runtime
//!   (site-packages, node_modules, `java.*`, the Go module cache, …); the innermost frame when all
//!   are. Java, .NET, Node.js and X-Ray list the innermost frame first (`at …` lines), Python last
//!   (`File "…", line N, in f`), Go as a function line then its tab-indented file line.
//!
//! A series' point keeps an [`ExceptionTable`]: per group its count, when it was first and last
//! seen, the versions and instances it was seen on, example traces, and one example message and
//! stack trace.
//!
//! Invariants: a key is a pure function of the exception (the same on every instance, so groups
//! from every instance merge by key); its [`ExceptionKey::id`] is a stable hash of the key; a table
//! holds at most [`MAX_GROUPS`] groups when recording (beyond, the group seen least often gives way,
//! and the table says it is `estimated`), at most [`MAX_LISTED`] versions and instances per
//! group, and example texts of at most [`MAX_MESSAGE_BYTES`] and [`MAX_STACK_BYTES`]; merging adds
//! counts and widens the seen range, so merged tables are what one table recording everything
//! would hold (within those bounds).

use std::sync::LazyLock;

use regex::Regex;

use crate::model::{Exception, Outcome, Span};

use super::point::Examples;

/// Groups a table records before the least seen gives way.
pub const MAX_GROUPS: usize = 32;
/// Versions and instances listed per group.
pub const MAX_LISTED: usize = 8;
/// The example message is cut to this many bytes.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// The example stack trace is cut to this many bytes.
pub const MAX_STACK_BYTES: usize = 2048;

/// One group of faults with the same exception, over a point (or several merged).
#[derive(Clone, Debug, PartialEq)]
pub struct ExceptionGroup {
    pub key: ExceptionKey,
    pub count: u64,
    /// Unix nanoseconds: the earliest and latest start of the spans.
    pub first_seen: u64,
    pub last_seen: u64,
    /// `service.version` of the resources it was seen on (at most [`MAX_LISTED`], sorted).
    pub versions: Vec<String>,
    /// The instances (`service.instance.id`, else `k8s.pod.name`, else `host.name`).
    pub instances: Vec<String>,
    pub examples: Examples,
    pub example_message: String,
    pub example_stack: String,
}

impl ExceptionGroup {
    fn merge(&mut self, other: &ExceptionGroup) {
        self.count += other.count;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for value in &other.versions {
            add_listed(&mut self.versions, value);
        }
        for value in &other.instances {
            add_listed(&mut self.instances, value);
        }
        self.examples.merge(&other.examples);
    }
}

/// Adds `value` to a sorted list of at most [`MAX_LISTED`] (a full list keeps the smallest).
fn add_listed(list: &mut Vec<String>, value: &str) {
    if let Err(at) = list.binary_search_by(|v| v.as_str().cmp(value)) {
        list.insert(at, value.to_string());
        list.truncate(MAX_LISTED);
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn cut(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Fingerprints remembered per table; beyond, they start afresh.
const MAX_FINGERPRINTS: usize = 256;

/// The exception groups of a series' point (module docs).
#[derive(Clone, Debug, Default)]
pub struct ExceptionTable {
    groups: Vec<ExceptionGroup>,
    /// Whether a group ever gave way to another.
    pub estimated: bool,
    /// The groups of exceptions recorded before, by fingerprint (the exception's bytes and the
    /// resource that recorded them, [`crate::format::Format::exception_fingerprint`]): counting
    /// one again reads nothing and allocates nothing.
    fingerprints: Vec<(u64, usize)>,
}

impl PartialEq for ExceptionTable {
    /// The groups and the flag; the fingerprints are a cache.
    fn eq(&self, other: &Self) -> bool {
        self.groups == other.groups && self.estimated == other.estimated
    }
}

impl ExceptionTable {
    pub fn from_groups(groups: Vec<ExceptionGroup>, estimated: bool) -> Self {
        Self { groups, estimated, fingerprints: Vec::new() }
    }

    /// Counts an exception recorded before with the same `fingerprint` (from the same resource);
    /// false when there is none, and the caller reads it and calls [`ExceptionTable::record`].
    pub fn count_again(&mut self, fingerprint: u64, span: &Span) -> bool {
        let Some(&(_, index)) = self.fingerprints.iter().find(|(f, _)| *f == fingerprint) else { return false };
        let group = &mut self.groups[index];
        group.count += 1;
        group.first_seen = group.first_seen.min(span.start_unix_nano);
        group.last_seen = group.last_seen.max(span.start_unix_nano);
        group.examples.record(&span.trace_id, Outcome::Fault);
        true
    }

    pub fn groups(&self) -> &[ExceptionGroup] {
        &self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Counts the exception a fault span recorded; `version` and `instance` of its resource;
    /// `fingerprint` remembers its group for [`ExceptionTable::count_again`].
    pub fn record(
        &mut self,
        exception: &Exception,
        span: &Span,
        version: Option<String>,
        instance: Option<String>,
        fingerprint: Option<u64>,
    ) {
        let key = ExceptionKey::of(exception);
        let at = span.start_unix_nano;
        let position = match self.groups.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                let group = ExceptionGroup {
                    key,
                    count: 0,
                    first_seen: at,
                    last_seen: at,
                    versions: Vec::new(),
                    instances: Vec::new(),
                    examples: Examples::default(),
                    example_message: cut(&exception.message, MAX_MESSAGE_BYTES),
                    example_stack: cut(&exception.stacktrace, MAX_STACK_BYTES),
                };
                if self.groups.len() < MAX_GROUPS {
                    self.groups.push(group);
                    self.groups.len() - 1
                } else {
                    // Space-Saving: the least seen group gives way; the newcomer inherits its count.
                    let (i, least) = self.groups.iter().enumerate().min_by_key(|(_, g)| g.count).expect("full");
                    let inherited = least.count;
                    self.groups[i] = ExceptionGroup { count: inherited, ..group };
                    self.estimated = true;
                    self.fingerprints.retain(|&(_, index)| index != i);
                    i
                }
            }
        };
        if let Some(fingerprint) = fingerprint {
            if self.fingerprints.len() >= MAX_FINGERPRINTS {
                self.fingerprints.clear();
            }
            self.fingerprints.push((fingerprint, position));
        }
        let group = &mut self.groups[position];
        group.count += 1;
        group.first_seen = group.first_seen.min(at);
        group.last_seen = group.last_seen.max(at);
        if let Some(version) = version {
            add_listed(&mut group.versions, &version);
        }
        if let Some(instance) = instance {
            add_listed(&mut group.instances, &instance);
        }
        group.examples.record(&span.trace_id, Outcome::Fault);
    }

    /// Adds the groups of `other` (another point, or another instance's), by key.
    pub fn merge(&mut self, other: &ExceptionTable) {
        self.estimated |= other.estimated;
        for group in &other.groups {
            match self.groups.iter_mut().find(|g| g.key == group.key) {
                Some(same) => same.merge(group),
                None => self.groups.push(group.clone()),
            }
        }
    }

    /// Heap bytes held (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<ExceptionGroup>()
            + self
                .groups
                .iter()
                .map(|g| {
                    g.key.type_name.len()
                        + g.key.message.len()
                        + g.key.frame.len()
                        + g.example_message.len()
                        + g.example_stack.len()
                        + g.versions.iter().chain(&g.instances).map(String::len).sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// What makes exceptions one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExceptionKey {
    /// `exception.type`.
    pub type_name: String,
    /// The message, templated.
    pub message: String,
    /// The first frame of the service's own code, as the stack trace writes it; empty without a
    /// stack trace.
    pub frame: String,
}

impl ExceptionKey {
    pub fn of(exception: &Exception) -> Self {
        Self {
            type_name: exception.type_name.clone(),
            message: template(&exception.message),
            frame: first_own_frame(&exception.stacktrace).unwrap_or_default(),
        }
    }

    /// A stable id: FNV-1a (64 bits) of the three parts, in hex.
    pub fn id(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [&self.type_name, &self.message, &self.frame] {
            for byte in part.bytes().chain(std::iter::once(0)) {
                hash ^= byte as u64;
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }
}

/// The variable parts of a message, in the order they are replaced: quoted strings, UUIDs,
/// hex-looking tokens (told apart from numbers in [`template`]) and numbers.
struct VariableParts {
    quoted: Regex,
    uuid: Regex,
    hex: Regex,
    number: Regex,
}

static VARIABLE_PARTS: LazyLock<VariableParts> = LazyLock::new(|| {
    let regex = |pattern: &str| Regex::new(pattern).expect("a valid pattern");
    VariableParts {
        quoted: regex(r#"'[^'\n]*'|"[^"\n]*"|`[^`\n]*`"#),
        uuid: regex(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        hex: regex(r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*\b"),
        number: regex(r"\d+(\.\d+)?"),
    }
});

/// A message with its numbers, UUIDs, hex ids and quoted strings replaced by `{n}`, `{uuid}`,
/// `{id}` and `{str}` (module docs).
pub fn template(message: &str) -> String {
    let parts = &*VARIABLE_PARTS;
    let text = parts.quoted.replace_all(message, "{str}");
    let text = parts.uuid.replace_all(&text, "{uuid}");
    // A hex id is `0x…`, or eight hex digits and more with a letter among them (and, by the
    // pattern, a digit: `deadbeef` is a word, `12345678` a number).
    let text = parts.hex.replace_all(&text, |found: &regex::Captures<'_>| {
        let token = &found[0];
        let prefixed = token.starts_with("0x") || token.starts_with("0X");
        let long_with_letters = token.len() >= 8 && token.bytes().any(|b| b.is_ascii_alphabetic());
        if prefixed || long_with_letters {
            "{id}".to_string()
        } else {
            token.to_string()
        }
    });
    parts.number.replace_all(&text, "{n}").into_owned()
}

/// Frames of libraries and runtimes, by what their line contains.
const LIBRARY_MARKERS: &[&str] = &[
    "site-packages/",
    "dist-packages/",
    "/usr/lib/",
    "/usr/local/lib/",
    "<frozen ",
    "node_modules/",
    "node:internal",
    "(internal/",
    "/go/pkg/mod/",
    "runtime/",
    "at java.",
    "at javax.",
    "at jdk.",
    "at sun.",
    "at com.sun.",
    "at kotlin.",
    "at scala.",
    // Spring's own packages; applications live under it too (org.springframework.samples).
    "at org.springframework.web.",
    "at org.springframework.boot.",
    "at org.springframework.jdbc.",
    "at org.springframework.dao.",
    "at org.springframework.orm.",
    "at org.springframework.data.",
    "at org.springframework.aop.",
    "at org.springframework.cglib.",
    "at org.springframework.transaction.",
    "at org.springframework.beans.",
    "at org.springframework.context.",
    "at org.springframework.core.",
    "at org.springframework.security.",
    "at org.springframework.http.",
    "at org.apache.",
    "at io.netty.",
    "at System.",
    "at Microsoft.",
];

/// The frames of a stack trace, innermost first, each as one line of text.
fn frames(stacktrace: &str) -> Vec<String> {
    let lines: Vec<&str> = stacktrace.lines().collect();
    // Python: `File "path", line N, in function`, the innermost last.
    let python: Vec<String> =
        lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("File \"")).map(str::to_string).collect();
    if !python.is_empty() {
        return python.into_iter().rev().collect();
    }
    // Java, .NET, Node.js, X-Ray: `at …`, the innermost first.
    let at: Vec<String> = lines.iter().map(|l| l.trim()).filter(|l| l.starts_with("at ")).map(str::to_string).collect();
    if !at.is_empty() {
        return at;
    }
    // Go: a function line, then its file on a tab-indented line, the innermost first.
    lines
        .windows(2)
        .filter(|pair| pair[1].starts_with('\t') && !pair[0].starts_with('\t') && pair[0].contains('('))
        .map(|pair| format!("{} {}", pair[0].trim(), pair[1].trim()))
        .collect()
}

/// The innermost frame of the service's own code (module docs); `None` without frames.
pub fn first_own_frame(stacktrace: &str) -> Option<String> {
    let frames = frames(stacktrace);
    let own = frames.iter().find(|frame| !LIBRARY_MARKERS.iter().any(|marker| frame.contains(marker)));
    own.or(frames.first()).cloned()
}

#[cfg(test)]
mod tests;
