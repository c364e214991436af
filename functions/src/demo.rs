//! The demonstration orchestration of the main job until the medallion pipeline lands:
//! a fan-out over activities, one of which fails once and is retried after a durable
//! back-off timer, then a durable timer, then a fan-in.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowforge_orchestrator::prelude::*;
use serde::{Deserialize, Serialize};

/// Input of the `demo` orchestration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoInput {
    /// Files to "ingest" in parallel.
    pub files: Vec<String>,
    /// Pause between ingestion and the summary, in milliseconds.
    pub pause_ms: u64,
}

/// Output of the `demo` orchestration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoOutput {
    /// Bytes per file, in input order.
    pub sizes: Vec<u64>,
    /// Their total.
    pub total: u64,
}

async fn demo(ctx: OrchestrationContext, input: DemoInput) -> Result<DemoOutput, FailureDetails> {
    ctx.set_custom_status(serde_json::json!({"stage": "ingest", "files": input.files.len()}));
    let retry = RetryPolicy::new(3, Duration::from_millis(200)).with_backoff(2.0);
    let calls = input
        .files
        .iter()
        .map(|file| ctx.call_activity_with_retry::<u64>("measure", file, retry.clone()))
        .collect();
    let sizes = ctx
        .join_all(calls)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    ctx.set_custom_status(serde_json::json!({"stage": "pause"}));
    ctx.sleep(Duration::from_millis(input.pause_ms)).await;
    let total = ctx.call_activity::<u64>("sum", &sizes).await?;
    ctx.set_custom_status(serde_json::json!({"stage": "done"}));
    Ok(DemoOutput { sizes, total })
}

/// Durable Functions' "hello sequence": three activities one after another, each
/// greeting a city; the output lists the greetings. The benchmark's web-app latency
/// scenario starts it over the API.
async fn hello_sequence(
    ctx: OrchestrationContext,
    _input: serde_json::Value,
) -> Result<Vec<String>, FailureDetails> {
    let mut greetings = Vec::new();
    for city in ["Tokyo", "Seattle", "London"] {
        greetings.push(ctx.call_activity::<String>("say_hello", city).await?);
    }
    Ok(greetings)
}

/// Waits for an `approve` event (a person in the loop), at most `timeout_secs`.
async fn await_approval(
    ctx: OrchestrationContext,
    timeout_secs: u64,
) -> Result<String, FailureDetails> {
    ctx.set_custom_status(serde_json::json!({"stage": "waiting for approval"}));
    let approver: Option<String> = ctx
        .wait_for_event_with_timeout("approve", Duration::from_secs(timeout_secs))
        .await?;
    Ok(approver.map_or_else(
        || "not approved in time".to_owned(),
        |who| format!("approved by {who}"),
    ))
}

/// Orchestrations for the host harness only (registered when
/// `FLOWFORGE_HARNESS_ORCHESTRATIONS=1`): `slow_replay` blocks its thread for `block_ms`
/// at every step of its code, replay included, so its replay outlasts a short
/// `functionTimeout`. It blocks (as a CPU-heavy replay does) without spinning: on a 2-core
/// test machine a spinning replay also starved the storage emulator and the harness, and
/// the test then measured the machine rather than the handler.
pub fn with_harness_orchestrations(registry: Registry) -> Registry {
    registry.orchestration("slow_replay", slow_replay)
}

/// Input of `slow_replay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlowReplayInput {
    /// Activities, one after another.
    pub steps: u32,
    /// How long each step blocks its thread, replay included.
    pub block_ms: u64,
}

async fn slow_replay(
    ctx: OrchestrationContext,
    input: SlowReplayInput,
) -> Result<u32, FailureDetails> {
    for step in 0..input.steps {
        std::thread::sleep(Duration::from_millis(input.block_ms));
        ctx.call_activity::<u64>("measure", &format!("step-{step}"))
            .await?;
    }
    Ok(input.steps)
}

/// The registry of the demo: the orchestration and its two activities. `measure` fails
/// the first time it sees a file named `flaky…`, to show a durable retry.
pub fn registry() -> Registry {
    let flaky_failures = Arc::new(AtomicU32::new(0));
    Registry::new()
        .orchestration("demo", demo)
        .orchestration("await_approval", await_approval)
        .orchestration("hello_sequence", hello_sequence)
        .activity("say_hello", |_ctx, city: String| async move {
            Ok(format!("Hello {city}!"))
        })
        .activity("sum", |_ctx, sizes: Vec<u64>| async move {
            Ok(sizes.iter().sum::<u64>())
        })
        .activity("measure", move |_ctx, file: String| {
            let flaky_failures = flaky_failures.clone();
            async move {
                tracing::info!(file = %file, "measuring");
                if file.starts_with("flaky") && flaky_failures.fetch_add(1, Ordering::SeqCst) == 0 {
                    tracing::warn!(file = %file, "the read was cut off; failing this attempt");
                    return Err(FailureDetails::new(
                        "TransientIo",
                        format!("{file}: connection reset"),
                    ));
                }
                Ok(file.len() as u64 * 1024)
            }
        })
}
