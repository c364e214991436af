//! The schedules of the task hub over HTTP: `GET schedules` and `GET schedules/{name}`
//! (each with its state, next occurrences and latest runs), `POST schedules` (create),
//! `PUT`/`DELETE schedules/{name}`, `POST schedules/{name}/pause|resume`.
//! `POST schedules/{name}/backfill`: start the occurrences of a past range (each once,
//! whoever else starts them; a limit; a dry run). `POST schedules/{name}/trigger`: run
//! now, as the occurrence of this second.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use serde_json::{json, Value};

use super::handlers::{params, path, PathArg, QueryArg};
use super::params::json_body;
use super::{ApiError, ApiState, ErrorCode};
use crate::schedules::{self, BackfillError, BookEntry, BookError, ScheduleSpec};

/// How many upcoming and how many recent occurrences are shown.
const SHOWN: usize = 5;

impl From<BookError> for ApiError {
    fn from(error: BookError) -> Self {
        let code = match &error {
            BookError::NotFound(_) => ErrorCode::NotFound,
            BookError::Exists(_) => ErrorCode::Conflict,
            BookError::Invalid(_) => ErrorCode::InvalidSchedule,
            BookError::Storage(_) => ErrorCode::StorageUnavailable,
        };
        ApiError::new(code, error.to_string())
    }
}

/// A schedule as the API shows it: its spec, its state, its next occurrences and what ran
/// for its latest ones (one status read per occurrence, by the deterministic instance id,
/// so the cost does not grow with the task hub).
async fn view(state: &ApiState, entry: &BookEntry) -> Result<Value, ApiError> {
    let now = Utc::now();
    let schedule = &entry.schedule;
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
    let record = &entry.record;
    let next: Vec<String> = if record.paused.is_some() {
        Vec::new()
    } else {
        schedule
            .upcoming(now, SHOWN)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    };
    Ok(json!({
        "name": spec.name,
        "cron": spec.cron,
        "timeZone": spec.time_zone.as_deref().unwrap_or("UTC"),
        "orchestration": spec.orchestration,
        "input": spec.input,
        "overlap": spec.overlap,
        "paused": record.paused.is_some(),
        "pausedAt": record.paused.as_ref().map(|p| p.at.to_rfc3339()),
        "pauseReason": record.paused.as_ref().map(|p| p.reason.clone()),
        "buffered": record.buffered.map(|t| schedule.instance_id(t)),
        "origin": record.origin,
        "updatedAt": record.updated_at.to_rfc3339(),
        "next": next,
        "recent": recent,
    }))
}

/// `GET schedules`: every schedule of the task hub.
pub async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let mut schedules = Vec::new();
    for entry in state.schedules.all().await? {
        schedules.push(view(&state, &entry).await?);
    }
    Ok(Json(schedules).into_response())
}

/// `GET schedules/{name}`.
pub async fn show(
    State(state): State<ApiState>,
    name: PathArg<String>,
) -> Result<Response, ApiError> {
    let entry = state.schedules.get(&path(name)?).await?;
    Ok(Json(view(&state, &entry).await?).into_response())
}

/// A schedule spec from a JSON body: 400 when it is not one, 422 when the orchestration
/// is not registered here.
fn spec_body(state: &ApiState, headers: &HeaderMap, body: &[u8]) -> Result<ScheduleSpec, ApiError> {
    let value = json_body(headers, body)?;
    let spec: ScheduleSpec = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("the body is not a schedule: {e}")))?;
    if !state.orchestrations.contains(&spec.orchestration) {
        return Err(ApiError::new(
            ErrorCode::InvalidSchedule,
            format!(
                "no orchestration named '{}' is registered",
                spec.orchestration
            ),
        ));
    }
    Ok(spec)
}

/// `POST schedules`: 201 with the schedule; 409 if the name is taken.
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = spec_body(&state, &headers, &body)?;
    let entry = state.schedules.create(spec, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &entry).await?)).into_response())
}

/// `PUT schedules/{name}`: replaces the spec (the name stays).
pub async fn update(
    State(state): State<ApiState>,
    name: PathArg<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let spec = spec_body(&state, &headers, &body)?;
    let entry = state.schedules.update(&name, spec, Utc::now()).await?;
    Ok(Json(view(&state, &entry).await?).into_response())
}

/// `DELETE schedules/{name}`: 204; its runs stay.
pub async fn delete(
    State(state): State<ApiState>,
    name: PathArg<String>,
) -> Result<Response, ApiError> {
    state.schedules.delete(&path(name)?, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST schedules/{name}/pause?reason=`.
pub async fn pause(
    State(state): State<ApiState>,
    name: PathArg<String>,
    query: QueryArg,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let reason = params(query)?.text("reason").unwrap_or_default();
    let entry = state.schedules.pause(&name, &reason, Utc::now()).await?;
    Ok(Json(view(&state, &entry).await?).into_response())
}

/// `POST schedules/{name}/resume?catchUp=`: the occurrences of the pause do not fire,
/// unless `catchUp=true` backfills them (at most [`schedules::MAX_BACKFILL`]).
pub async fn resume(
    State(state): State<ApiState>,
    name: PathArg<String>,
    query: QueryArg,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let catch_up = params(query)?.flag("catchUp", false)?;
    let now = Utc::now();
    let (entry, paused_at) = state.schedules.resume(&name, now).await?;
    let mut caught_up = Vec::new();
    if let (true, Some(from)) = (catch_up, paused_at) {
        caught_up = schedules::backfill(
            &state.client,
            &entry.schedule,
            from,
            now,
            schedules::MAX_BACKFILL,
            false,
        )
        .await
        .map_err(backfill_error)?;
    }
    let mut body = view(&state, &entry).await?;
    body["caughtUp"] = json!(caught_up);
    Ok(Json(body).into_response())
}

fn backfill_error(error: BackfillError) -> ApiError {
    match error {
        BackfillError::Range(message) => ApiError::new(ErrorCode::InvalidRange, message),
        BackfillError::Storage(message) => ApiError::new(ErrorCode::StorageUnavailable, message),
    }
}

/// `POST schedules/{name}/backfill?from=&to=&limit=&dryRun=`.
pub async fn backfill(
    State(state): State<ApiState>,
    name: PathArg<String>,
    query: QueryArg,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let params = params(query)?;
    let entry = state.schedules.get(&name).await?;
    let schedule = &entry.schedule;
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
        .map_err(backfill_error)?;
    Ok(Json(json!({ "schedule": name, "dryRun": dry_run, "occurrences": done })).into_response())
}

/// `POST schedules/{name}/trigger`: 202 with the instance started now.
pub async fn trigger(
    State(state): State<ApiState>,
    name: PathArg<String>,
) -> Result<Response, ApiError> {
    let name = path(name)?;
    let entry = state.schedules.get(&name).await?;
    let now = Utc::now();
    let instance_id = schedules::trigger_now(&state.client, &entry.schedule, now)
        .await
        .map_err(|e| ApiError::new(ErrorCode::StorageUnavailable, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "instanceId": instance_id })),
    )
        .into_response())
}
