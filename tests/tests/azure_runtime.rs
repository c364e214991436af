//! The engine on the Azure Storage backend, against Azurite (one shared instance, a task
//! hub per test): end to end, duplicates, poison, malformed messages, blob offload and
//! purge, timers beyond the visibility limit, status right after start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowforge_azure::{azurite, AzureBackend, AzureConfig};
use flowforge_orchestrator::backend::{
    Backend, InstanceStore, OrchestratorMessage, Outbound, QueueMessage, QueueName, QueueStore,
};
use flowforge_orchestrator::client::{Error as ClientError, StatusOptions};
use flowforge_orchestrator::history::EventKind;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::replay::NewEvent;
use flowforge_orchestrator::runtime::WorkerHandle;
use flowforge_tests::{check_history, fan_sum, registry};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

fn config(hub: &str) -> AzureConfig {
    let mut config = azurite::shared().config(hub);
    config.control_partitions = 2;
    config
}

async fn start(
    config: AzureConfig,
    options: WorkerOptions,
) -> (Arc<AzureBackend>, Client, WorkerHandle) {
    let backend = AzureBackend::connect(config).await.unwrap();
    let worker = Worker::new(backend.clone(), registry(), options).start();
    (backend.clone(), Client::new(backend), worker)
}

fn fast_options() -> WorkerOptions {
    WorkerOptions {
        max_idle_poll: Duration::from_millis(100),
        ..WorkerOptions::default()
    }
}

async fn history(client: &Client, id: &str) -> Vec<flowforge_orchestrator::history::HistoryEvent> {
    let options = StatusOptions {
        show_history: true,
        show_history_output: true,
        ..Default::default()
    };
    client.status(id, options).await.unwrap().history.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_runs_end_to_end_and_status_is_readable_at_once() {
    let (backend, client, worker) = start(config("e2e"), fast_options()).await;
    let id = client
        .start("fan", StartOptions::with_instance_id("fan-300"), &300)
        .await
        .unwrap();
    // No 404 window: the status row exists when start returns.
    let status = client.status(&id, StatusOptions::default()).await.unwrap();
    assert!(matches!(
        status.runtime_status,
        RuntimeStatus::Pending | RuntimeStatus::Running
    ));
    let again = client
        .start("fan", StartOptions::with_instance_id("fan-300"), &300)
        .await
        .unwrap_err();
    assert!(
        matches!(again, ClientError::AlreadyRunning { .. }),
        "{again}"
    );
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!(fan_sum(300)));
    let events = history(&client, &id).await;
    assert_eq!(check_history(&events, done.runtime_status).unwrap(), 300);
    let counts = backend.transaction_counts();
    assert!(
        counts.get("table.batch").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_out_of_order_messages_change_nothing() {
    let (backend, client, worker) = start(config("dups"), fast_options()).await;
    let id = client
        .start("collect", StartOptions::with_instance_id("collect"), &3)
        .await
        .unwrap();
    let partitions = backend.control_partitions();
    let send = |event_id: &str, value: i64, execution: Option<String>| {
        let backend = backend.clone();
        let message = Outbound {
            queue: QueueName::control_for("collect", partitions),
            message: QueueMessage::Orchestrator(OrchestratorMessage {
                instance_id: "collect".into(),
                execution_id: execution,
                event: NewEvent {
                    timestamp: Utc::now(),
                    kind: EventKind::EventRaised {
                        name: "item".into(),
                        input: json!(value),
                        event_id: event_id.into(),
                    },
                },
                start_if: None,
            }),
            visible_at: None,
        };
        async move { backend.send(&message).await.unwrap() }
    };
    // e1 twice, then e3 before e2 (out of order), then e1 and e3 again, then a message
    // for an execution that does not exist.
    send("e1", 1, None).await;
    send("e1", 1, None).await;
    send("e3", 3, None).await;
    send("e2", 2, None).await;
    send("e1", 1, None).await;
    send("e3", 3, None).await;
    send("e9", 9, Some("other-execution".into())).await;
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    let values: Vec<i64> = serde_json::from_value(done.output).unwrap();
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![1, 2, 3],
        "each event once, whatever the order: {values:?}"
    );
    let events = history(&client, &id).await;
    check_history(&events, RuntimeStatus::Completed).unwrap();
    let raised = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::EventRaised { .. }))
        .count();
    assert_eq!(raised, 3);
    // A duplicate start and a late duplicate after completion change nothing either.
    send("e2", 2, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history(&client, &id).await, events);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_work_item_is_dead_lettered_and_fails_the_instance() {
    let options = WorkerOptions {
        lock_timeout: Duration::from_secs(1),
        max_dequeue_count: 2,
        // Renewals off: each lock that runs out stands for a worker that died running it.
        lease_renewal: Duration::ZERO,
        ..fast_options()
    };
    let (backend, client, _worker) = start(config("poison"), options).await;
    let id = client
        .start(
            "hangs",
            StartOptions::with_instance_id("hangs"),
            &json!(null),
        )
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Failed);
    let failure = done.failure.unwrap();
    assert_eq!(failure.kind, "PoisonMessage");
    assert!(
        failure.message.contains("delivered 3 times"),
        "{}",
        failure.message
    );
    let dead = backend.dead_letters(&QueueName::Work).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].raw.contains("\"hang\""));
    // The hanging activities are abandoned with the worker at the end of the test.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_the_worker_keeps_serving() {
    let (backend, client, worker) = start(config("malformed"), fast_options()).await;
    backend
        .send_raw(&QueueName::Control(0), "this is not json", None)
        .await
        .unwrap();
    backend
        .send_raw(
            &QueueName::Control(1),
            "{\"v\":1,\"kind\":\"Orchestrator\"}",
            None,
        )
        .await
        .unwrap();
    backend
        .send_raw(&QueueName::Work, "{\"v\":99,\"kind\":\"Activity\"}", None)
        .await
        .unwrap();
    let unknown = json!({"v": 1, "kind": "Orchestrator", "instance_id": "ghost", "execution_id": null,
        "event": {"timestamp": Utc::now(), "kind": {"type": "EventRaised", "name": "x"}}});
    backend
        .send_raw(
            &QueueName::control_for("ghost", 2),
            &unknown.to_string(),
            None,
        )
        .await
        .unwrap();
    let id = client
        .start("fan", StartOptions::default(), &5)
        .await
        .unwrap();
    assert_eq!(
        client.wait_for_completion(&id, WAIT).await.unwrap().output,
        json!(fan_sum(5))
    );
    let mut reasons = Vec::new();
    for _ in 0..100 {
        reasons.clear();
        for queue in [
            QueueName::Control(0),
            QueueName::Control(1),
            QueueName::Work,
        ] {
            reasons.extend(
                backend
                    .dead_letters(&queue)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| d.reason),
            );
        }
        if reasons.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a valid engine message")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("newer than this build")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("'ghost', which does not exist")),
        "{reasons:?}"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_input_and_result_go_through_blobs_and_purge_removes_them() {
    let (backend, client, worker) = start(config("blobs"), fast_options()).await;
    let text: String = (0..200 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let id = client
        .start("big", StartOptions::with_instance_id("big"), &text)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    let expected: String = text.chars().rev().collect();
    assert_eq!(done.output, Value::String(expected));
    let status = client
        .status(
            &id,
            StatusOptions {
                show_input: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(status.input, Some(Value::String(text.clone())));
    let blobs = backend.payload_names("big/").await.unwrap();
    assert!(!blobs.is_empty(), "the 200 KiB values were offloaded");
    client.purge(&id).await.unwrap();
    assert!(
        backend.payload_names("big/").await.unwrap().is_empty(),
        "purge deleted the blobs"
    );
    assert!(
        backend.load_instance_rows("big").await.unwrap() == 0,
        "purge deleted the rows"
    );
    assert!(matches!(
        client.status(&id, StatusOptions::default()).await,
        Err(ClientError::NotFound(_))
    ));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_longer_than_the_visibility_limit_fires_on_time() {
    let mut config = config("longtimer");
    config.max_visibility_delay = Duration::from_secs(2);
    let (_backend, client, worker) = start(config, fast_options()).await;
    let id = client
        .start("sleeper", StartOptions::with_instance_id("sleeper"), &7)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    let events = history(&client, &id).await;
    let fire_at: DateTime<Utc> = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TimerCreated { fire_at, .. } => Some(*fire_at),
            _ => None,
        })
        .unwrap();
    let fired = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .unwrap();
    let episode_start = events[..fired]
        .iter()
        .rev()
        .find(|e| matches!(e.kind, EventKind::OrchestratorStarted))
        .unwrap();
    assert!(
        episode_start.timestamp >= fire_at,
        "fired at {} before {fire_at}",
        episode_start.timestamp
    );
    let after: DateTime<Utc> = serde_json::from_value(done.output["after"].clone()).unwrap();
    let before: DateTime<Utc> = serde_json::from_value(done.output["before"].clone()).unwrap();
    assert!(after - before >= chrono::Duration::seconds(7));
    worker.shutdown().await;
}

/// Past its warm period an idle worker polls no queue: it only looks at the wake signals.
/// A start through another connection (another process's client) leaves one, and the
/// worker wakes and runs the instance although its queue sweeps are an hour apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_only_peeks_and_a_start_elsewhere_wakes_it() {
    let options = WorkerOptions {
        max_idle_poll: Duration::from_millis(300),
        idle_warm_period: Duration::from_millis(500),
        ..WorkerOptions::default()
    };
    let (backend, _own_client, worker) = start(config("wake"), options).await;
    // Past the warm period and the last poll scheduled during it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = backend.transaction_counts();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = backend.transaction_counts();
    let idle: Vec<(String, u64)> = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(idle.len(), 1, "only wake peeks while idle: {idle:?}");
    assert_eq!(idle[0].0, "queue.peek", "{idle:?}");
    let elsewhere = AzureBackend::connect(config("wake")).await.unwrap();
    let client = Client::new(elsewhere);
    let id = client
        .start("fan", StartOptions::default(), &json!(4))
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.output, json!(fan_sum(4)));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_of_one_instance_at_once_both_succeed() {
    let (backend, client, worker) = start(config("purgerace"), fast_options()).await;
    for round in 0..5 {
        let id = format!("race-{round}");
        client
            .start("fan", StartOptions::with_instance_id(&id), &20)
            .await
            .unwrap();
        client.wait_for_completion(&id, WAIT).await.unwrap();
        // Both read the rows before either deletes (the schemathesis run found a 500 here).
        let (first, second) =
            tokio::join!(backend.delete_instance(&id), backend.delete_instance(&id));
        assert!(first.unwrap() && second.unwrap(), "both saw the instance");
        let gone = client
            .status(&id, StatusOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(gone, ClientError::NotFound(_)), "{gone}");
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_made_in_this_process_is_taken_up_without_reading_its_state_back() {
    let backend = AzureBackend::connect(config("createdhere")).await.unwrap();
    let client = Client::new(backend.clone());
    // The status is watched through a second connection, whose reads are not counted here.
    let observer = Client::new(AzureBackend::connect(config("createdhere")).await.unwrap());
    let before = backend.transaction_counts();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            client
                .start("fan", StartOptions::default(), &json!(2))
                .await
                .unwrap(),
        );
    }
    // The worker of the same process comes up after the starts, so it cannot meet a start
    // message before its state row is written (that race costs a read, by design).
    let worker = Worker::new(backend.clone(), registry(), fast_options()).start();
    for id in &ids {
        let done = observer.wait_for_completion(id, WAIT).await.unwrap();
        assert_eq!(done.runtime_status, RuntimeStatus::Completed);
        assert_eq!(done.output, json!(fan_sum(2)));
    }
    let after = backend.transaction_counts();
    let count =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    // Each start wrote its state row; the worker began from that row as written (its
    // commit's If-Match confirmed it) instead of a point read of each new instance.
    assert_eq!(count("table.write"), 5, "{after:?}");
    assert_eq!(count("table.get"), 0, "{after:?}");
    worker.shutdown().await;
}

/// A page of a listing reads about the page from the table, not the task hub: with 1,100
/// instances, a page of 10 Pending ones and the page after it are one query request per
/// table partition each, of at most 11 rows (the service applies the status filter; a
/// partition's rows come in id order, and the partitions are merged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_page_reads_one_page_of_rows() {
    use flowforge_orchestrator::backend::InstanceQuery;
    let backend = AzureBackend::connect(config("listing")).await.unwrap();
    let client = Client::new(backend.clone());
    let mut ids = Vec::new();
    for first in (0..1100).step_by(100) {
        let starts = (first..first + 100).map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let options = StartOptions::with_instance_id(format!("many-{i:04}"));
                client.start("fan", options, &json!(1)).await
            })
        });
        for start in starts.collect::<Vec<_>>() {
            ids.push(start.await.unwrap().unwrap());
        }
    }
    ids.sort();
    let queries = |b: &AzureBackend| b.transaction_counts().get("table.query").copied();
    let mut query = InstanceQuery {
        statuses: vec![RuntimeStatus::Pending],
        page_size: 10,
        ..Default::default()
    };
    for page in 0..2 {
        let before = queries(&backend).unwrap_or(0);
        let listed = backend.list_instances(&query).await.unwrap();
        let read = queries(&backend).unwrap_or(0) - before;
        let got: Vec<_> = listed
            .instances
            .iter()
            .map(|s| s.instance_id.clone())
            .collect();
        assert_eq!(got, ids[page * 10..page * 10 + 10], "page {page}");
        assert_eq!(
            read, 2,
            "page {page}: one query request per table partition"
        );
        query.continuation = listed.continuation;
        assert_eq!(
            query.continuation.as_deref(),
            Some(ids[page * 10 + 9].as_str())
        );
    }
}

/// Starts made at once share queue messages (bundles of starts) and table transactions:
/// 200 concurrent starts take fewer queue writes and table transactions than starts, each
/// instance's status is readable when its start
/// returns, every instance runs once, and the bundles are deleted once all their starts
/// are committed (the control queues drain, nothing is dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_share_queue_messages_and_each_runs_once() {
    const STARTS: usize = 200;
    let backend = AzureBackend::connect(config("bundles")).await.unwrap();
    let client = Client::new(backend.clone());
    let before = backend.transaction_counts();
    let ids: Vec<String> = (0..STARTS).map(|i| format!("bundled-{i:03}")).collect();
    let mut starting = tokio::task::JoinSet::new();
    for id in &ids {
        let (client, id) = (client.clone(), id.clone());
        starting.spawn(async move {
            let options = StartOptions::with_instance_id(id.clone());
            (id, client.start("fan", options, &json!(2)).await)
        });
    }
    let started = starting.join_all().await;
    let after = backend.transaction_counts();
    let count =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    for (id, result) in started {
        assert_eq!(result.unwrap(), id);
        let status = client.status(&id, StatusOptions::default()).await.unwrap();
        assert_eq!(status.runtime_status, RuntimeStatus::Pending);
    }
    // The state rows of starts made at once share transactions per table partition, as
    // their start messages share queue writes; how many share one depends on how the
    // starts overlap (alone: a handful of transactions; beside other tests: 70–100 seen).
    let row_writes = count("table.write") + count("table.batch");
    assert!(
        row_writes < STARTS as u64,
        "{STARTS} concurrent starts took {row_writes} table transactions: {after:?}"
    );
    assert!(
        count("queue.put") < STARTS as u64,
        "{STARTS} concurrent starts took {} queue writes",
        count("queue.put")
    );
    let worker = Worker::new(backend.clone(), registry(), fast_options()).start();
    for id in &ids {
        let done = client.wait_for_completion(id, WAIT).await.unwrap();
        assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{id}");
        assert_eq!(done.output, json!(fan_sum(2)));
        let events = history(&client, id).await;
        let starts = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }))
            .count();
        assert_eq!(starts, 1, "{id}: {events:?}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    for partition in 0..2 {
        let queue = QueueName::Control(partition);
        while backend.queue_depth(&queue).await.unwrap().messages > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "control queue {partition} never drained"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(backend.dead_letters(&queue).await.unwrap().is_empty());
    }
    worker.shutdown().await;
}

/// A page of a long history reads only that page: the state row and one query of the
/// page's rows, whatever the history's length; the pages put together are the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_page_reads_only_its_events() {
    let (backend, client, worker) = start(config("historypage"), fast_options()).await;
    let id = client
        .start("chain", StartOptions::with_instance_id("paged"), &300u64)
        .await
        .unwrap();
    let done = client.wait_for_completion(&id, WAIT).await.unwrap();
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    let whole = history(&client, &id).await;
    assert!(whole.len() > 900, "{} events", whole.len());
    let before = backend.transaction_counts();
    let (status, next) = client
        .status_with_history_page(&id, 500, 50, true, false)
        .await
        .unwrap();
    let after = backend.transaction_counts();
    let count =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    assert_eq!(
        (count("table.get"), count("table.query")),
        (1, 1),
        "{after:?}"
    );
    assert_eq!(status.history.as_deref(), Some(&whole[500..550]));
    assert_eq!(next, Some(550));
    let mut paged = Vec::new();
    let mut from = Some(0);
    while let Some(at) = from {
        let (page, next) = client
            .status_with_history_page(&id, at, 128, true, false)
            .await
            .unwrap();
        paged.extend(page.history.unwrap());
        from = next;
    }
    assert_eq!(paged, whole);
    let (past_the_end, next) = client
        .status_with_history_page(&id, whole.len() as u64 + 5, 10, true, false)
        .await
        .unwrap();
    assert_eq!((past_the_end.history.unwrap().len(), next), (0, None));
    worker.shutdown().await;
}
