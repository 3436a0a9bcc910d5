//! Secrets stay secret: which librdkafka properties hold one, and errors without their values.

use rdkafka::error::KafkaError;

/// Whether a librdkafka property holds a secret (a password, a key, a token): its value never
/// appears in a log line or an error.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "secret",
        "token",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore",
        "private.key",
    ]
    .iter()
    .any(|part| key.contains(part))
}

/// `error` without the value of a secret property: librdkafka's configuration errors quote the
/// value they refuse (`Client config error: … ssl.key.password <value>`).
pub fn redact(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, value) if is_secret_property(&key) => {
            let description = if value.is_empty() { description } else { description.replace(&value, "[redacted]") };
            KafkaError::ClientConfig(code, description, key, "[redacted]".into())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn configuration_errors_do_not_quote_secret_values() {
        // As librdkafka words a refused secret (no OpenSSL in the build).
        let refused = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cret\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "s3cret".into(),
        );
        let shown = redact(refused).to_string();
        assert!(
            !shown.contains("s3cret") && shown.contains("sasl.password") && shown.contains("[redacted]"),
            "{shown}"
        );
        // Other properties keep their value: it is what the user needs to see.
        let plain = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"SCRAM\" for configuration property \"sasl.mechanism\"".into(),
            "sasl.mechanism".into(),
            "SCRAM".into(),
        );
        assert!(redact(plain).to_string().contains("SCRAM"));
        for secret in ["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.keystore.password"] {
            assert!(is_secret_property(secret), "{secret}");
        }
        assert!(!is_secret_property("bootstrap.servers") && !is_secret_property("sasl.username"));
    }
}
