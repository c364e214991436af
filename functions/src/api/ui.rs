//! The dashboard: three static files (an HTML shell, an ES module, a stylesheet) embedded
//! in the binary and served under `{base}ui/` behind the API key, like every route. The
//! page reads everything through the JSON API with the same key; the files themselves hold
//! no data. Strict headers: nothing loads from elsewhere (no CDN), the key in the page's
//! URL never leaves as a `Referer`, and no page is cached.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ErrorCode};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// `GET {base}ui/`: the page.
pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

/// `GET {base}ui/{file}`: its script and stylesheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => page(STYLE, "text/css; charset=utf-8"),
        "" | "index.html" => page(INDEX, "text/html; charset=utf-8"),
        _ => ApiError::new(
            ErrorCode::NotFound,
            format!("the dashboard has no file '{file}'"),
        )
        .into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
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
