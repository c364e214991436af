//! `deadletters`: the dead-letter archive over HTTP (list, show, requeue, delete), the
//! same operations as `flowforge dead-letters`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowforge_orchestrator::backend::ArchivedLetter;
use serde_json::{json, Value};

use super::handlers::{params, path, PathArg, QueryArg};
use super::{ApiError, ApiState};

type ApiResult = Result<Response, ApiError>;

/// The JSON of an archived letter.
pub fn letter_json(archived: &ArchivedLetter) -> Value {
    json!({
        "id": archived.id,
        "queue": archived.queue.suffix(),
        "archivedAt": archived.archived_at.to_rfc3339(),
        "instanceId": archived.instance_id(),
        "reason": archived.letter.reason,
        "dequeueCount": archived.letter.dequeue_count,
        "body": archived.letter.raw,
    })
}

/// `GET deadletters?top=`: newest first.
pub async fn list(State(state): State<ApiState>, query: QueryArg) -> ApiResult {
    let top = params(query)?.count("top")?.unwrap_or(100);
    let letters = state.client.dead_letters(top).await?;
    let body: Vec<Value> = letters.iter().map(letter_json).collect();
    Ok(Json(body).into_response())
}

/// `GET deadletters/{id}`.
pub async fn show(State(state): State<ApiState>, id: PathArg<String>) -> ApiResult {
    let letter = state.client.dead_letter(&path(id)?).await?;
    Ok(Json(letter_json(&letter)).into_response())
}

/// `POST deadletters/{id}/requeue`: 202; the message is back on its queue.
pub async fn requeue(State(state): State<ApiState>, id: PathArg<String>) -> ApiResult {
    let letter = state.client.requeue_dead_letter(&path(id)?).await?;
    Ok((StatusCode::ACCEPTED, Json(letter_json(&letter))).into_response())
}

/// `DELETE deadletters/{id}`.
pub async fn delete(State(state): State<ApiState>, id: PathArg<String>) -> ApiResult {
    state.client.delete_dead_letter(&path(id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
