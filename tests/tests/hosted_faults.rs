//! The settle path under a host that owns the messages (the Functions host): when the
//! handler cannot make a message's effect durable (a re-send or an activity's report
//! fails), the invocation must not answer 2xx; the host delivers the message again and the
//! instance completes. The host is played here as its source does it: 2xx deletes, any
//! other answer makes the message visible again with its delivery count raised.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use flowforge_orchestrator::backend::{MemoryBackend, QueueName, QueueStore};
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::{HostOptions, HostedWorker};
use serde_json::{json, Value};

struct FakeHost {
    backend: Arc<MemoryBackend>,
    worker: Arc<HostedWorker>,
    /// Answers that were not 2xx.
    refused: Vec<String>,
}

impl FakeHost {
    fn new() -> Self {
        Self::with_options(WorkerOptions::default())
    }

    fn with_options(worker_options: WorkerOptions) -> Self {
        let backend = Arc::new(MemoryBackend::new());
        let options = HostOptions {
            max_dequeue_count: 5,
            invocation_budget: Duration::from_secs(30),
        };
        let worker = HostedWorker::new(
            backend.clone(),
            flowforge_tests::registry(),
            worker_options,
            options,
        );
        Self {
            backend,
            worker: Arc::new(worker),
            refused: Vec::new(),
        }
    }

    /// Delivers every visible message once; true if any was delivered.
    async fn pump(&mut self, before_each: &mut dyn FnMut(&QueueName, &Value)) -> bool {
        let mut any = false;
        for queue in [QueueName::Control(0), QueueName::Work] {
            let received = self
                .backend
                .receive(&queue, 32, Duration::from_secs(60))
                .await
                .unwrap();
            for message in received {
                any = true;
                let body: Value = serde_json::from_str(&message.raw).unwrap();
                before_each(&queue, &body);
                let id = &message.receipt.message_id;
                let answer = match queue {
                    QueueName::Work => {
                        self.worker
                            .handle_work_item(&message.raw, message.dequeue_count, id)
                            .await
                    }
                    QueueName::Control(_) => {
                        self.worker
                            .handle_control(queue.clone(), &message.raw, message.dequeue_count, id)
                            .await
                    }
                };
                match answer {
                    Ok(()) => self.backend.delete(&queue, &message.receipt).await.unwrap(),
                    Err(reason) => {
                        self.refused.push(format!("{body}: {reason}"));
                        self.backend
                            .abandon(&queue, &message.receipt, Duration::ZERO)
                            .await
                            .unwrap();
                    }
                }
            }
        }
        any
    }
}

async fn status(client: &Client, id: &str) -> InstanceStatus {
    client.status(id, StatusOptions::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_of_an_activity_result_is_delivered_again_and_the_instance_completes() {
    let mut host = FakeHost::new();
    let client = Client::new(host.backend.clone());
    client
        .start("fan", StartOptions::with_instance_id("report-1"), &3_u64)
        .await
        .unwrap();
    let backend = host.backend.clone();
    let mut failed_once = false;
    for _ in 0..50 {
        let mut inject = |queue: &QueueName, _: &Value| {
            // The first activity's result cannot be sent to the instance (the runtime
            // tries five times before it gives up).
            if *queue == QueueName::Work && !failed_once {
                failed_once = true;
                backend.fail_next_sends(5);
            }
        };
        if !host.pump(&mut inject).await {
            break;
        }
    }
    let done = status(&client, "report-1").await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output, json!(5), "0² + 1² + 2²");
    assert_eq!(host.refused.len(), 1, "{:?}", host.refused);
    assert!(host.refused[0].contains("Activity"), "{:?}", host.refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_re_send_of_a_deferred_event_is_delivered_again_and_the_instance_completes() {
    let mut host = FakeHost::new();
    let client = Client::new(host.backend.clone());
    client
        .start(
            "collect",
            StartOptions::with_instance_id("early-1"),
            &1_usize,
        )
        .await
        .unwrap();
    // The event is processed before the start: the engine defers it by re-sending a copy,
    // and that re-send fails.
    let start = host
        .backend
        .receive(&QueueName::Control(0), 1, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(start.len(), 1);
    client
        .raise_event("early-1", "item", &json!("late"))
        .await
        .unwrap();
    let event = host
        .backend
        .receive(&QueueName::Control(0), 1, Duration::from_secs(600))
        .await
        .unwrap()
        .remove(0);
    host.backend.fail_next_sends(1);
    let answer = host
        .worker
        .handle_control(
            QueueName::Control(0),
            &event.raw,
            1,
            &event.receipt.message_id,
        )
        .await;
    assert!(
        answer.is_err(),
        "a deferral whose copy was not sent must not answer 2xx"
    );
    host.backend
        .abandon(&QueueName::Control(0), &event.receipt, Duration::ZERO)
        .await
        .unwrap();
    host.backend
        .abandon(&QueueName::Control(0), &start[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    for _ in 0..50 {
        if !host.pump(&mut |_, _| {}).await {
            break;
        }
    }
    let done = status(&client, "early-1").await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output, json!(["late"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_event_is_held_without_using_the_poison_budget_and_the_hold_is_bounded() {
    let host = FakeHost::with_options(WorkerOptions {
        defer_delay: Duration::from_millis(20),
        early_event_hold: Duration::from_millis(600),
        ..WorkerOptions::default()
    });
    let client = Client::new(host.backend.clone());
    client
        .start(
            "collect",
            StartOptions::with_instance_id("never-1"),
            &1_usize,
        )
        .await
        .unwrap();
    // Take the start away for good: the event can only be held, copy after copy.
    let start = host
        .backend
        .receive(&QueueName::Control(0), 1, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(start.len(), 1);
    client
        .raise_event("never-1", "item", &json!(1))
        .await
        .unwrap();
    let mut copies = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while host
        .backend
        .dead_letters(&QueueName::Control(0))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "never given up");
        let got = host
            .backend
            .receive(&QueueName::Control(0), 1, Duration::from_secs(60))
            .await
            .unwrap();
        let Some(message) = got.into_iter().next() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        copies += 1;
        // Each copy is new to the host: its own count starts at 1.
        let answer = host
            .worker
            .handle_control(
                QueueName::Control(0),
                &message.raw,
                1,
                &message.receipt.message_id,
            )
            .await;
        assert!(answer.is_ok(), "{answer:?}");
        host.backend
            .delete(&QueueName::Control(0), &message.receipt)
            .await
            .unwrap();
    }
    assert!(
        copies > 5,
        "held {copies} times: more than the poison budget"
    );
    let letters = host
        .backend
        .dead_letters(&QueueName::Control(0))
        .await
        .unwrap();
    assert!(
        letters[0].reason.contains("instance 'never-1'")
            && letters[0].reason.contains("never came"),
        "{}",
        letters[0].reason
    );
    let status = status(&client, "never-1").await;
    assert_ne!(
        status.runtime_status,
        RuntimeStatus::Failed,
        "its start may still come"
    );
}
