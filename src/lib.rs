//! tracewarden: a trace-analysis stream processor.
//!
//! Reads span streams from Kafka, assembles traces in a bounded window, computes service and
//! dependency metrics from every span, evaluates SLOs, and forwards decided traces. Wired in
//! [`pipeline`]: [`source`] (the consumer) → [`span_path`] ([`format`] decodes → [`assemble`] →
//! [`signals`] → [`sampling`] → [`format`] encodes) → [`delivery`] (holds, forwards, retries, commits),
//! with [`slo`] beside the span path and [`http`] serving what they measure; [`ingest`] takes
//! spans straight from SDKs onto Kafka. Shared vocabulary
//! lives in leaf modules: [`model`], [`position`], [`decision`], [`settings`], [`clock`].

// The public surface: what the binary, the integration tests, the benches and the examples use.
pub mod assemble;
pub mod clock;
pub mod config;
pub mod decision;
pub mod demo;
pub mod format;
pub mod generate;
pub mod http;
pub mod ingest;
pub mod investigate;
pub mod kafka_client;
pub mod model;
pub mod pipeline;
pub mod position;
pub mod record;
pub mod sampling;
pub mod settings;
pub mod signals;
pub mod slo;
pub mod span_path;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;

// Rooms nothing outside the crate needs.
mod console;
mod delivery;
mod duration;
mod matcher;
mod source;
mod tls;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
