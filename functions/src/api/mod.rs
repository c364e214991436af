//! The management HTTP API, mirroring the Durable Functions HTTP API (paths, query
//! parameters, JSON fields, status codes, `Location`/`Retry-After`,
//! `x-ms-continuation-token`) under a configurable base path. The standalone worker and
//! the custom handler serve the same router.

mod auth;
mod check_status;
mod dead_letters;
mod deadline;
mod error;
mod event_grid_hook;
mod handlers;
mod json_errors;
mod openapi;
mod params;
mod run_logs_view;
mod schedules_view;
pub mod status_json;
mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use flowforge_orchestrator::client::Client;

pub use auth::Access;
pub use check_status::{CheckStatus, RequestOrigin};
pub use dead_letters::letter_json;
pub use deadline::{API_DEADLINE, OUTAGE_DEADLINE};
pub use error::{ApiError, ErrorCode};

pub use openapi::OPENAPI;

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The engine client.
    pub client: Client,
    /// Registered orchestration names; a start of another name is refused with 400.
    pub orchestrations: Arc<Vec<String>>,
    /// Key or open mode.
    pub access: Access,
    /// Base path, with leading and trailing slash (`/api/`).
    pub base_path: String,
    /// Public URL of the app (`https://app.example`), for the absolute URLs of answers
    /// (under `serve` the host's request URL is used instead).
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// The task hub's schedules.
    pub schedules: crate::schedules::ScheduleBook,
    /// The declared chains (for the links between a run and the runs it starts).
    pub chains: Arc<Vec<flowforge_orchestrator::chain::Chain>>,
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/orchestrators/{name}", post(handlers::start))
        .route(
            "/orchestrators/{name}/{instance_id}",
            post(handlers::start_with_id),
        )
        .route(
            "/instances",
            get(handlers::list).delete(handlers::purge_many),
        )
        // The official clients call `instances/` (their id placeholder replaced by nothing).
        .route(
            "/instances/",
            get(handlers::list).delete(handlers::purge_many),
        )
        .route(
            "/instances/{id}",
            get(handlers::status).delete(handlers::purge),
        )
        .route(
            "/instances/{id}/raiseEvent/{event}",
            post(handlers::raise_event),
        )
        .route("/instances/{id}/logs", get(run_logs_view::list))
        .route("/instances/{id}/terminate", post(handlers::terminate))
        .route("/instances/{id}/suspend", post(handlers::suspend))
        .route("/instances/{id}/rewind", post(handlers::rewind))
        .route("/instances/{id}/resume", post(handlers::resume))
        .route("/instances/{id}/restart", post(handlers::restart))
        .route("/deadletters", get(dead_letters::list))
        .route(
            "/deadletters/{id}",
            get(dead_letters::show).delete(dead_letters::delete),
        )
        .route("/deadletters/{id}/requeue", post(dead_letters::requeue))
        .route(
            "/schedules",
            get(schedules_view::list).post(schedules_view::create),
        )
        .route(
            "/schedules/{name}",
            get(schedules_view::show)
                .put(schedules_view::update)
                .delete(schedules_view::delete),
        )
        .route("/schedules/{name}/pause", post(schedules_view::pause))
        .route("/schedules/{name}/resume", post(schedules_view::resume))
        .route("/schedules/{name}/backfill", post(schedules_view::backfill))
        .route("/schedules/{name}/trigger", post(schedules_view::trigger))
        .route(
            "/eventgrid/landing",
            post(event_grid_hook::deliver).options(event_grid_hook::handshake),
        )
        .route("/ui/", get(ui::index))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key))
        .route_layer(from_fn_with_state(state.clone(), deadline::within_deadline))
        .route("/openapi.json", {
            let document = Arc::new(openapi::served(&state.orchestrations));
            get(move || handlers::openapi(document.clone()))
        })
        .layer(DefaultBodyLimit::max(state.body_limit));
    let base = state.base_path.trim_end_matches('/').to_owned();
    let routed = if base.is_empty() {
        api
    } else {
        Router::new().nest(&base, api)
    };
    routed
        .fallback(handlers::no_route)
        .layer(axum::middleware::from_fn(json_errors::as_json))
        .with_state(state)
}
