//! The check-status body Durable Functions answers a start with: the URLs of every
//! management call of the new instance.

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
    /// POST: rewind a failed instance (replace `{text}`).
    pub rewind_post_uri: String,
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
            rewind_post_uri: format!("{instance}/rewind?reason={{text}}{then}"),
        }
    }
}

/// The origin (`scheme://host[:port]`) the Functions host received a request on, set by
/// the custom-handler edge from the invocation's `Url` (the host's own request URL). A
/// request extension, so no caller-sent header can forge it.
#[derive(Debug, Clone)]
pub struct RequestOrigin(pub String);

/// `scheme://host/base/` for absolute URLs: the host's request origin under `serve`, else
/// the configured public URL (the worker's listening address when none is configured).
/// Never the request's `Host` or `X-Forwarded-Host`: a caller could make the API hand out
/// URLs on any host.
pub fn base_url(
    origin: Option<&RequestOrigin>,
    public_url: Option<&str>,
    base_path: &str,
) -> String {
    let origin = origin
        .map(|o| o.0.as_str())
        .or(public_url)
        .unwrap_or("http://localhost");
    format!("{}{base_path}", origin.trim_end_matches('/'))
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
