//! `flowforge serve`: the Azure Functions custom handler. Listens on 127.0.0.1 at
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, answers the host's readiness probe (`GET /`) and serves
//! `POST /{FunctionName}` for every function of the app with the host's envelopes.
//!
//! HTTP functions are bridged into the same router as the standalone API (envelope in,
//! response envelope out; the host checks the function keys, so the router runs open).
//! Queue functions run one message through the engine ([`HostedWorker`]); the host deletes
//! the message on 2xx, so the handler answers non-2xx until a message's effect is durable.
//! Poison-queue functions archive what the host moved there and fail the instance it
//! belonged to, so no instance stays Running. The timer function fires the schedules; the
//! Event Grid function starts a medallion run per new landing file (the host's Event Grid
//! extension does the subscription handshake).

pub mod envelope;
pub mod functions;
pub mod host_json;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flowforge_orchestrator::backend::{DeadLetter, QueueMessage, QueueName};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::{HostOptions, HostedWorker};
use serde_json::{json, Value};
use tower::ServiceExt;
use tracing::{info, warn};

use crate::api::{self, Access, ApiState};
use crate::schedules::{self, Schedule, ScheduleBook};
use flowforge_orchestrator::retention::{purge_expired, Pace, RetentionPolicy};
use functions::Trigger;

/// Everything the handler needs.
#[derive(Clone)]
pub struct HostState {
    /// The management API, bridged for HTTP functions.
    pub api: Router,
    /// Runs queue messages through the engine.
    pub worker: Arc<HostedWorker>,
    /// The client (schedules, poison handling).
    pub client: Client,
    /// The task hub's schedules.
    pub schedules: ScheduleBook,
    /// The storage, for the retention pass.
    pub backend: Arc<dyn flowforge_orchestrator::backend::Backend>,
    /// The retention policy the `Retention` timer applies (`None`: the timer does nothing).
    pub retention: Option<RetentionPolicy>,
    /// How long one retention pass may run: the invocation's budget within `functionTimeout`.
    pub retention_budget: std::time::Duration,
}

impl HostState {
    /// Builds the handler state over a backend and a registry.
    pub fn new(
        backend: Arc<dyn flowforge_orchestrator::backend::Backend>,
        registry: Registry,
        schedules: Vec<Schedule>,
        host: HostOptions,
        worker_options: WorkerOptions,
        retention: Option<RetentionPolicy>,
    ) -> Self {
        let client = Client::new(backend.clone());
        let schedules = ScheduleBook::new(client.clone(), schedules);
        let api_state = ApiState {
            client: client.clone(),
            orchestrations: Arc::new(registry.orchestration_names()),
            access: Access::Open,
            base_path: "/api/".into(),
            public_url: None,
            body_limit: 4 * 1024 * 1024,
            schedules: schedules.clone(),
            chains: Arc::new(registry.chains().to_vec()),
        };
        let retention_budget = host.invocation_budget;
        let worker = HostedWorker::new(backend.clone(), registry, worker_options, host);
        Self {
            api: api::router(api_state),
            worker: Arc::new(worker),
            client,
            schedules,
            backend,
            retention,
            retention_budget,
        }
    }
}

/// The handler state once storage is connected. The listener opens before that, so the
/// host's readiness probe is answered at once (cold start); invocations wait for it.
pub type LazyState = tokio::sync::watch::Receiver<Option<HostState>>;

/// The largest invocation envelope: the API's 4 MiB body limit, escaped into a JSON string
/// (up to ~6× for control bytes) plus headers and metadata.
pub const ENVELOPE_LIMIT: usize = 32 * 1024 * 1024;

/// The handler's router.
pub fn router(state: LazyState) -> Router {
    Router::new()
        .route("/", get(|| async { "FlowForge custom handler ready" }))
        .route("/{function}", post(invoke))
        .layer(axum::extract::DefaultBodyLimit::max(ENVELOPE_LIMIT))
        .with_state(state)
}

async fn invoke(
    State(mut lazy): State<LazyState>,
    Path(function): Path<String>,
    body: Bytes,
) -> Response {
    let state = match lazy.wait_for(Option::is_some).await {
        Ok(state) => state.clone(),
        Err(_) => None,
    };
    let Some(state) = state else {
        let error = json!({"error": "storage is not connected"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(error)).into_response();
    };
    let Some(trigger) = functions::trigger_of(&function) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no function named '{function}'")})),
        )
            .into_response();
    };
    let envelope: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("invocation body is not JSON: {e}")})),
            )
                .into_response()
        }
    };
    let data = envelope.get("Data").cloned().unwrap_or(Value::Null);
    let metadata = envelope.get("Metadata").cloned().unwrap_or(Value::Null);
    let result = match trigger {
        Trigger::Http => http(&state, &data).await,
        Trigger::Control(p) => control(&state, QueueName::Control(p), &data, &metadata).await,
        Trigger::WorkItems => work_item(&state, &data, &metadata).await,
        Trigger::ControlPoison(p) => poison(&state, QueueName::Control(p), &data, &metadata).await,
        Trigger::WorkItemsPoison => poison(&state, QueueName::Work, &data, &metadata).await,
        Trigger::Timer => timer(&state, &data).await,
        Trigger::Retention => retention(&state).await,
        Trigger::EventGrid => landing_event(&state, &data).await,
    };
    match result {
        Ok(reply) => (StatusCode::OK, Json(reply)).into_response(),
        // Non-2xx: the host retries the invocation (and counts it toward poison).
        Err(reason) => {
            warn!(function, reason, "invocation failed; the host will retry");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(envelope::response(json!({}), vec![reason])),
            )
                .into_response()
        }
    }
}

/// The first value of `Data` (the trigger's binding, whatever its name).
fn binding(data: &Value) -> Option<&Value> {
    data.as_object().and_then(|m| m.values().next())
}

async fn http(state: &HostState, data: &Value) -> Result<Value, String> {
    let req = data
        .get("req")
        .or_else(|| binding(data))
        .ok_or("no HTTP request in Data")?;
    let url = envelope::lenient_string(req.get("Url")).ok_or("the request has no Url")?;
    let (host, path) = split_url(&url);
    let method = envelope::lenient_string(req.get("Method")).unwrap_or_else(|| "GET".into());
    let mut request = Request::builder()
        .method(method.as_str())
        .uri(path.as_str());
    if let Some(headers) = req.get("Headers").and_then(Value::as_object) {
        for (name, values) in headers {
            let values: Vec<String> = match values {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            for value in values {
                request = request.header(name.as_str(), value);
            }
        }
    }
    // The host's own request URL gives the origin of check-status URLs (https in Azure);
    // an extension, so a caller's Host or X-Forwarded-Host header cannot replace it.
    let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme);
    request = request.extension(api::RequestOrigin(format!("{scheme}://{host}")));
    let body = match req.get("Body") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    // The host passes `Body` only for a request with a Content-Length above 0
    // (HttpRequestExtensions.cs): a chunked body arrives as nothing. Refuse it clearly
    // rather than start an instance with no input.
    if body.is_empty() && carries_unframed_body(&method, req.get("Headers")) {
        let error = api::ApiError::new(
            api::ErrorCode::LengthRequired,
            "a request body must be sent with a Content-Length header \
             (the Functions host drops chunked bodies)",
        )
        .body();
        return Ok(envelope::response(
            json!({ "res": envelope::http_output(
                411,
                BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
                error.to_string().as_bytes(),
            ) }),
            vec![format!("{method} {path} → 411 (no Content-Length)")],
        ));
    }
    let request = request
        .body(Body::from(body))
        .map_err(|e| format!("bad request in envelope: {e}"))?;
    let response = state
        .api
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let log = format!("{method} {} → {status}", path);
    Ok(envelope::response(
        json!({ "res": envelope::http_output(status, headers, &bytes) }),
        vec![log],
    ))
}

/// A POST/PUT/PATCH sent chunked (`Transfer-Encoding` without `Content-Length`): its body
/// never reached the handler. (A request with neither header has an empty body.)
fn carries_unframed_body(method: &str, headers: Option<&Value>) -> bool {
    if !matches!(
        method.to_ascii_uppercase().as_str(),
        "POST" | "PUT" | "PATCH"
    ) {
        return false;
    }
    let headers = headers.and_then(Value::as_object);
    let has = |name: &str| headers.is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)));
    has("transfer-encoding") && !has("content-length")
}

/// `https://host/api/x?y` → (`host`, `/api/x?y`).
fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(at) => (rest[..at].to_owned(), rest[at..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

fn queue_text(data: &Value) -> Result<String, String> {
    binding(data)
        .and_then(envelope::queue_message_text)
        .ok_or_else(|| "no queue message in Data".to_owned())
}

async fn control(
    state: &HostState,
    queue: QueueName,
    data: &Value,
    metadata: &Value,
) -> Result<Value, String> {
    let raw = queue_text(data)?;
    let dequeue_count = envelope::lenient_u32(metadata.get("DequeueCount")).unwrap_or(1);
    let id = envelope::lenient_string(metadata.get("Id")).unwrap_or_default();
    state
        .worker
        .handle_control(queue, &raw, dequeue_count, &id)
        .await
        .map_err(|e| format!("control message {id}: {e}"))?;
    Ok(envelope::response(
        json!({}),
        vec![format!(
            "control message {id} processed (delivery {dequeue_count})"
        )],
    ))
}

async fn work_item(state: &HostState, data: &Value, metadata: &Value) -> Result<Value, String> {
    let raw = queue_text(data)?;
    let dequeue_count = envelope::lenient_u32(metadata.get("DequeueCount")).unwrap_or(1);
    let id = envelope::lenient_string(metadata.get("Id")).unwrap_or_default();
    state
        .worker
        .handle_work_item(&raw, dequeue_count, &id)
        .await
        .map_err(|e| format!("work item {id}: {e}"))?;
    Ok(envelope::response(
        json!({}),
        vec![format!(
            "work item {id} processed (delivery {dequeue_count})"
        )],
    ))
}

/// A message the host moved to `<queue>-poison` after its `maxDequeueCount`: archive it
/// with the reason (answering 2xx deletes it from the poison queue, so the archive is where
/// the evidence stays) and make sure its instance does not stay Running. Answers non-2xx
/// until the archive holds it.
async fn poison(
    state: &HostState,
    source: QueueName,
    data: &Value,
    metadata: &Value,
) -> Result<Value, String> {
    let stored = queue_text(data)?;
    let raw = state
        .worker
        .resolve_body(&stored)
        .await
        .map_err(|e| format!("reading the poison message's stored body: {e}"))?;
    let count = envelope::lenient_u32(metadata.get("DequeueCount")).unwrap_or(0);
    // A letter the engine wrote to a poison queue (older versions did) keeps its reason.
    let letter = match serde_json::from_str::<DeadLetter>(&raw) {
        Ok(letter) => letter,
        Err(_) => DeadLetter {
            reason: format!(
                "the Functions host moved this message to {}-poison after its maxDequeueCount",
                source.suffix()
            ),
            dequeue_count: count,
            raw,
        },
    };
    state
        .worker
        .backend()
        .put_dead_letter(&source, &letter)
        .await
        .map_err(|e| format!("archiving the dead letter: {e}"))?;
    let Ok(message) = QueueMessage::decode(&letter.raw) else {
        return Ok(envelope::response(
            json!({}),
            vec!["unreadable poison message archived".into()],
        ));
    };
    if let QueueMessage::Starts { starts } = &message {
        state.worker.fail_unstarted(starts, &letter.reason).await;
        return Ok(envelope::response(
            json!({}),
            vec!["poison bundle of starts archived; its unstarted instances failed".into()],
        ));
    }
    let instance_id = message.instance_id();
    state
        .worker
        .fail_instance(instance_id, &letter.reason)
        .await
        .map_err(|e| format!("failing instance {instance_id}: {e}"))?;
    warn!(
        instance_id,
        reason = letter.reason,
        "poison message archived; instance failed"
    );
    Ok(envelope::response(
        json!({}),
        vec![format!("poison message of instance {instance_id} archived")],
    ))
}

async fn timer(state: &HostState, data: &Value) -> Result<Value, String> {
    let timer = binding(data).cloned().unwrap_or(Value::Null);
    let past_due = envelope::lenient_bool(timer.get("IsPastDue"));
    let results = schedules::fire_due(
        &state.schedules,
        chrono::Utc::now(),
        schedules::look_back(past_due),
    )
    .await?;
    let logs: Vec<String> = results
        .iter()
        .map(|(name, r)| format!("schedule {name}: {r:?}"))
        .collect();
    if let Some((name, Err(e))) = results.iter().find(|(_, r)| r.is_err()) {
        return Err(format!("schedule {name}: {e}"));
    }
    Ok(envelope::response(json!({}), logs))
}

/// The retention timer: one pass of the policy, ended within the invocation's budget (the
/// next tick carries on). The host runs a timer function on one instance at a time.
async fn retention(state: &HostState) -> Result<Value, String> {
    let Some(policy) = &state.retention else {
        let off = "retention off: FLOWFORGE_RETENTION is not set".to_owned();
        return Ok(envelope::response(json!({}), vec![off]));
    };
    let pace = Pace {
        budget: Some(state.retention_budget),
        ..Pace::default()
    };
    let report = purge_expired(state.backend.as_ref(), policy, chrono::Utc::now(), pace)
        .await
        .map_err(|e| format!("retention pass: {e}"))?;
    let rest = if report.cut_short {
        "; stopped at the invocation's budget, the next tick carries on"
    } else {
        ""
    };
    let log = format!(
        "retention {policy}: {} finished instances read, {} purged{rest}",
        report.scanned, report.purged
    );
    info!(
        scanned = report.scanned,
        purged = report.purged,
        cut_short = report.cut_short,
        "retention pass"
    );
    Ok(envelope::response(json!({}), vec![log]))
}

/// The Event Grid trigger: the event (an object, or JSON in a string, possibly encoded once
/// more) starts its run. A failure answers non-2xx: Event Grid delivers again, and past its
/// retry policy dead-letters the event to the subscription's dead-letter container.
async fn landing_event(state: &HostState, data: &Value) -> Result<Value, String> {
    let mut event = binding(data).cloned().ok_or("no event in Data")?;
    for _ in 0..2 {
        if let Value::String(text) = &event {
            event =
                serde_json::from_str(text).map_err(|e| format!("the event is not JSON: {e}"))?;
        }
    }
    let events = match crate::landing_events::parse(&event)? {
        crate::landing_events::Delivery::Events(events) => events,
        // The host's extension answers the handshake itself; nothing to do here.
        crate::landing_events::Delivery::Validation { .. } => Vec::new(),
    };
    let workflow_id = crate::landing_events::workflow_id();
    let (runs, ignored) = crate::landing_events::start_runs(&state.client, &events, &workflow_id)
        .await
        .map_err(|e| e.to_string())?;
    let logs = vec![format!("landing event: runs {runs:?}, ignored {ignored}")];
    Ok(envelope::response(json!({}), logs))
}
