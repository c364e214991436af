//! The worker runtime and the client end to end on the in-memory backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use flowforge_orchestrator::backend::{
    InstanceQuery, MemoryBackend, Outbound, QueueName, QueueStore, StartCondition,
};
use flowforge_orchestrator::client::{Error as ClientError, IfRunning, StatusOptions};
use flowforge_orchestrator::clock::ManualClock;
use flowforge_orchestrator::history::{EventKind, StartInfo};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::WorkerHandle;
use flowforge_orchestrator::testing::{eventually, fan_out};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn registry() -> Registry {
    fan_out(Registry::new(), "fan", "square")
        .orchestration("parent", |ctx: OrchestrationContext, _: Value| async move {
            let out: u64 = ctx.call_sub_orchestration("child", None, json!(3)).await?;
            Ok(out)
        })
        .orchestration("child", |ctx: OrchestrationContext, n: u64| async move {
            let _: Value = ctx.call_activity("fail_if", n).await?;
            Ok(n)
        })
        .orchestration(
            "approval",
            |ctx: OrchestrationContext, timeout_s: u64| async move {
                let answer: Option<String> = ctx
                    .wait_for_event_with_timeout("approve", Duration::from_secs(timeout_s))
                    .await?;
                Ok(answer.unwrap_or_else(|| "timed out".into()))
            },
        )
        .orchestration(
            "counter",
            |ctx: OrchestrationContext, total: u64| async move {
                let add: u64 = ctx.wait_for_event("add").await?;
                if total + add >= 10 {
                    return Ok(total + add);
                }
                ctx.continue_as_new(total + add);
                Ok(0)
            },
        )
        .activity("square", |_ctx, i: u64| async move { Ok(i * i) })
        .activity("fail_if", |_ctx, n: u64| async move {
            if n == 3 {
                Err(FailureDetails::non_retryable(
                    "Invalid",
                    "three is not allowed",
                ))
            } else {
                Ok(n)
            }
        })
}

/// Default options, with idle polling short enough for tests that wait on each step.
fn polling_quickly() -> WorkerOptions {
    WorkerOptions {
        min_idle_poll: Duration::from_millis(1),
        max_idle_poll: Duration::from_millis(20),
        ..WorkerOptions::default()
    }
}

/// Runs one instance of `name` to its end on a fresh in-memory backend and worker; returns
/// the backend (for its transaction counts) and the final status.
async fn run_once(
    registry: Registry,
    options: WorkerOptions,
    name: &str,
    input: Value,
) -> (Arc<MemoryBackend>, InstanceStatus) {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry, options).start();
    let client = Client::new(backend.clone());
    let id = client
        .start(name, StartOptions::default(), &input)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    worker.shutdown().await;
    (backend, done)
}

fn setup() -> (
    Arc<MemoryBackend>,
    Client,
    flowforge_orchestrator::runtime::WorkerHandle,
) {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    (backend.clone(), Client::new(backend), worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_of_a_thousand_activities() {
    let (backend, client, worker) = setup();
    let id = client
        .start("fan", StartOptions::with_instance_id("fan-1000"), &1000)
        .await
        .unwrap();
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let expected: u64 = (0..1000u64).map(|i| i * i).sum();
    assert_eq!(status.output, json!(expected));
    let full = client
        .status(&id, StatusOptions::with_history())
        .await
        .unwrap();
    let history = full.history.unwrap();
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..history.len() as u64).collect::<Vec<_>>(),
        "gap-free history"
    );
    let completions = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityCompleted { .. }))
        .count();
    assert_eq!(completions, 1000, "each result recorded exactly once");
    assert_eq!(backend.queue_len(&QueueName::Work), 0);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_orchestration_failure_propagates_with_details() {
    let (_backend, client, worker) = setup();
    let id = client
        .start(
            "parent",
            StartOptions::with_instance_id("p-1"),
            &json!(null),
        )
        .await
        .unwrap();
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    let failure = status.failure.unwrap();
    assert_eq!(failure.kind, "SubOrchestrationFailed");
    let inner = failure.inner.unwrap();
    assert_eq!(inner.kind, "Invalid");
    assert_eq!(inner.message, "three is not allowed");
    let child = client
        .status("p-1:0", StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(
        child.runtime_status,
        RuntimeStatus::Failed,
        "the child itself failed"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_event_with_timeout_both_outcomes() {
    let (_backend, client, worker) = setup();
    let answered = client
        .start("approval", StartOptions::with_instance_id("a-yes"), &3600)
        .await
        .unwrap();
    // Raise-event works right after start (no 404 window), even before the first episode.
    client
        .raise_event(&answered, "approve", &"approved by ada")
        .await
        .unwrap();
    let status = client.wait_for_completion(&answered, WAIT).await.unwrap();
    assert_eq!(status.output, json!("approved by ada"));

    let silent = client
        .start("approval", StartOptions::with_instance_id("a-no"), &1)
        .await
        .unwrap();
    let status = client.wait_for_completion(&silent, WAIT).await.unwrap();
    assert_eq!(status.output, json!("timed out"));
    let err = client
        .raise_event(&silent, "approve", &"late")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Finished { .. }), "{err}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_with_carried_over_events() {
    let (_backend, client, worker) = setup();
    let id = client
        .start("counter", StartOptions::with_instance_id("counter"), &0)
        .await
        .unwrap();
    // Four events sent at once: each execution consumes one and carries the rest over.
    for add in [1u64, 2, 3, 4] {
        client.raise_event(&id, "add", &add).await.unwrap();
    }
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, json!(10));
    let full = client
        .status(
            &id,
            StatusOptions {
                show_history: true,
                show_input: true,
                show_history_output: true,
            },
        )
        .await
        .unwrap();
    // Events still in flight when an execution continues as new may overtake the carried
    // ones, so the order of consumption varies; what holds is that the last execution saw
    // one event that completes the total from its input (each event consumed once).
    let history = full.history.unwrap();
    let raised: Vec<u64> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::EventRaised { input, .. } => input.as_u64(),
            _ => None,
        })
        .collect();
    let input = full.input.and_then(|v| v.as_u64()).unwrap();
    assert_eq!(raised.len(), 1, "fresh history per execution: {raised:?}");
    assert_eq!(
        input + raised[0],
        10,
        "input {input} + last event {raised:?}"
    );
    assert!(
        input >= 6,
        "three events were consumed before: input {input}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_back_off_follows_the_manual_clock() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let backend = Arc::new(MemoryBackend::with_clock(Arc::new(clock.clone())));
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let registry = Registry::new()
        .orchestration("retry", |ctx: OrchestrationContext, _: Value| async move {
            let policy = RetryPolicy::new(4, Duration::from_secs(60)).with_backoff(2.0);
            let v: u32 = ctx.call_activity_with_retry("flaky", (), policy).await?;
            Ok(v)
        })
        .activity("flaky", move |_ctx, _: Value| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    Err(FailureDetails::new("Transient", format!("attempt {n}")))
                } else {
                    Ok(n)
                }
            }
        });
    let options = WorkerOptions {
        max_idle_poll: Duration::from_millis(20),
        ..WorkerOptions::default()
    };
    let worker =
        Worker::with_clock(backend.clone(), registry, options, Arc::new(clock.clone())).start();
    let client = Client::with_clock(backend.clone(), Arc::new(clock.clone()));
    let id = client
        .start("retry", StartOptions::with_instance_id("r"), &json!(null))
        .await
        .unwrap();

    let timers = |c: Client| async move {
        let s = c.status("r", StatusOptions::with_history()).await.unwrap();
        s.history
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TimerCreated { fire_at, .. } => Some(*fire_at),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let wait_for = |n: usize| {
        let client = client.clone();
        async move {
            eventually(&format!("timer {n} created"), WAIT, || {
                let client = client.clone();
                async move { (timers(client).await.len() >= n).then_some(()) }
            })
            .await;
        }
    };
    wait_for(1).await;
    // Time stands still on the manual clock: the retry waits behind a timer that only
    // `advance` can fire, so one call so far is a fact, not a race.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        timers(client.clone()).await,
        vec![Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap()]
    );
    clock.advance(Duration::from_secs(60));
    wait_for(2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        timers(client.clone()).await[1],
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 3, 0).unwrap(),
        "60 s × 2"
    );
    clock.advance(Duration::from_secs(120));
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(status.output, json!(3));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_typed_errors() {
    let (backend, client, worker) = setup();
    let err = client
        .start("fan", StartOptions::with_instance_id("a/b"), &1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidInput(ref m) if m.contains("'/'")),
        "{err}"
    );
    let err = client
        .start("", StartOptions::default(), &1)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err}");
    let err = client
        .status("nope", StatusOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err}");

    let unknown = client
        .start("no-such-orchestration", StartOptions::default(), &1)
        .await
        .unwrap();
    let status = client.wait_for_completion(&unknown, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    assert_eq!(status.failure.unwrap().kind, "UnknownOrchestration");

    let wrong_type = client
        .start("fan", StartOptions::default(), &"ten")
        .await
        .unwrap();
    let status = client.wait_for_completion(&wrong_type, WAIT).await.unwrap();
    assert_eq!(status.failure.unwrap().kind, "InputDeserialization");

    // A malformed queue message is dead-lettered with its reason; the worker keeps serving.
    backend
        .send_raw(&QueueName::Control(0), "garbage", None)
        .await
        .unwrap();
    backend
        .send_raw(&QueueName::Work, "{\"v\":1,\"kind\":\"Nope\"}", None)
        .await
        .unwrap();
    let ok = client
        .start("fan", StartOptions::default(), &3)
        .await
        .unwrap();
    assert_eq!(
        client.wait_for_completion(&ok, WAIT).await.unwrap().output,
        json!(5)
    );
    for queue in [QueueName::Control(0), QueueName::Work] {
        let dead = eventually("a dead letter", WAIT, || async {
            let dead = backend.dead_letters(&queue).await.unwrap();
            (!dead.is_empty()).then_some(dead)
        })
        .await;
        assert_eq!(dead.len(), 1, "{queue:?}");
        assert!(
            dead[0].reason.contains("not a valid engine message"),
            "{}",
            dead[0].reason
        );
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_activity_fails_the_instance_clearly() {
    let backend = Arc::new(MemoryBackend::new());
    let registry = Registry::new().orchestration(
        "calls_missing",
        |ctx: OrchestrationContext, _: Value| async move {
            let v: Value = ctx.call_activity("missing", ()).await?;
            Ok(v)
        },
    );
    let worker = Worker::new(backend.clone(), registry, WorkerOptions::default()).start();
    let client = Client::new(backend);
    let id = client
        .start("calls_missing", StartOptions::default(), &json!(null))
        .await
        .unwrap();
    let status = client.wait_for_completion(&id, WAIT).await.unwrap();
    let failure = status.failure.unwrap();
    assert_eq!(failure.kind, "UnknownActivity");
    assert!(failure.message.contains("'missing'"));
    worker.shutdown().await;
}

/// An activity that runs past `activity_timeout` fails with `ActivityTimedOut`, whether it
/// runs inline or from the work-item queue; the instance fails with that failure.
#[rstest::rstest]
#[case::inline(true)]
#[case::queued(false)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_past_its_timeout_fails_clearly(#[case] inline_activities: bool) {
    let registry = Registry::new()
        .orchestration("stuck", |ctx: OrchestrationContext, _: Value| async move {
            let v: Value = ctx.call_activity("hang", ()).await?;
            Ok(v)
        })
        .activity("hang", |_ctx, _: Value| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(json!("never"))
        });
    let options = WorkerOptions {
        inline_activities,
        activity_timeout: Some(Duration::from_millis(200)),
        ..polling_quickly()
    };
    let (_, status) = run_once(registry, options, "stuck", json!(null)).await;
    assert_eq!(status.runtime_status, RuntimeStatus::Failed);
    let failure = status.failure.unwrap();
    assert_eq!(failure.kind, "ActivityTimedOut");
    assert!(failure.message.contains("'hang'"), "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_operations_terminate_suspend_resume_restart_list_purge() {
    let (_backend, client, worker) = setup();
    // Start is idempotent on the id under the policy.
    let id = client
        .start("approval", StartOptions::with_instance_id("ops"), &3600)
        .await
        .unwrap();
    let again = client
        .start("approval", StartOptions::with_instance_id("ops"), &3600)
        .await
        .unwrap_err();
    assert!(
        matches!(again, ClientError::AlreadyRunning { .. }),
        "{again}"
    );
    let dedup = StartOptions {
        if_running: IfRunning::ReturnExisting,
        ..StartOptions::with_instance_id("ops")
    };
    assert_eq!(client.start("approval", dedup, &3600).await.unwrap(), "ops");

    client.suspend(&id, "pause").await.unwrap();
    eventually("status Suspended", WAIT, || async {
        let status = client.status(&id, StatusOptions::default()).await.unwrap();
        (status.runtime_status == RuntimeStatus::Suspended).then_some(())
    })
    .await;
    client
        .raise_event(&id, "approve", &"while suspended")
        .await
        .unwrap();
    // Once the event is in the history it has been taken in, and held.
    eventually("the event taken in", WAIT, || async {
        let status = client
            .status(&id, StatusOptions::with_history())
            .await
            .unwrap();
        let history = status.history.unwrap_or_default();
        let raised = history
            .iter()
            .any(|e| matches!(&e.kind, EventKind::EventRaised { name, .. } if name == "approve"));
        raised.then_some(())
    })
    .await;
    assert_eq!(
        client
            .status(&id, StatusOptions::default())
            .await
            .unwrap()
            .runtime_status,
        RuntimeStatus::Suspended
    );
    client.resume(&id, "go on").await.unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(
        done.output,
        json!("while suspended"),
        "held event delivered on resume"
    );

    let doomed = client
        .start("approval", StartOptions::with_instance_id("doomed"), &3600)
        .await
        .unwrap();
    client.terminate(&doomed, "no longer needed").await.unwrap();
    let status = client.wait_for_completion(&doomed, WAIT).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(status.output, json!("no longer needed"));
    assert!(matches!(
        client.terminate(&doomed, "again").await,
        Err(ClientError::Finished { .. })
    ));

    let restarted = client.restart(&doomed, true).await.unwrap();
    assert_ne!(restarted, doomed);
    client
        .raise_event(&restarted, "approve", &"second life")
        .await
        .unwrap();
    assert_eq!(
        client
            .wait_for_completion(&restarted, WAIT)
            .await
            .unwrap()
            .output,
        json!("second life")
    );
    let same = client.restart(&doomed, false).await.unwrap();
    assert_eq!(same, doomed);
    client.terminate(&doomed, "again").await.unwrap();
    client.wait_for_completion(&doomed, WAIT).await.unwrap();

    for i in 0..7 {
        let id = client
            .start(
                "fan",
                StartOptions::with_instance_id(format!("list-{i}")),
                &2,
            )
            .await
            .unwrap();
        client.wait_for_completion(&id, WAIT).await.unwrap();
    }
    let mut query = InstanceQuery {
        statuses: vec![RuntimeStatus::Completed],
        instance_id_prefix: Some("list-".into()),
        page_size: 3,
        ..Default::default()
    };
    let mut listed = Vec::new();
    loop {
        let (page, next) = client.list(&query, false).await.unwrap();
        listed.extend(page.into_iter().map(|s| s.instance_id));
        match next {
            Some(token) => query.continuation = Some(token),
            None => break,
        }
    }
    assert_eq!(
        listed,
        (0..7).map(|i| format!("list-{i}")).collect::<Vec<_>>()
    );

    let running = client
        .start(
            "approval",
            StartOptions::with_instance_id("still-running"),
            &3600,
        )
        .await
        .unwrap();
    assert!(matches!(
        client.purge(&running).await,
        Err(ClientError::NotFinished { .. })
    ));
    client.purge("list-0").await.unwrap();
    assert!(matches!(
        client.status("list-0", StatusOptions::default()).await,
        Err(ClientError::NotFound(_))
    ));
    // Pages of two: each page is deleted before the next is listed after it.
    let purged = client
        .purge_many(&InstanceQuery {
            instance_id_prefix: Some("list-".into()),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(purged, 6);
    worker.shutdown().await;
}

/// An orchestration of one activity that outlives the lock several times over, counting
/// how often the activity starts, on a worker with a short lock and lease renewal.
async fn run_long_activity(inline_activities: bool) -> (InstanceStatus, u32, u64) {
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let registry = Registry::new()
        .orchestration("long", |ctx: OrchestrationContext, _: Value| async move {
            let out: u32 = ctx.call_activity("long_work", json!(null)).await?;
            Ok(out)
        })
        .activity("long_work", move |_ctx, _: Value| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok(7u32)
            }
        });
    let options = WorkerOptions {
        inline_activities,
        // Without renewals the message would be delivered again after 1.5 s; renewals
        // every 0.3 s leave 1.2 s of slack for a loaded machine.
        lock_timeout: Duration::from_millis(1500),
        lease_renewal: Duration::from_millis(300),
        ..polling_quickly()
    };
    let (backend, done) = run_once(registry, options, "long", json!(null)).await;
    let renewals = backend
        .transaction_counts()
        .get("queue.update")
        .copied()
        .unwrap_or(0);
    (done, runs.load(Ordering::SeqCst), renewals)
}

/// A long activity keeps the messages it came from hidden by renewing their lease, inline
/// (the session's messages) or queued (its work item): it runs once, however long it takes.
#[rstest::rstest]
#[case::inline(true)]
#[case::queued(false)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_activity_renews_its_lease_and_runs_once(#[case] inline_activities: bool) {
    let (done, runs, renewals) = run_long_activity(inline_activities).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!(7));
    assert_eq!(runs, 1, "delivered (and run) again after its lock expired");
    assert!(renewals >= 2, "{renewals} renewals");
}

/// A message for an instance that is busy in an inline session waits for it without
/// holding up its partition: another instance on the same (only) partition starts and
/// completes while the first one's activity is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_does_not_hold_up_its_partition() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (gate_in, entered_in) = (gate.clone(), entered.clone());
    let registry = Registry::new()
        .orchestration("gated", |ctx: OrchestrationContext, _: Value| async move {
            let _: Value = ctx.call_activity("gate", json!(null)).await?;
            let ping: String = ctx.wait_for_event("ping").await?;
            Ok(ping)
        })
        .orchestration("quick", |ctx: OrchestrationContext, i: u64| async move {
            ctx.call_activity::<u64>("double", i).await
        })
        .activity("gate", move |_ctx, _: Value| {
            let (gate, entered) = (gate_in.clone(), entered_in.clone());
            async move {
                entered.notify_one();
                gate.notified().await;
                Ok(json!(null))
            }
        })
        .activity("double", |_ctx, i: u64| async move { Ok(i * 2) });
    let backend = Arc::new(MemoryBackend::new().with_partitions(1));
    let options = WorkerOptions {
        // No redelivery rescues a blocked partition within the test's patience.
        lock_timeout: Duration::from_secs(7200),
        ..polling_quickly()
    };
    let worker = Worker::new(backend.clone(), registry, options).start();
    let client = Client::new(backend.clone());
    let gated = client
        .start("gated", StartOptions::default(), &json!(null))
        .await
        .unwrap();
    entered.notified().await;
    // A message for the busy instance, received alone in its own batch.
    client.raise_event(&gated, "ping", &"pong").await.unwrap();
    eventually("the ping received", WAIT, || async {
        (backend.visible_len(&QueueName::Control(0)) == 0).then_some(())
    })
    .await;
    let quick = client
        .start("quick", StartOptions::default(), &json!(21))
        .await
        .unwrap();
    // `gated` is released only after `quick` completes: a blocked partition never gets
    // there (a deadlock, not slowness), so the wait is bounded rather than a timing claim.
    let done = client
        .wait_for_completion(&quick, Duration::from_secs(30))
        .await
        .expect("the partition was held up by the busy instance");
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!(42));
    gate.notify_one();
    let done = client.wait_for_completion(&gated, WAIT).await.unwrap();
    assert_eq!(done.output, json!("pong"));
    worker.shutdown().await;
}

/// Within the group commit window, a one-activity orchestration is written once: its start,
/// the activity's schedule and result and its completion in one commit, in history order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_orchestration_is_committed_once() {
    let registry = Registry::new()
        .orchestration("once", |ctx: OrchestrationContext, i: u64| async move {
            ctx.call_activity::<u64>("double", i).await
        })
        .activity("double", |_ctx, i: u64| async move { Ok(i * 2) });
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        // Wide enough that the no-op activity always finishes inside it.
        group_commit_window: Duration::from_secs(30),
        ..polling_quickly()
    };
    let worker = Worker::new(backend.clone(), registry, options).start();
    let client = Client::new(backend.clone());
    let commits = |b: &MemoryBackend| b.transaction_counts().get("table.batch").copied();
    let before = commits(&backend).unwrap_or(0);
    let id = client
        .start("once", StartOptions::default(), &json!(21))
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(done.output, json!(42));
    assert_eq!(commits(&backend).unwrap_or(0) - before, 1, "one commit");
    let kinds: Vec<&str> = history_kinds(&client, &id)
        .await
        .into_iter()
        .filter(|k| *k != "OrchestratorStarted")
        .collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "ActivityScheduled",
            "ActivityCompleted",
            "ExecutionCompleted"
        ]
    );
}

/// A chain of quick activities, one after the other, adding one each time.
fn counting_chain() -> Registry {
    Registry::new()
        .orchestration(
            "count",
            |ctx: OrchestrationContext, steps: u64| async move {
                let mut total = 0u64;
                for _ in 0..steps {
                    total = ctx.call_activity::<u64>("add_one", total).await?;
                }
                Ok(total)
            },
        )
        .activity("add_one", |_ctx, n: u64| async move { Ok(n + 1) })
}

/// Runs `count` over `steps` with `window` and returns the table commits it took and its
/// history's kinds (without the replay markers).
async fn run_counting_chain(steps: u64, window: Duration) -> (u64, Vec<&'static str>) {
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        group_commit_window: window,
        ..polling_quickly()
    };
    let worker = Worker::new(backend.clone(), counting_chain(), options).start();
    let client = Client::new(backend.clone());
    let commits = |b: &MemoryBackend| b.transaction_counts().get("table.batch").copied();
    let before = commits(&backend).unwrap_or(0);
    let id = client
        .start("count", StartOptions::default(), &json!(steps))
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!(steps));
    let kinds = history_kinds(&client, &id)
        .await
        .into_iter()
        .filter(|k| *k != "OrchestratorStarted")
        .collect();
    (commits(&backend).unwrap_or(0) - before, kinds)
}

/// The history of `count` over `steps`, whatever the commits.
fn counting_history(steps: usize) -> Vec<&'static str> {
    let mut kinds = vec!["ExecutionStarted"];
    for _ in 0..steps {
        kinds.extend(["ActivityScheduled", "ActivityCompleted"]);
    }
    kinds.push("ExecutionCompleted");
    kinds
}

/// Group commit: the steps of a chain of quick activities are run before they are
/// committed and written together, at most 64 steps a commit — a chain of 100 is two
/// commits — with the same history as step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_quick_steps_is_committed_a_group_at_a_time() {
    // Wide enough that every no-op activity finishes inside it.
    let (commits, kinds) = run_counting_chain(100, Duration::from_secs(30)).await;
    assert_eq!(kinds, counting_history(100));
    assert_eq!(commits, 2, "64 steps, then the other 36 and the completion");
}

/// Without a group commit window every step is its own commit: the start with the first
/// schedule, then each result with what it leads to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_every_step_is_committed_on_its_own() {
    let (commits, kinds) = run_counting_chain(3, Duration::ZERO).await;
    assert_eq!(kinds, counting_history(3));
    assert_eq!(commits, 4);
}

/// The kinds of an instance's history events, in order.
async fn history_kinds(client: &Client, id: &str) -> Vec<&'static str> {
    let options = StatusOptions::with_history();
    let status = client.status(id, options).await.unwrap();
    status
        .history
        .unwrap()
        .iter()
        .map(|e| e.kind.type_name())
        .collect()
}

/// An orchestration racing a gated activity against an event, and a worker that would
/// keep the activity running for an hour: what the tests below share.
struct GatedRace {
    gate: Arc<tokio::sync::Notify>,
    entered: Arc<tokio::sync::Notify>,
    client: Client,
    worker: WorkerHandle,
}

fn gated_race() -> GatedRace {
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (gate_in, entered_in) = (gate.clone(), entered.clone());
    let registry = Registry::new()
        .orchestration("race", |ctx: OrchestrationContext, _: Value| async move {
            let work = ctx.call_activity::<Value>("gate", json!(null));
            let cancel = ctx.wait_for_event::<Value>("cancel");
            let (winner, value) = ctx.first_of(vec![work, cancel]).await;
            Ok(json!({"winner": winner, "value": value?}))
        })
        .activity("gate", move |_ctx, _: Value| {
            let (gate, entered) = (gate_in.clone(), entered_in.clone());
            async move {
                entered.notify_one();
                gate.notified().await;
                Ok(json!("worked"))
            }
        });
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        // The messages stay hidden for the whole test: no redelivery delivers the event
        // instead.
        lock_timeout: Duration::from_secs(7200),
        ..polling_quickly()
    };
    let worker = Worker::new(backend.clone(), registry, options).start();
    GatedRace {
        gate,
        entered,
        client: Client::new(backend),
        worker,
    }
}

impl GatedRace {
    /// Starts the race; returns once its activity runs (and waits at the gate).
    async fn start(&self) -> String {
        let id = self
            .client
            .start("race", StartOptions::default(), &json!(null))
            .await
            .unwrap();
        self.entered.notified().await;
        id
    }

    /// The instance once finished, with the gate still closed: something held up by the
    /// activity never finishes it (a hang, not slowness), so the bound is not a timing
    /// claim.
    async fn finished_while_gated(&self, id: &str) -> InstanceStatus {
        self.client
            .wait_for_completion(id, Duration::from_secs(30))
            .await
            .expect("held up by the inline activity")
    }

    /// Opens the gate, stops the worker once the late result is dealt with, and returns
    /// the kinds of the instance's history events.
    async fn release(self, id: &str) -> Vec<&'static str> {
        self.gate.notify_one();
        self.worker.shutdown().await;
        history_kinds(&self.client, id).await
    }
}

/// An event for an instance whose activity runs inline is not held up by the activity:
/// the orchestration sees it and finishes while the activity still runs; the activity's
/// late result is then dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_an_instance_while_its_inline_activity_runs() {
    let race = gated_race();
    let id = race.start().await;
    race.client
        .raise_event(&id, "cancel", &"stop")
        .await
        .unwrap();
    let done = race.finished_while_gated(&id).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!({"winner": 1, "value": "stop"}));
    let kinds = race.release(&id).await;
    assert_eq!(kinds.last(), Some(&"ExecutionCompleted"));
    assert!(!kinds.contains(&"ActivityCompleted"), "{kinds:?}");
}

/// Terminating an instance whose activity runs inline takes effect at once; the
/// activity's late result does not reach the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_is_not_held_up_by_an_inline_activity() {
    let race = gated_race();
    let id = race.start().await;
    race.client.terminate(&id, "enough").await.unwrap();
    let done = race.finished_while_gated(&id).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Terminated);
    let client = race.client.clone();
    let kinds = race.release(&id).await;
    assert_eq!(kinds.last(), Some(&"ExecutionTerminated"));
    assert!(!kinds.contains(&"ActivityCompleted"), "{kinds:?}");
    let status = client.status(&id, StatusOptions::default()).await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Terminated);
}

/// A registry whose `blocked` orchestration calls an activity that waits for `gate` (a
/// signal on `entered` as it starts); `double` is quick.
fn gated_registry(
    gate: Arc<tokio::sync::Notify>,
    entered: Arc<tokio::sync::Semaphore>,
) -> Registry {
    Registry::new()
        .orchestration(
            "blocked",
            |ctx: OrchestrationContext, _: Value| async move {
                let v: Value = ctx.call_activity("wait_at_gate", json!(null)).await?;
                Ok(v)
            },
        )
        .orchestration("quick", |ctx: OrchestrationContext, i: u64| async move {
            ctx.call_activity::<u64>("double", i).await
        })
        .activity("wait_at_gate", move |_ctx, _: Value| {
            let (gate, entered) = (gate.clone(), entered.clone());
            async move {
                entered.add_permits(1);
                gate.notified().await;
                Ok(json!("through"))
            }
        })
        .activity("double", |_ctx, i: u64| async move { Ok(i * 2) })
}

/// Long inline activities do not hold the worker's episode slots: with two slots and two
/// instances blocked in their activities, a third instance still runs to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_inline_activities_do_not_starve_other_instances() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        orchestration_concurrency: 2,
        lock_timeout: Duration::from_secs(7200),
        ..polling_quickly()
    };
    let registry = gated_registry(gate.clone(), entered.clone());
    let worker = Worker::new(backend.clone(), registry, options).start();
    let client = Client::new(backend);
    let mut blocked = Vec::new();
    for _ in 0..2 {
        let id = client
            .start("blocked", StartOptions::default(), &json!(null))
            .await
            .unwrap();
        blocked.push(id);
    }
    entered.acquire_many(2).await.unwrap().forget();
    let quick = client
        .start("quick", StartOptions::default(), &json!(21))
        .await
        .unwrap();
    // Both gates are still closed: a worker whose slots the sessions hold never gets
    // here (a hang, not slowness).
    let done = client
        .wait_for_completion(&quick, Duration::from_secs(30))
        .await
        .expect("the blocked sessions held every episode slot");
    assert_eq!(done.output, json!(42));
    gate.notify_waiters();
    for id in &blocked {
        let done = client.wait_for_completion(id, WAIT).await.unwrap();
        assert_eq!(done.output, json!("through"));
    }
    worker.shutdown().await;
}

/// Stopping a worker hands its running inline activities to the work-item queue instead
/// of waiting for them; the next worker runs them and the instance completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_running_inline_activities_to_the_queue() {
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let backend = Arc::new(MemoryBackend::new());
    let options = WorkerOptions {
        lock_timeout: Duration::from_secs(7200),
        ..polling_quickly()
    };
    let never_opened = Arc::new(tokio::sync::Notify::new());
    let registry = gated_registry(never_opened, entered.clone());
    let first = Worker::new(backend.clone(), registry, options.clone()).start();
    let client = Client::new(backend.clone());
    let id = client
        .start("blocked", StartOptions::default(), &json!(null))
        .await
        .unwrap();
    entered.acquire_many(1).await.unwrap().forget();
    tokio::time::timeout(Duration::from_secs(30), first.shutdown())
        .await
        .expect("shutdown waited for the inline activity");
    // The next worker's gate is open from the start.
    let open = Arc::new(tokio::sync::Notify::new());
    open.notify_one();
    let registry = gated_registry(open, entered);
    let second = Worker::new(backend.clone(), registry, options).start();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    second.shutdown().await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!("through"));
}

/// Inline activities count against `activity_concurrency` like queued ones: a fan-out of
/// ten never has more than three running at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_activities_respect_the_activity_concurrency() {
    let running = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let (running_in, most_in) = (running.clone(), most.clone());
    let registry = Registry::new()
        .orchestration("ten", |ctx: OrchestrationContext, _: Value| async move {
            let calls = (0..10)
                .map(|i| ctx.call_activity::<u32>("counted", i))
                .collect();
            let done: Vec<TaskResult<u32>> = ctx.join_all(calls).await;
            Ok(done.into_iter().collect::<Result<Vec<_>, _>>()?.len())
        })
        .activity("counted", move |_ctx, i: u32| {
            let (running, most) = (running_in.clone(), most_in.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            }
        });
    let options = WorkerOptions {
        activity_concurrency: 3,
        ..polling_quickly()
    };
    let (_, done) = run_once(registry, options, "ten", json!(null)).await;
    assert_eq!(done.output, json!(10));
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "most activities running at once"
    );
}

/// The start message a caller sends before it learns its start was refused (409) or lost a
/// race: it stays queued.
fn losing_start(id: &str, execution: &str, condition: StartCondition) -> Outbound {
    flowforge_orchestrator::runtime::episode_effects::to_instance(
        id,
        Some(&execution.to_owned()),
        StartInfo::new("fan", execution, json!(4)).into_event(),
        Utc::now(),
        None,
        1,
    )
    .with_start_condition(condition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_losing_start_never_runs_the_instance_again() {
    let (backend, client, worker) = setup();
    let id = client
        .start("fan", StartOptions::with_instance_id("race-1"), &3_u32)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.output, json!(5));
    let first = client.status(&id, StatusOptions::with_history());
    let first = first.await.unwrap().history.unwrap();
    // Processed after the winner finished: the starts of callers that saw no instance,
    // or that replaced an execution that is no longer the current one.
    backend
        .send(&losing_start(&id, "loser-absent", StartCondition::Absent))
        .await
        .unwrap();
    let stale = StartCondition::Replacing {
        execution_id: "an-older-execution".into(),
    };
    backend
        .send(&losing_start(&id, "loser-stale", stale))
        .await
        .unwrap();
    // Wait until both are consumed (deleted after processing).
    eventually("both losing starts consumed", WAIT, || async {
        let left = backend.queue_len(&QueueName::Control(0)) + backend.queue_len(&QueueName::Work);
        (left == 0).then_some(())
    })
    .await;
    let after = client
        .status(&id, StatusOptions::with_history())
        .await
        .unwrap();
    assert_eq!(after.runtime_status, RuntimeStatus::Completed);
    assert_eq!(after.output, json!(5), "not the loser's input (4)");
    let history = after.history.unwrap();
    assert_eq!(history, first, "the history is the winner's, unchanged");
    let starts = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }))
        .count();
    assert_eq!(starts, 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_instance_started_again_and_continue_as_new_still_run() {
    let (_backend, client, worker) = setup();
    let id = client
        .start("fan", StartOptions::with_instance_id("again-1"), &2_u32)
        .await
        .unwrap();
    assert_eq!(
        client.wait_for_completion(&id, WAIT).await.unwrap().output,
        json!(1)
    );
    client
        .start("fan", StartOptions::with_instance_id("again-1"), &3_u32)
        .await
        .unwrap();
    assert_eq!(
        client.wait_for_completion(&id, WAIT).await.unwrap().output,
        json!(5)
    );
    let counter = client
        .start(
            "counter",
            StartOptions::with_instance_id("counter-1"),
            &0_u64,
        )
        .await
        .unwrap();
    for _ in 0..4 {
        client
            .raise_event(&counter, "add", &json!(3))
            .await
            .unwrap();
    }
    let done = client.wait_for_completion(&counter, WAIT).await.unwrap();
    assert_eq!(
        done.output,
        json!(12),
        "four generations through continue-as-new"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_early_for_its_start_waits_for_it_without_using_the_poison_budget() {
    let backend = Arc::new(MemoryBackend::new());
    let client = Client::new(backend.clone());
    let id = client
        .start(
            "approval",
            StartOptions::with_instance_id("early-2"),
            &3600_u64,
        )
        .await
        .unwrap();
    // A worker that died holds the start message: hidden until its lock runs out.
    let start = backend
        .receive(&QueueName::Control(0), 1, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(start.len(), 1);
    client
        .raise_event(&id, "approve", &json!("ana"))
        .await
        .unwrap();
    let options = WorkerOptions {
        defer_delay: Duration::from_millis(10),
        ..polling_quickly()
    };
    let worker = Worker::new(backend.clone(), registry(), options).start();
    // The event is held again and again, far past max_dequeue_count (5).
    let puts = |b: &MemoryBackend| {
        b.transaction_counts()
            .get("queue.put")
            .copied()
            .unwrap_or(0)
    };
    let before = puts(&backend);
    eventually("the early event held a dozen times", WAIT, || async {
        (puts(&backend) >= before + 12).then_some(())
    })
    .await;
    // The dead worker's lock runs out: the start comes back.
    backend
        .abandon(&QueueName::Control(0), &start[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output, json!("ana"));
    assert!(backend
        .dead_letters(&QueueName::Control(0))
        .await
        .unwrap()
        .is_empty());
    worker.shutdown().await;
}

/// A bundle of starts delivered too often is dead-lettered whole and fails only the
/// instances whose start never committed: a running instance it also carried keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_bundle_of_starts_fails_only_the_instances_it_never_started() {
    use flowforge_orchestrator::backend::QueueMessage;
    use flowforge_orchestrator::backend::{to_instance, InstanceStore, OrchestratorMessage};
    use flowforge_orchestrator::status::InstanceState;
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), registry(), polling_quickly()).start();
    let client = Client::new(backend.clone());
    let running = client
        .start(
            "counter",
            StartOptions::with_instance_id("bundle-running"),
            &0u64,
        )
        .await
        .unwrap();
    eventually("the instance running", WAIT, || async {
        let status = client
            .status(&running, StatusOptions::default())
            .await
            .ok()?;
        (status.runtime_status == RuntimeStatus::Running).then_some(())
    })
    .await;
    // An instance whose state row is written but whose start never ran (its own start
    // message stays invisible for a day).
    let now = Utc::now();
    let start_of = |id: &str, visible_at| {
        let event = StartInfo::new("counter", "e1", json!(0)).into_event();
        to_instance(
            id,
            Some(&"e1".to_owned()),
            event,
            now,
            visible_at,
            backend.control_partitions(),
        )
    };
    let never = "bundle-never";
    let event = StartInfo::new("counter", "e1", json!(0)).into_event();
    let state = InstanceState::started(never, &event, now);
    let later = now + chrono::Duration::days(1);
    backend
        .create_instance(&state, &start_of(never, Some(later)), None)
        .await
        .unwrap();
    // The bundle both starts were in, on its eleventh delivery.
    let starts: Vec<OrchestratorMessage> = [running.as_str(), never]
        .iter()
        .map(|id| match start_of(id, None).message {
            QueueMessage::Orchestrator(message) => message,
            other => panic!("not a start: {other:?}"),
        })
        .collect();
    let queue = QueueName::Control(0);
    let bundle = QueueMessage::Starts { starts }.encode_copy(10, None);
    backend.send_raw(&queue, &bundle, None).await.unwrap();
    let failed = client.wait_for_completion(never, WAIT).await.unwrap();
    assert_eq!(failed.runtime_status, RuntimeStatus::Failed);
    let reason = failed.failure.unwrap().message;
    assert!(reason.contains("a bundle of 2 starts"), "{reason}");
    let dead = eventually("the bundle dead-lettered", WAIT, || async {
        let dead = backend.dead_letters(&queue).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert!(
        dead[0].reason.contains("a bundle of 2 starts"),
        "{}",
        dead[0].reason
    );
    let still = client
        .status(&running, StatusOptions::default())
        .await
        .unwrap();
    assert_eq!(still.runtime_status, RuntimeStatus::Running);
    worker.shutdown().await;
}
