//! Trust defaults for TLS to the brokers (kafka.md "Security").
//!
//! librdkafka is built here with its own OpenSSL, whose built-in certificate directory is not the
//! system's: without a CA of the user's, a broker certificate signed by a public CA would not be
//! trusted. So, when a client speaks TLS (`security.protocol` = `SSL` | `SASL_SSL`) and names no
//! CA (`ssl.ca.location`, `ssl.ca.pem`, `ssl.ca.certificate.stores`), it trusts the system's CA
//! store (`ssl.ca.location = probe`: the usual paths of Debian, Red Hat, Alpine, macOS). A CA the
//! user names always wins. (The OIDC token endpoint is reached by tracewarden itself, which
//! trusts `https.ca.location` or the system's store: [`super::oauth::oidc`].)

use rdkafka::ClientConfig;

/// The system's CA store, as librdkafka finds it.
const PROBE: &str = "probe";

/// Adds the trust defaults of the module header to `client` (its user properties applied).
pub fn with_trust_defaults(client: &mut ClientConfig) {
    let speaks_tls =
        client.get("security.protocol").is_some_and(|p| matches!(p.to_ascii_uppercase().as_str(), "SSL" | "SASL_SSL"));
    let names_a_ca =
        ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"].iter().any(|k| client.get(k).is_some());
    if speaks_tls && !names_a_ca {
        client.set("ssl.ca.location", PROBE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(properties: &[(&str, &str)]) -> ClientConfig {
        let mut client = ClientConfig::new();
        for (k, v) in properties {
            client.set(*k, *v);
        }
        with_trust_defaults(&mut client);
        client
    }

    #[test]
    fn tls_without_a_ca_trusts_the_system_store_and_a_named_ca_wins() {
        assert_eq!(client(&[("security.protocol", "SASL_SSL")]).get("ssl.ca.location"), Some("probe"));
        assert_eq!(client(&[("security.protocol", "ssl")]).get("ssl.ca.location"), Some("probe"));
        let named = client(&[("security.protocol", "SSL"), ("ssl.ca.location", "/etc/kafka/ca.pem")]);
        assert_eq!(named.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        let pem = client(&[("security.protocol", "SSL"), ("ssl.ca.pem", "-----BEGIN CERTIFICATE-----")]);
        assert_eq!(pem.get("ssl.ca.location"), None);
        assert_eq!(client(&[("security.protocol", "SASL_PLAINTEXT")]).get("ssl.ca.location"), None);
        assert_eq!(client(&[]).get("ssl.ca.location"), None);
    }
}
