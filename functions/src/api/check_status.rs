//! The check-status body Durable Functions answers a start with: the URLs of every
//! management call of the new instance.

use axum::http::HeaderMap;
use serde::Serialize;

/// The management URLs of one instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// Instance id.
    pub id: String,
    /// GET: the status.
    pub status_query_get_uri: String,
    /// POST: raise an event (replace `{eventName}`).
    pub send_event_post_uri: String,
    /// POST: terminate (replace `{text}`).
    pub terminate_post_uri: String,
    /// DELETE: purge.
    pub purge_history_delete_uri: String,
    /// POST: restart.
    pub restart_post_uri: String,
    /// POST: suspend (replace `{text}`).
    pub suspend_post_uri: String,
    /// POST: resume (replace `{text}`).
    pub resume_post_uri: String,
}

impl CheckStatus {
    /// The URLs for `id`, absolute, under `base` (`http://host/api/`). `code`: the
    /// function key (already URL-encoded) the request carried, carried into every URL as
    /// Durable Functions does, so a client can follow them under `authLevel: function`.
    pub fn new(base: &str, id: &str, code: Option<&str>) -> Self {
        let instance = format!("{base}instances/{}", encode_segment(id));
        let (first, then) = match code {
            Some(code) => (format!("?code={code}"), format!("&code={code}")),
            None => (String::new(), String::new()),
        };
        Self {
            id: id.to_owned(),
            status_query_get_uri: format!("{instance}{first}"),
            send_event_post_uri: format!("{instance}/raiseEvent/{{eventName}}{first}"),
            terminate_post_uri: format!("{instance}/terminate?reason={{text}}{then}"),
            purge_history_delete_uri: format!("{instance}{first}"),
            restart_post_uri: format!("{instance}/restart{first}"),
            suspend_post_uri: format!("{instance}/suspend?reason={{text}}{then}"),
            resume_post_uri: format!("{instance}/resume?reason={{text}}{then}"),
        }
    }
}

/// `scheme://host/base/` for absolute URLs: the configured public URL, else the request's
/// Host (and `X-Forwarded-Proto`/`X-Forwarded-Host` behind a proxy).
pub fn base_url(public_url: Option<&str>, base_path: &str, headers: &HeaderMap) -> String {
    if let Some(url) = public_url {
        return format!("{}{base_path}", url.trim_end_matches('/'));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host")
        .or(header("host"))
        .unwrap_or("localhost");
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    format!("{scheme}://{host}{base_path}")
}

/// Percent-encodes an instance id for a URL path segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
