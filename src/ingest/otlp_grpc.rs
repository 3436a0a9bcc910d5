//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, gzip
//! allowed. As the OTLP/HTTP receiver ([`super::otlp_http`]): split by trace, answered only after
//! the broker acknowledged every message — success, or partial success naming the spans refused
//! for an invalid id; `UNAVAILABLE` (retryable) when Kafka does not acknowledge in time;
//! `INVALID_ARGUMENT` for an undecodable message, `RESOURCE_EXHAUSTED` past
//! `ingest.otlp.max_request_bytes` (tonic's own answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};

use super::split::{split_request, Body};
use super::{IngestMetrics, IngestSink, OtlpIngestConfig};
use crate::http::access::Access;

const RECEIVER: &str = "otlp_grpc";

struct Receiver {
    topic: String,
    sink: IngestSink,
    metrics: IngestMetrics,
    ack_timeout: Duration,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let split = split_request(request.into_inner(), Body::Protobuf);
        let messages = split.messages.iter().map(|m| (m.key.as_str(), m.payload.as_slice()));
        if let Err(e) = self.sink.produce_all(&self.topic, messages, self.ack_timeout).await {
            self.metrics.requests.with_label_values(&[RECEIVER, "unavailable"]).inc();
            tracing::warn!(error = %e, topic = %self.topic, "OTLP/gRPC request not acknowledged by Kafka: UNAVAILABLE");
            return Err(tonic::Status::unavailable(e.to_string()));
        }
        let partial_success = self.metrics.acknowledged(RECEIVER, &split);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

/// Serves on `listener` until `shutdown`; returns the bound address and the server task.
pub fn serve(
    listener: TcpListener,
    config: &OtlpIngestConfig,
    topic: String,
    sink: IngestSink,
    metrics: IngestMetrics,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(SocketAddr, JoinHandle<()>), super::IngestError> {
    let bound = listener.local_addr().unwrap_or(config.grpc_listen);
    let receiver = Receiver { topic, sink, metrics, ack_timeout: config.ack_timeout.0 };
    let service = TraceServiceServer::new(receiver)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(config.max_request_bytes);
    let access = Arc::new(Access::bearer_only(config.bearer_token.clone()));
    let service = InterceptedService::new(service, move |request: tonic::Request<()>| {
        let headers = request.metadata().clone().into_headers();
        if access.permits(&headers) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated("a bearer token is required ([ingest.otlp] bearer_token)"))
        }
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = config.tls() {
        let (cert, key) = files.read_pem()?;
        crate::tls::install_crypto_provider();
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        builder = builder.tls_config(tls).map_err(|e| crate::tls::TlsError::Identity {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    }
    let task = tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let served = builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { shutdown.notified().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "OTLP/gRPC receiver failed");
        }
    });
    Ok((bound, task))
}
