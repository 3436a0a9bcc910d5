//! tracewarden over TLS to a real broker: Tansu behind a real TLS listener (Debian's `stunnel4`),
//! with certificates the test makes with the `openssl` command as an operator would (a CA, the
//! broker's certificate for `localhost`, a client certificate). Every client tracewarden creates
//! goes through it: the workers' consumers and producers, the SLO and series groups, the admin
//! client. Checked: spans in, kept traces out, with mutual TLS; a broker certificate from a CA
//! the instance does not trust, or one for another host name, is never accepted, and the log and
//! `/readyz` say why.
//!
//! Needs `tansu`, `stunnel4` and `openssl` (scripts/test.sh installs them).

#[path = "support/processes.rs"]
mod processes;

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use processes::tls::{certificates, Certificates, TlsListener};
use processes::{explained, free_port, one_instance_forwards_every_trace, wait_for, Broker, Instance, OwnBroker};

/// A broker reached only over TLS at `localhost:{port}`, with mutual TLS, and the settings of a
/// client that trusts its CA and presents its client certificate.
struct SecuredBroker {
    broker: Broker,
    certificates: Certificates,
    _listener: TlsListener,
    _tansu: OwnBroker,
}

fn secured_broker(test: &str) -> SecuredBroker {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
    let certificates = certificates(&dir.join("pki"));
    let port = free_port();
    // Tansu tells clients to come back through the TLS listener.
    let tansu = OwnBroker::advertising(Some(&format!("localhost:{port}")));
    let listener = TlsListener::start(
        &dir,
        &format!("127.0.0.1:{port}"),
        &tansu.listen_addr(),
        &certificates.server,
        Some(&certificates.ca),
    );
    let security = vec![
        // `localhost` may resolve to ::1 first, where nothing listens.
        ("broker.address.family".to_string(), "v4".to_string()),
        ("security.protocol".to_string(), "SSL".to_string()),
        ("ssl.ca.location".to_string(), certificates.ca.display().to_string()),
        ("ssl.certificate.location".to_string(), certificates.client.0.display().to_string()),
        ("ssl.key.location".to_string(), certificates.client.1.display().to_string()),
    ];
    let broker =
        Broker { brokers: format!("localhost:{port}"), name: format!("{test}-{}", std::process::id()), security };
    SecuredBroker { broker, certificates, _listener: listener, _tansu: tansu }
}

/// Spans in and kept traces out through mutual TLS, every client of the instance over it.
#[test]
#[ignore = "needs tansu, stunnel4 and openssl: run scripts/test.sh"]
fn traces_flow_through_mutual_tls() {
    let secured = secured_broker("tls");
    let broker = &secured.broker;
    let _instance = one_instance_forwards_every_trace(broker);
    // Mutual TLS indeed: a client without its certificate is turned away by the listener.
    let mut anonymous = broker.client();
    anonymous.remove("ssl.certificate.location").remove("ssl.key.location");
    let consumer: BaseConsumer = anonymous.create().unwrap();
    assert!(
        consumer.fetch_metadata(None, Duration::from_secs(5)).is_err(),
        "a client without a certificate reads nothing"
    );
}

/// A broker certificate signed by a CA the instance does not trust: nothing is read, the
/// instance is not ready, and its log and `/readyz` say the certificate could not be verified.
#[test]
#[ignore = "needs tansu, stunnel4 and openssl: run scripts/test.sh"]
fn an_untrusted_broker_certificate_is_refused_and_said_so() {
    let secured = secured_broker("tls-untrusted");
    let elsewhere = certificates(&secured.certificates.ca.parent().unwrap().join("elsewhere"));
    let ca = elsewhere.ca.display().to_string();
    refused_and_said_so(&secured, &secured.broker.brokers, &ca);
}

/// The broker reached under a name its certificate does not carry (`127.0.0.1`, the certificate
/// names `localhost`): refused as an untrusted one is.
#[test]
#[ignore = "needs tansu, stunnel4 and openssl: run scripts/test.sh"]
fn a_host_name_the_certificate_does_not_name_is_refused_and_said_so() {
    let secured = secured_broker("tls-hostname");
    let by_address = secured.broker.brokers.replace("localhost", "127.0.0.1");
    refused_and_said_so(&secured, &by_address, &secured.certificates.ca.display().to_string());
}

/// An instance reaching `secured` at `brokers`, trusting `ca`: never reads, never ready, and
/// says why (the TLS handshake failed, naming the broker and the protocol).
fn refused_and_said_so(secured: &SecuredBroker, brokers: &str, ca: &str) {
    secured.broker.create_topic(&secured.broker.topic("in"), 1);
    let mut security = secured.broker.security.clone();
    for (key, value) in security.iter_mut() {
        if key == "ssl.ca.location" {
            *value = ca.to_string();
        }
    }
    let broker = Broker { brokers: brokers.to_string(), name: secured.broker.name.clone(), security };
    let instance = Instance::spawn(&broker, "refused", &[]);
    let log = || std::fs::read_to_string(&instance.log).unwrap_or_default();
    let said = |log: &str| {
        log.lines().any(|l| {
            l.contains("the TLS handshake with the broker failed")
                && l.contains("certificate verify failed")
                && l.contains(brokers)
        })
    };
    let what = explained(|| format!("the log to say why, naming the broker: {}", log()));
    wait_for(what, Duration::from_secs(30), || said(&log()));
    let ready = instance.get("/readyz").unwrap_or_default();
    assert!(ready.contains("not ready"), "not ready without a trusted broker: {ready}");
    assert!(ready.contains("TLS handshake") && ready.contains("SSL"), "/readyz says why, with the protocol: {ready}");
    assert_eq!(instance.metric("tracewarden_spans_received_total"), 0.0);
}
