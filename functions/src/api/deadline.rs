//! Every API call answers within [`API_DEADLINE`]: when storage does not answer in time the
//! caller gets a 503 with `Retry-After` at once rather than a connection held for as long as
//! the outage lasts. Cancelling a call midway is as safe as a crash of the worker, which
//! the engine is built to survive (a start already sent runs once; a retried call is
//! idempotent or refused with 409).

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The longest an API call may take.
pub const API_DEADLINE: Duration = Duration::from_secs(10);

/// Middleware: 503 when the handler has not answered within [`API_DEADLINE`].
pub async fn within_deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(API_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                deadline_secs = API_DEADLINE.as_secs(),
                "an API call ran out of time waiting for storage"
            );
            let mut response = ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "storage did not answer within {} s; retry later",
                    API_DEADLINE.as_secs()
                ),
            }
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_storage_never_answers_gets_a_503_at_the_deadline() {
        let app = Router::new()
            .route("/hangs", get(std::future::pending::<&'static str>))
            .route("/answers", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(within_deadline));
        let hung = app
            .clone()
            .oneshot(Request::get("/hangs").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(hung.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(hung.headers()[header::RETRY_AFTER], "10");
        let body = axum::body::to_bytes(hung.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("did not answer"));
        let answered = app
            .oneshot(Request::get("/answers").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
    }
}
