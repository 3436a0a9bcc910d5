//! The web console (investigation.md "The console"): a single page over the JSON APIs, served at
//! `/` by every instance.
//!
//! Every asset is compiled into the binary from `console/` (the page, its script and styles, and
//! the pinned vendored libraries listed in `console/vendor/README.md`); the page makes no request
//! outside the instance. The console only reads: it has no route that changes anything.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file: its path under `/console/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:literal) => {
        Asset { path: $path, content_type: $content_type, bytes: include_bytes!(concat!("../../console/", $path)) }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot-1.6.32/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uplot-1.6.32/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/cytoscape-3.34.4/cytoscape.min.js", "text/javascript; charset=utf-8"),
];

/// `/` and `/console/*`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/console/{*path}", get(|Path(path): Path<String>| async move { serve(&path) }))
}

fn serve(path: &str) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(asset) => {
            // The page itself is never cached (it names the assets); the rest may be, briefly.
            let cache = if asset.path == "index.html" { "no-cache" } else { "max-age=300" };
            ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, cache)], asset.bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such console file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";

    #[test]
    fn assets_have_the_type_of_their_extension_and_are_not_empty() {
        for asset in ASSETS {
            assert!(!asset.bytes.is_empty(), "{}", asset.path);
            let expected = match asset.path.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                _ => "text/html; charset=utf-8",
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    #[test]
    fn the_page_names_only_embedded_assets() {
        let page = std::str::from_utf8(ASSETS[0].bytes).expect("utf-8");
        for reference in page.split(['"', '\'']).filter(|s| s.starts_with("/console/")) {
            let path = &reference["/console/".len()..];
            assert!(ASSETS.iter().any(|a| a.path == path), "{reference} is not embedded");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere");
    }
}
