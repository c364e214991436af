//! Retention purge on the in-memory backend: which finished instances a pass removes at a
//! given moment, paging included, and the worker's background pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowforge_orchestrator::backend::MemoryBackend;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::retention::{purge_expired, Pace, RetentionPolicy, RetentionReport};
use flowforge_orchestrator::testing::{eventually, fan_out};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn registry() -> Registry {
    fan_out(Registry::new(), "fan", "square")
        .orchestration("fails", |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("refuse", json!(null)).await?;
            Ok(())
        })
        .orchestration("waits", |ctx: OrchestrationContext, _: Value| async move {
            let answer: String = ctx.wait_for_event("go").await?;
            Ok(answer)
        })
        .activity("square", |_ctx, i: u64| async move { Ok(i * i) })
        .activity("refuse", |_ctx, _: Value| async move {
            Err::<Value, _>(FailureDetails::non_retryable("Refused", "no"))
        })
}

async fn start(client: &Client, name: &str, id: &str) {
    let options = StartOptions {
        instance_id: Some(id.to_owned()),
        ..StartOptions::default()
    };
    client.start(name, options, &json!(3)).await.unwrap();
}

async fn exists(client: &Client, id: &str) -> bool {
    client.status(id, StatusOptions::default()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_purges_finished_instances_past_their_status_retention_only() {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());
    for i in 0..5 {
        start(&client, "fan", &format!("done-{i}")).await;
    }
    start(&client, "fails", "failed").await;
    start(&client, "waits", "running").await;
    start(&client, "waits", "terminated").await;
    client.terminate("terminated", "stop").await.unwrap();
    for id in [
        "done-0",
        "done-1",
        "done-2",
        "done-3",
        "done-4",
        "failed",
        "terminated",
    ] {
        client.wait_for_completion(id, WAIT).await.unwrap();
    }
    worker.shutdown().await;

    let policy = RetentionPolicy::parse("completed=7d,failed=30d").unwrap();
    // Small pages without pauses: the pass must page through all of them.
    let pace = Pace {
        page_size: 2,
        pause: Duration::ZERO,
        budget: None,
    };
    let now = Utc::now();
    let at = |days: i64| now + chrono::Duration::days(days);
    let tomorrow = purge_expired(backend.as_ref(), &policy, at(1), pace)
        .await
        .unwrap();
    assert_eq!(
        tomorrow,
        RetentionReport {
            scanned: 6,
            purged: 0,
            cut_short: false,
        }
    );

    let next_week = purge_expired(backend.as_ref(), &policy, at(8), pace)
        .await
        .unwrap();
    assert_eq!(
        next_week,
        RetentionReport {
            scanned: 6,
            purged: 5,
            cut_short: false,
        }
    );
    for i in 0..5 {
        assert!(
            !exists(&client, &format!("done-{i}")).await,
            "done-{i} purged"
        );
    }
    for id in ["failed", "terminated", "running"] {
        assert!(exists(&client, id).await, "{id} kept");
    }

    let next_month = purge_expired(backend.as_ref(), &policy, at(31), pace)
        .await
        .unwrap();
    assert_eq!(
        next_month,
        RetentionReport {
            scanned: 1,
            purged: 1,
            cut_short: false,
        }
    );
    assert!(!exists(&client, "failed").await);
    // No retention for terminated instances: kept; running ones are never purged.
    assert!(exists(&client, "terminated").await);
    let running = client
        .status("running", StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(running.runtime_status, RuntimeStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_purges_expired_instances_in_the_background() {
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        retention: Some(RetentionPolicy::parse("completed=0s").unwrap()),
        retention_interval: Duration::from_millis(20),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend.clone(), registry(), options).start();
    let client = Client::new(backend.clone());
    start(&client, "waits", "running").await;
    start(&client, "fan", "done").await;
    client.wait_for_completion("done", WAIT).await.unwrap();
    eventually("the completed instance purged", WAIT, || {
        let client = client.clone();
        async move { (!exists(&client, "done").await).then_some(()) }
    })
    .await;
    assert!(exists(&client, "running").await, "a running instance stays");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_past_its_budget_stops_after_the_page_and_the_next_carries_on() {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());
    for i in 0..5 {
        start(&client, "fan", &format!("done-{i}")).await;
    }
    for i in 0..5 {
        client
            .wait_for_completion(&format!("done-{i}"), WAIT)
            .await
            .unwrap();
    }
    worker.shutdown().await;
    let policy = RetentionPolicy::parse("completed=1s").unwrap();
    // A budget already spent: one page per pass (as under a short functionTimeout).
    let pace = Pace {
        page_size: 2,
        pause: Duration::ZERO,
        budget: Some(Duration::ZERO),
    };
    let later = Utc::now() + chrono::Duration::hours(1);
    let mut passes = Vec::new();
    loop {
        let report = purge_expired(backend.as_ref(), &policy, later, pace)
            .await
            .unwrap();
        passes.push(report);
        if !report.cut_short {
            break;
        }
    }
    let purged: Vec<usize> = passes.iter().map(|r| r.purged).collect();
    assert_eq!(purged, [2, 2, 1]);
    for i in 0..5 {
        assert!(!exists(&client, &format!("done-{i}")).await, "done-{i}");
    }
}
