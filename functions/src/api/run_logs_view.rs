//! `GET instances/{id}/logs`: what an instance's activities logged through `tracing`, per
//! attempt, in order; `top` chunks a page (default 100, at most 1,000), the next page's
//! token in `x-ms-continuation-token` as for `GET instances`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowforge_orchestrator::run_logs::LogChunk;
use serde_json::{json, Value};

use super::handlers::{continuation, params, path, set_header, PathArg, QueryArg, CONTINUATION};
use super::{ApiError, ApiState};

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 1_000;

pub async fn list(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path(id)?;
    let top = params(query)?.count("top")?.unwrap_or(DEFAULT_TOP);
    if top == 0 || top > MAX_TOP {
        return Err(ApiError::bad_request(format!(
            "top must be between 1 and {MAX_TOP}"
        )));
    }
    let after = continuation(&headers);
    let page = state.client.run_logs(&id, after.as_deref(), top).await?;
    let body = json!({ "instanceId": id, "attempts": attempts(page.chunks) });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(token) = page.continuation {
        set_header(
            &mut response,
            header::HeaderName::from_static(CONTINUATION),
            &token,
        );
    }
    Ok(response)
}

/// Chunks of one attempt next to each other become one attempt with all their lines.
fn attempts(chunks: Vec<LogChunk>) -> Vec<Value> {
    let mut grouped: Vec<(LogChunk, u64)> = Vec::new();
    for chunk in chunks {
        match grouped.last_mut() {
            Some((last, dropped)) if last.attempt == chunk.attempt => {
                last.lines.extend(chunk.lines);
                *dropped += chunk.dropped;
            }
            _ => {
                let dropped = chunk.dropped;
                grouped.push((chunk, dropped));
            }
        }
    }
    grouped
        .into_iter()
        .map(|(chunk, dropped)| {
            let attempt = &chunk.attempt;
            json!({
                "executionId": attempt.execution_id,
                "activity": attempt.activity,
                "activityId": attempt.activity_id,
                "delivery": attempt.delivery,
                "startedAt": attempt.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "lines": chunk.lines,
                "droppedLines": dropped,
            })
        })
        .collect()
}
