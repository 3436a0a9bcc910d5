//! tracewarden authenticating to a real broker with SASL: Tansu with `--authentication`, alone
//! (`SASL_PLAINTEXT`) or behind a real TLS listener (`SASL_SSL`, Debian's `stunnel4`). The SCRAM
//! users are made with Tansu's own `tansu user create`, and Tansu checks every SCRAM exchange
//! against them: a wrong password is refused. Tansu 0.6 does not offer PLAIN (its SASL library is
//! built with SCRAM and OAUTHBEARER only), so PLAIN is checked by librdkafka's own validation
//! (`check-config`) and not against a broker here; no broker that can be installed here accepts
//! an OAUTHBEARER token (tests/oidc.rs).
//!
//! Checked: spans in and kept traces out with SCRAM-SHA-256 and SCRAM-SHA-512, over plaintext
//! and over TLS, every client of the instance (and of the test) authenticating; a wrong password
//! ends `run` with exit 2 after a clear line naming the brokers, the mechanism and the broker's
//! answer, and `/readyz` said the same until then.
//!
//! Needs `tansu` (built with SQLite storage), `stunnel4` and `openssl` (scripts/test.sh installs
//! them).

#[path = "support/processes.rs"]
mod processes;

use std::path::PathBuf;
use std::time::Duration;

use processes::tls::{certificates, TlsListener};
use processes::{explained, free_port, one_instance_forwards_every_trace, wait_for, Broker, Instance, OwnBroker};

const USER: &str = "tracewarden";
const PASSWORD: &str = "correct horse battery staple";

/// A broker requiring SASL, with the user [`USER`] for `mechanism`, and the settings of a client
/// authenticating as that user; over TLS when `tls`.
struct SaslBroker {
    broker: Broker,
    _listener: Option<TlsListener>,
    _tansu: OwnBroker,
}

fn sasl_broker(test: &str, mechanism: &str, tls: bool) -> SaslBroker {
    let name = format!("{test}-{}", std::process::id());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
    let users = [(USER, PASSWORD, mechanism)];
    let (tansu, listener, mut security) = if tls {
        let certificates = certificates(&dir.join("pki"));
        let port = free_port();
        let tansu = OwnBroker::authenticating(Some(&format!("localhost:{port}")), &users);
        let accept = format!("127.0.0.1:{port}");
        let listener = TlsListener::start(&dir, &accept, &tansu.listen_addr(), &certificates.server, None);
        let transport = vec![
            ("broker.address.family".to_string(), "v4".to_string()),
            ("security.protocol".to_string(), "SASL_SSL".to_string()),
            ("ssl.ca.location".to_string(), certificates.ca.display().to_string()),
        ];
        (tansu, Some(listener), transport)
    } else {
        let tansu = OwnBroker::authenticating(None, &users);
        (tansu, None, vec![("security.protocol".to_string(), "SASL_PLAINTEXT".to_string())])
    };
    security.extend([
        ("sasl.mechanisms".to_string(), mechanism.to_string()),
        ("sasl.username".to_string(), USER.to_string()),
        ("sasl.password".to_string(), PASSWORD.to_string()),
    ]);
    let broker = Broker { brokers: tansu.brokers.clone(), name, security };
    SaslBroker { broker, _listener: listener, _tansu: tansu }
}

impl SaslBroker {
    /// The same broker, reached with one client property changed (a wrong password, another
    /// mechanism).
    fn with_client_property(&self, key: &str, value: &str) -> Broker {
        let mut security = self.broker.security.clone();
        for (k, v) in security.iter_mut() {
            if k == key {
                *v = value.to_string();
            }
        }
        Broker { brokers: self.broker.brokers.clone(), name: self.broker.name.clone(), security }
    }
}

/// Spans in and kept traces out, every client of one instance authenticating with `scram`.
fn traces_flow(test: &str, mechanism: &str, tls: bool) {
    let sasl = sasl_broker(test, mechanism, tls);
    let instance = one_instance_forwards_every_trace(&sasl.broker);
    let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
    assert!(!log.contains("refused the SASL"), "no refusal on the way: {log}");
}

#[test]
#[ignore = "needs tansu, stunnel4 and openssl: run scripts/test.sh"]
fn traces_flow_with_scram_sha_512_over_tls() {
    traces_flow("sasl-ssl-512", "SCRAM-SHA-512", true);
}

#[test]
#[ignore = "needs tansu: run scripts/test.sh"]
fn traces_flow_with_scram_sha_256() {
    traces_flow("sasl-256", "SCRAM-SHA-256", false);
}

/// A mechanism the broker does not enable (Tansu offers no PLAIN): said as a refused SASL
/// authentication naming the mechanism, and `run` gives up with exit 2.
#[test]
#[ignore = "needs tansu: run scripts/test.sh"]
fn a_mechanism_the_broker_does_not_enable_is_said_and_ends_run_with_exit_2() {
    let sasl = sasl_broker("sasl-plain", "SCRAM-SHA-512", false);
    sasl.broker.create_topic(&sasl.broker.topic("in"), 1);
    let broker = sasl.with_client_property("sasl.mechanisms", "PLAIN");
    let mut instance = Instance::spawn(&broker, "plain", &[]);
    let status = instance.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "run gives up on a mechanism the broker refuses: {log}");
    let said = log.lines().find(|l| l.contains("the broker refused the SASL authentication")).unwrap_or_default();
    assert!(said.contains("SASL_PLAINTEXT/PLAIN") && said.contains("PLAIN mechanism"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is never printed: {log}");
}

/// The right user with a wrong password: nothing is read, `/readyz` and one log line say the
/// broker refused the SASL authentication (naming brokers and mechanism), and `run` gives up
/// with exit 2 instead of retrying forever.
#[test]
#[ignore = "needs tansu: run scripts/test.sh"]
fn a_wrong_password_is_said_once_and_ends_run_with_exit_2() {
    let sasl = sasl_broker("sasl-wrong", "SCRAM-SHA-512", false);
    sasl.broker.create_topic(&sasl.broker.topic("in"), 1);
    let broker = sasl.with_client_property("sasl.password", "not the password");
    let mut instance = Instance::spawn(&broker, "refused", &[]);
    let log_file = instance.log.clone();
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let refusal = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("the broker refused the SASL authentication")
                    && l.contains("SCRAM-SHA-512")
                    && l.contains(&broker.brokers)
            })
            .count()
    };
    let mut ready = String::new();
    let what = explained(|| format!("the log to say the authentication was refused: {}", log()));
    wait_for(what, Duration::from_secs(30), || refusal(&log()) > 0);
    // Still waiting out the give-up: /readyz says why.
    if let Some(answer) = instance.get("/readyz") {
        ready = answer;
    }
    assert!(ready.contains("not ready") && ready.contains("refused the SASL authentication"), "/readyz: {ready}");
    assert!(ready.contains("SASL_PLAINTEXT/SCRAM-SHA-512"), "/readyz names protocol and mechanism: {ready}");
    assert!(!ready.contains("not the password"), "no password in /readyz: {ready}");
    let status = instance.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "run gives up on a refused authentication: {}", log());
    let log = log();
    assert!(!log.contains("not the password"), "the password is never printed: {log}");
    assert!(log.lines().count() < 40, "no flood of lines: {log}");
    assert!(!log.contains("Kafka unreachable"), "the refusal is not also called unreachable: {log}");
    let last = log.lines().rev().find(|l| l.contains("error")).unwrap_or_default();
    assert!(last.contains("refused the SASL authentication"), "the exit says why: {log}");
}
