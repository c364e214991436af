//! The one error type of the API: a stable machine-readable code (which fixes the HTTP
//! status) and a message that says what is wrong. The body carries our fields (`error`,
//! `code`) and the ones Durable Functions' clients read (`Message`, `ExceptionMessage`,
//! `ExceptionType`: the Python client reads `ExceptionMessage` of a 400). Storage details
//! are logged, not returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowforge_orchestrator::client::Error as ClientError;
use serde_json::json;

/// The stable codes of API errors (listed in `docs/api-errors.md` and the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A parameter, path segment or body is malformed (400).
    BadRequest,
    /// No orchestration of that name is registered (400).
    UnknownOrchestration,
    /// Missing or wrong key (401).
    Unauthorized,
    /// No such instance or dead letter (404).
    NotFound,
    /// No route at that path (404).
    NoRoute,
    /// The method is not one the route has (405).
    MethodNotAllowed,
    /// The instance exists and is not finished (409).
    Conflict,
    /// The instance has finished (410).
    Finished,
    /// A body without Content-Length under the Functions host (411).
    LengthRequired,
    /// The instance is not in the state the call needs, e.g. rewind of a non-failed one (412).
    PreconditionFailed,
    /// The body is larger than the configured limit (413).
    BodyTooLarge,
    /// A schedule the schema allows but the engine cannot run: a cron expression its
    /// parser refuses, an unknown time zone or orchestration (422).
    InvalidSchedule,
    /// A backfill range the schema allows but that is backwards or holds more occurrences
    /// than its limit (422).
    InvalidRange,
    /// Storage failed in a way a retry will not fix (500).
    StorageFailed,
    /// Storage is unreachable or slow; retry after `Retry-After` (503).
    StorageUnavailable,
}

impl ErrorCode {
    /// The code as sent in bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::UnknownOrchestration => "UnknownOrchestration",
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "NotFound",
            Self::NoRoute => "NoRoute",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Conflict => "Conflict",
            Self::Finished => "Finished",
            Self::LengthRequired => "LengthRequired",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::BodyTooLarge => "BodyTooLarge",
            Self::InvalidSchedule => "InvalidSchedule",
            Self::InvalidRange => "InvalidRange",
            Self::StorageFailed => "StorageFailed",
            Self::StorageUnavailable => "StorageUnavailable",
        }
    }

    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::UnknownOrchestration => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Finished => StatusCode::GONE,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidSchedule | Self::InvalidRange => StatusCode::UNPROCESSABLE_ENTITY,
            Self::StorageFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Self::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// What kind of error (fixes the status).
    pub code: ErrorCode,
    /// What went wrong, for the caller.
    pub message: String,
}

impl ApiError {
    /// An error of `code` with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": self.message,
            "code": self.code.as_str(),
            "Message": self.message,
            "ExceptionMessage": self.message,
            "ExceptionType": format!("FlowForge.{}", self.code.as_str()),
        })
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let code = match &error {
            ClientError::InvalidInput(_) => ErrorCode::BadRequest,
            ClientError::NotFound(_) | ClientError::DeadLetterNotFound(_) => ErrorCode::NotFound,
            ClientError::AlreadyRunning { .. } | ClientError::NotFinished { .. } => {
                ErrorCode::Conflict
            }
            ClientError::Finished { .. } => ErrorCode::Finished,
            ClientError::NotRewindable { .. } => ErrorCode::PreconditionFailed,
            // Only the blocking wait of the library returns this; the API never waits.
            ClientError::Timeout { .. } => ErrorCode::StorageUnavailable,
            ClientError::Storage(e) => {
                tracing::error!(error = %e, "storage error behind an API call");
                let code = if e.is_transient() {
                    ErrorCode::StorageUnavailable
                } else {
                    ErrorCode::StorageFailed
                };
                return Self::new(code, "the storage service failed; retry later");
            }
        };
        Self::new(code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_our_code_and_durable_functions_fields() {
        let error = ApiError::new(ErrorCode::UnknownOrchestration, "no orchestration 'x'");
        let body = error.body();
        assert_eq!(body["code"], "UnknownOrchestration");
        assert_eq!(body["error"], "no orchestration 'x'");
        assert_eq!(body["ExceptionMessage"], "no orchestration 'x'");
        assert_eq!(body["ExceptionType"], "FlowForge.UnknownOrchestration");
        assert_eq!(error.code.status(), StatusCode::BAD_REQUEST);
    }
}
