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
//! Invariants: a key is a pure function of the exception (the same on every instance, so groups
//! from every instance merge by key); its [`ExceptionKey::id`] is a stable hash of the key.

use std::sync::LazyLock;

use regex::Regex;

use crate::model::Exception;

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
    "at org.springframework.",
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
