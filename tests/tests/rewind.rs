//! Rewind of failed instances on Azurite: a failure in one branch of a fan-out, after
//! retries, in a sub-orchestration, and in a later generation of continue-as-new. Each
//! instance fails, the fault is "fixed", the rewind re-runs exactly the failed work and the
//! instance completes; every activity that had succeeded ran once, and the history replays
//! without nondeterminism (a later event is applied to it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use flowforge_orchestrator::history::EventKind;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::WorkerHandle;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// Runs per work item, and the items that fail until fixed.
#[derive(Default)]
struct Faults {
    runs: HashMap<String, u32>,
    broken: HashSet<String>,
}

fn faults() -> &'static Mutex<Faults> {
    static FAULTS: OnceLock<Mutex<Faults>> = OnceLock::new();
    FAULTS.get_or_init(Mutex::default)
}

fn break_item(item: &str) {
    faults().lock().unwrap().broken.insert(item.to_owned());
}

fn fix(item: &str) {
    faults().lock().unwrap().broken.remove(item);
}

fn runs(item: &str) -> u32 {
    faults()
        .lock()
        .unwrap()
        .runs
        .get(item)
        .copied()
        .unwrap_or(0)
}

/// The runs so far of each item. Every test measures what the rewind re-runs from the
/// moment of failure: activities run at least once, and under load an activity may have
/// run twice before it (a worker that reads the start message before the client has written
/// the state row runs the first activity, then its commit meets the client's row and the
/// episode is decided again).
fn runs_of<S: AsRef<str>>(items: &[S]) -> Vec<u32> {
    items.iter().map(|item| runs(item.as_ref())).collect()
}

fn registry() -> Registry {
    Registry::new()
        .activity("work", |_ctx, item: String| async move {
            let mut faults = faults().lock().unwrap();
            *faults.runs.entry(item.clone()).or_default() += 1;
            if faults.broken.contains(&item) {
                return Err(FailureDetails::new("Broken", format!("{item} is broken")));
            }
            Ok(item.len() as u64)
        })
        .orchestration(
            "fan",
            |ctx: OrchestrationContext, items: Vec<String>| async move {
                let calls = items
                    .iter()
                    .map(|item| ctx.call_activity::<u64>("work", item))
                    .collect();
                let sizes = ctx.join_all(calls).await;
                sizes.into_iter().sum::<Result<u64, _>>()
            },
        )
        .orchestration(
            "retrying",
            |ctx: OrchestrationContext, tag: String| async move {
                let first: u64 = ctx.call_activity("work", format!("{tag}-first")).await?;
                let policy = RetryPolicy::new(3, Duration::from_millis(50));
                let second: u64 = ctx
                    .call_activity_with_retry("work", format!("{tag}-flaky"), policy)
                    .await?;
                Ok(first + second)
            },
        )
        .orchestration(
            "parent",
            |ctx: OrchestrationContext, tag: String| async move {
                let own: u64 = ctx.call_activity("work", format!("{tag}-parent")).await?;
                let child_id = format!("{}-child", ctx.instance_id());
                let child: u64 = ctx
                    .call_sub_orchestration("child", Some(&child_id), &tag)
                    .await?;
                Ok(own + child)
            },
        )
        .orchestration(
            "child",
            |ctx: OrchestrationContext, tag: String| async move {
                let a: u64 = ctx.call_activity("work", format!("{tag}-child-a")).await?;
                let b: u64 = ctx.call_activity("work", format!("{tag}-child-b")).await?;
                Ok(a + b)
            },
        )
        .orchestration(
            "generations",
            |ctx: OrchestrationContext, (tag, generation): (String, u32)| async move {
                let size: u64 = ctx
                    .call_activity("work", format!("{tag}-gen{generation}"))
                    .await?;
                if generation < 2 {
                    ctx.continue_as_new((tag, generation + 1));
                }
                Ok(size)
            },
        )
}

async fn engine(hub: &str) -> (Client, WorkerHandle) {
    let backend = AzureBackend::connect(azurite::shared().config(hub))
        .await
        .unwrap();
    let options = WorkerOptions {
        max_idle_poll: Duration::from_millis(100),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend.clone(), registry(), options).start();
    (Client::new(backend), worker)
}

async fn ends(client: &Client, id: &str, status: RuntimeStatus) -> InstanceStatus {
    let done = client.wait_for_completion(id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, status, "{id}: {done:?}");
    done
}

/// Waits for the rewind to be recorded (an observable event), then for the instance to end.
async fn ends_after_rewind(client: &Client, id: &str) -> InstanceStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    while rewound_count(client, id).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} was never rewound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ends(client, id, RuntimeStatus::Completed).await
}

async fn rewound_count(client: &Client, id: &str) -> usize {
    let history = client
        .status(id, StatusOptions::with_history())
        .await
        .unwrap()
        .history
        .unwrap();
    history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ExecutionRewound { failures, .. } => Some(failures.len()),
            _ => None,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_branch_of_a_fan_out_runs_again_and_the_others_do_not() {
    let (client, worker) = engine("rewindfan").await;
    let items: Vec<String> = (0..6).map(|i| format!("fan-{i}")).collect();
    break_item("fan-3");
    break_item("fan-5");
    let id = client
        .start("fan", StartOptions::with_instance_id("rw-fan"), &items)
        .await
        .unwrap();
    ends(&client, &id, RuntimeStatus::Failed).await;
    let before = runs_of(&items);
    fix("fan-3");
    fix("fan-5");
    client.rewind(&id, "fixed the two files").await.unwrap();
    let done = ends_after_rewind(&client, &id).await;
    assert_eq!(done.output, json!(6 * 5));
    for (item, before) in items.iter().zip(before) {
        let again = u32::from(item == "fan-3" || item == "fan-5");
        assert_eq!(runs(item), before + again, "{item}");
    }
    assert_eq!(rewound_count(&client, &id).await, 2);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_retries_reruns_only_the_last_attempt() {
    let (client, worker) = engine("rewindretry").await;
    break_item("retry-flaky");
    let id = client
        .start(
            "retrying",
            StartOptions::with_instance_id("rw-retry"),
            &"retry",
        )
        .await
        .unwrap();
    ends(&client, &id, RuntimeStatus::Failed).await;
    let before = runs_of(&["retry-first", "retry-flaky"]);
    assert!(
        before[1] >= 3,
        "three attempts before the failure: {before:?}"
    );
    fix("retry-flaky");
    client.rewind(&id, "").await.unwrap();
    let done = ends_after_rewind(&client, &id).await;
    assert_eq!(
        done.output,
        json!("retry-first".len() + "retry-flaky".len())
    );
    assert_eq!(
        runs("retry-first"),
        before[0],
        "the first activity does not run again"
    );
    assert_eq!(
        runs("retry-flaky"),
        before[1] + 1,
        "one more run of the last attempt"
    );
    assert_eq!(rewound_count(&client, &id).await, 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sub_orchestration_is_rewound_in_turn() {
    let (client, worker) = engine("rewindsub").await;
    break_item("sub-child-b");
    let id = client
        .start(
            "parent",
            StartOptions::with_instance_id("rw-parent"),
            &"sub",
        )
        .await
        .unwrap();
    ends(&client, &id, RuntimeStatus::Failed).await;
    ends(&client, "rw-parent-child", RuntimeStatus::Failed).await;
    let before = runs_of(&["sub-parent", "sub-child-a", "sub-child-b"]);
    fix("sub-child-b");
    client.rewind(&id, "child fixed").await.unwrap();
    let done = ends_after_rewind(&client, &id).await;
    let expected = "sub-parent".len() + "sub-child-a".len() + "sub-child-b".len();
    assert_eq!(done.output, json!(expected));
    ends_after_rewind(&client, "rw-parent-child").await;
    assert_eq!(
        runs_of(&["sub-parent", "sub-child-a", "sub-child-b"]),
        [before[0], before[1], before[2] + 1],
        "only the failed activity runs again"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_a_later_generation_reruns_in_that_generation() {
    let (client, worker) = engine("rewindcan").await;
    break_item("can-gen2");
    let id = client
        .start(
            "generations",
            StartOptions::with_instance_id("rw-can"),
            &("can", 0),
        )
        .await
        .unwrap();
    ends(&client, &id, RuntimeStatus::Failed).await;
    // What the rewind does is measured from the failure (see `runs_of`).
    let before: Vec<u32> = ["can-gen0", "can-gen1", "can-gen2"]
        .iter()
        .map(|item| runs(item))
        .collect();
    assert!(before.iter().all(|n| *n >= 1), "{before:?}");
    fix("can-gen2");
    client.rewind(&id, "").await.unwrap();
    let done = ends_after_rewind(&client, &id).await;
    assert_eq!(done.output, json!("can-gen2".len()));
    assert_eq!(
        runs("can-gen0"),
        before[0],
        "the earlier generations do not run again"
    );
    assert_eq!(
        runs("can-gen1"),
        before[1],
        "the earlier generations do not run again"
    );
    assert_eq!(
        runs("can-gen2"),
        before[2] + 1,
        "the failed one runs once more"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_failed_instance_can_be_rewound() {
    let (client, worker) = engine("rewindrefused").await;
    let id = client
        .start(
            "fan",
            StartOptions::with_instance_id("rw-ok"),
            &vec!["ok-1".to_owned()],
        )
        .await
        .unwrap();
    ends(&client, &id, RuntimeStatus::Completed).await;
    let refused = client.rewind(&id, "").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::NotRewindable { .. }),
        "{refused}"
    );
    let missing = client.rewind("rw-nobody", "").await.unwrap_err();
    assert!(matches!(missing, ClientError::NotFound(_)), "{missing}");
    worker.shutdown().await;
}
