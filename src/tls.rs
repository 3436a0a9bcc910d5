//! TLS for tracewarden's listeners (`[http]` and `[ingest.otlp]` `tls_cert_file` and
//! `tls_key_file`): PEM files read once at start into a rustls server configuration, a file that
//! cannot be used named in the error; [`TlsListener`] serves axum over it.
//!
//! Invariants:
//! - a handshake runs in a task of its own, bounded by [`HANDSHAKE_TIMEOUT`]: a slow or silent
//!   client never holds up the others' connections;
//! - a failed handshake is dropped (and logged at debug): the listener goes on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Makes ring the process's rustls crypto provider, for the TLS configurations built with
/// rustls's defaults (tonic's gRPC listener). Two providers are compiled in (ring, ours; aws-lc,
/// AWS's SDK's for MSK IAM, which names its own), so rustls cannot pick one by itself. Harmless
/// when already done.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handshaken and not yet taken by the server.
const ACCEPTED_BACKLOG: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {}: {reason}", .file.display())]
    Certificate { file: PathBuf, reason: String },
    #[error("cannot read the TLS private key {}: {reason}", .file.display())]
    Key { file: PathBuf, reason: String },
    #[error("the TLS certificate {} and key {} do not make a server identity: {reason}", .cert.display(), .key.display())]
    Identity { cert: PathBuf, key: PathBuf, reason: String },
}

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both files, when both are configured.
    pub fn of(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> Option<TlsFiles> {
        Some(TlsFiles { cert: cert.clone()?, key: key.clone()? })
    }

    /// The two files' contents (PEM), for servers that take them as they are (tonic).
    pub fn read_pem(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |file: &Path| std::fs::read(file).map_err(|e| e.to_string());
        let cert = read(&self.cert).map_err(|reason| TlsError::Certificate { file: self.cert.clone(), reason })?;
        let key = read(&self.key).map_err(|reason| TlsError::Key { file: self.key.clone(), reason })?;
        Ok((cert, key))
    }

    /// The rustls server configuration of these files (HTTP/1.1 only).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certificate = |reason: String| TlsError::Certificate { file: self.cert.clone(), reason };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| certificate(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(certificate("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::Key { file: self.key.clone(), reason: e.to_string() })?;
        let identity = |reason: String| TlsError::Identity { cert: self.cert.clone(), key: self.key.clone(), reason };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| identity(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| identity(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serves `app` on `listener` — over TLS when `tls` is given — until `shutdown`, in a task;
/// `name` says which server failed, in the log.
pub fn spawn_axum(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    name: &'static str,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let served = match tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls)?;
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await })
        }
        None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await }),
    };
    Ok(tokio::spawn(async move {
        match served.await {
            Ok(Err(e)) => tracing::error!(error = %e, server = name, "server failed"),
            Err(e) => tracing::error!(error = %e, server = name, "server task failed"),
            Ok(Ok(())) => {}
        }
    }))
}

/// A TCP listener whose connections are served over TLS (an axum [`axum::serve::Listener`]).
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` in a task of its own; each handshake in another.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, handshaken) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handshaken.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
