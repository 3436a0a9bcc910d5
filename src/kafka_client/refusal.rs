//! Failures a person must act on, told apart from a broker that does not answer: the TLS
//! handshake failed (an untrusted or expired certificate, a host name the certificate does not
//! name, TLS spoken to a plaintext listener) or SASL authentication failed (a wrong password, a
//! mechanism the broker does not enable). librdkafka reports both as connection failures and
//! retries; [`super::KafkaSession`] says them as what they are, once every few seconds, and
//! `/readyz` repeats the latest. A refused SASL authentication that lasts is the one failure
//! `run` gives up on (exit 2, interfaces.md): retrying the same credentials cannot succeed.

/// How the brokers turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The TLS handshake failed: the broker's certificate is not trusted, has expired or names
    /// another host, the broker wants a client certificate, or it does not speak TLS.
    Tls,
    /// The broker refused the SASL authentication: wrong credentials, or a mechanism its
    /// listener does not enable.
    Sasl,
    /// No OAUTHBEARER token could be had from its source (the identity provider, AWS): nothing
    /// was sent to the brokers. Often passing (the provider is down), so never given up on.
    Token,
}

impl Refusal {
    /// What it means, as the log and `/readyz` say it.
    pub fn cause(self) -> &'static str {
        match self {
            Refusal::Tls => "the TLS handshake with the broker failed",
            Refusal::Sasl => "the broker refused the SASL authentication",
            Refusal::Token => "no OAUTHBEARER token could be had",
        }
    }
}

/// What a librdkafka failure line says went wrong with the connection's security, if anything.
pub fn security_failure(message: &str) -> Option<Refusal> {
    let text = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if any(&["failed to acquire sasl oauthbearer token", "oauthbearer token"]) {
        Some(Refusal::Token)
    } else if any(&[
        "certificate verify failed",
        "certificate has expired",
        "ssl handshake failed",
        "ssl: ",
        "tls handshake",
    ]) {
        Some(Refusal::Tls)
    } else if any(&[
        "sasl authentication",
        "authentication failed",
        "sasl handshake",
        "mechanism handshake failed",
        "unsupported sasl mechanism",
    ]) {
        Some(Refusal::Sasl)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_sasl_failures_are_told_apart_from_an_unreachable_broker() {
        // As librdkafka words them.
        let tls = "localhost:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 3ms in state SSL_HANDSHAKE)";
        assert_eq!(security_failure(tls), Some(Refusal::Tls));
        let sasl = "kafka:9096/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 5ms in state AUTH_REQ)";
        assert_eq!(security_failure(sasl), Some(Refusal::Sasl));
        let refused = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)";
        assert_eq!(security_failure(refused), None);
        // A mechanism the listener does not enable (Tansu closes the connection; Kafka answers
        // UNSUPPORTED_SASL_MECHANISM).
        let plain = "sasl_plaintext://127.0.0.1:9300/bootstrap: SASL PLAIN mechanism handshake failed: Local: Broker transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)";
        assert_eq!(security_failure(plain), Some(Refusal::Sasl));
        // AWS MSK IAM without the kafka-cluster:Connect permission.
        let iam = "b-1.cluster.kafka.eu-west-1.amazonaws.com:9098/bootstrap: SASL authentication error: [4f2c7a1e]: Access denied (after 298ms in state AUTH_REQ)";
        assert_eq!(security_failure(iam), Some(Refusal::Sasl));
        let token =
            "Failed to acquire SASL OAUTHBEARER token: the OIDC token endpoint https://idp/token: cannot connect";
        assert_eq!(security_failure(token), Some(Refusal::Token));
    }
}
