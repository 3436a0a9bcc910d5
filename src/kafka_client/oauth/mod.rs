//! OAUTHBEARER tokens, fetched by tracewarden itself for every client of the process (kafka.md
//! "Connecting to secured Kafka"): from an OIDC provider with the client-credentials grant
//! ([`oidc`]: librdkafka's own property names in `[kafka.client]`, which this build of
//! librdkafka could not serve itself: it has no libcurl), or signed with AWS credentials for
//! MSK IAM ([`msk_iam`], `[kafka.aws_msk_iam]`).
//!
//! librdkafka asks each client's context for a token when the client first connects and again
//! at 80 % of the token's lifetime ([`super::KafkaSession::oauth_token`]). One token serves every
//! client until half of its lifetime has passed, so the dozen clients of an instance make one
//! request to the provider per refresh, not a dozen.
//!
//! Invariants: a token is never logged or shown; the client secret goes only to the token
//! endpoint; a fetch is bounded by [`FETCH_TIMEOUT`] and runs on a thread of its own (it is
//! asynchronous underneath, and the thread that polls a client may be inside a runtime).

#[cfg(feature = "aws-msk-iam")]
pub mod msk_iam;
pub mod oidc;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::OAuthToken;

use crate::clock::{Clock, Nanos};

/// How long one token fetch may take before the clients are told it failed (librdkafka then
/// asks again in 10 s).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// `[kafka.client]` properties tracewarden takes for its own OIDC client and never passes to
/// librdkafka.
pub const OIDC_PROPERTIES: [&str; 6] = [
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "https.ca.location",
];

/// `[kafka.aws_msk_iam]`: AWS MSK IAM authentication (kafka.md "Connecting to secured Kafka").
#[derive(Clone, Debug, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsMskIamConfig {
    /// The AWS region of the MSK cluster, such as `eu-west-1`. Required. Implies
    /// `security.protocol = SASL_SSL` and `sasl.mechanisms = OAUTHBEARER` (the cluster's IAM
    /// listener, port 9098).
    pub region: String,
}

/// Whether this build signs AWS MSK IAM tokens (cargo feature `aws-msk-iam`, on by default).
pub const MSK_IAM_BUILT: bool = cfg!(feature = "aws-msk-iam");

/// The token source of `[kafka.aws_msk_iam]`.
pub fn msk_iam_source(config: &AwsMskIamConfig) -> Result<Box<dyn TokenSource>, TokenError> {
    #[cfg(feature = "aws-msk-iam")]
    {
        Ok(Box::new(msk_iam::Signer::new(config)?))
    }
    #[cfg(not(feature = "aws-msk-iam"))]
    {
        Err(TokenError::MskIam {
            region: config.region.clone(),
            reason: "this build has no AWS MSK IAM support (cargo feature aws-msk-iam)".into(),
        })
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no OAUTHBEARER token source is configured: set sasl.oauthbearer.method = \"oidc\" with its client id, secret and token endpoint in [kafka.client], or [kafka.aws_msk_iam]")]
    NoSource,
    #[error("the OIDC token endpoint {endpoint}: {reason}")]
    Oidc { endpoint: String, reason: String },
    #[error("cannot sign an AWS MSK IAM token for {region}: {reason}")]
    MskIam { region: String, reason: String },
    #[error("the token fetch took longer than {0:?}")]
    Timeout(Duration),
}

/// A token and what the brokers need to know of it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    /// The principal it stands for (the JWT's `sub`, or the client id).
    pub principal: String,
    /// When it stops being valid, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Where tokens come from: [`oidc::ClientCredentials`] or [`msk_iam::Signer`].
pub trait TokenSource: Send + Sync {
    /// A new token; `now_ms` is the time in milliseconds since the Unix epoch.
    fn fetch(&self, now_ms: i64) -> Result<Token, TokenError>;
    /// Which provider, for the log (no secret).
    fn describe(&self) -> String;
}

/// The process's token source and the token it last handed out.
pub struct Tokens {
    source: Box<dyn TokenSource>,
    /// The token handed out last, with when it was fetched.
    cached: Mutex<Option<(Nanos, Token)>>,
}

impl Tokens {
    pub fn new(source: Box<dyn TokenSource>) -> Self {
        Self { source, cached: Mutex::new(None) }
    }

    /// Which provider, for the log.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// A token with at least half of its lifetime left: the cached one, else a new one. Clients
    /// asking at once wait for one fetch.
    pub fn token(&self, clock: &dyn Clock) -> Result<Token, TokenError> {
        let mut cached = self.cached.lock().expect("token cache lock");
        let now = clock.now();
        if let Some((fetched, token)) = cached.as_ref() {
            if fresh_enough(*fetched, token, now) {
                return Ok(token.clone());
            }
        }
        let token = self.source.fetch(millis(now))?;
        *cached = Some((now, token.clone()));
        Ok(token)
    }
}

/// Whether `token`, fetched at `fetched`, still has at least half of its lifetime at `now`.
fn fresh_enough(fetched: Nanos, token: &Token, now: Nanos) -> bool {
    let (fetched, now) = (millis(fetched), millis(now));
    let lifetime = token.expires_at_ms - fetched;
    lifetime > 0 && token.expires_at_ms - now > lifetime / 2
}

fn millis(at: Nanos) -> i64 {
    (at.0 / 1_000_000) as i64
}

/// librdkafka's form of `token`.
pub fn to_librdkafka(token: Token) -> OAuthToken {
    OAuthToken { token: token.value, principal_name: token.principal, lifetime_ms: token.expires_at_ms }
}

/// The OIDC settings among `[kafka.client]`'s properties, when `sasl.oauthbearer.method` is
/// `oidc`; the problems of a half-given OIDC setting (`(property, message)`).
pub fn oidc_settings(client: &BTreeMap<String, String>) -> Result<Option<oidc::Settings>, Vec<(String, String)>> {
    let method = client.get("sasl.oauthbearer.method").map(|m| m.to_ascii_lowercase());
    let stray: Vec<(String, String)> = OIDC_PROPERTIES[1..]
        .iter()
        .filter(|p| client.contains_key(**p) && method.as_deref() != Some("oidc"))
        .map(|p| (p.to_string(), "is read only with sasl.oauthbearer.method = \"oidc\"".to_string()))
        .collect();
    match method.as_deref() {
        None | Some("default") if stray.is_empty() => Ok(None),
        None | Some("default") => Err(stray),
        Some("oidc") => oidc::Settings::from_client(client).map(Some),
        Some(other) => Err(vec![(
            "sasl.oauthbearer.method".into(),
            format!("{other:?} is not a method: \"oidc\" (client credentials), or leave it out"),
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::clock::ManualClock;

    #[test]
    fn a_token_serves_until_half_its_lifetime_has_passed() {
        let token = |expires_at_ms| Token { value: "t".into(), principal: "p".into(), expires_at_ms };
        let at = |ms: u64| Nanos(ms * 1_000_000);
        // Fetched at 1 000 ms, valid until 61 000 ms: fresh until 31 000 ms.
        assert!(fresh_enough(at(1_000), &token(61_000), at(30_999)));
        assert!(!fresh_enough(at(1_000), &token(61_000), at(31_000)));
        assert!(!fresh_enough(at(1_000), &token(500), at(1_000)), "already expired when fetched");
    }

    /// A source counting its fetches, each token valid 60 s.
    struct Counting(Arc<AtomicUsize>);

    impl TokenSource for Counting {
        fn fetch(&self, now_ms: i64) -> Result<Token, TokenError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Token { value: "t".into(), principal: "p".into(), expires_at_ms: now_ms + 60_000 })
        }

        fn describe(&self) -> String {
            "counting".into()
        }
    }

    #[test]
    fn many_clients_asking_make_one_fetch_per_refresh() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let tokens = Tokens::new(Box::new(Counting(fetches.clone())));
        let clock = ManualClock::new(Nanos(1_000_000_000_000));
        for _ in 0..12 {
            tokens.token(&clock).unwrap();
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(29));
        tokens.token(&clock).unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "more than half of the lifetime left");
        clock.advance(Duration::from_secs(2));
        tokens.token(&clock).unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "refetched past half of the lifetime");
    }

    #[test]
    fn oidc_properties_are_read_only_with_the_oidc_method() {
        let client = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(matches!(oidc_settings(&client(&[])), Ok(None)));
        let stray = oidc_settings(&client(&[("sasl.oauthbearer.client.id", "x")])).unwrap_err();
        assert_eq!(stray[0].0, "sasl.oauthbearer.client.id");
        let unknown = oidc_settings(&client(&[("sasl.oauthbearer.method", "magic")])).unwrap_err();
        assert_eq!(unknown[0].0, "sasl.oauthbearer.method");
        let half = oidc_settings(&client(&[("sasl.oauthbearer.method", "oidc")])).unwrap_err();
        let named: Vec<&str> = half.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            named,
            ["sasl.oauthbearer.client.id", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.token.endpoint.url"]
        );
    }
}
