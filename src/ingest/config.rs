//! `[ingest.otlp]` and `[ingest.xray]`: the receivers that take spans straight from SDKs onto
//! Kafka (ingest.md "Receivers"). Off unless their section is present; each default next to its
//! field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{HumanDuration, Problem, Secret};

/// `[ingest]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// `[ingest.otlp]`: OTLP/gRPC and OTLP/HTTP from SDKs. Off when absent.
    #[serde(default)]
    pub otlp: Option<OtlpIngestConfig>,
    /// `[ingest.xray]`: X-Ray daemon datagrams from X-Ray SDKs. Off when absent.
    #[serde(default)]
    pub xray: Option<XrayIngestConfig>,
}

/// `[ingest.otlp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpIngestConfig {
    /// Address of OTLP/gRPC `TraceService/Export` (gzip allowed). Default `127.0.0.1:4317`.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// Address of OTLP/HTTP `POST /v1/traces` (protobuf or JSON, gzip allowed). Default
    /// `127.0.0.1:4318`.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Topic the spans are written to, one message per trace keyed by its 32-hex id, in the
    /// encoding received. Default: the first input topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Largest request body accepted, after decompression, in bytes; larger gets 413. Default
    /// 16 MiB; at least 1 KiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// How long a request waits for the brokers to acknowledge its spans before it is answered
    /// 503 (the client retries). Default `10s`.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: HumanDuration,
    /// Bytes of requests (as split into Kafka messages) that may wait for the brokers at once,
    /// across both OTLP receivers and the X-Ray one; a request that would pass it is answered 503
    /// at once (back-pressure: memory stays bounded when Kafka is slow). Default 64 MiB; at least
    /// `max_request_bytes`.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// A token every request must carry (`Authorization: Bearer <token>`; gRPC: the
    /// `authorization` metadata), as the Collector's `bearertokenauth` asks; else 401 /
    /// `UNAUTHENTICATED`. Default none. From the environment:
    /// `TRACEWARDEN__INGEST__OTLP__BEARER_TOKEN`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// With `tls_key_file`: both OTLP receivers serve TLS with this certificate chain (PEM).
    /// Default none.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM). Default none.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl OtlpIngestConfig {
    /// The certificate and key to serve TLS with, when both are configured.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        crate::tls::TlsFiles::of(&self.tls_cert_file, &self.tls_key_file)
    }
}

fn default_grpc_listen() -> SocketAddr {
    "127.0.0.1:4317".parse().expect("valid default address")
}

fn default_http_listen() -> SocketAddr {
    "127.0.0.1:4318".parse().expect("valid default address")
}

fn default_max_request_bytes() -> usize {
    16 << 20
}

/// The in-flight bound also used when only `[ingest.xray]` is on.
pub fn default_max_in_flight_bytes() -> usize {
    64 << 20
}

fn default_ack_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl Default for OtlpIngestConfig {
    fn default() -> Self {
        Self {
            grpc_listen: default_grpc_listen(),
            http_listen: default_http_listen(),
            topic: None,
            max_request_bytes: default_max_request_bytes(),
            ack_timeout: default_ack_timeout(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            bearer_token: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// `[ingest.xray]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XrayIngestConfig {
    /// UDP address of the X-Ray daemon protocol. Default `127.0.0.1:2000`.
    #[serde(default = "default_xray_listen")]
    pub listen: SocketAddr,
    /// Topic the segment documents are written to, keyed by trace id (`xray_json`). Default
    /// `xray_segments`; list it in `[[kafka.inputs]]` with `encoding = "xray_json"` to read it.
    #[serde(default = "default_xray_topic")]
    pub topic: String,
}

fn default_xray_listen() -> SocketAddr {
    "127.0.0.1:2000".parse().expect("valid default address")
}

fn default_xray_topic() -> String {
    "xray_segments".into()
}

impl Default for XrayIngestConfig {
    fn default() -> Self {
        Self { listen: default_xray_listen(), topic: default_xray_topic() }
    }
}

impl IngestConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        if let Some(otlp) = &self.otlp {
            check(
                otlp.max_request_bytes >= 1024,
                "ingest.otlp.max_request_bytes",
                format!("{} is too small: at least 1024", otlp.max_request_bytes),
            );
            check(
                otlp.max_in_flight_bytes >= otlp.max_request_bytes && otlp.max_in_flight_bytes <= u32::MAX as usize,
                "ingest.otlp.max_in_flight_bytes",
                format!(
                    "{} must be at least ingest.otlp.max_request_bytes ({}) and at most 4 GiB",
                    otlp.max_in_flight_bytes, otlp.max_request_bytes
                ),
            );
            check(
                otlp.tls_cert_file.is_some() == otlp.tls_key_file.is_some(),
                "ingest.otlp.tls_key_file",
                "TLS needs both ingest.otlp.tls_cert_file and ingest.otlp.tls_key_file".into(),
            );
            check(
                otlp.bearer_token.as_ref().is_none_or(|t| !t.expose().trim().is_empty()),
                "ingest.otlp.bearer_token",
                "must not be empty (leave it out to ask for no token)".into(),
            );
            check(
                otlp.topic.as_ref().is_none_or(|t| !t.trim().is_empty()),
                "ingest.otlp.topic",
                "must not be empty".into(),
            );
        }
        if let Some(xray) = &self.xray {
            check(!xray.topic.trim().is_empty(), "ingest.xray.topic", "must not be empty".into());
        }
    }
}
