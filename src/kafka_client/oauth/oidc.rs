//! Tokens from an OIDC provider with the OAuth 2.0 client-credentials grant (RFC 6749 §4.4), as
//! librdkafka's own `sasl.oauthbearer.method = oidc` gets them, from the same properties: a
//! `POST` of `grant_type=client_credentials` (and `scope`) to
//! `sasl.oauthbearer.token.endpoint.url`, the client id and secret in a Basic `Authorization`
//! header. The answer's `access_token` is the token; it expires at the JWT's `exp` claim, else
//! `expires_in` seconds after the request; its principal is the JWT's `sub`, else the client id.
//! An `https://` endpoint is trusted by `https.ca.location` (a PEM file), else by the system's CA
//! store.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::{Token, TokenError, TokenSource, FETCH_TIMEOUT};

/// Where the system's CA store is, on the usual distributions (the first that exists is read).
const SYSTEM_CA_FILES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// The OIDC properties of `[kafka.client]` (librdkafka's names).
#[derive(Clone)]
pub struct Settings {
    /// `sasl.oauthbearer.token.endpoint.url`.
    pub endpoint: String,
    /// `sasl.oauthbearer.client.id`.
    pub client_id: String,
    /// `sasl.oauthbearer.client.secret`: sent only to the endpoint.
    client_secret: String,
    /// `sasl.oauthbearer.scope`, space-separated, when given.
    pub scope: Option<String>,
    /// `https.ca.location`: the PEM file that trusts an `https://` endpoint; the system's CA
    /// store when not given.
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Settings {
    /// The settings `client` gives, or each missing or malformed property with why.
    pub fn from_client(client: &BTreeMap<String, String>) -> Result<Settings, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut required = |key: &str| match client.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            Some(value) => value.to_string(),
            None => {
                problems.push((key.to_string(), "is required with sasl.oauthbearer.method = \"oidc\"".to_string()));
                String::new()
            }
        };
        let client_id = required("sasl.oauthbearer.client.id");
        let client_secret = required("sasl.oauthbearer.client.secret");
        let endpoint = required("sasl.oauthbearer.token.endpoint.url");
        if !endpoint.is_empty() {
            if let Err(reason) = Target::parse(&endpoint) {
                problems.push(("sasl.oauthbearer.token.endpoint.url".into(), reason));
            }
        }
        let ca_file = client.get("https.ca.location").cloned();
        if let Some(file) = &ca_file {
            if let Err(reason) = roots(Some(file)) {
                problems.push(("https.ca.location".into(), reason));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let scope = client.get("sasl.oauthbearer.scope").cloned().filter(|s| !s.trim().is_empty());
        Ok(Settings { endpoint, client_id, client_secret, scope, ca_file })
    }
}

/// The endpoint's parts.
struct Target {
    https: bool,
    host: String,
    /// `host:port`.
    address: String,
    /// What goes in the `Host` header.
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Target, String> {
        let uri: Uri = endpoint.parse().map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{endpoint:?} must start with https:// (or http://)")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{endpoint:?} names no host"))?;
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Target {
            https,
            address: format!("{}:{port}", authority.host()),
            host,
            authority: authority.as_str().to_string(),
            path_and_query,
        })
    }
}

/// The CA certificates that trust an `https://` endpoint: `ca_file`'s, else the system's.
fn roots(ca_file: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let file = match ca_file {
        Some(file) => file.to_string(),
        None => SYSTEM_CA_FILES.iter().find(|f| std::path::Path::new(f).exists()).map(|f| f.to_string()).ok_or_else(
            || format!("no system CA store found (looked for {}): set https.ca.location", SYSTEM_CA_FILES.join(", ")),
        )?,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("cannot read {file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{file} is not a PEM file of certificates: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!("{file} holds no usable CA certificate"));
    }
    Ok(roots)
}

/// Fetches tokens with the client-credentials grant.
pub struct ClientCredentials {
    settings: Settings,
    /// For an `https://` endpoint.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl ClientCredentials {
    pub fn new(settings: Settings) -> Result<Self, TokenError> {
        let fail = |reason: String| TokenError::Oidc { endpoint: settings.endpoint.clone(), reason };
        let target = Target::parse(&settings.endpoint).map_err(fail)?;
        let tls = if target.https {
            let roots = roots(settings.ca_file.as_deref()).map_err(fail)?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| fail(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self { settings, tls })
    }

    async fn request(&self, now_ms: i64) -> Result<Token, String> {
        let target = Target::parse(&self.settings.endpoint)?;
        let form = token_request_body(self.settings.scope.as_deref());
        let credentials = format!("{}:{}", self.settings.client_id, self.settings.client_secret);
        let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
        let request = Request::post(target.path_and_query.as_str())
            .header(header::HOST, &target.authority)
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let stream = TcpStream::connect(&target.address).await.map_err(|e| format!("cannot connect: {e}"))?;
        let (status, body) = match &self.tls {
            Some(connector) => {
                let name =
                    ServerName::try_from(target.host.clone()).map_err(|_| format!("bad host {}", target.host))?;
                let stream = connector.connect(name, stream).await.map_err(|e| format!("TLS: {e}"))?;
                send(TokioIo::new(stream), request).await?
            }
            None => send(TokioIo::new(stream), request).await?,
        };
        if !status.is_success() {
            let said = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("answered {status}: {said}"));
        }
        token_of(&body, now_ms, &self.settings.client_id)
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self, now_ms: i64) -> Result<Token, TokenError> {
        let fail = |reason: String| TokenError::Oidc { endpoint: self.settings.endpoint.clone(), reason };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| fail(e.to_string()))?;
                    runtime
                        .block_on(async { tokio::time::timeout(FETCH_TIMEOUT, self.request(now_ms)).await })
                        .map_err(|_| TokenError::Timeout(FETCH_TIMEOUT))?
                        .map_err(fail)
                })
                .join()
                .unwrap_or_else(|_| Err(fail("the fetch panicked".into())))
        })
    }

    fn describe(&self) -> String {
        format!("OIDC client credentials of {} at {}", self.settings.client_id, self.settings.endpoint)
    }
}

async fn send<S>(io: S, request: Request<Full<Bytes>>) -> Result<(hyper::StatusCode, Bytes), String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// The body of a client-credentials token request (`application/x-www-form-urlencoded`).
fn token_request_body(scope: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    form.finish()
}

/// The token of a token endpoint's answer (module header).
fn token_of(body: &[u8], now_ms: i64, client_id: &str) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<f64>,
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<f64>,
        sub: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not the expected JSON: {e}"))?;
    let value = answer.access_token.filter(|t| !t.is_empty()).ok_or("the answer has no access_token")?;
    let claims: Option<Claims> = value.split('.').nth(1).and_then(|payload| {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&json).ok()
    });
    let (exp, sub) = claims.map_or((None, None), |c| (c.exp, c.sub));
    let expires_at_ms = match (exp, answer.expires_in) {
        (Some(exp), _) => (exp * 1000.0) as i64,
        (None, Some(seconds)) => now_ms + (seconds * 1000.0) as i64,
        (None, None) => return Err("the answer says neither when the token expires (JWT exp) nor expires_in".into()),
    };
    if expires_at_ms <= now_ms {
        return Err("the token has already expired".into());
    }
    let principal = sub.filter(|s| !s.is_empty()).unwrap_or_else(|| client_id.to_string());
    Ok(Token { value, principal, expires_at_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let part = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.signature", part(r#"{"alg":"RS256"}"#), part(claims))
    }

    #[test]
    fn the_jwt_says_expiry_and_principal_else_the_answer_and_the_client_id() {
        let now = 1_700_000_000_000;
        let token = jwt(r#"{"sub":"svc-tracewarden","exp":1700000600}"#);
        let answer = format!(r#"{{"access_token":"{token}","expires_in":60,"token_type":"Bearer"}}"#);
        let got = token_of(answer.as_bytes(), now, "client").unwrap();
        assert_eq!((got.principal.as_str(), got.expires_at_ms), ("svc-tracewarden", 1_700_000_600_000));
        let opaque = r#"{"access_token":"opaque","expires_in":300}"#;
        let got = token_of(opaque.as_bytes(), now, "client").unwrap();
        assert_eq!((got.principal.as_str(), got.expires_at_ms), ("client", now + 300_000));
        assert!(token_of(br#"{"access_token":"opaque"}"#, now, "c").is_err(), "no expiry at all");
        assert!(token_of(br#"{"error":"invalid_client"}"#, now, "c").is_err());
        let expired = jwt(r#"{"exp":1600000000}"#);
        assert!(token_of(format!(r#"{{"access_token":"{expired}"}}"#).as_bytes(), now, "c").is_err());
    }

    #[test]
    fn settings_name_what_is_missing_and_never_show_the_secret() {
        let client: BTreeMap<String, String> = [
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", "tracewarden"),
            ("sasl.oauthbearer.client.secret", "s3cr3t"),
            ("sasl.oauthbearer.token.endpoint.url", "ftp://idp/token"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let problems = Settings::from_client(&client).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "sasl.oauthbearer.token.endpoint.url");
        let mut good = client.clone();
        good.insert("sasl.oauthbearer.token.endpoint.url".into(), "https://idp.example:8443/realms/x/token".into());
        let settings = Settings::from_client(&good).unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        let target = Target::parse(&settings.endpoint).unwrap();
        assert_eq!(
            (target.https, target.address.as_str(), target.path_and_query.as_str()),
            (true, "idp.example:8443", "/realms/x/token")
        );
    }

    #[test]
    fn scopes_are_form_encoded() {
        assert_eq!(
            token_request_body(Some("kafka api://x/.default")),
            "grant_type=client_credentials&scope=kafka+api%3A%2F%2Fx%2F.default"
        );
        assert_eq!(token_request_body(None), "grant_type=client_credentials");
    }
}
