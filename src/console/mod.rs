//! The web console (investigation.md "The console"): a single page over the JSON APIs, served at
//! `/` by every instance.
//!
//! Every asset is compiled into the binary from `console/`: the page (`index.html`, `app.css`), its
//! ES modules loaded as they are, without a build step (`app.js`, which renders the page of the URL
//! and refreshes it; `lib/`: API calls, formatting, routing, tables, charts; `pages/`: one module
//! per page), and the pinned vendored libraries listed in `console/vendor/README.md`. The tests
//! below fail when a file of `console/` is not embedded, or when the page or a module names one
//! that is not; the modules are type-checked and their helpers unit-tested under `tests/console/`.
//! The page makes no request outside the instance. The console only reads: it has no route that
//! changes anything.

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
    asset!("lib/api.js", "text/javascript; charset=utf-8"),
    asset!("lib/charts.js", "text/javascript; charset=utf-8"),
    asset!("lib/deployments.js", "text/javascript; charset=utf-8"),
    asset!("lib/dom.js", "text/javascript; charset=utf-8"),
    asset!("lib/format.js", "text/javascript; charset=utf-8"),
    asset!("lib/router.js", "text/javascript; charset=utf-8"),
    asset!("lib/table.js", "text/javascript; charset=utf-8"),
    asset!("pages/map.js", "text/javascript; charset=utf-8"),
    asset!("pages/pipeline.js", "text/javascript; charset=utf-8"),
    asset!("pages/service.js", "text/javascript; charset=utf-8"),
    asset!("pages/services.js", "text/javascript; charset=utf-8"),
    asset!("pages/slo.js", "text/javascript; charset=utf-8"),
    asset!("pages/slos.js", "text/javascript; charset=utf-8"),
    asset!("pages/trace.js", "text/javascript; charset=utf-8"),
    asset!("pages/traces.js", "text/javascript; charset=utf-8"),
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
            // The console's own files are never cached: the page names the modules, the modules
            // each other, and a module of one build must not meet one of another after an upgrade.
            // The vendored libraries (a version in their path) may be, briefly.
            let cache = if asset.path.starts_with("vendor/") { "max-age=300" } else { "no-cache" };
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

    /// The text of an embedded asset.
    fn text(path: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.path == path).unwrap_or_else(|| panic!("{path} is not embedded"));
        std::str::from_utf8(asset.bytes).expect("utf-8")
    }

    /// The console's own modules (not the vendored libraries, which are classic scripts).
    fn is_module(path: &str) -> bool {
        path.ends_with(".js") && !path.starts_with("vendor/")
    }

    /// What a module imports: the specifiers of its `import … from "…"` statements (also over
    /// several lines, and JSDoc's `@import`), `import "…"`, and `import("…")` (in code, or in JSDoc
    /// types, which name files just the same). A `from "` elsewhere (in a string) is not an import.
    fn imports(source: &str) -> Vec<&str> {
        /// The string literal `rest` starts with.
        fn quoted(rest: &str) -> Option<&str> {
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let rest = &rest[1..];
            Some(&rest[..rest.find(quote).expect("a closed string")])
        }
        let mut found = Vec::new();
        let mut in_statement = false;
        for line in source.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("import ") || trimmed.starts_with("import{") || line.contains("@import ") {
                in_statement = true;
                if let Some(specifier) = trimmed.strip_prefix("import ").and_then(quoted) {
                    found.push(specifier);
                    in_statement = false;
                    continue;
                }
            }
            if in_statement {
                if let Some(at) = line.find(" from ") {
                    found.extend(quoted(line[at + " from ".len()..].trim_start()));
                    in_statement = false;
                }
            }
        }
        for opening in ["import(\"", "import('"] {
            for (at, _) in source.match_indices(opening) {
                found.extend(quoted(&source[at + opening.len() - 1..]));
            }
        }
        found
    }

    /// The embedded path `specifier` names from the module at `from` (a path under `console/`).
    fn resolve(from: &str, specifier: &str) -> String {
        if let Some(path) = specifier.strip_prefix("/console/") {
            return path.to_string();
        }
        assert!(
            specifier.starts_with("./") || specifier.starts_with("../"),
            "{from} imports {specifier}: nothing from elsewhere"
        );
        let mut parts: Vec<&str> = from.split('/').collect();
        parts.pop();
        for part in specifier.split('/') {
            match part {
                "." => {}
                ".." => assert!(parts.pop().is_some(), "{from} imports {specifier}, outside console/"),
                _ => parts.push(part),
            }
        }
        parts.join("/")
    }

    #[test]
    fn the_page_and_its_modules_name_only_embedded_assets_and_every_module_is_used() {
        let page = text("index.html");
        let mut pending = Vec::new();
        for reference in page.split(['"', '\'']).filter(|s| s.starts_with("/console/")) {
            let path = &reference["/console/".len()..];
            assert!(ASSETS.iter().any(|a| a.path == path), "{reference} is not embedded");
            if is_module(path) {
                pending.push(path.to_string());
            }
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere");
        assert_eq!(pending, ["app.js"], "the page loads one module, app.js");
        let mut reached = std::collections::BTreeSet::new();
        while let Some(module) = pending.pop() {
            if !reached.insert(module.clone()) {
                continue;
            }
            for specifier in imports(text(&module)) {
                let path = resolve(&module, specifier);
                assert!(ASSETS.iter().any(|a| a.path == path), "{module} imports {specifier}: {path} is not embedded");
                pending.push(path);
            }
        }
        for asset in ASSETS.iter().filter(|a| is_module(a.path)) {
            assert!(reached.contains(asset.path), "{} is embedded but no module imports it", asset.path);
        }
        for module in ["lib/format.js", "pages/services.js", "pages/slo.js"] {
            assert!(reached.contains(module), "{module} is reached from the page");
        }
    }

    #[test]
    fn every_file_under_console_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut folders = vec![root.clone()];
        let mut files = 0;
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("console/ is readable") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    folders.push(path);
                    continue;
                }
                // The vendored libraries' origins and licenses are for readers of the source.
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name == "README.md" || name == "LICENSE" {
                    continue;
                }
                let relative =
                    path.strip_prefix(&root).expect("under console/").to_str().expect("utf-8").replace('\\', "/");
                assert!(
                    ASSETS.iter().any(|a| a.path == relative),
                    "console/{relative} is not embedded: add it to ASSETS"
                );
                files += 1;
            }
        }
        assert_eq!(files, ASSETS.len(), "every asset is a file of console/");
    }

    #[test]
    fn the_consoles_own_files_are_never_cached_and_the_vendored_ones_briefly() {
        let cache = |path: &str| serve(path).headers()[header::CACHE_CONTROL].to_str().unwrap().to_string();
        for path in ["index.html", "app.js", "lib/format.js", "pages/service.js", "app.css"] {
            assert_eq!(cache(path), "no-cache", "{path}");
        }
        assert_eq!(cache("vendor/uplot-1.6.32/uPlot.iife.min.js"), "max-age=300");
        assert_eq!(serve("lib/secrets.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn imports_are_read_and_resolved() {
        let source = "import { a } from \"./lib/a.js\";\nimport * as b from '../b.js';\n/** @type {import(\"./c.js\").C} */\nimport \"./d.js\";\nimport {\n  e,\n  f,\n} from \"./e.js\";\n/** @import { G } from \"./g.js\" */\nconst text = \"no trend from \" + who;";
        assert_eq!(imports(source), ["./lib/a.js", "../b.js", "./d.js", "./e.js", "./g.js", "./c.js"]);
        assert_eq!(resolve("pages/map.js", "../lib/api.js"), "lib/api.js");
        assert_eq!(resolve("app.js", "./pages/map.js"), "pages/map.js");
        assert_eq!(resolve("lib/dom.js", "./format.js"), "lib/format.js");
        assert_eq!(resolve("app.js", "/console/lib/dom.js"), "lib/dom.js");
    }
}
