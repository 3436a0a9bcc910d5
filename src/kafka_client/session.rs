//! What every librdkafka client of the process shares with the others: how they fare with the
//! brokers, said once ([`KafkaSession`]: a cluster that does not answer, or refuses the TLS
//! handshake or the SASL authentication, is one line every few seconds, not one per client and
//! connection attempt; `/readyz` repeats the latest refusal), and the OAUTHBEARER token source
//! of the process ([`super::oauth`]), asked by each client when its token is due. Every client
//! context tracewarden makes routes its logs, errors and token refreshes here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use std::ffi::CString;

use rdkafka::admin::AdminClient;
use rdkafka::client::OAuthToken;
use rdkafka::error::KafkaResult;
use rdkafka::ClientConfig;

use super::oauth::oidc::ClientCredentials;
use super::oauth::{msk_iam_source, oidc_settings, to_librdkafka, TokenError, TokenSource, Tokens};
use super::refusal::{self, Refusal};
use super::{is_unreachable, KafkaConfig};
use crate::clock::{Clock, SystemClock};
use crate::telemetry::RateLimitedWarning;

/// How often an unreachable cluster is reported.
const UNREACHABLE_EVERY: Duration = Duration::from_secs(5);
/// How long a refusal (failed TLS handshake or SASL authentication) is repeated by `/readyz`.
const REFUSAL_SHOWN_FOR: Duration = Duration::from_secs(30);

/// librdkafka's logs and global errors for every client of the process (see the module header).
pub struct KafkaSession {
    brokers: String,
    /// `security.protocol`, with the SASL mechanism when there is one: `SASL_SSL/SCRAM-SHA-512`.
    security: String,
    unreachable: Mutex<RateLimitedWarning>,
    refused: Mutex<RateLimitedWarning>,
    /// The latest refusal: when, which, and what it said.
    last_refusal: Mutex<Option<(crate::clock::Nanos, Refusal, String)>>,
    clock: SystemClock,
    /// The OAUTHBEARER token source, when the clients authenticate with one.
    tokens: Option<Tokens>,
}

impl KafkaSession {
    pub fn new(brokers: &str) -> Arc<Self> {
        Self::described(brokers, "PLAINTEXT".to_string())
    }

    /// The session of the clients `kafka` configures, naming their protocol and mechanism, with
    /// its OAUTHBEARER token source when one is configured.
    pub fn for_kafka(kafka: &KafkaConfig) -> Result<Arc<Self>, TokenError> {
        let protocol = kafka.security_protocol();
        let security =
            if protocol.starts_with("SASL") { format!("{protocol}/{}", kafka.sasl_mechanism()) } else { protocol };
        let source: Option<Box<dyn TokenSource>> = match (&kafka.aws_msk_iam, oidc_settings(&kafka.client)) {
            (Some(iam), _) => Some(msk_iam_source(iam)?),
            (None, Ok(Some(settings))) => Some(Box::new(ClientCredentials::new(settings)?)),
            // A half-given OIDC setting is a configuration problem, found before this.
            (None, _) => None,
        };
        let mut session = Self::bare(&kafka.brokers, security);
        session.tokens = source.map(Tokens::new);
        Ok(Arc::new(session))
    }

    fn described(brokers: &str, security: String) -> Arc<Self> {
        Arc::new(Self::bare(brokers, security))
    }

    fn bare(brokers: &str, security: String) -> Self {
        Self {
            brokers: brokers.to_string(),
            security,
            unreachable: Mutex::new(RateLimitedWarning::new(UNREACHABLE_EVERY)),
            refused: Mutex::new(RateLimitedWarning::new(UNREACHABLE_EVERY)),
            last_refusal: Mutex::new(None),
            clock: SystemClock::new(),
            tokens: None,
        }
    }

    /// Which OAUTHBEARER token source the clients use, if any (for the start-up log).
    pub fn token_source(&self) -> Option<String> {
        self.tokens.as_ref().map(Tokens::describe)
    }

    /// An admin client of this session. rdkafka's admin client never serves librdkafka's token
    /// refresh (it polls only its own results), so with OAUTHBEARER it is given a token at once;
    /// it is short-lived (topic creation), and the token outlives it.
    pub fn admin_client(self: &Arc<Self>, client: &ClientConfig) -> KafkaResult<AdminClient<LoggedContext>> {
        let admin: AdminClient<LoggedContext> = client.create_with_context(LoggedContext(self.clone()))?;
        let oauthbearer = client.get("sasl.mechanisms").or_else(|| client.get("sasl.mechanism"));
        if oauthbearer.is_some_and(|m| m.eq_ignore_ascii_case("OAUTHBEARER")) {
            if let Ok(token) = self.oauth_token() {
                set_token(admin.inner().native_ptr(), token);
            }
        }
        Ok(admin)
    }

    /// An OAUTHBEARER token for a client (`ClientContext::generate_oauth_token`); a failure is
    /// told as a refusal (one line every few seconds, and `/readyz`), and librdkafka asks again
    /// in 10 s.
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let fetched = match &self.tokens {
            Some(tokens) => tokens.token(&self.clock),
            None => Err(TokenError::NoSource),
        };
        match fetched {
            Ok(token) => Ok(to_librdkafka(token)),
            Err(error) => {
                let said = error.to_string();
                self.refused(Refusal::Token, &said);
                Err(said.into())
            }
        }
    }

    /// The brokers refuse this client (module [`refusal`]): one line every few seconds.
    fn refused(&self, refusal: Refusal, message: &str) {
        let now = self.clock.now();
        let cause = refusal.cause();
        let said = format!("{cause} ({}, brokers {}): {message}", self.security, self.brokers);
        *self.last_refusal.lock().expect("refusal lock") = Some((now, refusal, said));
        if let Some(suppressed) = self.refused.lock().expect("log limiter lock").admit(now) {
            tracing::error!(brokers = %self.brokers, security = %self.security, error = %message, repeats = suppressed, "{cause}: check the TLS and SASL settings in [kafka.client]; retrying");
        }
    }

    /// The latest refusal, if it is recent: why the brokers turn this instance away (`/readyz`).
    pub fn refusal(&self) -> Option<String> {
        self.recent_refusal().map(|(_, said)| said)
    }

    /// The latest refusal if it is recent and was a refused SASL authentication.
    pub fn authentication_refusal(&self) -> Option<String> {
        self.recent_refusal().filter(|(refusal, _)| *refusal == Refusal::Sasl).map(|(_, said)| said)
    }

    fn recent_refusal(&self) -> Option<(Refusal, String)> {
        let last = self.last_refusal.lock().expect("refusal lock");
        let (at, refusal, said) = last.as_ref()?;
        (self.clock.now().since(*at) < REFUSAL_SHOWN_FOR).then(|| (*refusal, said.clone()))
    }

    /// The brokers cannot be reached: one line every few seconds.
    /// Said only when no refusal is recent: "all brokers down" after a refused handshake or
    /// authentication is that refusal again, and the refusal says more.
    pub fn unreachable(&self, what: &str) {
        if self.refusal().is_some() {
            return;
        }
        let admitted = self.unreachable.lock().expect("log limiter lock").admit(self.clock.now());
        if let Some(suppressed) = admitted {
            tracing::warn!(brokers = %self.brokers, error = %what, repeats = suppressed, "Kafka unreachable; retrying until the brokers answer");
        }
    }

    /// A librdkafka log line (`ClientContext::log`).
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if let Some(refusal) = refusal::security_failure(message) {
            self.refused(refusal, message);
            return;
        }
        if matches!(facility, "FAIL" | "CONNECT" | "BROKERFAIL") || message.contains("Connection refused") {
            self.unreachable(message);
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    /// A librdkafka global error (`ClientContext::error`).
    pub fn error(&self, error: KafkaError, reason: &str) {
        if let Some(refusal) = refusal::security_failure(reason) {
            self.refused(refusal, reason);
        } else if is_unreachable(&error) {
            self.unreachable(reason);
        } else {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        }
    }
}

/// The context of a client with nothing of its own to react to: its librdkafka logs and global
/// errors go to the process's [`KafkaSession`] (once every few seconds while the brokers are down),
/// not to rdkafka's default context, which logs every one of them — hundreds a second while a
/// producer flushes without brokers.
#[derive(Clone)]
pub struct LoggedContext(pub Arc<KafkaSession>);

impl rdkafka::ClientContext for LoggedContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.log(level, facility, message);
    }

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.0.oauth_token()
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LoggedContext {}

/// Gives the client `native` its OAUTHBEARER token, as librdkafka's refresh callback would.
fn set_token(native: *mut rdkafka::bindings::rd_kafka_t, token: OAuthToken) {
    let (Ok(value), Ok(principal)) = (CString::new(token.token), CString::new(token.principal_name)) else { return };
    let mut error = [0 as std::ffi::c_char; 512];
    // SAFETY: `native` is a live client; the strings outlive the call, which copies them; the
    // error buffer's size is passed with it.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_oauthbearer_set_token(
            native,
            value.as_ptr(),
            token.lifetime_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if code != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: librdkafka wrote a NUL-terminated message into the buffer.
        let said = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
        tracing::warn!(error = %said, "the admin client refused its OAUTHBEARER token");
    }
}

impl rdkafka::producer::ProducerContext for LoggedContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}
