//! X-Ray UDP receiver: the X-Ray daemon protocol, `{"format":"json","version":1}`, a newline and
//! one segment document per datagram. A valid datagram is written unchanged to
//! `ingest.xray.topic`, keyed by its trace id in 32 hex digits; one with a bad header or document
//! is counted in `tracewarden_ingest_rejected_total{receiver="xray",reason}` and written to the
//! dead-letter topic with `tracewarden.source = xray-udp/<peer>`.
//!
//! Datagrams are produced concurrently, at most [`IN_FLIGHT`] at once: past that the receiver
//! stops reading and the kernel's socket buffer absorbs, then drops (UDP has no back-pressure).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{IngestMetrics, IngestSink, XrayIngestConfig};

const RECEIVER: &str = "xray";
/// Datagrams being produced at once.
pub const IN_FLIGHT: usize = 1024;
/// How long a datagram waits for its acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest datagram X-Ray SDKs send (64 KiB, the UDP limit).
const MAX_DATAGRAM: usize = 65_536;

/// What a datagram is, once checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// A document of this trace (32 hex digits).
    Segment { key: String },
    /// Not a daemon datagram: the reason label and what was wrong.
    Rejected { reason: &'static str, error: String },
}

/// Checks a datagram: the daemon header, then a JSON object with a valid `trace_id`.
pub fn check(datagram: &[u8]) -> Datagram {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    #[derive(Deserialize)]
    struct Document {
        trace_id: String,
    }
    let Some(newline) = datagram.iter().position(|&b| b == b'\n') else {
        return Datagram::Rejected { reason: "bad_header", error: "no header line".into() };
    };
    match serde_json::from_slice::<Header>(&datagram[..newline]) {
        Ok(header) if header.format == "json" && header.version == 1 => {}
        Ok(_) => {
            return Datagram::Rejected {
                reason: "bad_header",
                error: "header is not {\"format\":\"json\",\"version\":1}".into(),
            }
        }
        Err(e) => return Datagram::Rejected { reason: "bad_header", error: format!("header: {e}") },
    }
    match serde_json::from_slice::<Document>(&datagram[newline + 1..]) {
        Ok(document) => match crate::format::xray_trace_id(&document.trace_id) {
            Some(id) => Datagram::Segment { key: hex::encode(id) },
            None => Datagram::Rejected {
                reason: "bad_document",
                error: format!("trace_id {:?} is not an X-Ray trace id", document.trace_id),
            },
        },
        Err(e) => Datagram::Rejected { reason: "bad_document", error: format!("document: {e}") },
    }
}

/// Receives on `socket` until `shutdown`; returns the bound address and the receiving task.
pub fn serve(
    socket: UdpSocket,
    config: &XrayIngestConfig,
    sink: IngestSink,
    metrics: IngestMetrics,
    shutdown: Arc<tokio::sync::Notify>,
) -> (SocketAddr, JoinHandle<()>) {
    let bound = socket.local_addr().unwrap_or(config.listen);
    let topic: Arc<str> = Arc::from(config.topic.as_str());
    let task = tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let stopped = shutdown.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, peer) = tokio::select! {
                _ = &mut stopped => break,
                received = socket.recv_from(&mut buffer) => match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::warn!(error = %e, "X-Ray UDP receive failed");
                        continue;
                    }
                },
            };
            let permit = in_flight.clone().acquire_owned().await.expect("never closed");
            let datagram = buffer[..len].to_vec();
            let (sink, metrics, topic) = (sink.clone(), metrics.clone(), topic.clone());
            tokio::spawn(async move {
                receive(&datagram, peer, &topic, &sink, &metrics).await;
                drop(permit);
            });
        }
    });
    (bound, task)
}

async fn receive(datagram: &[u8], peer: SocketAddr, topic: &str, sink: &IngestSink, metrics: &IngestMetrics) {
    match check(datagram) {
        Datagram::Segment { key } => {
            match sink.produce_all(topic, std::iter::once((key.as_str(), datagram)), ACK_TIMEOUT).await {
                Ok(()) => {
                    metrics.spans.with_label_values(&[RECEIVER]).inc();
                    metrics.requests.with_label_values(&[RECEIVER, "ok"]).inc();
                }
                Err(e) => {
                    tracing::warn!(error = %e, %peer, "X-Ray segment not acknowledged by Kafka: lost (UDP cannot be retried)");
                    metrics.requests.with_label_values(&[RECEIVER, "unavailable"]).inc();
                }
            }
        }
        Datagram::Rejected { reason, error } => {
            metrics.requests.with_label_values(&[RECEIVER, "rejected"]).inc();
            metrics.rejected.with_label_values(&[RECEIVER, reason]).inc();
            let source = format!("xray-udp/{peer}");
            if let Err(e) = sink.dead_letter(datagram, &error, &source, ACK_TIMEOUT).await {
                tracing::warn!(error = %e, %peer, "rejected X-Ray datagram not dead-lettered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_checked() {
        let good =
            b"{\"format\":\"json\",\"version\":1}\n{\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\",\"id\":\"1\"}";
        assert_eq!(check(good), Datagram::Segment { key: "5759e988bd862e3fe1be46a994272793".into() });
        let reason = |d: &[u8]| match check(d) {
            Datagram::Rejected { reason, .. } => reason,
            Datagram::Segment { .. } => "accepted",
        };
        assert_eq!(reason(b"{\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\"}"), "bad_header");
        assert_eq!(reason(b"{\"format\":\"xml\",\"version\":1}\n{}"), "bad_header");
        assert_eq!(reason(b"{\"format\":\"json\",\"version\":1}\n{\"trace_id\":\"abc\"}"), "bad_document");
        assert_eq!(reason(b"{\"format\":\"json\",\"version\":1}\nnot json"), "bad_document");
    }
}
