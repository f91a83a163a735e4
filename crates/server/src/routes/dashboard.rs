//! The web dashboard: static files embedded in the binary (`crates/server/static/`), served at `/`
//! and `/assets/…` with a strict Content-Security-Policy. The page itself only talks to the public
//! REST/WebSocket API; nothing here touches the store or reads credentials.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// No inline script or style, nothing from other origins, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset { name: $name, mime: $mime, body: include_bytes!(concat!("../../static/assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `static/assets/`, by its URL name.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("boot.js", JS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("markdown.js", JS),
    asset!("live.js", JS),
    asset!("format.js", JS),
    asset!("login.js", JS),
    asset!("chat.js", JS),
    asset!("approvals.js", JS),
    asset!("account.js", JS),
    asset!("admin.js", JS),
    asset!("portal.css", "text/css; charset=utf-8"),
    asset!("portal.js", JS),
];

const INDEX: &[u8] = include_bytes!("../../static/index.html");

fn page(status: StatusCode, mime: &'static str, body: &'static [u8]) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    // Small files, revalidated on every load so an upgraded gateway never serves a stale mix.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /`: the single page (a `?token=` in the URL is read and removed by the page's script).
pub(crate) async fn index() -> Response {
    page(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => page(StatusCode::OK, a.mime, a.body),
        None => page(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", b"no such dashboard file\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_refers_only_to_embedded_assets() {
        let html = std::str::from_utf8(INDEX).unwrap_or_default();
        for part in html.split("/assets/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"' && *c != '\'').collect();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html names /assets/{name}, which is not embedded"
            );
        }
        assert!(!html.contains("<script>") && !html.contains(" style="), "no inline script or style (CSP)");
    }

    #[test]
    fn modules_import_only_embedded_modules() {
        for a in ASSETS.iter().filter(|a| a.mime == JS) {
            let text = std::str::from_utf8(a.body).unwrap_or_default();
            for line in text.lines().filter(|l| l.trim_start().starts_with("import ")) {
                let Some(from) = line.split(" from ").nth(1) else { continue };
                let target = from.trim().trim_end_matches(';').trim_matches(|c| c == '\'' || c == '"');
                let name = target.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|x| x.name == name),
                    "{} imports {target}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
