//! `[http]`: where the HTTP endpoints listen, each default next to its field.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[http]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/api/*`. Default `127.0.0.1:9464`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid default address")
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: default_listen() }
    }
}
