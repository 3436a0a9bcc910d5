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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use processes::{free_port, produce_traffic, Broker, Instance, OwnBroker};

/// A certificate authority and the certificates it signed, in one directory.
struct Certificates {
    ca: PathBuf,
    /// The broker's, for `localhost`: (certificate, key).
    server: (PathBuf, PathBuf),
    /// A client's: (certificate, key).
    client: (PathBuf, PathBuf),
}

fn openssl(args: &[&str], dir: &Path) {
    let made = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian: apt-get install openssl)");
    assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
}

/// A new CA in `dir`, and the certificates it signs for the broker (`localhost`) and a client.
fn certificates(dir: &Path) -> Certificates {
    std::fs::create_dir_all(dir).unwrap();
    const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let name = dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let ca_subject = format!("/CN=tracewarden test CA {name} {}", rand::random::<u32>());
    openssl(
        &[&["req", "-x509"][..], &EC, &["-days", "1", "-subj", &ca_subject, "-keyout", "ca.key", "-out", "ca.pem"]]
            .concat(),
        dir,
    );
    let sign = |role: &str, subject: &str, san: Option<&str>| -> (PathBuf, PathBuf) {
        let (key, csr, cert, ext) =
            (format!("{role}.key"), format!("{role}.csr"), format!("{role}.pem"), format!("{role}.ext"));
        openssl(&[&["req"][..], &EC, &["-subj", subject, "-keyout", &key, "-out", &csr]].concat(), dir);
        let mut args = vec!["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
        args.extend(["-days", "1", "-out", &cert]);
        if let Some(san) = san {
            std::fs::write(dir.join(&ext), format!("subjectAltName={san}\n")).unwrap();
            args.extend(["-extfile", &ext]);
        }
        openssl(&args, dir);
        (dir.join(cert), dir.join(key))
    };
    let server = sign("server", "/CN=localhost", Some("DNS:localhost"));
    let client = sign("client", "/CN=tracewarden", None);
    Certificates { ca: dir.join("ca.pem"), server, client }
}

/// stunnel terminating TLS on `accept` and forwarding to `connect`; with `client_ca`, it asks
/// for a client certificate signed by that CA (mutual TLS).
struct TlsListener {
    process: Child,
}

impl TlsListener {
    fn start(dir: &Path, accept: &str, connect: &str, server: &(PathBuf, PathBuf), client_ca: Option<&Path>) -> Self {
        let mut config = format!(
            "foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = {accept}\nconnect = {connect}\ncert = {}\nkey = {}\n",
            server.0.display(),
            server.1.display()
        );
        if let Some(ca) = client_ca {
            config += &format!("CAfile = {}\nverifyChain = yes\nrequireCert = yes\n", ca.display());
        }
        let file = dir.join("stunnel.conf");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.join("stunnel.log")).unwrap();
        let process = Command::new("stunnel4")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("needs stunnel4 (Debian: apt-get install stunnel4)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(accept).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel never listened on {accept}: see {}",
                dir.join("stunnel.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsListener { process }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

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
    for role in ["in", "out"] {
        broker.create_topic(&broker.topic(role), 2);
    }
    broker.create_topic(&broker.topic("dlq"), 1);
    let view: Vec<(&str, String)> = broker.group_view_settings("");
    let settings: Vec<(&str, &str)> = view.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let instance = Instance::spawn(broker, "instance", &settings);
    let sent = produce_traffic(broker, 50, 100, true).join().unwrap();
    let expected: BTreeSet<String> = sent.keys().cloned().collect();
    let out = broker.read_until(&broker.topic("out"), &expected, Duration::from_secs(90));
    let forwarded: BTreeSet<String> = out.into_iter().map(|(key, _)| key).collect();
    let missing: Vec<&String> = expected.difference(&forwarded).collect();
    assert!(
        missing.is_empty(),
        "{} of {} traces never came out: see {}",
        missing.len(),
        expected.len(),
        instance.log.display()
    );
    let ready = instance.get("/readyz").unwrap_or_default();
    assert!(ready.contains("\"ready\""), "ready over TLS: {ready}");
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = || std::fs::read_to_string(&instance.log).unwrap_or_default();
    let said = |log: &str| {
        log.lines().any(|l| {
            l.contains("the TLS handshake with the broker failed")
                && l.contains("certificate verify failed")
                && l.contains(brokers)
        })
    };
    while !said(&log()) {
        assert!(Instant::now() < deadline, "the log never said why, naming the broker: {}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let ready = instance.get("/readyz").unwrap_or_default();
    assert!(ready.contains("not ready"), "not ready without a trusted broker: {ready}");
    assert!(ready.contains("TLS handshake") && ready.contains("SSL"), "/readyz says why, with the protocol: {ready}");
    assert_eq!(instance.metric("tracewarden_spans_received_total"), 0.0);
}
