//! Chained runs on the in-memory runtime: an ended run starts the runs declared for its end
//! (status and output condition), with the input built from it, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use flowforge_orchestrator::chain::Chain;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::testing::{eventually, fan_out};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn chain(declared: Value) -> Chain {
    serde_json::from_value(declared).unwrap()
}

fn registry() -> Registry {
    fan_out(Registry::new(), "fan", "square")
        .activity("square", |_ctx, i: u64| async move { Ok(i * i) })
        .orchestration(
            "report",
            |_ctx: OrchestrationContext, input: Value| async move { Ok(input) },
        )
        .orchestration(
            "broken",
            |_ctx: OrchestrationContext, _: Value| async move {
                Err::<Value, _>(FailureDetails::non_retryable("Broken", "always"))
            },
        )
        .chain(chain(
            json!({"name": "sum", "after": "fan", "start": "report",
            "input": {"total": "{{output}}", "after": "{{instanceId}}"}}),
        ))
        .chain(chain(
            json!({"name": "big", "after": "fan", "start": "report",
            "when": {"pointer": "", "equals": 14}}),
        ))
        .chain(chain(
            json!({"name": "alarm", "after": "broken", "start": "report",
            "on": ["Failed"], "input": "failed"}),
        ))
        .chain(chain(
            json!({"name": "never", "after": "broken", "start": "report"}),
        ))
}

async fn ended(client: &Client, id: &str) -> InstanceStatus {
    eventually(&format!("{id} ended"), WAIT, || async {
        let status = client.status(id, StatusOptions::default()).await.ok()?;
        status.runtime_status.is_terminal().then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_run_starts_what_is_declared_for_its_end_once() {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());

    // 0² + 1² + 2² + 3² = 14: both chains of "fan" fire.
    client
        .start("fan", StartOptions::with_instance_id("a14"), &4u64)
        .await
        .unwrap();
    let report = ended(&client, "a14-then-sum").await;
    assert_eq!(report.runtime_status, RuntimeStatus::Completed);
    assert_eq!(report.output, json!({"total": 14, "after": "a14"}));
    assert_eq!(ended(&client, "a14-then-big").await.output, json!(14));

    // 0 + 1 + 4 = 5: the condition holds back "big".
    client
        .start("fan", StartOptions::with_instance_id("a5"), &3u64)
        .await
        .unwrap();
    assert_eq!(
        ended(&client, "a5-then-sum").await.output["total"],
        json!(5)
    );

    // A failure fires the chain declared for failures, not the one for completions.
    client
        .start("broken", StartOptions::with_instance_id("b1"), &json!(null))
        .await
        .unwrap();
    assert_eq!(
        ended(&client, "b1").await.runtime_status,
        RuntimeStatus::Failed
    );
    assert_eq!(
        ended(&client, "b1-then-alarm").await.output,
        json!("failed")
    );
    worker.shutdown().await;

    // With the worker stopped (nothing in flight), every start that was going to happen
    // has happened: exactly these.
    let (all, _) = client.list(&Default::default(), false).await.unwrap();
    let mut ids: Vec<String> = all.into_iter().map(|s| s.instance_id).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "a14",
            "a14-then-big",
            "a14-then-sum",
            "a5",
            "a5-then-sum",
            "b1",
            "b1-then-alarm"
        ]
    );
}
