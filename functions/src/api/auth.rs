//! API keys, like function keys: sent as the `x-functions-key` header or the `code` query
//! parameter, compared in constant time. Without a configured key the API refuses every
//! call, unless it was started in the explicit open local mode.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState, ErrorCode};

/// How callers are authenticated.
#[derive(Clone)]
pub enum Access {
    /// A key is required.
    Key(String),
    /// No key: only for local development (`--open`).
    Open,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(_) => f.write_str("Key(<redacted>)"),
            Self::Open => f.write_str("Open"),
        }
    }
}

/// Middleware: 401 unless the request carries the key.
pub async fn require_key(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Access::Key(expected) = &state.access else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok());
    let query = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(mut q)| q.remove("code"));
    let presented = header.map(str::to_owned).or(query);
    let ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong API key (send it as the x-functions-key header or the code query parameter)",
        )
        .into_response()
    }
}
