//! The one error type of the API: a status code and a message that says what is wrong.
//! Storage details are logged, not returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowforge_orchestrator::client::Error as ClientError;
use serde_json::json;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let status = match &error {
            ClientError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ClientError::NotFound(_) | ClientError::DeadLetterNotFound(_) => StatusCode::NOT_FOUND,
            ClientError::AlreadyRunning { .. } | ClientError::NotFinished { .. } => {
                StatusCode::CONFLICT
            }
            ClientError::Finished { .. } => StatusCode::GONE,
            ClientError::Timeout { .. } => StatusCode::ACCEPTED,
            ClientError::Storage(e) => {
                tracing::error!(error = %e, "storage error behind an API call");
                return Self {
                    status: if e.is_transient() {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    },
                    message: "the storage service failed; retry later".into(),
                };
            }
        };
        Self {
            status,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
