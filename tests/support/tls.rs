//! A real TLS listener for the tests: certificates made with the `openssl` command as an
//! operator would (a CA, the broker's certificate for `localhost`, a client certificate) and
//! Debian's `stunnel4` terminating TLS in front of a broker process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A client configuration reaching `brokers` with the security properties (TLS, SASL) every
/// client of a test sets.
pub fn client_config(brokers: &str, security: &[(String, String)]) -> rdkafka::ClientConfig {
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (key, value) in security {
        client.set(key, value);
    }
    client
}

/// A certificate authority and the certificates it signed, in one directory.
pub struct Certificates {
    pub ca: PathBuf,
    /// The broker's, for `localhost`: (certificate, key).
    pub server: (PathBuf, PathBuf),
    /// A client's: (certificate, key).
    pub client: (PathBuf, PathBuf),
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
pub fn certificates(dir: &Path) -> Certificates {
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
pub struct TlsListener {
    process: Child,
    log: PathBuf,
}

impl TlsListener {
    pub fn start(
        dir: &Path,
        accept: &str,
        connect: &str,
        server: &(PathBuf, PathBuf),
        client_ca: Option<&Path>,
    ) -> Self {
        let mut config = format!(
            "foreground = yes\npid =\ndebug = 5\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n[kafka]\naccept = {accept}\nconnect = {connect}\ncert = {}\nkey = {}\n",
            server.0.display(),
            server.1.display()
        );
        if let Some(ca) = client_ca {
            config += &format!("CAfile = {}\nverifyChain = yes\nrequireCert = yes\n", ca.display());
        }
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("stunnel.conf");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.join("stunnel.log")).unwrap();
        let process = Command::new("stunnel4")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("needs stunnel4 (Debian: apt-get install stunnel4)");
        let what = format!("stunnel to listen on {accept}: see {}", dir.join("stunnel.log").display());
        super::wait::wait_for(what, Duration::from_secs(10), || std::net::TcpStream::connect(accept).is_ok());
        TlsListener { process, log: dir.join("stunnel.log") }
    }

    /// How many TLS connections the listener has accepted (its own log says).
    pub fn accepted(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("accepted connection")).count()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
