//! OAUTHBEARER tokens from a real OAuth 2.0 server: `oauth2-mock-server` (npm, pinned in
//! tests/identity-provider), serving HTTPS with a certificate the test makes. It grants any client
//! (it checks no secret) and signs real JWTs with `exp`. Checked: tracewarden's OIDC client gets a
//! token with the client-credentials grant, sends the scope, takes the expiry from the JWT, trusts
//! the endpoint only through the CA it is given; and `tracewarden run`'s clients ask for it and
//! offer it to a broker.
//!
//! No broker that can be installed here accepts OAUTHBEARER: Tansu 0.6 offers the mechanism but
//! refuses every token (its `tansu-auth` validates only PLAIN and SCRAM), so the end-to-end test
//! shows the token reaching the broker's SASL exchange and the refusal said for what it is.
//!
//! Needs node/npm (scripts/test.sh installs the package), `openssl`, and `tansu` for the last test.

#[path = "support/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use tracewarden::kafka_client::oauth::oidc::{ClientCredentials, Settings};
use tracewarden::kafka_client::oauth::TokenSource;

use processes::tls::certificates;
use processes::{explained, free_port, wait_for, wait_until, Broker, Instance, OwnBroker};

/// The identity provider, listening until dropped.
struct IdentityProvider {
    process: Child,
    /// `https://localhost:{port}/token`.
    token_endpoint: String,
    log: PathBuf,
}

impl IdentityProvider {
    /// Serves HTTPS with `server` (certificate, key) on a free port, tokens valid an hour.
    fn start(dir: &std::path::Path, server: &(PathBuf, PathBuf)) -> Self {
        let bin = format!("{PACKAGE}/node_modules/.bin/oauth2-mock-server");
        let port = free_port();
        let log = dir.join("identity-provider.log");
        let process = Command::new(installed(&bin))
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(&server.0)
            .arg("-k")
            .arg(&server.1)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        Self::listening(process, port, log)
    }

    /// The same server with tokens valid `lifetime` seconds (tests/identity-provider/short-lived.mjs),
    /// logging each token it issues.
    fn short_lived(dir: &std::path::Path, server: &(PathBuf, PathBuf), lifetime: u32) -> Self {
        installed(&format!("{PACKAGE}/node_modules/.bin/oauth2-mock-server"));
        let log = dir.join("identity-provider.log");
        let process = Command::new("node")
            .arg(format!("{PACKAGE}/short-lived.mjs"))
            .arg(&server.0)
            .arg(&server.1)
            .arg(lifetime.to_string())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let said = || std::fs::read_to_string(&log).unwrap_or_default();
        let what = explained(|| format!("the identity provider to say where it listens: {}", said()));
        let port = wait_until(what, Duration::from_secs(20), || {
            said().lines().find_map(|l| l.strip_prefix("listening ")?.trim().parse::<u16>().ok())
        });
        Self::listening(process, port, log)
    }

    fn listening(process: Child, port: u16, log: PathBuf) -> Self {
        let what = format!("the identity provider to listen: see {}", log.display());
        wait_for(what, Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        IdentityProvider { process, token_endpoint: format!("https://localhost:{port}/token"), log }
    }

    /// The tokens issued so far (short-lived server): (issued, expires), in ms since the epoch.
    fn issued(&self) -> Vec<(i64, i64)> {
        let said = std::fs::read_to_string(&self.log).unwrap_or_default();
        said.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                match (words.next(), words.next(), words.next(), words.next()) {
                    (Some("issued"), Some(at), Some("expires"), Some(end)) => {
                        Some((at.parse().ok()?, end.parse().ok()?))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/identity-provider");

/// `bin`, which must exist.
fn installed(bin: &str) -> &str {
    assert!(
        std::path::Path::new(bin).exists(),
        "oauth2-mock-server is not installed: npm ci --prefix tests/identity-provider (scripts/test.sh does)"
    );
    bin
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn dir(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()))
}

fn oidc_properties(endpoint: &str, ca: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("sasl.oauthbearer.method", "oidc".into()),
        ("sasl.oauthbearer.client.id", "tracewarden".into()),
        ("sasl.oauthbearer.client.secret", "the-client-secret".into()),
        ("sasl.oauthbearer.token.endpoint.url", endpoint.into()),
        ("sasl.oauthbearer.scope", "kafka".into()),
        ("https.ca.location", ca.display().to_string()),
    ]
}

fn client_credentials(properties: &[(&str, String)]) -> ClientCredentials {
    let client: BTreeMap<String, String> = properties.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    ClientCredentials::new(Settings::from_client(&client).unwrap()).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
#[ignore = "needs node and oauth2-mock-server: run scripts/test.sh"]
fn a_token_comes_from_the_identity_provider_with_the_client_credentials_grant() {
    let dir = dir("oidc-token");
    let pki = certificates(&dir.join("pki"));
    let idp = IdentityProvider::start(&dir, &pki.server);
    let source = client_credentials(&oidc_properties(&idp.token_endpoint, &pki.ca));
    let before = now_ms();
    let token = source.fetch(before).unwrap_or_else(|e| panic!("{e}: see {}", idp.log.display()));
    let payload = token.value.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["scope"], "kafka", "the scope was asked for: {claims}");
    let exp = claims["exp"].as_i64().expect("exp") * 1000;
    assert_eq!(token.expires_at_ms, exp, "the expiry is the JWT's");
    assert!(exp > before, "not expired");
    assert_eq!(token.principal, "tracewarden", "no sub claim: the client id");
}

#[test]
#[ignore = "needs node and oauth2-mock-server: run scripts/test.sh"]
fn an_identity_provider_the_ca_does_not_vouch_for_is_not_asked() {
    let dir = dir("oidc-untrusted");
    let pki = certificates(&dir.join("pki"));
    let other = certificates(&dir.join("other"));
    let idp = IdentityProvider::start(&dir, &pki.server);
    let source = client_credentials(&oidc_properties(&idp.token_endpoint, &other.ca));
    let refused = source.fetch(now_ms()).err().expect("an untrusted endpoint gives no token").to_string();
    assert!(refused.contains(&idp.token_endpoint) && refused.contains("TLS"), "{refused}");
    assert!(!refused.contains("the-client-secret"), "{refused}");
}

/// `tracewarden run` on Tansu requiring authentication, its clients taking OAUTHBEARER tokens
/// from `idp` (trusted through `ca`).
fn oauthbearer_instance(test: &str, idp: &IdentityProvider, ca: &std::path::Path) -> (Instance, OwnBroker) {
    let tansu = OwnBroker::authenticating(None, &[]);
    let mut security: Vec<(String, String)> =
        vec![("security.protocol".into(), "SASL_PLAINTEXT".into()), ("sasl.mechanisms".into(), "OAUTHBEARER".into())];
    security.extend(oidc_properties(&idp.token_endpoint, ca).into_iter().map(|(k, v)| (k.to_string(), v)));
    let broker = Broker { brokers: tansu.brokers.clone(), name: format!("{test}-{}", std::process::id()), security };
    (Instance::spawn(&broker, "oauthbearer", &[]), tansu)
}

/// `tracewarden run` with OAUTHBEARER from the identity provider: every client asks
/// tracewarden's token source, the token reaches the broker's SASL exchange (Tansu refuses it:
/// module header), and the log says the broker refused the authentication, not that no token
/// could be had; the secret is never printed.
#[test]
#[ignore = "needs node, oauth2-mock-server and tansu: run scripts/test.sh"]
fn run_offers_the_providers_token_to_the_broker() {
    let dir = dir("oidc-run");
    let pki = certificates(&dir.join("pki"));
    let idp = IdentityProvider::start(&dir, &pki.server);
    let (mut instance, _tansu) = oauthbearer_instance("oidc-run", &idp, &pki.ca);
    let log = || std::fs::read_to_string(&instance.log).unwrap_or_default();
    let what = explained(|| format!("the broker's refusal to be said: {}", log()));
    wait_for(what, Duration::from_secs(30), || log().contains("the broker refused the SASL authentication"));
    let said = log();
    assert!(said.contains("OAUTHBEARER tokens come from") && said.contains(&idp.token_endpoint), "{said}");
    assert!(said.contains("SASL_PLAINTEXT/OAUTHBEARER"), "the refusal names the mechanism: {said}");
    assert!(!said.contains("no OAUTHBEARER token could be had"), "the token was had: {said}");
    assert!(!said.contains("the-client-secret"), "the secret is never printed: {said}");
    instance.kill9();
}

/// Tokens valid 6 s: `run`'s clients come back for a new one before the last expires, every
/// client of the instance on one token at a time (one request per refresh, not one per client).
#[test]
#[ignore = "needs node, oauth2-mock-server and tansu: run scripts/test.sh"]
fn tokens_are_refreshed_before_they_expire() {
    let dir = dir("oidc-refresh");
    let pki = certificates(&dir.join("pki"));
    let idp = IdentityProvider::short_lived(&dir, &pki.server, 6);
    let (mut instance, _tansu) = oauthbearer_instance("oidc-refresh", &idp, &pki.ca);
    // Three tokens issued, as the identity provider logs them: two refreshes, so the wait lasts
    // about two token lifetimes (6 s each), which is what is under test.
    let what = explained(|| format!("3 tokens issued: {:?} (see {})", idp.issued(), instance.log.display()));
    wait_for(what, Duration::from_secs(30), || idp.issued().len() >= 3);
    instance.kill9();
    let issued = idp.issued();
    // The identity provider's own timestamps: a new token is asked for only once the last one
    // has passed half its lifetime (kafka_client/oauth `Tokens`), so every client of the
    // instance shares it: a token per client would be issued at once.
    for pair in issued.windows(2) {
        let ((issued_at, expires), (next, _)) = (pair[0], pair[1]);
        assert!(next < expires, "a token was fetched only after the last one expired: {issued:?}");
        assert!(
            next >= issued_at + (expires - issued_at) / 2,
            "a token fetched before half the last one's lifetime: {issued:?}"
        );
    }
}
