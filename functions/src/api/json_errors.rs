//! Every error answer is JSON with a code, including the ones axum writes itself: a body
//! over the limit (413, text/plain from the body extractor) and a route called with a
//! method it lacks (405, empty). Headers such as `Allow` and `Retry-After` are kept.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ErrorCode};

/// The largest plain-text error body read to reuse as the message.
const MESSAGE_LIMIT: usize = 4096;

/// Middleware: rewrites a non-JSON error answer of a known status as an [`ApiError`].
pub async fn as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(code) = code_for(response.status()) else {
        return response;
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_LIMIT)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if text.is_empty() {
        default_message(code).to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

fn code_for(status: StatusCode) -> Option<ErrorCode> {
    Some(match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NoRoute,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        _ => return None,
    })
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::MethodNotAllowed => {
            "this route does not take that method (the Allow header lists the ones it does)"
        }
        ErrorCode::NoRoute => "no such route; see the OpenAPI document at <base>openapi.json",
        _ => "the request was refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    async fn call(
        method: &str,
        body: &'static str,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let app = Router::new()
            .route("/echo", post(|body: axum::body::Bytes| async move { body }))
            .layer(DefaultBodyLimit::max(8))
            .layer(axum::middleware::from_fn(as_json));
        let request = Request::builder()
            .method(method)
            .uri("/echo")
            .body(Body::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let allow = response
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (
            status,
            allow,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_json_413() {
        let (status, _, body) = call("POST", "far more than eight bytes").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], "BodyTooLarge");
        assert!(!body["error"].as_str().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_json_405_that_keeps_allow() {
        let (status, allow, body) = call("PUT", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "MethodNotAllowed");
        assert!(allow.unwrap().contains("POST"));
    }

    #[tokio::test]
    async fn answers_that_are_not_errors_pass_untouched() {
        let (status, _, _) = call("POST", "short").await;
        assert_eq!(status, StatusCode::OK);
    }
}
