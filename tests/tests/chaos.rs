//! The chaos test: several real worker processes on one task hub, runs that mix fan-outs,
//! timers, sub-orchestrations, continue-as-new and events raised at random moments (some
//! before the run's start has been processed), duplicate starts racing the first, workers
//! killed with SIGKILL at random and Azurite frozen with SIGSTOP. At the end every run has
//! its exact output, no run executed twice, every history is gap-free with each result
//! once, and the queues drain to empty with nothing dead-lettered.
//!
//! Short form by default (CI); `FLOWFORGE_CHAOS_LONG=1` for the long form;
//! `FLOWFORGE_CHAOS_SEED=<n>` repeats a run's random choices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::backend::QueueStore;
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use flowforge_orchestrator::prelude::*;
use flowforge_tests::processes::{Frozen, Lcg, WorkerProcess};
use flowforge_tests::{
    chaos_expected, chaos_poke, chaos_width, check_history, fan_sum, Chaos, CHAOS_GENERATIONS,
};
use serde_json::json;

/// The size of a chaos run.
struct Shape {
    runs: u64,
    workers: usize,
    /// How long workers are killed at random.
    chaos: Duration,
    /// How long Azurite stays frozen (once, midway).
    freeze: Duration,
}

const SHORT: Shape = Shape {
    runs: 60,
    workers: 3,
    chaos: Duration::from_secs(30),
    freeze: Duration::from_secs(8),
};

const LONG: Shape = Shape {
    runs: 300,
    workers: 3,
    chaos: Duration::from_secs(120),
    freeze: Duration::from_secs(30),
};

const WAIT: Duration = Duration::from_secs(600);

fn worker(hub: &str, log: &std::path::Path) -> WorkerProcess {
    WorkerProcess::spawn(
        env!("CARGO_BIN_EXE_test-worker"),
        azurite::shared(),
        hub,
        Some(log),
    )
    .unwrap()
}

/// Repeats a client call that failed because storage did not answer, as a caller would.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match call().await {
            Err(ClientError::Storage(e)) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Raises a run's `poke` event (repeated while storage does not answer).
async fn poke(client: &Client, run: u64) {
    let id = format!("chaos-{run:03}");
    let value = chaos_poke(run);
    patiently(|| client.raise_event(&id, "poke", &value))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_runs_nothing_twice() {
    let long = std::env::var("FLOWFORGE_CHAOS_LONG").is_ok_and(|v| v == "1");
    let shape = if long { LONG } else { SHORT };
    let seed: u64 = std::env::var("FLOWFORGE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!(
        "chaos: seed {seed} (FLOWFORGE_CHAOS_SEED), {} runs, {} workers, {} s of kills",
        shape.runs,
        shape.workers,
        shape.chaos.as_secs()
    );
    let mut rng = Lcg(seed);
    let hub = "chaos";
    let mut config = azurite::shared().config(hub);
    config.attempt_deadline = Duration::from_secs(3);
    config.retry_budget = Duration::from_secs(10);
    let backend = AzureBackend::connect(config).await.unwrap();
    let client = Client::new(backend.clone());
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos-logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let log_of = |slot: usize| logs.join(format!("worker-{slot}.log"));
    let mut workers: Vec<WorkerProcess> = (0..shape.workers)
        .map(|i| worker(hub, &log_of(i)))
        .collect();

    // Starts, some raced by a duplicate start; a third of the pokes raised at once (before
    // the start is processed, mostly), the rest later at random moments.
    let started = Instant::now();
    let mut pending_pokes = Vec::new();
    let mut duplicates = 0;
    for run in 0..shape.runs {
        let id = format!("chaos-{run:03}");
        let input = Chaos {
            seed: run,
            generation: 0,
            acc: 0,
        };
        let options = || StartOptions::with_instance_id(id.clone());
        if rng.below(5) == 0 {
            duplicates += 1;
            let (a, b) = tokio::join!(
                client.start("chaos", options(), &input),
                client.start("chaos", options(), &input)
            );
            let accepted = [&a, &b].iter().filter(|r| r.is_ok()).count();
            assert_eq!(
                accepted, 1,
                "{id}: exactly one of two racing starts is accepted ({a:?}, {b:?})"
            );
        } else {
            patiently(|| client.start("chaos", options(), &input))
                .await
                .unwrap();
        }
        if rng.below(3) == 0 {
            poke(&client, run).await;
        } else {
            pending_pokes.push(run);
        }
    }
    eprintln!(
        "chaos: {} runs started in {:.1} s ({duplicates} raced by a duplicate start)",
        shape.runs,
        started.elapsed().as_secs_f64()
    );

    // Kills every 2–4 s, pokes in between, one freeze of Azurite midway.
    let chaos_started = Instant::now();
    let mut kills = 0;
    let mut frozen_once = false;
    while chaos_started.elapsed() < shape.chaos {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
        let slot = rng.below(workers.len() as u64) as usize;
        workers[slot].kill();
        kills += 1;
        workers[slot] = worker(hub, &log_of(slot));
        for _ in 0..(1 + rng.below(4)) {
            if pending_pokes.is_empty() {
                break;
            }
            let run = pending_pokes.swap_remove(rng.below(pending_pokes.len() as u64) as usize);
            poke(&client, run).await;
        }
        if !frozen_once && chaos_started.elapsed() >= shape.chaos / 2 {
            frozen_once = true;
            let frozen = Frozen::azurite(azurite::shared()).unwrap();
            eprintln!(
                "chaos: Azurite frozen (SIGSTOP) for {} s",
                shape.freeze.as_secs()
            );
            tokio::time::sleep(shape.freeze).await;
            drop(frozen);
        }
    }
    for run in pending_pokes.drain(..) {
        poke(&client, run).await;
    }
    let faults_over = Instant::now();
    eprintln!("chaos: {kills} workers killed; Azurite frozen once; waiting for every run");

    // Every run (and every sub-orchestration) ends with its exact output and a clean history.
    let mut finals = BTreeMap::new();
    for run in 0..shape.runs {
        let id = format!("chaos-{run:03}");
        let done = patiently(|| client.wait_for_completion(&id, WAIT))
            .await
            .unwrap();
        assert_eq!(
            done.runtime_status,
            RuntimeStatus::Completed,
            "{id}: {done:?}"
        );
        assert_eq!(done.output, json!(chaos_expected(run)), "{id}");
        let status = client
            .status(&id, StatusOptions::with_history())
            .await
            .unwrap();
        let history = status.history.clone().unwrap();
        let results =
            check_history(&history, done.runtime_status).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            results as u64,
            chaos_width(run),
            "{id}: each result of the last generation once"
        );
        for generation in 0..CHAOS_GENERATIONS {
            let child = format!("{id}-g{generation}");
            let sub = client
                .status(&child, StatusOptions::with_history())
                .await
                .unwrap();
            assert_eq!(sub.runtime_status, RuntimeStatus::Completed, "{child}");
            assert_eq!(sub.output, json!(fan_sum(chaos_width(run))), "{child}");
            let results = check_history(sub.history.as_ref().unwrap(), sub.runtime_status)
                .unwrap_or_else(|e| panic!("{child}: {e}"));
            assert_eq!(results as u64, chaos_width(run), "{child}");
        }
        finals.insert(id, (status.created_time, status.last_updated_time));
    }
    let recovered = faults_over.elapsed();

    // Nothing left to do: the queues drain (a stale or refused start still queued would run
    // a run again), nothing was dead-lettered, and no run's final state changed since.
    let drained = Instant::now();
    loop {
        let depths = backend.queue_depths().await.unwrap();
        let busy: BTreeMap<_, _> = depths
            .iter()
            .filter(|(name, n)| **n > 0 && !name.ends_with("-wake"))
            .collect();
        if busy.is_empty() {
            break;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(120),
            "queues did not drain: {busy:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let letters = backend.list_dead_letters(100).await.unwrap();
    assert!(letters.is_empty(), "dead letters: {letters:?}");
    for (id, before) in &finals {
        let now = client.status(id, StatusOptions::default()).await.unwrap();
        assert_eq!(
            &(now.created_time, now.last_updated_time),
            before,
            "{id} ran again"
        );
    }
    let logged: String = (0..shape.workers)
        .map(|slot| std::fs::read_to_string(log_of(slot)).unwrap_or_default())
        .collect();
    assert!(
        logged.contains("storage is unreachable"),
        "the freeze was not reported in the workers' logs"
    );
    eprintln!(
        "chaos: PASS — {} runs × {CHAOS_GENERATIONS} generations (+{} sub-orchestrations), {kills} SIGKILLs, {} s SIGSTOP of Azurite, {} raced starts; all done {:.1} s after the last fault; {:.1} s in all",
        shape.runs,
        shape.runs * u64::from(CHAOS_GENERATIONS),
        shape.freeze.as_secs(),
        duplicates,
        recovered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
