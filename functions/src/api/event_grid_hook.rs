//! `POST {base}eventgrid/landing`: the standalone worker's Event Grid webhook for the
//! landing container (behind the API key, which the subscription's endpoint URL carries as
//! `?code=`). Answers Event Grid's subscription-validation handshake, takes events in the
//! Event Grid schema or as CloudEvents 1.0 (one, or a batch) and starts one medallion run
//! per `BlobCreated` event id (see `landing_events`). `OPTIONS` answers the CloudEvents
//! abuse-protection handshake. Storage failures answer 503, so Event Grid delivers again.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::json_body;
use super::{ApiError, ApiState};
use crate::landing_events::{self, Delivery};

/// `OPTIONS`: the CloudEvents webhook validation (`WebHook-Request-Origin` in,
/// `WebHook-Allowed-Origin` out).
pub async fn handshake(headers: HeaderMap) -> Result<Response, ApiError> {
    let origin = headers
        .get("webhook-request-origin")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("no WebHook-Request-Origin header"))?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(origin) = HeaderValue::from_str(origin) {
        response
            .headers_mut()
            .insert("webhook-allowed-origin", origin);
    }
    response
        .headers_mut()
        .insert("webhook-allowed-rate", HeaderValue::from_static("*"));
    Ok(response)
}

/// `POST`: a delivery.
pub async fn deliver(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, &body)?;
    let delivery = landing_events::parse(&body).map_err(ApiError::bad_request)?;
    let events = match delivery {
        Delivery::Validation { code } => {
            return Ok(Json(json!({ "validationResponse": code })).into_response());
        }
        Delivery::Events(events) => events,
    };
    let workflow_id = landing_events::workflow_id();
    let (runs, ignored) = landing_events::start_runs(&state.client, &events, &workflow_id).await?;
    Ok(Json(json!({ "runs": runs, "ignored": ignored })).into_response())
}
