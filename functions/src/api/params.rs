//! Query parameters and bodies parsed by hand, so every mistake is a 400 with a message
//! that names the parameter.

use std::collections::HashMap;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use flowforge_orchestrator::status::RuntimeStatus;
use serde_json::Value;

use super::ApiError;

/// The largest position a parameter takes: 2^53 - 1, the largest integer every JSON client
/// reads exactly (the OpenAPI document's `maximum` for `historyFrom`).
pub const MAX_POSITION: u64 = (1 << 53) - 1;

/// Query parameters by name.
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// A boolean (`true`/`false`, any case); `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.0.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "{name} must be true or false, not '{v}'"
            ))),
        }
    }

    /// A UTC time in RFC 3339.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "{name} must be an ISO 8601 time like 2026-01-31T00:00:00Z: {e}"
                        ))
                    })
            })
            .transpose()
    }

    /// A comma-separated list of runtime statuses.
    pub fn statuses(&self, name: &str) -> Result<Vec<RuntimeStatus>, ApiError> {
        let Some(list) = self.0.get(name) else {
            return Ok(Vec::new());
        };
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse::<RuntimeStatus>()
                    .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
            })
            .collect()
    }

    /// A positive count.
    pub fn count(&self, name: &str) -> Result<Option<usize>, ApiError> {
        self.0
            .get(name)
            .map(|v| match v.parse::<usize>() {
                Ok(n) if n > 0 && n <= 1000 => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be a number from 1 to 1000, not '{v}'"
                ))),
            })
            .transpose()
    }

    /// A position parameter: a whole number from 0 to [`MAX_POSITION`] (the maximum the
    /// OpenAPI document declares).
    pub fn position(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|v| match v.parse::<u64>() {
                Ok(n) if n <= MAX_POSITION => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be a whole number from 0 to {MAX_POSITION}, not '{v}'"
                ))),
            })
            .transpose()
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// A JSON body: empty means `null`; otherwise the content type must be JSON (or absent)
/// and the body must parse.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if let Some(content_type) = headers.get("content-type") {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !content_type.starts_with("application/json") && !content_type.contains("+json") {
            return Err(ApiError::bad_request(format!(
                "the body must be JSON (Content-Type: application/json), not '{content_type}'"
            )));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}
