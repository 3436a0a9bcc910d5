//! Who may read the HTTP endpoints (`[http]` `bearer_token`, `basic_username` and
//! `basic_password`, `open_paths`, `max_query_bytes`): the API serves trace data, and span
//! attributes may hold personal data.
//!
//! Invariants:
//! - with no credentials configured every path is open (the default, on a loopback address);
//! - with credentials, a request is served only when it carries one of them, except on the open
//!   paths and the console's own files (`/`, `/console/*`: embedded, static, no data — the console
//!   asks for the token and sends it with each API call);
//! - credentials are compared in constant time, and a refusal (401, `WWW-Authenticate` naming the
//!   schemes accepted) never says which part was wrong;
//! - a query string longer than `max_query_bytes` is refused (414) before any handler reads it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;

use super::HttpConfig;
use crate::settings::Secret;

/// The access rules of one listener, parsed once from `[http]`.
#[derive(Debug)]
pub struct Access {
    bearer: Option<Secret>,
    /// The `Authorization: Basic` credentials expected: base64 of `user:password`.
    basic: Option<Secret>,
    open_paths: Vec<String>,
    max_query_bytes: usize,
}

impl Access {
    pub fn new(config: &HttpConfig) -> Self {
        let basic = match (&config.basic_username, &config.basic_password) {
            (Some(user), Some(password)) => Some(Secret::new(
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose())),
            )),
            _ => None,
        };
        Self {
            bearer: config.bearer_token.clone(),
            basic,
            open_paths: config.open_paths.clone(),
            max_query_bytes: config.max_query_bytes,
        }
    }

    /// Only `bearer` (when given) on every path: what the receivers ask of SDKs, as the
    /// Collector's `bearertokenauth` does.
    pub fn bearer_only(bearer: Option<Secret>) -> Self {
        Self { bearer, basic: None, open_paths: Vec::new(), max_query_bytes: 8192 }
    }

    /// Whether a request with these headers may go on (always, when no credentials are asked).
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        !self.asks_credentials() || self.admits(headers)
    }

    fn asks_credentials(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    fn is_open(&self, path: &str) -> bool {
        path == "/" || path.starts_with("/console/") || self.open_paths.iter().any(|open| open == path)
    }

    /// Whether `headers` carry one of the accepted credentials.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let (scheme, value) = given.split_once(' ').unwrap_or((given, ""));
        let expected = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => &self.bearer,
            "basic" => &self.basic,
            _ => return false,
        };
        expected.as_ref().is_some_and(|secret| constant_time_eq(secret.expose().as_bytes(), value.trim().as_bytes()))
    }

    /// The `WWW-Authenticate` challenge of a refusal.
    fn challenge(&self) -> HeaderValue {
        let schemes: Vec<&str> = [
            self.bearer.as_ref().map(|_| "Bearer realm=\"tracewarden\""),
            self.basic.as_ref().map(|_| "Basic realm=\"tracewarden\", charset=\"UTF-8\""),
        ]
        .into_iter()
        .flatten()
        .collect();
        HeaderValue::from_str(&schemes.join(", ")).expect("ASCII challenge")
    }
}

/// Equal contents, in a time that depends on the lengths only.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// The middleware applying [`Access`] to every request.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let query_bytes = request.uri().query().map_or(0, str::len);
    if query_bytes > access.max_query_bytes {
        let error =
            format!("query string of {query_bytes} bytes: at most {} (http.max_query_bytes)", access.max_query_bytes);
        return (StatusCode::URI_TOO_LONG, Json(serde_json::json!({ "error": error }))).into_response();
    }
    if access.asks_credentials() && !access.is_open(request.uri().path()) && !access.admits(request.headers()) {
        let body = Json(serde_json::json!({ "error": "credentials required: see [http] bearer_token" }));
        let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, access.challenge());
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(toml: &str) -> Access {
        let config: HttpConfig = toml::from_str(toml).unwrap();
        Access::new(&config)
    }

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn only_the_configured_credentials_are_admitted() {
        let access = access("bearer_token = \"t0ken\"\nbasic_username = \"sre\"\nbasic_password = \"pa:ss\"\n");
        assert!(access.admits(&with("Bearer t0ken")));
        assert!(access.admits(&with("bearer t0ken")), "the scheme is case-insensitive");
        // base64("sre:pa:ss"), as curl -u sre:pa:ss sends it.
        assert!(access.admits(&with("Basic c3JlOnBhOnNz")));
        for refused in ["Bearer t0ke", "Bearer t0ken2", "Bearer", "t0ken", "Basic c3JlOnBhOnN", "Digest t0ken"] {
            assert!(!access.admits(&with(refused)), "{refused}");
        }
        assert!(!access.admits(&HeaderMap::new()));
        let challenge = access.challenge();
        assert_eq!(challenge, "Bearer realm=\"tracewarden\", Basic realm=\"tracewarden\", charset=\"UTF-8\"");
    }

    #[test]
    fn probes_and_the_console_files_are_open_the_data_is_not() {
        let access = access("bearer_token = \"t0ken\"\n");
        assert!(access.asks_credentials());
        for open in ["/", "/console/app.js", "/healthz", "/readyz"] {
            assert!(access.is_open(open), "{open}");
        }
        for closed in ["/metrics", "/api/services", "/api/traces/abc", "/healthz/x", "/consolex"] {
            assert!(!access.is_open(closed), "{closed}");
        }
        let scraped = self::access("bearer_token = \"t0ken\"\nopen_paths = [\"/healthz\", \"/metrics\"]\n");
        assert!(scraped.is_open("/metrics") && !scraped.is_open("/readyz"));
        assert!(!self::access("").asks_credentials(), "no credentials configured: nothing asked");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let access =
            access("bearer_token = \"t0ken-value\"\nbasic_username = \"sre\"\nbasic_password = \"pa55word\"\n");
        let shown = format!("{access:?}");
        assert!(!shown.contains("t0ken-value") && !shown.contains("pa55word"), "{shown}");
        let config: HttpConfig = toml::from_str("bearer_token = \"t0ken-value\"\n").unwrap();
        assert!(!format!("{config:?}").contains("t0ken-value"));
    }
}
