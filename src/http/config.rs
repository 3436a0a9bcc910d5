//! `[http]`: where the HTTP endpoints listen, each default next to its field.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::settings::Problem;

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
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid default address")
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: default_listen(), advertised_url: None }
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
    }

    /// The URL this instance advertises once bound to `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        self.advertised_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }
}
