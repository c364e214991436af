//! The conformance suite every backend must pass: the semantics the engine relies on.
//!
//! [`conformance_tests!`](crate::conformance_tests) makes one test per check, each on a
//! fresh, empty backend (a new task hub). The in-memory backend runs them in the
//! orchestrator's tests; the Azure Storage backend against Azurite.
// Test-support code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{
    Backend, DeadLetter, EpisodeCommit, Error, HistoryWrite, InstanceQuery, Outbound, QueueName,
};
use crate::backend::to_instance;
use crate::history::{EventKind, HistoryEvent, StartInfo};
use crate::status::{InstanceState, RuntimeStatus};

/// One test per check, each on a fresh backend: `conformance_tests!(factory)` in a test
/// file, where `factory` is an async block or expression giving a new, empty
/// `Arc<dyn Backend>` (a new task hub) each time it is evaluated. Each check is its own
/// test, so one failure does not hide the others.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            create_is_readable_at_once_and_refuses_duplicates,
            stale_commit_is_rejected_and_writes_nothing,
            history_appends_and_replaces_in_order,
            commit_sends_its_messages_only_on_success,
            received_messages_are_hidden_until_deleted_or_abandoned,
            delayed_messages_stay_invisible_until_due,
            a_renewed_lease_outlasts_the_first_lock,
            malformed_and_dead_lettered_messages,
            list_filters_and_pages,
            delete_removes_state_history_and_payloads,
            run_logs_page_in_order_and_go_with_the_purge,
            documents_are_created_once_and_replaced_under_their_version,
        );
    };
    (@each $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend: std::sync::Arc<dyn $crate::backend::Backend> = $factory;
                $crate::backend::conformance::$check(backend).await;
            }
        )+
    };
}

fn start_event() -> EventKind {
    StartInfo::new("conformance", "e1", json!({"n": 1})).into_event()
}

fn state(id: &str, status: RuntimeStatus) -> InstanceState {
    InstanceState {
        status,
        ..InstanceState::started(id, &start_event(), Utc::now())
    }
}

fn start_message(backend: &dyn Backend, id: &str) -> Outbound {
    to_instance(
        id,
        Some(&"e1".to_owned()),
        start_event(),
        Utc::now(),
        None,
        backend.control_partitions(),
    )
}

fn event(seq: u64, kind: EventKind) -> HistoryEvent {
    HistoryEvent {
        seq,
        timestamp: Utc::now(),
        kind,
    }
}

async fn receive_all(backend: &dyn Backend, queue: &QueueName) -> Vec<super::Received> {
    backend
        .receive(queue, 32, Duration::from_secs(30))
        .await
        .unwrap()
}

/// Start writes the state row and the start message together; a second insert conflicts.
pub async fn create_is_readable_at_once_and_refuses_duplicates(backend: Arc<dyn Backend>) {
    let start = start_message(backend.as_ref(), "i-create");
    let etag = backend
        .create_instance(&state("i-create", RuntimeStatus::Pending), &start, None)
        .await
        .unwrap();
    let (read, read_etag) = backend
        .read_state("i-create")
        .await
        .unwrap()
        .expect("state readable at once");
    assert_eq!(read.status, RuntimeStatus::Pending);
    assert_eq!(read.input, json!({"n": 1}));
    assert_eq!(read_etag, etag);
    // A second start of the same id (another execution) must conflict.
    let mut second = state("i-create", RuntimeStatus::Pending);
    second.execution_id = "e2".into();
    let again = backend.create_instance(&second, &start, None).await;
    assert!(
        matches!(again, Err(Error::Conflict(_))),
        "duplicate create must conflict: {again:?}"
    );
    let messages = receive_all(backend.as_ref(), &start.queue).await;
    assert!(!messages.is_empty(), "the start message was sent");
    assert!(messages
        .iter()
        .all(|m| m.message.as_ref().unwrap().instance_id() == "i-create"));
}

/// The split-brain guard: a commit under a stale ETag fails and writes nothing.
pub async fn stale_commit_is_rejected_and_writes_nothing(backend: Arc<dyn Backend>) {
    let start = start_message(backend.as_ref(), "i-stale");
    let first = backend
        .create_instance(&state("i-stale", RuntimeStatus::Pending), &start, None)
        .await
        .unwrap();
    let mut running = state("i-stale", RuntimeStatus::Running);
    running.history_len = 1;
    let commit = |expected, seq| EpisodeCommit {
        state: running.clone(),
        expected: Some(expected),
        history: HistoryWrite::Append(vec![event(seq, EventKind::OrchestratorStarted)]),
        messages: vec![],
    };
    let second = backend
        .commit_episode("i-stale", commit(first.clone(), 0))
        .await
        .unwrap();
    assert_ne!(first, second, "a commit must change the ETag");
    let stale = backend.commit_episode("i-stale", commit(first, 1)).await;
    assert!(
        matches!(stale, Err(Error::Conflict(_))),
        "stale commit must conflict: {stale:?}"
    );
    let loaded = backend.load_instance("i-stale").await.unwrap().unwrap();
    assert_eq!(loaded.history.len(), 1, "the stale commit wrote nothing");
    assert_eq!(loaded.etag, second);
    let insert_again = EpisodeCommit {
        expected: None,
        ..commit(second, 1)
    };
    assert!(matches!(
        backend.commit_episode("i-stale", insert_again).await,
        Err(Error::Conflict(_))
    ));
}

/// History comes back in sequence order; Replace starts a new execution's history.
pub async fn history_appends_and_replaces_in_order(backend: Arc<dyn Backend>) {
    let start = start_message(backend.as_ref(), "i-history");
    let mut etag = backend
        .create_instance(&state("i-history", RuntimeStatus::Pending), &start, None)
        .await
        .unwrap();
    let mut seq = 0;
    // More events than one table batch holds (100), to exercise multi-batch appends.
    for round in 0..3 {
        let events: Vec<_> = (0..70)
            .map(|i| {
                let e = event(
                    seq,
                    EventKind::TimerCreated {
                        id: round * 100 + i,
                        fire_at: Utc::now(),
                    },
                );
                seq += 1;
                e
            })
            .collect();
        let mut next = state("i-history", RuntimeStatus::Running);
        next.history_len = seq;
        etag = backend
            .commit_episode(
                "i-history",
                EpisodeCommit {
                    state: next,
                    expected: Some(etag),
                    history: HistoryWrite::Append(events),
                    messages: vec![],
                },
            )
            .await
            .unwrap();
    }
    let loaded = backend.load_instance("i-history").await.unwrap().unwrap();
    let seqs: Vec<u64> = loaded.history.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..210).collect::<Vec<_>>(),
        "gap-free, ordered history"
    );
    let mut next = state("i-history", RuntimeStatus::Running);
    next.execution_id = "e2".into();
    next.history_len = 1;
    backend
        .commit_episode(
            "i-history",
            EpisodeCommit {
                state: next,
                expected: Some(loaded.etag),
                history: HistoryWrite::Replace(vec![event(0, EventKind::OrchestratorStarted)]),
                messages: vec![],
            },
        )
        .await
        .unwrap();
    let replaced = backend.load_instance("i-history").await.unwrap().unwrap();
    assert_eq!(replaced.history.len(), 1);
    assert_eq!(replaced.state.execution_id, "e2");
}

/// Messages decided by an episode are sent when it commits, and never when it does not.
pub async fn commit_sends_its_messages_only_on_success(backend: Arc<dyn Backend>) {
    let start = start_message(backend.as_ref(), "i-outbox");
    let etag = backend
        .create_instance(&state("i-outbox", RuntimeStatus::Pending), &start, None)
        .await
        .unwrap();
    for m in receive_all(backend.as_ref(), &start.queue).await {
        backend.delete(&start.queue, &m.receipt).await.unwrap();
    }
    let timer = to_instance(
        "i-outbox",
        None,
        EventKind::TimerFired {
            scheduled_id: 0,
            fire_at: Utc::now(),
        },
        Utc::now(),
        None,
        backend.control_partitions(),
    );
    let commit = |expected| EpisodeCommit {
        state: state("i-outbox", RuntimeStatus::Running),
        expected,
        history: HistoryWrite::Append(vec![]),
        messages: vec![timer.clone()],
    };
    let stale = backend
        .commit_episode("i-outbox", commit(Some(super::ETag("stale".into()))))
        .await;
    assert!(matches!(stale, Err(Error::Conflict(_))));
    assert!(
        receive_all(backend.as_ref(), &timer.queue).await.is_empty(),
        "no message from a failed commit"
    );
    backend
        .commit_episode("i-outbox", commit(Some(etag)))
        .await
        .unwrap();
    let sent = receive_all(backend.as_ref(), &timer.queue).await;
    assert_eq!(sent.len(), 1, "the committed episode's message is sent");
    assert_eq!(sent[0].message.as_ref().unwrap(), &timer.message);
}

/// At-least-once delivery: a received message is hidden, comes back when abandoned (with a
/// higher dequeue count), and is gone once deleted; a stale receipt cannot delete it.
pub async fn received_messages_are_hidden_until_deleted_or_abandoned(backend: Arc<dyn Backend>) {
    let queue = QueueName::Work;
    let message = start_message(backend.as_ref(), "i-queue");
    let message = Outbound {
        queue: queue.clone(),
        ..message
    };
    backend.send(&message).await.unwrap();
    let first = receive_all(backend.as_ref(), &queue).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].dequeue_count, 1);
    assert!(
        receive_all(backend.as_ref(), &queue).await.is_empty(),
        "hidden while locked"
    );
    let renewed = backend
        .abandon(&queue, &first[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        backend.delete(&queue, &first[0].receipt).await.is_err(),
        "old receipt is stale"
    );
    let _ = renewed;
    let second = receive_all(backend.as_ref(), &queue).await;
    assert_eq!(second.len(), 1, "visible again after abandon");
    assert_eq!(second[0].dequeue_count, 2);
    backend.delete(&queue, &second[0].receipt).await.unwrap();
    backend
        .abandon(&queue, &second[0].receipt, Duration::ZERO)
        .await
        .expect_err("deleted");
    assert!(
        receive_all(backend.as_ref(), &queue).await.is_empty(),
        "gone after delete"
    );
}

/// A lease renewal keeps a received message hidden past its first lock, and only the
/// renewed receipt deletes it.
pub async fn a_renewed_lease_outlasts_the_first_lock(backend: Arc<dyn Backend>) {
    let queue = QueueName::Work;
    let message = Outbound {
        queue: queue.clone(),
        ..start_message(backend.as_ref(), "i-lease")
    };
    backend.send(&message).await.unwrap();
    let first = backend
        .receive(&queue, 32, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let renewed = backend
        .renew(&queue, &first[0].receipt, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receive_all(backend.as_ref(), &queue).await.is_empty(),
        "still hidden after the first lock ran out"
    );
    assert!(
        backend.delete(&queue, &first[0].receipt).await.is_err(),
        "the first receipt is stale"
    );
    backend.delete(&queue, &renewed).await.unwrap();
}

/// A delayed message (a durable timer) is invisible until its time, then delivered.
pub async fn delayed_messages_stay_invisible_until_due(backend: Arc<dyn Backend>) {
    let due = Utc::now() + chrono::Duration::seconds(2);
    let timer = to_instance(
        "i-delay",
        None,
        EventKind::TimerFired {
            scheduled_id: 0,
            fire_at: due,
        },
        due,
        Some(due),
        backend.control_partitions(),
    );
    backend.send(&timer).await.unwrap();
    assert!(
        receive_all(backend.as_ref(), &timer.queue).await.is_empty(),
        "not before its time"
    );
    let mut got = Vec::new();
    for _ in 0..100 {
        got = receive_all(backend.as_ref(), &timer.queue).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "delivered once due");
    assert!(Utc::now() >= due, "not delivered early");
}

/// Malformed bodies are received with a reason; dead-lettering keeps body and reason.
pub async fn malformed_and_dead_lettered_messages(backend: Arc<dyn Backend>) {
    let queue = QueueName::Control(0);
    backend.send_raw(&queue, "{not json", None).await.unwrap();
    let got = receive_all(backend.as_ref(), &queue).await;
    assert_eq!(got.len(), 1);
    let reason = got[0].message.as_ref().expect_err("malformed").clone();
    assert!(reason.contains("not a valid engine message"), "{reason}");
    backend.dead_letter(&queue, &got[0], &reason).await.unwrap();
    let dead = backend.dead_letters(&queue).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].raw, "{not json");
    assert_eq!(dead[0].reason, reason);
    assert!(
        receive_all(backend.as_ref(), &queue).await.is_empty(),
        "removed from its queue"
    );
    // The archive keeps it, newest first, until it is removed.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000));
    let second = DeadLetter {
        raw: big.clone(),
        reason: "second".into(),
        dequeue_count: 7,
    };
    backend
        .put_dead_letter(&QueueName::Work, &second)
        .await
        .unwrap();
    let archived = backend.list_dead_letters(10).await.unwrap();
    assert_eq!(archived.len(), 2);
    assert_eq!(
        archived[0].letter, second,
        "newest first, large bodies whole"
    );
    assert_eq!(archived[0].queue, QueueName::Work);
    assert_eq!(archived[1].queue, queue);
    assert_eq!(backend.list_dead_letters(1).await.unwrap().len(), 1);
    assert!(backend.remove_dead_letter(&archived[1].id).await.unwrap());
    assert!(!backend.remove_dead_letter(&archived[1].id).await.unwrap());
    assert!(backend.dead_letters(&queue).await.unwrap().is_empty());
    assert_eq!(backend.list_dead_letters(10).await.unwrap().len(), 1);
}

/// Listing filters by status, creation time and prefix, and pages with a continuation, in
/// instance id order whatever the order of creation.
pub async fn list_filters_and_pages(backend: Arc<dyn Backend>) {
    let base = Utc::now() - chrono::Duration::hours(2);
    // Created out of id order; instance i was created i minutes after `base`.
    for i in (0..25).map(|k| (k * 7) % 25) {
        let id = format!("list-{i:02}");
        let status = if i % 2 == 0 {
            RuntimeStatus::Completed
        } else {
            RuntimeStatus::Running
        };
        let start = start_message(backend.as_ref(), &id);
        let created = InstanceState {
            created_at: base + chrono::Duration::minutes(i),
            ..state(&id, status)
        };
        backend
            .create_instance(&created, &start, None)
            .await
            .unwrap();
    }
    let other = start_message(backend.as_ref(), "zzz");
    backend
        .create_instance(&state("zzz", RuntimeStatus::Completed), &other, None)
        .await
        .unwrap();
    let mut query = InstanceQuery {
        statuses: vec![RuntimeStatus::Completed],
        instance_id_prefix: Some("list-".into()),
        page_size: 5,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = backend.list_instances(&query).await.unwrap();
        assert!(page.instances.len() <= 5);
        seen.extend(page.instances.into_iter().map(|s| s.instance_id));
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => break,
        }
    }
    let expected: Vec<_> = (0..25)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("list-{i:02}"))
        .collect();
    assert_eq!(seen, expected);
    // A creation window (bounds inclusive, to the sub-second) with a status.
    let window = InstanceQuery {
        statuses: vec![RuntimeStatus::Running],
        created_from: Some(base + chrono::Duration::minutes(9)),
        created_to: Some(base + chrono::Duration::minutes(15) - chrono::Duration::milliseconds(1)),
        ..Default::default()
    };
    let listed: Vec<_> = backend
        .list_instances(&window)
        .await
        .unwrap()
        .instances
        .into_iter()
        .map(|s| s.instance_id)
        .collect();
    assert_eq!(listed, ["list-09", "list-11", "list-13"]);
    let future = InstanceQuery {
        created_from: Some(Utc::now() + chrono::Duration::hours(1)),
        ..Default::default()
    };
    assert!(backend
        .list_instances(&future)
        .await
        .unwrap()
        .instances
        .is_empty());
}

/// Purge removes the state row, the history and the instance's payloads.
pub async fn delete_removes_state_history_and_payloads(backend: Arc<dyn Backend>) {
    let start = start_message(backend.as_ref(), "i-purge");
    backend
        .create_instance(&state("i-purge", RuntimeStatus::Completed), &start, None)
        .await
        .unwrap();
    backend
        .put_payload("i-purge/input", vec![7; 300 * 1024])
        .await
        .unwrap();
    backend
        .put_payload("i-purgeX/input", vec![1])
        .await
        .unwrap();
    assert_eq!(
        backend
            .get_payload("i-purge/input")
            .await
            .unwrap()
            .map(|b| b.len()),
        Some(300 * 1024)
    );
    assert!(backend.delete_instance("i-purge").await.unwrap());
    assert_eq!(
        backend.delete_payloads("i-purge/").await.unwrap(),
        0,
        "purge already removed them"
    );
    assert!(backend.read_state("i-purge").await.unwrap().is_none());
    assert!(backend.load_instance("i-purge").await.unwrap().is_none());
    assert!(backend
        .get_payload("i-purge/input")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        backend.get_payload("i-purgeX/input").await.unwrap(),
        Some(vec![1]),
        "other instances' payloads stay"
    );
    assert!(
        !backend.delete_instance("i-purge").await.unwrap(),
        "second purge finds nothing"
    );
}

/// Run logs come back in key order, in pages that continue where they stopped; a chunk
/// written again replaces itself; purge removes an instance's logs and no one else's.
pub async fn run_logs_page_in_order_and_go_with_the_purge(backend: Arc<dyn Backend>) {
    use crate::run_logs::{AttemptKey, LogLine};
    let start = start_message(backend.as_ref(), "i-logs");
    backend
        .create_instance(&state("i-logs", RuntimeStatus::Completed), &start, None)
        .await
        .unwrap();
    let line = |n: usize| LogLine {
        timestamp: Utc::now(),
        level: "INFO".into(),
        target: "conformance".into(),
        message: format!("line {n}"),
        fields: Default::default(),
    };
    let attempt = |instance: &str, activity_id: u64| AttemptKey {
        instance_id: instance.into(),
        execution_id: "e1".into(),
        activity: "work".into(),
        activity_id,
        delivery: 1,
        started_at: Utc::now(),
    };
    // 150 attempts of one line each, written in reverse, in two calls (over one batch).
    let mut chunks: Vec<_> = (0..150)
        .flat_map(|id| attempt("i-logs", id).into_chunks(vec![line(id as usize)], 0))
        .collect();
    chunks.reverse();
    backend
        .append_run_logs("i-logs", &chunks[..120])
        .await
        .unwrap();
    backend
        .append_run_logs("i-logs", &chunks[120..])
        .await
        .unwrap();
    backend
        .append_run_logs("i-logs", &chunks[..1])
        .await
        .unwrap();
    let other = attempt("i-logsX", 1).into_chunks(vec![line(0)], 0);
    backend.append_run_logs("i-logsX", &other).await.unwrap();

    let mut read = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = backend
            .read_run_logs("i-logs", after.as_deref(), 40)
            .await
            .unwrap();
        assert!(page.chunks.len() <= 40);
        read.extend(page.chunks);
        pages += 1;
        match page.continuation {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4, "150 chunks in pages of 40");
    let ids: Vec<u64> = read.iter().map(|c| c.attempt.activity_id).collect();
    assert_eq!(
        ids,
        (0..150).collect::<Vec<_>>(),
        "every chunk once, in order"
    );
    assert_eq!(read[7].lines[0].message, "line 7");

    assert!(backend.delete_instance("i-logs").await.unwrap());
    let after_purge = backend.read_run_logs("i-logs", None, 40).await.unwrap();
    assert!(after_purge.chunks.is_empty() && after_purge.continuation.is_none());
    let kept = backend.read_run_logs("i-logsX", None, 40).await.unwrap();
    assert_eq!(kept.chunks, other, "other instances' logs stay");
}

/// A document is created once, replaced only under its current version, listed by kind in
/// name order, and deleted once.
pub async fn documents_are_created_once_and_replaced_under_their_version(
    backend: Arc<dyn Backend>,
) {
    use super::{Error, WriteCondition};
    let v1 = backend
        .write_document("schedule", "nightly", "{\"v\":1}", WriteCondition::Absent)
        .await
        .unwrap();
    assert!(matches!(
        backend
            .write_document("schedule", "nightly", "{}", WriteCondition::Absent)
            .await,
        Err(Error::Conflict(_))
    ));
    backend
        .write_document("schedule", "hourly", "{}", WriteCondition::Absent)
        .await
        .unwrap();
    backend
        .write_document("other", "nightly", "{}", WriteCondition::Absent)
        .await
        .unwrap();
    let v2 = backend
        .write_document(
            "schedule",
            "nightly",
            "{\"v\":2}",
            WriteCondition::Matches(v1.clone()),
        )
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert!(
        matches!(
            backend
                .write_document("schedule", "nightly", "{}", WriteCondition::Matches(v1))
                .await,
            Err(Error::Conflict(_))
        ),
        "a stale version must not replace"
    );
    let read = backend
        .read_document("schedule", "nightly")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.body.as_str(), &read.etag), ("{\"v\":2}", &v2));
    let names: Vec<String> = backend
        .list_documents("schedule")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);
    backend
        .delete_document("schedule", "nightly")
        .await
        .unwrap();
    assert!(matches!(
        backend.delete_document("schedule", "nightly").await,
        Err(Error::NotFound(_))
    ));
    assert!(backend
        .read_document("schedule", "nightly")
        .await
        .unwrap()
        .is_none());
    assert_eq!(backend.list_documents("other").await.unwrap().len(), 1);
}
