//! Crash safety and split brain with real worker processes on Azurite: workers killed with
//! SIGKILL at random points during waves of fan-outs, a group-committed chain and bundled
//! starts, and three workers on one task hub at once, taking in bundled starts.
//! Every instance must finish with a gap-free history that records each result once, and
//! the status index (on in both hubs) must list exactly the instances the state rows say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flowforge_azure::{azurite, AzureBackend, AzureConfig};
use flowforge_orchestrator::backend::{InstanceQuery, InstanceStore};
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use flowforge_tests::processes::{Lcg, WorkerProcess};
use flowforge_tests::{check_history, fan_sum, Waves, WAVE_MIN_MS};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(300);

fn spawn_worker(hub: &str) -> WorkerProcess {
    WorkerProcess::spawn(
        env!("CARGO_BIN_EXE_test-worker"),
        azurite::shared(),
        hub,
        None,
    )
    .unwrap()
}

/// The hub's configuration: the status index on, so every worker process keeps it too.
fn indexed(hub: &str) -> AzureConfig {
    let mut config = azurite::shared().config(hub);
    config.status_index = true;
    config
}

/// Every page of a listing, as instance ids.
async fn listed(backend: &AzureBackend, mut query: InstanceQuery) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    loop {
        let page = backend.list_instances(&query).await.unwrap();
        ids.extend(page.instances.into_iter().map(|s| s.instance_id));
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => return ids,
        }
    }
}

/// Once every instance has finished: the index lists as Completed exactly the instances
/// whose state rows say so (read by the scan of state rows), and nothing as unfinished.
async fn verify_index(backend: &AzureBackend) {
    let by_index = |statuses: Vec<RuntimeStatus>| InstanceQuery {
        statuses,
        page_size: 50,
        ..Default::default()
    };
    let mut scan = InstanceQuery {
        page_size: 1000,
        ..Default::default()
    };
    let mut completed = BTreeSet::new();
    loop {
        let page = backend.list_instances(&scan).await.unwrap();
        for state in page.instances {
            assert_eq!(
                state.status,
                RuntimeStatus::Completed,
                "{}",
                state.instance_id
            );
            completed.insert(state.instance_id);
        }
        match page.continuation {
            Some(token) => scan.continuation = Some(token),
            None => break,
        }
    }
    let indexed = listed(backend, by_index(vec![RuntimeStatus::Completed])).await;
    assert_eq!(indexed, completed);
    let unfinished = vec![RuntimeStatus::Pending, RuntimeStatus::Running];
    assert!(listed(backend, by_index(unfinished)).await.is_empty());
}

/// `chained`: the runs are "waves", whose end starts a "waves_report" (see the registry).
async fn verify(client: &Client, ids: &[String], n: u64, chained: bool) {
    for id in ids {
        let done = client.wait_for_completion(id, WAIT).await.unwrap();
        assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{id}");
        assert_eq!(done.output, json!(fan_sum(n)), "{id}");
        let options = StatusOptions::with_history();
        let history = client.status(id, options).await.unwrap().history.unwrap();
        let completions =
            check_history(&history, done.runtime_status).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            completions as u64, n,
            "{id}: each activity result recorded exactly once"
        );
        if !chained {
            continue;
        }
        // Its chained run: started once, whatever the kills between its end and that start.
        let chained = format!("{id}-then-report");
        let report = flowforge_orchestrator::testing::eventually(
            &format!("{chained} finished"),
            WAIT,
            || async {
                let status = client
                    .status(&chained, StatusOptions::default())
                    .await
                    .ok()?;
                status.runtime_status.is_terminal().then_some(status)
            },
        )
        .await;
        assert_eq!(report.runtime_status, RuntimeStatus::Completed, "{chained}");
        assert_eq!(report.output, json!(fan_sum(n)), "{chained}");
        let history = client
            .status(&chained, StatusOptions::with_history())
            .await
            .unwrap()
            .history
            .unwrap();
        let starts = history
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    flowforge_orchestrator::history::EventKind::ExecutionStarted { .. }
                )
            })
            .count();
        assert_eq!(starts, 1, "{chained}: one execution");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_points_lose_nothing() {
    let hub = "crash";
    let backend = AzureBackend::connect(indexed(hub)).await.unwrap();
    let client = Client::new(backend.clone());
    // Waves in sequence take at least 12 × WAVE_MIN_MS = 1.2 s of activity time, so the
    // first kill (at most KILL_AFTER_MAX_MS after its worker started) lands mid-run
    // however fast the engine gets.
    let shape = Waves {
        waves: 12,
        width: 15,
    };
    const KILL_AFTER_MIN_MS: u64 = 300;
    const KILL_AFTER_MAX_MS: u64 = 1200;
    assert!(shape.waves * WAVE_MIN_MS >= KILL_AFTER_MAX_MS);
    let n = shape.waves * shape.width;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            client
                .start(
                    "waves",
                    StartOptions::with_instance_id(format!("crash-{i}")),
                    &shape,
                )
                .await
                .unwrap(),
        );
    }
    // A chain of quick activities, whose steps are group-committed: a kill inside a group
    // must lose none of it and record no result twice.
    const CHAIN: u64 = 400;
    let chain = client
        .start(
            "chain",
            StartOptions::with_instance_id("crash-chain"),
            &CHAIN,
        )
        .await
        .unwrap();
    // Starts made at once go out as bundles of starts: kills while their pieces are taken
    // in must neither lose a start nor run one twice.
    const BUNDLED: usize = 40;
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..BUNDLED {
        let client = client.clone();
        starting.spawn(async move {
            let options = StartOptions::with_instance_id(format!("crash-bundled-{i:02}"));
            client.start("fan", options, &3u64).await.unwrap()
        });
    }
    let bundled = starting.join_all().await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut rng = Lcg(seed);
    let mut kills_mid_run = 0;
    for round in 0..4 {
        let mut worker = spawn_worker(hub);
        let pause = KILL_AFTER_MIN_MS + rng.below(KILL_AFTER_MAX_MS - KILL_AFTER_MIN_MS);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        worker.kill(); // SIGKILL: no chance to finish anything
        let mut finished = 0;
        for id in ids.iter().chain([&chain]) {
            if client
                .status(id, StatusOptions::default())
                .await
                .unwrap()
                .runtime_status
                .is_terminal()
            {
                finished += 1;
            }
        }
        eprintln!(
            "kill {round}: {finished} of {} instances finished",
            ids.len() + 1
        );
        if finished <= ids.len() {
            kills_mid_run += 1;
        }
    }
    assert!(
        kills_mid_run > 0,
        "no kill landed while work was in flight; the test proved nothing"
    );
    let _survivor = spawn_worker(hub);
    verify(&client, &ids, n, true).await;
    verify(&client, &[chain], CHAIN, false).await;
    verify(&client, &bundled, 3, false).await;
    verify_index(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_task_hub_never_split_brain() {
    let hub = "splitbrain";
    let backend: Arc<AzureBackend> = AzureBackend::connect(indexed(hub)).await.unwrap();
    let client = Client::new(backend.clone());
    let _workers: Vec<WorkerProcess> = (0..3).map(|_| spawn_worker(hub)).collect();
    let n = 20;
    // Started at once, so the starts go out in bundles that three processes take in (a
    // worker elsewhere often meets a start before its state row is written).
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..30 {
        let client = client.clone();
        starting.spawn(async move {
            let options = StartOptions::with_instance_id(format!("sb-{i:02}"));
            client.start("fan", options, &n).await.unwrap()
        });
    }
    let ids = starting.join_all().await;
    verify(&client, &ids, n, false).await;
    verify_index(&backend).await;
}
