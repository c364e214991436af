//! Run logs on Azurite: a fan-out of 1,000 activities that each log two lines stores every
//! line, one attempt per activity, in order, read back in pages through the client; purge
//! removes them. Prints the table transactions the logs added (the benchmark reports it
//! too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::backend::{Backend, RunLogStore};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::run_logs::RunLogLayer;
use flowforge_orchestrator::testing::{eventually, fan_out};
use tracing_subscriber::layer::SubscriberExt as _;

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_1000_logging_activities_keeps_every_line() {
    let subscriber = tracing_subscriber::registry().with(RunLogLayer::new().at_info());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let registry = fan_out(Registry::new(), "fan_logged", "logged").activity(
        "logged",
        |_ctx, i: u64| async move {
            tracing::info!(i, "start {i}");
            tracing::info!(i, "end {i}");
            Ok(i)
        },
    );
    let backend: Arc<AzureBackend> = AzureBackend::connect(azurite::shared().config("runlogs"))
        .await
        .unwrap();
    let worker = Worker::new(backend.clone(), registry, WorkerOptions::default()).start();
    let client = Client::new(backend.clone());
    let id = client
        .start("fan_logged", StartOptions::default(), &1000u64)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    let before_flush = backend.transaction_counts();
    worker.shutdown().await; // flushes the run logs still being gathered
    let after_flush = backend.transaction_counts();

    let read_all = || async {
        let mut chunks = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = client.run_logs(&id, after.as_deref(), 300).await.unwrap();
            chunks.extend(page.chunks);
            match page.continuation {
                Some(next) => after = Some(next),
                None => return chunks,
            }
        }
    };
    let chunks = eventually("1,000 attempts' logs", WAIT, || async {
        let chunks = read_all().await;
        (chunks.len() == 1000).then_some(chunks)
    })
    .await;
    let mut seen = Vec::new();
    for chunk in &chunks {
        let i: u64 = chunk.lines[0].fields["i"].parse().unwrap();
        let messages: Vec<_> = chunk.lines.iter().map(|l| l.message.clone()).collect();
        assert_eq!(messages, [format!("start {i}"), format!("end {i}")]);
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    let ids: Vec<u64> = chunks.iter().map(|c| c.attempt.activity_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in activity order");
    eprintln!(
        "run logs of 1,000 attempts: table batches {} by completion, {} after the flush",
        before_flush.get("table.batch").copied().unwrap_or(0),
        after_flush.get("table.batch").copied().unwrap_or(0),
    );

    client.purge(&id).await.unwrap();
    let left = backend.read_run_logs(&id, None, 10).await.unwrap();
    assert!(left.chunks.is_empty(), "purge removes the logs");
}
