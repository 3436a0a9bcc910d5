//! What librdkafka would refuse in the clients' configuration, found before `run` (`check-config`
//! and every start): each client role's properties (`[kafka.client]` over tracewarden's own, as
//! [`super::consumer_config`] and [`super::with_client_properties`] build them) go through
//! librdkafka's own parser, then into a client made without brokers, which checks what only a
//! client checks — the SASL mechanism's provider, credentials that must come together,
//! certificate and key files. Nothing connects, and no token is fetched: the clients made here
//! have rdkafka's default context, which serves no token refresh.
//!
//! A problem names the property (`kafka.client.sasl.mechanisms`) when librdkafka's message lets
//! us tell which, and never quotes a secret's value ([`super::redact`]).

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

use super::{consumer_config, is_secret_property, redact, with_client_properties, KafkaConfig};
use crate::settings::Problem;

/// The problems librdkafka finds in the consumers' and the producers' configuration (module
/// header); each problem once, though both roles may report it.
pub fn client_problems(kafka: &KafkaConfig) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    let producer = with_client_properties(ClientConfig::new(), kafka, false);
    for (consumer, mut client) in [(true, consumer_config(kafka)), (false, producer)] {
        client.remove("bootstrap.servers");
        // librdkafka would log each refusal itself before returning it: the problem says it.
        client.set("log_level", "0");
        let found = match client.create_native_config() {
            Err(error) => Some(error),
            Ok(_) if consumer => client.create::<BaseConsumer>().err(),
            Ok(_) => client.create::<BaseProducer>().err(),
        };
        if let Some(problem) = found.map(|error| problem_of(error, kafka)) {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// Words of librdkafka's client-creation errors, and the properties they are about.
const MEANT: [(&str, &[&str]); 1] = [("SASL mechanism", &["sasl.mechanisms", "sasl.mechanism"])];

fn problem_of(error: KafkaError, kafka: &KafkaConfig) -> Problem {
    match redact(error) {
        KafkaError::ClientConfig(_, description, key, _) => {
            Problem { key: format!("kafka.client.{key}"), message: format!("librdkafka refuses it: {description}") }
        }
        other => {
            let message = other.to_string();
            // The property the message names, longest first ("sasl.oauthbearer.client.id" before
            // "sasl.oauthbearer"), else the section.
            let mut keys: Vec<&String> = kafka.client.keys().collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
            let named = keys.iter().find(|k| message.contains(k.as_str())).copied();
            // Messages that describe the property instead of naming it.
            let described = MEANT
                .iter()
                .filter(|(words, _)| message.contains(words))
                .flat_map(|(_, properties)| properties.iter())
                .find_map(|p| kafka.client.get_key_value(*p).map(|(k, _)| k));
            let key = named.or(described);
            let mut message = format!("librdkafka refuses the client configuration: {message}");
            for (k, v) in &kafka.client {
                if is_secret_property(k) && !v.is_empty() {
                    message = message.replace(v.as_str(), "[redacted]");
                }
            }
            Problem { key: key.map_or_else(|| "kafka.client".to_string(), |k| format!("kafka.client.{k}")), message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn problems(client: &str) -> Vec<Problem> {
        let config = Config::from_toml(&format!("[kafka]\nclient = {{ {client} }}\n"));
        match config {
            Ok(config) => client_problems(&config.kafka),
            Err(crate::config::ConfigError::Invalid(problems)) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn this_build_speaks_tls_scram_and_oauthbearer() {
        let features = ClientConfig::new().create_native_config().unwrap().get("builtin.features").unwrap();
        for feature in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(features.split(',').any(|f| f == feature), "librdkafka built without {feature}: {features}");
        }
    }

    #[test]
    fn secured_configurations_that_librdkafka_takes_are_valid() {
        for client in [
            r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "SCRAM-SHA-512", "sasl.username" = "u", "sasl.password" = "p""#,
            r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "PLAIN", "sasl.username" = "u", "sasl.password" = "p""#,
            r#""security.protocol" = "SSL""#,
            r#""security.protocol" = "SASL_PLAINTEXT", "sasl.mechanisms" = "SCRAM-SHA-256", "sasl.username" = "u", "sasl.password" = "p""#,
            r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "OAUTHBEARER", "sasl.oauthbearer.method" = "oidc", "sasl.oauthbearer.client.id" = "c", "sasl.oauthbearer.client.secret" = "s", "sasl.oauthbearer.token.endpoint.url" = "https://idp.example/token""#,
        ] {
            assert_eq!(problems(client), Vec::new(), "{client}");
        }
    }

    #[test]
    fn what_librdkafka_refuses_is_named_before_run() {
        let unknown = problems(r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "NO-SUCH-MECHANISM""#);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(unknown[0].key, "kafka.client.sasl.mechanisms", "{unknown:?}");
        assert!(unknown[0].message.contains("NO-SUCH-MECHANISM"), "{unknown:?}");
        let protocol = problems(r#""security.protocol" = "TLS""#);
        assert_eq!(protocol[0].key, "kafka.client.security.protocol", "{protocol:?}");
        let missing = problems(r#""security.protocol" = "SSL", "ssl.certificate.location" = "/no/such/cert.pem""#);
        assert!(missing.iter().any(|p| p.key.starts_with("kafka.client.ssl.")), "{missing:?}");
    }

    #[test]
    fn oauthbearer_needs_a_whole_token_source() {
        let none = problems(r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "OAUTHBEARER""#);
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(none[0].key == "kafka.client.sasl.mechanisms" && none[0].message.contains("token source"), "{none:?}");
        let half = problems(
            r#""sasl.mechanisms" = "OAUTHBEARER", "sasl.oauthbearer.method" = "oidc", "sasl.oauthbearer.client.secret" = "s3cret""#,
        );
        let keys: Vec<&str> = half.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["kafka.client.sasl.oauthbearer.client.id", "kafka.client.sasl.oauthbearer.token.endpoint.url"]
        );
        assert!(half.iter().all(|p| !p.to_string().contains("s3cret")), "{half:?}");
    }

    #[test]
    fn aws_msk_iam_takes_sasl_ssl_and_oauthbearer() {
        let parse = |text: &str| match Config::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(crate::config::ConfigError::Invalid(problems)) => problems,
            Err(other) => panic!("{other}"),
        };
        assert_eq!(parse("[kafka.aws_msk_iam]\nregion = \"eu-west-1\"\n"), Vec::new());
        let empty = parse("[kafka.aws_msk_iam]\nregion = \"\"\n");
        assert_eq!(empty[0].key, "kafka.aws_msk_iam.region", "{empty:?}");
        let plain = parse(
            "[kafka]\nclient = { \"sasl.mechanisms\" = \"PLAIN\" }\n[kafka.aws_msk_iam]\nregion = \"eu-west-1\"\n",
        );
        assert_eq!(plain[0].key, "kafka.client.sasl.mechanisms", "{plain:?}");
        let config = Config::from_toml("[kafka.aws_msk_iam]\nregion = \"eu-west-1\"\n").unwrap();
        let producer = crate::kafka_client::with_client_properties(ClientConfig::new(), &config.kafka, false);
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("sasl.mechanisms"), Some("OAUTHBEARER"));
    }

    #[test]
    fn a_refused_secret_is_never_quoted() {
        let refused = problems(
            r#""security.protocol" = "SSL", "ssl.key.pem" = "not-a-key-s3cret", "ssl.certificate.pem" = "not-a-cert""#,
        );
        assert!(!refused.is_empty(), "a key that is no key is refused");
        assert!(refused.iter().all(|p| !p.to_string().contains("s3cret")), "{refused:?}");
    }
}
