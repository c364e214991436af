//! The handlers of the management API.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowforge_orchestrator::backend::InstanceQuery;
use flowforge_orchestrator::client::{StartOptions, StatusOptions};
use serde_json::json;

use super::check_status::{base_url, CheckStatus, RequestOrigin};
use super::params::{json_body, Params};
use super::status_json;
use super::{ApiError, ApiState, ErrorCode};

/// Seconds a poller should wait before asking again.
const RETRY_AFTER: &str = "1";

/// How long a `GET` of the `Location` a 202 hands out waits for the instance to finish:
/// a client polling as the HTTP 202 pattern says learns of the end when it happens, not up
/// to a `Retry-After` later. `statusQueryGetUri` stays a plain status read (dashboards
/// show it).
pub const LOCATION_WAIT_SECONDS: usize = 10;

/// The `Location` of a 202: the status URL, long-polling ([`LOCATION_WAIT_SECONDS`]).
fn long_poll(status_uri: &str) -> String {
    let joiner = if status_uri.contains('?') { '&' } else { '?' };
    format!("{status_uri}{joiner}waitSeconds={LOCATION_WAIT_SECONDS}")
}
pub(super) const CONTINUATION: &str = "x-ms-continuation-token";

type ApiResult = Result<Response, ApiError>;
pub(super) type PathArg<T> = Result<Path<T>, PathRejection>;
pub(super) type QueryArg = Result<Query<HashMap<String, String>>, QueryRejection>;

pub(super) fn path<T>(arg: PathArg<T>) -> Result<T, ApiError> {
    arg.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub(super) fn params(arg: QueryArg) -> Result<Params, ApiError> {
    arg.map(|Query(q)| Params(q))
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The longest a request may wait for an instance to finish (`waitSeconds`).
pub const MAX_WAIT_SECONDS: usize = 60;

/// `waitSeconds` of a request: how long to wait for the instance to finish (0: not at all).
fn wait_of(params: &Params) -> Result<std::time::Duration, ApiError> {
    let seconds = match params.text("waitSeconds") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_WAIT_SECONDS)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "waitSeconds must be a whole number from 0 to {MAX_WAIT_SECONDS}, not '{text}'"
                ))
            })?,
    };
    Ok(std::time::Duration::from_secs(seconds as u64))
}

/// `POST orchestrators/{name}[?waitSeconds=]`: start with a new instance id.
pub async fn start(
    State(state): State<ApiState>,
    name: PathArg<String>,
    query: QueryArg,
    uri: Uri,
    headers: HeaderMap,
    origin: OriginArg,
    body: Bytes,
) -> ApiResult {
    let wait = wait_of(&params(query)?)?;
    let request = Caller::new(&uri, &headers, origin);
    start_instance(&state, path(name)?, None, &request, &body, wait).await
}

/// `POST orchestrators/{name}/{instanceId}[?waitSeconds=]`: start with the given id.
pub async fn start_with_id(
    State(state): State<ApiState>,
    args: PathArg<(String, String)>,
    query: QueryArg,
    uri: Uri,
    headers: HeaderMap,
    origin: OriginArg,
    body: Bytes,
) -> ApiResult {
    let wait = wait_of(&params(query)?)?;
    let (name, id) = path(args)?;
    let request = Caller::new(&uri, &headers, origin);
    start_instance(&state, name, Some(id), &request, &body, wait).await
}

/// The request's origin under the Functions host (see [`RequestOrigin`]).
pub(super) type OriginArg = Option<Extension<RequestOrigin>>;

/// What of the request shapes the URLs handed back: the origin the Functions host saw it
/// on, the headers (trace context, content type), and the function key it carried as
/// `?code=` (under `authLevel: function` the URLs need it).
struct Caller<'a> {
    headers: &'a HeaderMap,
    origin: Option<RequestOrigin>,
    code: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn new(uri: &'a Uri, headers: &'a HeaderMap, origin: OriginArg) -> Self {
        let code = uri.query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("code="))
                .filter(|c| !c.is_empty())
        });
        Self {
            headers,
            origin: origin.map(|Extension(o)| o),
            code,
        }
    }

    fn check_status(&self, state: &ApiState, id: &str) -> CheckStatus {
        let base = base_url(
            self.origin.as_ref(),
            state.public_url.as_deref(),
            &state.base_path,
        );
        CheckStatus::new(&base, id, self.code)
    }
}

async fn start_instance(
    state: &ApiState,
    name: String,
    instance_id: Option<String>,
    request: &Caller<'_>,
    body: &[u8],
    wait: std::time::Duration,
) -> ApiResult {
    let headers = request.headers;
    let input = json_body(headers, body)?;
    if !state.orchestrations.contains(&name) {
        return Err(ApiError::new(
            ErrorCode::UnknownOrchestration,
            format!(
                "no orchestration named '{name}'; known: {}",
                state.orchestrations.join(", ")
            ),
        ));
    }
    let trace_parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let options = StartOptions {
        instance_id,
        trace_parent,
        ..StartOptions::default()
    };
    let id = state.client.start_value(&name, options, input).await?;
    // Durable Functions' waitForCompletionOrCreateCheckStatusResponse, on the server: the
    // status (200) if it finishes within the wait, else the usual 202.
    if !wait.is_zero() {
        if let Some(status) = finished_within(state, &id, wait, StatusOptions::default()).await? {
            return Ok((StatusCode::OK, Json(status_body(state, &status))).into_response());
        }
    }
    Ok(accepted_with_check_status(state, request, &id))
}

/// The status once finished, if it finishes within `wait` (woken at once by an end
/// committed in this process); `None` when it is still going.
async fn finished_within(
    state: &ApiState,
    id: &str,
    wait: std::time::Duration,
    options: StatusOptions,
) -> Result<Option<flowforge_orchestrator::status::InstanceStatus>, ApiError> {
    use flowforge_orchestrator::client::Error;
    match state.client.wait_for_completion(id, wait).await {
        Ok(_) => Ok(Some(state.client.status(id, options).await?)),
        Err(Error::Timeout { .. }) => Ok(None),
        // Purged by someone else meanwhile: the start itself succeeded, so the caller gets
        // the 202 it would get without a wait.
        Err(Error::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn status_body(
    state: &ApiState,
    status: &flowforge_orchestrator::status::InstanceStatus,
) -> serde_json::Value {
    let mut body = status_json::status(status);
    status_json::add_chain_links(&mut body, status, &state.chains);
    body
}

fn accepted_with_check_status(state: &ApiState, request: &Caller<'_>, id: &str) -> Response {
    let body = request.check_status(state, id);
    let location = long_poll(&body.status_query_get_uri);
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    set_header(&mut response, header::LOCATION, &location);
    set_header(&mut response, header::RETRY_AFTER, RETRY_AFTER);
    response
}

pub(super) fn set_header(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// `GET instances/{id}[?waitSeconds=]`: 200 when finished, 202 with `Location` (a
/// long-polling status URL) while running; with `waitSeconds`, first waits up to that long
/// for it to finish. With `showHistory` and `historyTop`, the history is a page of that
/// many stored events from sequence number `historyFrom` (only those are read), and
/// `historyNext` says where the next page starts (absent on the last).
pub async fn status(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
    uri: Uri,
    headers: HeaderMap,
    origin: OriginArg,
) -> ApiResult {
    let id = path(id)?;
    let params = params(query)?;
    let options = StatusOptions {
        show_history: params.flag("showHistory", false)?,
        show_history_output: params.flag("showHistoryOutput", false)?,
        show_input: params.flag("showInput", true)?,
    };
    let wait = wait_of(&params)?;
    // `historyTop`: a page of the history (from `historyFrom`), read alone, after any wait.
    // Both are checked whether or not they apply (a bad value is a 400 either way).
    let (top, from) = (params.count("historyTop")?, params.position("historyFrom")?);
    let page = match (options.show_history, top) {
        (true, Some(top)) => Some((from.unwrap_or(0), top)),
        _ => None,
    };
    let waiting = StatusOptions {
        show_history: options.show_history && page.is_none(),
        ..options
    };
    let mut status = state.client.status(&id, waiting).await?;
    if !wait.is_zero() && !status.runtime_status.is_terminal() {
        if let Some(finished) = finished_within(&state, &id, wait, waiting).await? {
            status = finished;
        }
    }
    let mut next_page = None;
    if let Some((from, top)) = page {
        let (paged, next) = state
            .client
            .status_with_history_page(
                &id,
                from,
                top,
                options.show_history_output,
                options.show_input,
            )
            .await?;
        (status, next_page) = (paged, next);
    }
    let mut body = status_body(&state, &status);
    if let (Some(next), Some(map)) = (next_page, body.as_object_mut()) {
        map.insert("historyNext".into(), next.into());
    }
    let body = Json(body);
    if status.runtime_status.is_terminal() {
        return Ok((StatusCode::OK, body).into_response());
    }
    let mut response = (StatusCode::ACCEPTED, body).into_response();
    let location = long_poll(
        &Caller::new(&uri, &headers, origin)
            .check_status(&state, &id)
            .status_query_get_uri,
    );
    set_header(&mut response, header::LOCATION, &location);
    set_header(&mut response, header::RETRY_AFTER, RETRY_AFTER);
    Ok(response)
}

fn query_from(params: &Params, headers: &HeaderMap) -> Result<InstanceQuery, ApiError> {
    Ok(InstanceQuery {
        statuses: params.statuses("runtimeStatus")?,
        created_from: params.time("createdTimeFrom")?,
        created_to: params.time("createdTimeTo")?,
        instance_id_prefix: params.text("instanceIdPrefix"),
        workflow_id: params.text("workflowId"),
        page_size: params.count("top")?.unwrap_or(100),
        continuation: continuation(headers),
    })
}

/// The continuation token a client sent back (the Durable Functions clients send "null"
/// for none).
pub(super) fn continuation(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTINUATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && *v != "null")
        .map(str::to_owned)
}

/// `GET instances?…`: one page, the next page's token in `x-ms-continuation-token`.
pub async fn list(State(state): State<ApiState>, query: QueryArg, headers: HeaderMap) -> ApiResult {
    let params = params(query)?;
    let instance_query = query_from(&params, &headers)?;
    let show_input = params.flag("showInput", false)?;
    let (page, next) = state.client.list(&instance_query, show_input).await?;
    let body: Vec<_> = page
        .iter()
        .map(|status| status_body(&state, status))
        .collect();
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Some(token) = next {
        set_header(
            &mut response,
            header::HeaderName::from_static(CONTINUATION),
            &token,
        );
    }
    Ok(response)
}

/// `POST instances/{id}/raiseEvent/{eventName}`: 202; 404 unknown; 410 finished.
pub async fn raise_event(
    State(state): State<ApiState>,
    args: PathArg<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (id, event) = path(args)?;
    let data = json_body(&headers, &body)?;
    state.client.raise_event(&id, &event, &data).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST instances/{id}/terminate?reason=`.
pub async fn terminate(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
) -> ApiResult {
    let reason = params(query)?.text("reason").unwrap_or_default();
    state.client.terminate(&path(id)?, &reason).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST instances/{id}/rewind?reason=`: 202; 404 unknown; 412 not rewindable.
pub async fn rewind(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
) -> ApiResult {
    let reason = params(query)?.text("reason").unwrap_or_default();
    match state.client.rewind(&path(id)?, &reason).await {
        Ok(()) => Ok(StatusCode::ACCEPTED.into_response()),
        Err(error) => {
            let error = ApiError::from(error);
            // Durable Functions' JavaScript client turns the body of these two answers into
            // its error's message (`new Error(response.data)`): a JSON string reads well
            // there, where an object would show as "[object Object]".
            match error.code {
                ErrorCode::NotFound | ErrorCode::PreconditionFailed => {
                    Ok((error.code.status(), Json(error.message)).into_response())
                }
                _ => Err(error),
            }
        }
    }
}

/// `POST instances/{id}/suspend?reason=`.
pub async fn suspend(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
) -> ApiResult {
    let reason = params(query)?.text("reason").unwrap_or_default();
    state.client.suspend(&path(id)?, &reason).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST instances/{id}/resume?reason=`.
pub async fn resume(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
) -> ApiResult {
    let reason = params(query)?.text("reason").unwrap_or_default();
    state.client.resume(&path(id)?, &reason).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST instances/{id}/restart?restartWithNewInstanceId=`: 202 with the check-status body.
pub async fn restart(
    State(state): State<ApiState>,
    id: PathArg<String>,
    query: QueryArg,
    uri: Uri,
    headers: HeaderMap,
    origin: OriginArg,
) -> ApiResult {
    let new_id = params(query)?.flag("restartWithNewInstanceId", true)?;
    let started = state.client.restart(&path(id)?, new_id).await?;
    let request = Caller::new(&uri, &headers, origin);
    Ok(accepted_with_check_status(&state, &request, &started))
}

/// `DELETE instances/{id}`: 200 `{"instancesDeleted": 1}`; 404 unknown; 409 still running.
pub async fn purge(State(state): State<ApiState>, id: PathArg<String>) -> ApiResult {
    state.client.purge(&path(id)?).await?;
    Ok((StatusCode::OK, Json(json!({ "instancesDeleted": 1 }))).into_response())
}

/// `DELETE instances?createdTimeFrom=…`: 200 with the count; 400 without
/// `createdTimeFrom`; 404 when nothing matched.
pub async fn purge_many(
    State(state): State<ApiState>,
    query: QueryArg,
    headers: HeaderMap,
) -> ApiResult {
    let params = params(query)?;
    if params.time("createdTimeFrom")?.is_none() {
        return Err(ApiError::bad_request(
            "createdTimeFrom is required to purge many instances",
        ));
    }
    let mut instance_query = query_from(&params, &headers)?;
    instance_query.continuation = None;
    let deleted = state.client.purge_many(&instance_query).await?;
    if deleted == 0 {
        return Err(ApiError::not_found("no finished instance matched"));
    }
    Ok((StatusCode::OK, Json(json!({ "instancesDeleted": deleted }))).into_response())
}

/// The OpenAPI document (no key needed).
pub async fn openapi(document: std::sync::Arc<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.as_str().to_owned(),
    )
        .into_response()
}

/// Any other path.
pub async fn no_route() -> ApiError {
    ApiError::new(
        ErrorCode::NoRoute,
        "no such route; see the OpenAPI document at <base>openapi.json",
    )
}
