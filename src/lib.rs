//! tracewarden: a trace-analysis stream processor.
//!
//! Reads span streams from Kafka, assembles traces in a bounded window, computes service and
//! dependency metrics from every span, and forwards decided traces. The pipeline stages are one
//! module each, wired in [`pipeline`]: [`source`] → [`decode`] → [`assemble`] → [`signals`] →
//! [`sampling`] → [`sink`], with [`http`] serving what they measure.

pub mod assemble;
pub mod clock;
pub mod config;
pub mod decode;
pub mod demo;
pub mod duration;
pub mod generate;
pub mod http;
pub mod matcher;
pub mod model;
pub mod pipeline;
pub mod sampling;
pub mod signals;
pub mod sink;
pub mod slo;
pub mod source;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;

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
