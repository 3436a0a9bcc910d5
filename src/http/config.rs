//! `[http]`: where the HTTP endpoints listen and who may read them, each default next to its
//! field.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::{Problem, Secret};

/// `[http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/api/*`. Default `127.0.0.1:9464`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How the other instances of the group reach this one's API (`http://host:port`): the
    /// `heldBy` of the traces kept here, where `/api/traces/{id}` redirects. Default
    /// `http://` + the bound address; set it when listening on `0.0.0.0` or behind a proxy.
    #[serde(default)]
    pub advertised_url: Option<String>,
    /// A token every request must carry (`Authorization: Bearer <token>`), except on
    /// `open_paths` and the console's own files. Default none: no credentials asked. Give it in
    /// the environment, `TRACEWARDEN__HTTP__BEARER_TOKEN`, rather than in the file.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// With `basic_password`: HTTP basic credentials accepted as well as (or instead of) the
    /// token. Default none.
    #[serde(default)]
    pub basic_username: Option<String>,
    /// The password of `basic_username` (`TRACEWARDEN__HTTP__BASIC_PASSWORD`). Default none.
    #[serde(default)]
    pub basic_password: Option<Secret>,
    /// Paths served without credentials when some are asked: probes and scrapers that cannot
    /// send them. Default `["/healthz", "/readyz"]`; add `"/metrics"` for such a scraper.
    #[serde(default = "default_open_paths")]
    pub open_paths: Vec<String>,
    /// Longest query string accepted, in bytes; longer is answered 414. Default 8192; at least
    /// 256. (Request bodies, which only the demo's fault switch takes, are limited to 64 KiB.)
    #[serde(default = "default_max_query_bytes")]
    pub max_query_bytes: usize,
    /// With `tls_key_file`: serve HTTPS with this certificate chain (PEM, the server's first).
    /// Default none (plain HTTP). The other members are then asked over HTTPS and trusted when
    /// they serve one of these certificates exactly, or one chaining to a CA certificate here.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM: PKCS#8, PKCS#1 or SEC1). Default none.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid default address")
}

fn default_open_paths() -> Vec<String> {
    vec!["/healthz".into(), "/readyz".into()]
}

fn default_max_query_bytes() -> usize {
    8192
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            advertised_url: None,
            bearer_token: None,
            basic_username: None,
            basic_password: None,
            open_paths: default_open_paths(),
            max_query_bytes: default_max_query_bytes(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl HttpConfig {
    /// Adds this section's problems to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = Problem::checker(problems);
        if let Some(url) = &self.advertised_url {
            check(
                (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len(),
                "http.advertised_url",
                format!("{url:?} is not a URL: expected http://host:port"),
            );
        }
        check(
            self.bearer_token.as_ref().is_none_or(|t| !t.expose().trim().is_empty()),
            "http.bearer_token",
            "must not be empty (leave it out to ask for no token)".into(),
        );
        check(
            self.basic_username.is_some() == self.basic_password.is_some(),
            "http.basic_password",
            "basic credentials need both http.basic_username and http.basic_password".into(),
        );
        check(
            self.basic_username.as_ref().is_none_or(|u| !u.is_empty() && !u.contains(':')),
            "http.basic_username",
            "must not be empty nor contain ':'".into(),
        );
        for (i, path) in self.open_paths.iter().enumerate() {
            check(
                path.starts_with('/'),
                &format!("http.open_paths[{i}]"),
                format!("{path:?} is not a path: expected one starting with '/', such as \"/metrics\""),
            );
        }
        check(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "http.tls_key_file",
            "TLS needs both http.tls_cert_file and http.tls_key_file".into(),
        );
        check(
            self.max_query_bytes >= 256,
            "http.max_query_bytes",
            format!("{} is too small: at least 256", self.max_query_bytes),
        );
    }

    /// The URL this instance advertises once bound to `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        let scheme = if self.tls().is_some() { "https" } else { "http" };
        self.advertised_url.clone().unwrap_or_else(|| format!("{scheme}://{bound}"))
    }

    /// The certificate and key to serve HTTPS with, when both are configured.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        crate::tls::TlsFiles::of(&self.tls_cert_file, &self.tls_key_file)
    }
}
