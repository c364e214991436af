//! An in-process API over the in-memory backend with a running worker, and request helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use flowforge::api::{router, Access, ApiState};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::WorkerHandle;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "test-key-0123456789";

pub struct App {
    pub router: Router,
    pub worker: WorkerHandle,
}

pub fn app(body_limit: usize) -> App {
    let backend = Arc::new(MemoryBackend::new());
    let registry = flowforge_tests::registry();
    let client = Client::new(backend.clone());
    let state = ApiState {
        chains: Arc::new(registry.chains().to_vec()),
        client: client.clone(),
        orchestrations: Arc::new(registry.orchestration_names()),
        access: Access::Key(KEY.into()),
        base_path: "/api/".into(),
        public_url: Some("http://app.test".into()),
        body_limit,
        schedules: flowforge::schedules::ScheduleBook::new(
            client,
            flowforge::schedules::parse_all(
                r#"[{"name": "nightly", "cron": "0 30 2 * * *", "orchestration": "fan", "input": 3}]"#,
            )
            .unwrap(),
        ),
    };
    let worker = Worker::new(backend, registry, WorkerOptions::default()).start();
    App {
        router: router(state),
        worker,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl App {
    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> Reply {
        self.call_with(
            method,
            uri,
            body,
            &[
                ("x-functions-key", KEY),
                ("content-type", "application/json"),
            ],
        )
        .await
    }

    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "caller.example");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Body::from(body.unwrap_or("").to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Polls `GET instances/{id}` until 200, as the web app does.
    pub async fn poll_until_done(&self, id: &str) -> Reply {
        for _ in 0..2000 {
            let reply = self
                .call("GET", &format!("/api/instances/{id}"), None)
                .await;
            if reply.status != StatusCode::ACCEPTED {
                return reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{id} never finished");
    }
}
