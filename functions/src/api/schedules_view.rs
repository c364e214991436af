//! `GET schedules`: the configured schedules for the dashboard and operators — each with
//! its next occurrences and what ran for its latest ones (one status read per occurrence,
//! by the deterministic instance id, so the cost does not grow with the task hub).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use serde_json::{json, Value};

use super::{ApiError, ApiState};

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
