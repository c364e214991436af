//! Run logs end to end on the in-memory backend: what activities log through `tracing`
//! is stored per instance and attempt, whatever route the activity took (inline or the
//! work-item queue), retries and panics included, and goes with the purge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use flowforge_orchestrator::backend::{Backend, MemoryBackend};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::run_logs::{LogChunk, RunLogLayer};
use flowforge_orchestrator::testing::{eventually, fan_out};
use rstest::rstest;
use tracing_subscriber::layer::SubscriberExt as _;

const WAIT: Duration = Duration::from_secs(60);

/// The capture layer in this test process's subscriber (as the binary installs it).
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(RunLogLayer::new().at_info());
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

fn registry() -> Registry {
    fan_out(Registry::new(), "fan", "logged_square")
        .activity("logged_square", |ctx: ActivityContext, i: u64| async move {
            tracing::info!(i, "squaring {i}");
            tracing::debug!("below the captured level");
            tracing::warn!(id = ctx.scheduled_id, "squared {i}");
            Ok(i * i)
        })
        .orchestration("retrying", |ctx: OrchestrationContext, _: u64| async move {
            let policy = RetryPolicy::new(3, Duration::from_millis(1));
            let out: u32 = ctx.call_activity_with_retry("flaky", 0, policy).await?;
            Ok(out)
        })
        .activity("flaky", |_ctx, _: u64| async move {
            let call = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
            tracing::info!(call, "trying");
            if call < 3 {
                return Err(FailureDetails::of(
                    FailureKind::Other("Busy".into()),
                    "not yet",
                ));
            }
            Ok(call)
        })
        .orchestration(
            "panicking",
            |ctx: OrchestrationContext, _: u64| async move {
                let out: u32 = ctx.call_activity("panics", 0).await?;
                Ok(out)
            },
        )
        .activity("panics", |_ctx, _: u64| async move {
            tracing::info!("about to panic");
            if std::hint::black_box(true) {
                panic!("the activity's own bug");
            }
            Ok(0u32)
        })
}

async fn all_chunks(backend: &dyn Backend, instance_id: &str) -> Vec<LogChunk> {
    let mut chunks = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = backend
            .read_run_logs(instance_id, after.as_deref(), 250)
            .await
            .unwrap();
        chunks.extend(page.chunks);
        match page.continuation {
            Some(next) => after = Some(next),
            None => return chunks,
        }
    }
}

fn messages(chunk: &LogChunk) -> Vec<&str> {
    chunk.lines.iter().map(|l| l.message.as_str()).collect()
}

#[rstest]
#[case::inline(true)]
#[case::work_item_queue(false)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_of_1000_logging_activities_stores_every_line_in_order(#[case] inline: bool) {
    capture_logs();
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        inline_activities: inline,
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend.clone(), registry(), options).start();
    let client = Client::new(backend.clone());
    let id = client
        .start("fan", StartOptions::default(), &1000u64)
        .await
        .unwrap();
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let chunks = eventually("every attempt's logs", WAIT, || async {
        let chunks = all_chunks(backend.as_ref(), &id).await;
        (chunks.len() >= 1000).then_some(chunks)
    })
    .await;
    assert_eq!(chunks.len(), 1000, "one chunk per attempt");
    let mut inputs: Vec<u64> = Vec::new();
    for chunk in &chunks {
        assert_eq!(chunk.attempt.activity, "logged_square");
        assert_eq!(chunk.attempt.delivery, 1);
        let i: u64 = chunk.lines[0].fields["i"].parse().unwrap();
        assert_eq!(
            messages(chunk),
            [format!("squaring {i}"), format!("squared {i}")]
        );
        assert_eq!(chunk.lines[1].level, "WARN");
        assert_eq!(
            chunk.lines[1].fields["id"],
            chunk.attempt.activity_id.to_string()
        );
        inputs.push(i);
    }
    inputs.sort_unstable();
    assert_eq!(
        inputs,
        (0..1000).collect::<Vec<_>>(),
        "every activity's lines, once"
    );
    let ids: Vec<u64> = chunks.iter().map(|c| c.attempt.activity_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in activity order");

    client.purge(&id).await.unwrap();
    assert!(
        all_chunks(backend.as_ref(), &id).await.is_empty(),
        "purge removes the logs"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_is_its_own_attempt_and_a_panic_keeps_its_lines() {
    capture_logs();
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());

    let retrying = client
        .start("retrying", StartOptions::default(), &0u64)
        .await
        .unwrap();
    let status = client.wait_for_completion(&retrying, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let chunks = eventually("three attempts' logs", WAIT, || async {
        let chunks = all_chunks(backend.as_ref(), &retrying).await;
        (chunks.len() >= 3).then_some(chunks)
    })
    .await;
    let calls: Vec<&str> = chunks
        .iter()
        .map(|c| c.lines[0].fields["call"].as_str())
        .collect();
    assert_eq!(calls, ["1", "2", "3"], "one attempt each, in order");
    let ids: Vec<u64> = chunks.iter().map(|c| c.attempt.activity_id).collect();
    assert!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "a retry is a new activity id: {ids:?}"
    );

    let panicking = client
        .start("panicking", StartOptions::default(), &0u64)
        .await
        .unwrap();
    let status = client.wait_for_completion(&panicking, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    let failure = status.failure.expect("failure details");
    assert_eq!(failure.kind, FailureKind::ActivityPanicked);
    assert!(
        failure.message.contains("the activity's own bug"),
        "{}",
        failure.message
    );
    let chunks = eventually("the panicking attempt's logs", WAIT, || async {
        let chunks = all_chunks(backend.as_ref(), &panicking).await;
        (!chunks.is_empty()).then_some(chunks)
    })
    .await;
    assert_eq!(messages(&chunks[0]), ["about to panic"]);
    worker.shutdown().await;
}
