//! Every API call answers in bounded time. Once storage is known to be in an outage (the
//! backend's outage tracker says so) a call that has waited [`OUTAGE_DEADLINE`] gets a 503
//! with `Retry-After` at once, rather than a connection held for as long as the outage
//! lasts; calls still go to storage, so the API notices the recovery itself. Otherwise
//! [`API_DEADLINE`] is the backstop for a storage service that has slowed to a crawl.
//! Cancelling a call midway is as safe as a crash of the worker, which the engine is built
//! to survive (a start already sent runs once; a retried call is idempotent or refused
//! with 409).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::{ApiError, ApiState, ErrorCode};

/// The longest an API call may take while storage answers.
pub const API_DEADLINE: Duration = Duration::from_secs(30);

/// The longest an API call waits once storage is known to be in an outage.
pub const OUTAGE_DEADLINE: Duration = Duration::from_secs(3);

/// How often a waiting call looks at the outage tracker.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Middleware: 503 when the handler has not answered within its deadline.
pub async fn within_deadline(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let client = state.client.clone();
    respond_within(
        move || client.storage_unreachable_for().is_some(),
        request,
        next,
    )
    .await
}

/// Whether a call that has waited `waited` should give up.
fn out_of_time(waited: Duration, outage: bool) -> bool {
    waited >= API_DEADLINE || (outage && waited >= OUTAGE_DEADLINE)
}

async fn respond_within(outage: impl Fn() -> bool, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let call = next.run(request);
    tokio::pin!(call);
    loop {
        tokio::select! {
            response = &mut call => return response,
            () = tokio::time::sleep(LOOK_EVERY) => {
                let waited = started.elapsed();
                if out_of_time(waited, outage()) {
                    return unavailable(waited);
                }
            }
        }
    }
}

fn unavailable(waited: Duration) -> Response {
    tracing::warn!(
        waited_secs = waited.as_secs(),
        "an API call ran out of time waiting for storage"
    );
    let mut response = ApiError::new(
        ErrorCode::StorageUnavailable,
        format!(
            "storage did not answer within {} s; retry later",
            waited.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn app(outage: bool) -> Router {
        Router::new()
            .route("/hangs", get(std::future::pending::<&'static str>))
            .route("/answers", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(move |request, next| {
                respond_within(move || outage, request, next)
            }))
    }

    async fn call(app: Router, path: &str) -> (StatusCode, Duration, serde_json::Value) {
        let started = Instant::now();
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let waited = started.elapsed();
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()[header::RETRY_AFTER], "10");
        }
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, waited, body)
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_storage_never_answers_gets_a_503_at_the_deadline() {
        let (status, waited, body) = call(app(false), "/hangs").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(waited >= API_DEADLINE && waited < API_DEADLINE + LOOK_EVERY * 2);
        assert!(body["error"].as_str().unwrap().contains("did not answer"));
        let (status, _, _) = call(app(false), "/answers").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn in_an_outage_the_503_comes_within_seconds() {
        let (status, waited, _) = call(app(true), "/hangs").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(waited >= OUTAGE_DEADLINE && waited < OUTAGE_DEADLINE + LOOK_EVERY * 2);
        let (status, _, _) = call(app(true), "/answers").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a call storage answers still succeeds"
        );
    }
}
