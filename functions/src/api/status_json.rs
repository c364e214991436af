//! Statuses and history events as Durable Functions writes them: camelCase status fields,
//! PascalCase history fields with `EventType`, timestamps as `YYYY-MM-DDThh:mm:ssZ`.

use chrono::{DateTime, SecondsFormat, Utc};
use flowforge_orchestrator::chain::Chain;
use flowforge_orchestrator::history::{EventKind, FailureDetails, HistoryEvent};
use flowforge_orchestrator::status::InstanceStatus;
use serde_json::{json, Map, Value};

/// A timestamp formatted as Durable Functions formats it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A history event's time, to the millisecond (as Durable Functions gives it, with a
/// fraction): a timeline of steps that take milliseconds needs it.
fn event_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The status body of `GET instances/{id}` (and each element of the list).
pub fn status(status: &InstanceStatus) -> Value {
    let mut body = json!({
        "name": status.name,
        "instanceId": status.instance_id,
        "runtimeStatus": status.runtime_status.as_str(),
        "input": status.input.clone().unwrap_or(Value::Null),
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": timestamp(status.created_time),
        "lastUpdatedTime": timestamp(status.last_updated_time),
    });
    if let (Some(failure), Some(map)) = (&status.failure, body.as_object_mut()) {
        map.insert("failureDetails".into(), failure_details(failure));
    }
    if let (Some(history), Some(map)) = (&status.history, body.as_object_mut()) {
        let events: Vec<Value> = history.iter().filter_map(history_event).collect();
        // Durable Functions' HTTP API names it `historyEvents`; its official clients read
        // `history`. Both, so either reader finds it.
        map.insert("history".into(), Value::Array(events.clone()));
        map.insert("historyEvents".into(), Value::Array(events));
    }
    body
}

/// The links of a run to the chained runs around it, derived from the declared chains
/// (no storage read): `chainedFrom` on a run a chain started (`<A>-then-<chain>`), and
/// `chainedRuns` on a finished run whose end fires chains (the ids they start).
pub fn add_chain_links(body: &mut Value, status: &InstanceStatus, chains: &[Chain]) {
    let Some(map) = body.as_object_mut() else {
        return;
    };
    let from = chains.iter().find_map(|chain| {
        let parent = status
            .instance_id
            .strip_suffix(&format!("-then-{}", chain.name))?;
        (chain.start == status.name && !parent.is_empty())
            .then(|| json!({"chain": chain.name, "instanceId": parent}))
    });
    if let Some(from) = from {
        map.insert("chainedFrom".into(), from);
    }
    if status.runtime_status.is_terminal() {
        let runs: Vec<Value> = chains
            .iter()
            .filter(|c| c.fires_on(&status.name, status.runtime_status, &status.output))
            .map(|c| {
                json!({
                    "chain": c.name,
                    "orchestration": c.start,
                    "instanceId": c.instance_id_after(&status.instance_id),
                })
            })
            .collect();
        if !runs.is_empty() {
            map.insert("chainedRuns".into(), Value::Array(runs));
        }
    }
}

/// A failure as the Durable Task SDKs show it (`errorType`, `errorMessage`, …), with its
/// stable `FFD-…` code when the engine reported it (`docs/errors/`).
pub fn failure_details(failure: &FailureDetails) -> Value {
    json!({
        "errorType": failure.kind.as_str(),
        "errorCode": failure.kind.code(),
        "errorMessage": failure.message,
        "isNonRetriable": !failure.retryable,
        "innerFailure": failure.inner.as_deref().map(failure_details),
    })
}

/// One history event in Durable Functions' shape (episode markers are left out, as there).
pub fn history_event(event: &HistoryEvent) -> Option<Value> {
    let mut map = Map::new();
    let mut put = |k: &str, v: Value| {
        map.insert(k.to_owned(), v);
    };
    let event_type = match &event.kind {
        EventKind::OrchestratorStarted => return None,
        EventKind::ExecutionStarted { name, input, .. } => {
            put("FunctionName", json!(name));
            put("Input", input.clone());
            "ExecutionStarted"
        }
        EventKind::ExecutionCompleted { output } => {
            put("OrchestrationStatus", json!("Completed"));
            put("Result", output.clone());
            "ExecutionCompleted"
        }
        EventKind::ExecutionFailed { failure } => {
            put("OrchestrationStatus", json!("Failed"));
            put("Reason", json!(failure.message));
            put("Details", json!(failure));
            "ExecutionFailed"
        }
        EventKind::ExecutionTerminated { reason } => {
            put("Reason", json!(reason));
            "ExecutionTerminated"
        }
        EventKind::ContinuedAsNew { input } => {
            put("Input", input.clone());
            "ContinuedAsNew"
        }
        EventKind::ExecutionSuspended { reason } => {
            put("Reason", json!(reason));
            "ExecutionSuspended"
        }
        EventKind::ExecutionResumed { reason } => {
            put("Reason", json!(reason));
            "ExecutionResumed"
        }
        EventKind::ExecutionRewound { reason, failures } => {
            put("Reason", json!(reason));
            put("RewoundEvents", json!(failures));
            "ExecutionRewound"
        }
        EventKind::ActivityScheduled {
            id, name, input, ..
        } => {
            put("EventId", json!(id));
            put("FunctionName", json!(name));
            put("Input", input.clone());
            "TaskScheduled"
        }
        EventKind::ActivityCompleted {
            scheduled_id,
            result,
        } => {
            put("TaskScheduledId", json!(scheduled_id));
            put("Result", result.clone());
            "TaskCompleted"
        }
        EventKind::ActivityFailed {
            scheduled_id,
            failure,
        } => {
            put("TaskScheduledId", json!(scheduled_id));
            put("Reason", json!(failure.message));
            put("Details", json!(failure));
            "TaskFailed"
        }
        EventKind::TimerCreated { id, fire_at } => {
            put("EventId", json!(id));
            put("FireAt", json!(timestamp(*fire_at)));
            "TimerCreated"
        }
        EventKind::TimerFired {
            scheduled_id,
            fire_at,
        } => {
            put("TimerId", json!(scheduled_id));
            put("FireAt", json!(timestamp(*fire_at)));
            "TimerFired"
        }
        EventKind::SubOrchestrationScheduled {
            id,
            name,
            instance_id,
            input,
            ..
        } => {
            put("EventId", json!(id));
            put("FunctionName", json!(name));
            put("InstanceId", json!(instance_id));
            put("Input", input.clone());
            "SubOrchestrationInstanceCreated"
        }
        EventKind::SubOrchestrationCompleted {
            scheduled_id,
            result,
        } => {
            put("TaskScheduledId", json!(scheduled_id));
            put("Result", result.clone());
            "SubOrchestrationInstanceCompleted"
        }
        EventKind::SubOrchestrationFailed {
            scheduled_id,
            failure,
        } => {
            put("TaskScheduledId", json!(scheduled_id));
            put("Reason", json!(failure.message));
            put("Details", json!(failure));
            "SubOrchestrationInstanceFailed"
        }
        EventKind::OrchestrationStartSent {
            name,
            instance_id,
            input,
            ..
        } => {
            put("FunctionName", json!(name));
            put("InstanceId", json!(instance_id));
            put("Input", input.clone());
            "OrchestrationStarted"
        }
        EventKind::EventRaised { name, input, .. } => {
            put("Name", json!(name));
            put("Input", input.clone());
            "EventRaised"
        }
        EventKind::EventSent {
            instance_id,
            name,
            input,
            ..
        } => {
            put("Name", json!(name));
            put("InstanceId", json!(instance_id));
            put("Input", input.clone());
            "EventSent"
        }
        EventKind::CustomStatusSet { status } => {
            put("CustomStatus", status.clone());
            "CustomStatusSet"
        }
    };
    map.insert("EventType".into(), json!(event_type));
    map.insert("Timestamp".into(), json!(event_timestamp(event.timestamp)));
    Some(Value::Object(map))
}
