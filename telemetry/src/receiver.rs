//! A local OTLP/HTTP endpoint: takes `POST /v1/traces` and `/v1/metrics` (JSON or
//! protobuf), answers 200 and keeps what came (JSON bodies parsed; protobuf bodies only
//! counted), so a test can assert on the spans a process exported and the benchmark can
//! export somewhere real.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Default)]
struct Kept {
    traces: Vec<Value>,
    metrics: Vec<Value>,
    requests: usize,
    bytes: usize,
}

/// A running receiver.
#[derive(Clone)]
pub struct OtlpReceiver {
    /// Its base URL (`http://127.0.0.1:<port>`), the value of `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    kept: Arc<Mutex<Kept>>,
}

fn keep(kept: &Mutex<Kept>, headers: &HeaderMap, body: &Bytes, traces: bool) {
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    kept.requests += 1;
    kept.bytes += body.len();
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if let Some(value) = json
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
    {
        if traces {
            kept.traces.push(value);
        } else {
            kept.metrics.push(value);
        }
    }
}

impl OtlpReceiver {
    /// Starts a receiver on a free loopback port, on the current Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let kept: Arc<Mutex<Kept>> = Arc::default();
        let traces = kept.clone();
        let metrics = kept.clone();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(move |headers: HeaderMap, body: Bytes| async move {
                    keep(&traces, &headers, &body, true);
                    "{}"
                }),
            )
            .route(
                "/v1/metrics",
                post(move |headers: HeaderMap, body: Bytes| async move {
                    keep(&metrics, &headers, &body, false);
                    "{}"
                }),
            )
            .with_state(());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { endpoint, kept })
    }

    /// Every span received so far (OTLP/JSON objects), in arrival order.
    pub fn spans(&self) -> Vec<Value> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut spans = Vec::new();
        for body in &kept.traces {
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }

    /// The names of the metrics received so far.
    pub fn metric_names(&self) -> Vec<String> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::new();
        for body in &kept.metrics {
            for resource in body["resourceMetrics"].as_array().into_iter().flatten() {
                for scope in resource["scopeMetrics"].as_array().into_iter().flatten() {
                    for metric in scope["metrics"].as_array().into_iter().flatten() {
                        if let Some(name) = metric["name"].as_str() {
                            names.push(name.to_owned());
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Requests and body bytes received so far.
    pub fn received(&self) -> (usize, usize) {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        (kept.requests, kept.bytes)
    }
}
