//! The dashboard: one page (HTML with its stylesheet and ES module inline, all embedded in
//! the binary) served at `{base}ui/` behind the API key, like every route. One response is
//! the whole page, so it needs the key once (`?code=`, as a function key is passed), also
//! under the Functions host, where every request to a function is checked. The page reads
//! everything through the JSON API with the same key; it holds no data itself. Strict
//! headers: only the page's own script and style run (a fresh nonce per response), nothing
//! loads from elsewhere (no CDN), the key in the URL never leaves as a `Referer`, and the
//! page is not cached.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// `GET {base}ui/`: the page.
pub async fn index() -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    // The script and style go in last: their text is never searched for placeholders.
    let body = PAGE
        .replace("{{nonce}}", &nonce)
        .replace("{{style}}", STYLE)
        .replace("{{script}}", SCRIPT);
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
