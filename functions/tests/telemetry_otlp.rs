//! Traces as a collector receives them: `flowforge worker` exports OTLP/HTTP (JSON) to a
//! receiver in this test, which keeps every span. The medallion and a retrying fan-out
//! (`demo`: one `measure` fails once and is retried after a durable back-off, then a
//! durable timer, then `sum`) are started over HTTP with the web app's `traceparent`; the
//! span tree must be one trace from that request to the last activity, each span under the
//! right parent, one activity span per attempt (the history's count), one
//! `orchestration:{name}` span per execution and nothing from replays — also when the
//! worker running the fan-out is SIGKILLed mid-run and a second one finishes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use flowforge_azure::azurite;
use flowforge_orchestrator::testing::eventually;
use flowforge_telemetry::receiver::OtlpReceiver;
use serde_json::{json, Value};
use worker_process::Server;

const KEY: &str = "otel-key-7";
/// The web app's request: trace 4bf9…, span 00f0…
const WEB_APP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const WEB_APP_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    failed: bool,
    attributes: BTreeMap<String, String>,
}

fn attribute_text(value: &Value) -> String {
    for kind in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        if let Some(v) = value.get(kind) {
            return v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        }
    }
    value.to_string()
}

/// A span as OTLP/JSON carries it.
fn span_of(span: &Value) -> Span {
    let text = |key: &str| span[key].as_str().unwrap_or_default().to_lowercase();
    Span {
        trace_id: text("traceId"),
        span_id: text("spanId"),
        parent: text("parentSpanId"),
        name: span["name"].as_str().unwrap_or_default().to_owned(),
        failed: span["status"]["code"] == json!(2)
            || span["status"]["code"] == json!("STATUS_CODE_ERROR"),
        attributes: span["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["key"].as_str().unwrap_or_default().to_owned(),
                    attribute_text(&a["value"]),
                )
            })
            .collect(),
    }
}

async fn worker(hub: &str, endpoint: &str) -> Server {
    Server::start_with_env(
        &azurite::shared().connection_string(),
        hub,
        KEY,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_SERVICE_NAME", "flowforge-test"),
        ],
    )
    .await
}

async fn start(server: &Server, name: &str, id: &str, input: Value) {
    let reply = reqwest::Client::new()
        .post(format!("{}orchestrators/{name}/{id}", server.base))
        .header("x-functions-key", KEY)
        .header(
            "traceparent",
            format!("00-{WEB_APP_TRACE}-{WEB_APP_SPAN}-01"),
        )
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202, "{}", reply.text().await.unwrap());
}

fn spans_of(received: &OtlpReceiver, instance_id: &str) -> Vec<Span> {
    received
        .spans()
        .iter()
        .map(span_of)
        .filter(|s| {
            s.attributes
                .get("durabletask.task.instance_id")
                .map(String::as_str)
                == Some(instance_id)
        })
        .collect()
}

/// Waits until the execution's own span has arrived (it is emitted after the last commit).
async fn wait_for_orchestration_span(received: &OtlpReceiver, instance_id: &str, name: &str) {
    let wanted = format!("orchestration:{name}");
    eventually(
        &format!("the span {wanted} of {instance_id}"),
        Duration::from_secs(60),
        || async {
            spans_of(received, instance_id)
                .iter()
                .any(|s| s.name == wanted)
                .then_some(())
        },
    )
    .await;
}

/// How many activities the history scheduled (each retry is a new one), by name.
async fn scheduled(server: &Server, instance_id: &str) -> BTreeMap<String, usize> {
    let status: Value = reqwest::Client::new()
        .get(format!(
            "{}instances/{instance_id}?showHistory=true",
            server.base
        ))
        .header("x-functions-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for event in status["historyEvents"].as_array().unwrap() {
        if event["EventType"] == "TaskScheduled" {
            *counts
                .entry(event["FunctionName"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    counts
}

/// The span tree of one run: one trace (the web app's), the start under the web app's
/// span, one execution span under the start, every activity and timer under the execution;
/// returns the activity spans by name.
fn check_tree(spans: &[Span], name: &str) -> BTreeMap<String, Vec<Span>> {
    assert!(
        spans.iter().all(|s| s.trace_id == WEB_APP_TRACE),
        "one trace: {spans:#?}"
    );
    let creates: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == format!("create_orchestration:{name}"))
        .collect();
    assert_eq!(creates.len(), 1, "{spans:#?}");
    assert_eq!(
        creates[0].parent, WEB_APP_SPAN,
        "the start is a child of the web app's request"
    );
    let executions: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == format!("orchestration:{name}"))
        .collect();
    assert_eq!(
        executions.len(),
        1,
        "one execution span, none from replays: {spans:#?}"
    );
    let execution = executions[0];
    assert_eq!(execution.parent, creates[0].span_id);
    assert_eq!(execution.attributes["durabletask.type"], "orchestration");
    assert_eq!(execution.attributes["durabletask.task.status"], "Completed");
    let mut activities: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for span in spans {
        if let Some(activity) = span.name.strip_prefix("activity:") {
            assert_eq!(span.parent, execution.span_id, "{span:#?}");
            assert_eq!(span.attributes["durabletask.type"], "activity");
            activities
                .entry(activity.to_owned())
                .or_default()
                .push(span.clone());
        } else if span.name == format!("orchestration:{name}:timer") {
            assert_eq!(span.parent, execution.span_id, "{span:#?}");
            assert_eq!(span.attributes["durabletask.type"], "timer");
        }
    }
    // One span per attempt: no two for the same task and delivery.
    let mut attempts = HashSet::new();
    for span in activities.values().flatten() {
        let key = (
            span.attributes["durabletask.task.task_id"].clone(),
            span.attributes["flowforge.delivery"].clone(),
        );
        assert!(
            attempts.insert(key.clone()),
            "two spans for one attempt {key:?}"
        );
    }
    activities
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_span_tree_of_the_medallion_and_a_retrying_fan_out_is_one_trace_per_run() {
    let received = OtlpReceiver::start().await.unwrap();
    let endpoint = received.endpoint.clone();
    let server = worker("oteltrees", &endpoint).await;
    worker_process::land_sample(
        "oteltrees",
        &[
            ("airlines/airlines.csv", "airlines/airlines.csv"),
            ("flights/flights-2013-a.csv", "flights/flights-2013-a.csv"),
            ("flights/flights-2013-b.csv", "flights/flights-2013-b.csv"),
        ],
    )
    .await;
    start(
        &server,
        "demo",
        "otel-demo",
        json!({"files": ["a.csv", "flaky-b.csv", "c.csv"], "pause_ms": 50}),
    )
    .await;
    start(
        &server,
        "medallion",
        "otel-lake",
        json!({"workflow_id": "otel", "job_id": "otel-1", "dataset": "flights"}),
    )
    .await;
    for id in ["otel-demo", "otel-lake"] {
        let status = server.finished(KEY, id, Duration::from_secs(90)).await;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    }
    wait_for_orchestration_span(&received, "otel-demo", "demo").await;
    wait_for_orchestration_span(&received, "otel-lake", "medallion").await;

    // The fan-out: four attempts of measure (one failed, retried), one sum, two timers
    // (the retry's back-off and the pause).
    let demo = spans_of(&received, "otel-demo");
    let activities = check_tree(&demo, "demo");
    let counts: BTreeMap<String, usize> = activities
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    assert_eq!(
        counts,
        scheduled(&server, "otel-demo").await,
        "one span per scheduled attempt"
    );
    assert_eq!(counts["measure"], 4);
    assert_eq!(
        activities["measure"].iter().filter(|s| s.failed).count(),
        1,
        "the failed attempt is an error span"
    );
    assert_eq!(
        demo.iter()
            .filter(|s| s.name == "orchestration:demo:timer")
            .count(),
        2
    );

    // The medallion: every activity it scheduled, once each, under its execution.
    let lake = spans_of(&received, "otel-lake");
    let activities = check_tree(&lake, "medallion");
    let counts: BTreeMap<String, usize> = activities
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    assert_eq!(counts, scheduled(&server, "otel-lake").await);
    assert!(counts.len() >= 3, "bronze, silver and gold: {counts:?}");

    // Metrics arrive too, from the same process.
    eventually("the engine's metrics", Duration::from_secs(30), || async {
        let names = received.metric_names();
        [
            "flowforge.episodes",
            "flowforge.activity.attempts",
            "flowforge.orchestrations.ended",
            "flowforge.queue.backlog",
        ]
        .iter()
        .all(|m| names.iter().any(|n| n == m))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finished_by_a_second_worker_after_a_sigkill_stays_one_trace() {
    let received = OtlpReceiver::start().await.unwrap();
    let endpoint = received.endpoint.clone();
    let first = worker("otelkill", &endpoint).await;
    // A long pause: the kill lands while the run waits on its durable timer, after the
    // measure attempts (whose spans the first worker exported) and before `sum`.
    start(
        &first,
        "demo",
        "otel-kill",
        json!({"files": ["a.csv", "flaky-b.csv"], "pause_ms": 4000}),
    )
    .await;
    eventually(
        "the measure attempts' spans",
        Duration::from_secs(60),
        || async {
            let spans = spans_of(&received, "otel-kill");
            (spans
                .iter()
                .filter(|s| s.name == "activity:measure")
                .count()
                == 3)
                .then_some(())
        },
    )
    .await;
    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let second = worker("otelkill", &endpoint).await;
    let status = second
        .finished(KEY, "otel-kill", Duration::from_secs(90))
        .await;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    wait_for_orchestration_span(&received, "otel-kill", "demo").await;
    let spans = spans_of(&received, "otel-kill");
    let activities = check_tree(&spans, "demo");
    assert_eq!(
        activities["measure"].len(),
        3,
        "each attempt once, none re-emitted by the second worker's replay"
    );
    assert_eq!(activities["sum"].len(), 1);
}
