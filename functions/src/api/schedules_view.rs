//! `GET schedules`: the configured schedules for the dashboard and operators — each with
//! its next occurrences and what ran for its latest ones (one status read per occurrence,
//! by the deterministic instance id, so the cost does not grow with the task hub).
//! `POST schedules/{name}/backfill`: start the occurrences of a past range (each once,
//! whoever else starts them; a limit; a dry run). `POST schedules/{name}/trigger`: run
//! now, as the occurrence of this second.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use serde_json::{json, Value};

use super::handlers::{params, path, PathArg, QueryArg};
use super::{ApiError, ApiState, ErrorCode};
use crate::schedules::{self, BackfillError, Schedule};

/// How many upcoming and how many recent occurrences are shown.
const SHOWN: usize = 5;

pub async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let now = Utc::now();
    let mut schedules = Vec::new();
    for schedule in state.schedules.iter() {
        let mut recent = Vec::new();
        for occurrence in schedule.recent(now, SHOWN).into_iter().rev() {
            let instance_id = schedule.instance_id(occurrence);
            let status = match state
                .client
                .status(&instance_id, StatusOptions::default())
                .await
            {
                Ok(status) => json!(status.runtime_status.to_string()),
                Err(ClientError::NotFound(_)) => Value::Null,
                Err(error) => return Err(error.into()),
            };
            recent.push(json!({
                "occurrence": occurrence.to_rfc3339(),
                "instanceId": instance_id,
                "runtimeStatus": status,
            }));
        }
        let spec = schedule.spec();
        schedules.push(json!({
            "name": spec.name,
            "cron": spec.cron,
            "timeZone": spec.time_zone.as_deref().unwrap_or("UTC"),
            "orchestration": spec.orchestration,
            "overlap": spec.overlap,
            "next": schedule
                .upcoming(now, SHOWN)
                .iter()
                .map(|t| t.to_rfc3339())
                .collect::<Vec<_>>(),
            "recent": recent,
        }));
    }
    Ok(Json(schedules).into_response())
}

fn schedule_named<'a>(state: &'a ApiState, name: &str) -> Result<&'a Schedule, ApiError> {
    state
        .schedules
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no schedule named '{name}'")))
}

/// `POST schedules/{name}/backfill?from=&to=&limit=&dryRun=`.
pub async fn backfill(
    State(state): State<ApiState>,
    name: PathArg<String>,
    query: QueryArg,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let params = params(query)?;
    let schedule = schedule_named(&state, &name)?;
    let from = params
        .time("from")?
        .ok_or_else(|| ApiError::bad_request("from is required (RFC 3339)"))?;
    let to = params
        .time("to")?
        .ok_or_else(|| ApiError::bad_request("to is required (RFC 3339)"))?;
    let limit = params.count("limit")?.unwrap_or(100);
    if limit == 0 || limit > schedules::MAX_BACKFILL {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            schedules::MAX_BACKFILL
        )));
    }
    let dry_run = params.flag("dryRun", false)?;
    let done = schedules::backfill(&state.client, schedule, from, to, limit, dry_run)
        .await
        .map_err(|e| match e {
            BackfillError::Range(message) => ApiError::bad_request(message),
            BackfillError::Storage(message) => {
                ApiError::new(ErrorCode::StorageUnavailable, message)
            }
        })?;
    Ok(Json(json!({ "schedule": name, "dryRun": dry_run, "occurrences": done })).into_response())
}

/// `POST schedules/{name}/trigger`: 202 with the instance started now.
pub async fn trigger(
    State(state): State<ApiState>,
    name: PathArg<String>,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let schedule = schedule_named(&state, &name)?;
    let now = Utc::now();
    let instance_id = schedules::trigger_now(&state.client, schedule, now)
        .await
        .map_err(|e| ApiError::new(ErrorCode::StorageUnavailable, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "instanceId": instance_id })),
    )
        .into_response())
}
