//! Asking another member of the group over HTTP: a series' owner for its history and
//! contributors, every live member for a trace search (investigation.md "One view per consumer
//! group").
//!
//! Invariants:
//! - every request carries [`FORWARDED_HEADER`], and a request that carries it is answered by the
//!   instance it reached, never forwarded again: ownership that moves while a request is in
//!   flight cannot make two instances send it back and forth;
//! - the caller's `Authorization` is passed on as it came, so a member asks another with the
//!   credentials of the person asking, never with its own;
//! - every request has a deadline; a member that does not answer in time is named in the answer,
//!   never waited for beyond it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// Marks a request one member sends another.
pub const FORWARDED_HEADER: &str = "x-tracewarden-forwarded";

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("not an http:// or https:// URL: {0}")]
    Url(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("https needs [http] tls_cert_file (the group's certificate, trusted for its peers)")]
    NoTrust,
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// An answer from a member: status, `Location` (for a redirect) and body.
#[derive(Debug)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Bytes,
}

/// Sends requests to the other members.
#[derive(Clone, Default)]
pub struct PeerClient {
    /// For `https://` members: see [`GroupCertificates`].
    tls: Option<tokio_rustls::TlsConnector>,
}

impl PeerClient {
    /// A client trusting the certificates in `trusted` (a PEM file) for `https://` members.
    pub fn new(trusted: Option<&std::path::Path>) -> Self {
        let tls = trusted.and_then(|file| {
            let certificates: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(file).ok()?.flatten().collect();
            let verifier = GroupCertificates::new(certificates);
            let config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
                .with_safe_default_protocol_versions()
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        });
        Self { tls }
    }

    /// `GET {base}{path_and_query}` with the caller's `authorization`, within `deadline`.
    pub async fn get(
        &self,
        base: &str,
        path_and_query: &str,
        authorization: Option<&HeaderValue>,
        deadline: Duration,
    ) -> Result<PeerAnswer, ForwardError> {
        tokio::time::timeout(deadline, self.get_now(base, path_and_query, authorization))
            .await
            .map_err(|_| ForwardError::Timeout(deadline))?
    }

    async fn get_now(
        &self,
        base: &str,
        path_and_query: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<PeerAnswer, ForwardError> {
        let (https, authority) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(ForwardError::Url(base.into())),
        };
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(ForwardError::Url(base.into()));
        }
        let address = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:{}", if https { 443 } else { 80 })
        };
        let stream = TcpStream::connect(&address).await.map_err(ForwardError::Connect)?;
        let mut request = Request::builder()
            .uri(path_and_query)
            .header(header::HOST, authority)
            .header(FORWARDED_HEADER, "1")
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| ForwardError::Url(e.to_string()))?;
        let response = if https {
            let connector = self.tls.as_ref().ok_or(ForwardError::NoTrust)?;
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).trim_matches(['[', ']']);
            let name =
                ServerName::try_from(host.to_string()).map_err(|_| ForwardError::Url(format!("bad host {host}")))?;
            let stream = connector.connect(name, stream).await.map_err(ForwardError::Tls)?;
            send(TokioIo::new(stream), request).await?
        } else {
            send(TokioIo::new(stream), request).await?
        };
        Ok(response)
    }
}

async fn send<S>(io: S, request: Request<Empty<Bytes>>) -> Result<PeerAnswer, ForwardError>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let status = response.status();
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(PeerAnswer { status, location, body })
}

/// What a member trusts in another's certificate: the certificates of `[http] tls_cert_file`.
/// A peer presenting one of them exactly (the members of a group serve the same certificate, a
/// self-signed one included) is trusted as pinned, its handshake signature still checked; any
/// other certificate must chain to one of them (a CA certificate in the file), host name and
/// validity checked as usual.
#[derive(Debug)]
struct GroupCertificates {
    pinned: Vec<CertificateDer<'static>>,
    /// Chains to the file's certificates; `None` when none of them can anchor one.
    chained: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl GroupCertificates {
    fn new(certificates: Vec<CertificateDer<'static>>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for certificate in &certificates {
            let _ = roots.add(certificate.clone());
        }
        let chained =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok();
        Self { pinned: certificates, chained, provider }
    }
}

impl rustls::client::danger::ServerCertVerifier for GroupCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match &self.chained {
            Some(chained) => chained.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
