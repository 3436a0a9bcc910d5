//! Failures a person must act on, told apart from a broker that does not answer: the TLS
//! handshake failed (an untrusted or expired certificate, a host name the certificate does not
//! name, TLS spoken to a plaintext listener) or SASL authentication failed (a wrong password, a
//! mechanism the broker does not enable). librdkafka reports both as connection failures and
//! retries; [`super::ClientLog`] says them as what they are, once every few seconds, and
//! `/readyz` repeats the latest.

/// What a librdkafka failure line says went wrong with the connection's security, if anything.
pub fn security_failure(message: &str) -> Option<&'static str> {
    let text = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if any(&["certificate verify failed", "certificate has expired", "ssl handshake failed", "ssl: ", "tls handshake"])
    {
        Some("the TLS handshake with the broker failed")
    } else if any(&["sasl authentication", "authentication failed", "sasl handshake", "unsupported sasl mechanism"]) {
        Some("the broker refused the SASL authentication")
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
        assert_eq!(security_failure(tls), Some("the TLS handshake with the broker failed"));
        let sasl = "kafka:9096/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 5ms in state AUTH_REQ)";
        assert_eq!(security_failure(sasl), Some("the broker refused the SASL authentication"));
        let refused = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)";
        assert_eq!(security_failure(refused), None);
    }
}
