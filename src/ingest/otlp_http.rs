//! OTLP/HTTP receiver: `POST /v1/traces` with an `ExportTraceServiceRequest` in protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed. Each
//! request is split by trace ([`super::split`]) and answered only after the broker acknowledged
//! every message: success, or partial success naming the spans refused for an invalid id; 400 for
//! an undecodable body, 413 past `ingest.otlp.max_request_bytes`, 415 for another content type,
//! 503 with `Retry-After` when Kafka does not acknowledge in time.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::split::{split, Body};
use super::{IngestMetrics, IngestSink, OtlpIngestConfig};
use crate::http::access::{guard, Access};

const RECEIVER: &str = "otlp_http";
/// How long a client told 503 should wait before retrying.
const RETRY_AFTER_SECONDS: &str = "5";

struct Receiver {
    topic: String,
    sink: IngestSink,
    metrics: IngestMetrics,
    max_request_bytes: usize,
    ack_timeout: Duration,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers (its first two fields).
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Serves on `listener` (over TLS when configured, to the holders of the token when one is
/// asked) until `shutdown`; returns the bound address and the server task.
pub fn serve(
    listener: TcpListener,
    config: &OtlpIngestConfig,
    topic: String,
    sink: IngestSink,
    metrics: IngestMetrics,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(SocketAddr, JoinHandle<()>), super::IngestError> {
    let bound = listener.local_addr().unwrap_or(config.http_listen);
    let receiver = Arc::new(Receiver {
        topic,
        sink,
        metrics,
        max_request_bytes: config.max_request_bytes,
        ack_timeout: config.ack_timeout.0,
    });
    let access = Arc::new(Access::bearer_only(config.bearer_token.clone()));
    let app = Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .with_state(receiver)
        .layer(axum::middleware::from_fn_with_state(access, guard));
    let stop = async move { shutdown.notified().await };
    let tls = config.tls().map(|files| files.server_config()).transpose()?;
    let task = crate::tls::spawn_axum(listener, tls, app, stop, "OTLP/HTTP receiver").map_err(|source| {
        super::IngestError::Bind { receiver: "OTLP/HTTP", addr: bound, flag: "ingest.otlp.http_listen", source }
    })?;
    Ok((bound, task))
}

async fn export(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Body::Protobuf,
        "application/json" => Body::Json,
        other => {
            receiver.metrics.requests.with_label_values(&[RECEIVER, "rejected"]).inc();
            let message = format!("unsupported content type {other:?}: application/x-protobuf or application/json");
            return error(Body::Protobuf, StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
        }
    };
    let gzip = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let mut inflated = Vec::new();
        let limit = receiver.max_request_bytes as u64 + 1;
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).take(limit).read_to_end(&mut inflated) {
            receiver.metrics.requests.with_label_values(&[RECEIVER, "rejected"]).inc();
            return error(encoding, StatusCode::BAD_REQUEST, format!("body is not valid gzip: {e}"));
        }
        if inflated.len() > receiver.max_request_bytes {
            receiver.metrics.requests.with_label_values(&[RECEIVER, "rejected"]).inc();
            let message = format!("body over {} bytes once decompressed", receiver.max_request_bytes);
            return error(encoding, StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Bytes::from(inflated)
    } else {
        body
    };
    let split = match split(&body, encoding) {
        Ok(split) => split,
        Err(e) => {
            receiver.metrics.requests.with_label_values(&[RECEIVER, "rejected"]).inc();
            return error(encoding, StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let messages = split.messages.iter().map(|m| (m.key.as_str(), m.payload.as_slice()));
    if let Err(e) = receiver.sink.produce_all(&receiver.topic, messages, receiver.ack_timeout).await {
        receiver.metrics.requests.with_label_values(&[RECEIVER, "unavailable"]).inc();
        tracing::warn!(error = %e, topic = %receiver.topic, "OTLP/HTTP request not acknowledged by Kafka: answered 503");
        let mut response = error(encoding, StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        return response;
    }
    let partial_success = receiver.metrics.acknowledged(RECEIVER, &split);
    let answer = ExportTraceServiceResponse { partial_success };
    match encoding {
        Body::Protobuf => ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec()).into_response(),
        Body::Json => {
            ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&answer).expect("serialisable"))
                .into_response()
        }
    }
}

/// An error answer: a `google.rpc.Status` in the request's encoding (the OTLP/HTTP specification).
fn error(encoding: Body, status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 3,
    };
    match encoding {
        Body::Protobuf => {
            (status, [(header::CONTENT_TYPE, "application/x-protobuf")], RpcStatus { code, message }.encode_to_vec())
                .into_response()
        }
        Body::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
    }
}
