//! The status index on Azurite: listings by status read the index and agree with the
//! state rows through every status change, a stale entry (a commit that failed after its
//! write ahead) is never listed and is dropped when met, a purge removes the entry, and an
//! existing hub is backfilled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowforge_azure::{azurite, AzureBackend, AzureConfig};
use flowforge_orchestrator::backend::{
    to_instance, Backend, EpisodeCommit, HistoryWrite, InstanceQuery, InstanceStore, QueueStore,
};
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::history::StartInfo;
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::status::InstanceState;
use flowforge_tests::registry;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn config(hub: &str, index: bool) -> AzureConfig {
    let mut config = azurite::shared().config(hub);
    config.control_partitions = 2;
    config.status_index = index;
    config
}

fn by_status(statuses: &[RuntimeStatus], page_size: usize) -> InstanceQuery {
    InstanceQuery {
        statuses: statuses.to_vec(),
        page_size,
        ..Default::default()
    }
}

/// Lists every page; returns the ids in listing order and the storage transactions each
/// page took.
async fn list_all(
    backend: &Arc<AzureBackend>,
    mut query: InstanceQuery,
) -> (Vec<String>, Vec<BTreeMap<String, u64>>) {
    let (mut ids, mut costs) = (Vec::new(), Vec::new());
    loop {
        let before = backend.transaction_counts();
        let page = backend.list_instances(&query).await.unwrap();
        let after = backend.transaction_counts();
        let cost = after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        costs.push(cost);
        assert!(page.instances.len() <= query.page_size.max(1));
        ids.extend(page.instances.into_iter().map(|s| s.instance_id));
        match page.continuation {
            Some(token) => {
                assert!(token.starts_with("#index:"), "{token}");
                query.continuation = Some(token);
            }
            None => return (ids, costs),
        }
    }
}

async fn wait_for_status(client: &Client, id: &str, status: RuntimeStatus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = client.status(id, StatusOptions::default()).await.unwrap();
        if now.runtime_status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_by_status_read_the_index_and_follow_every_status_change() {
    let backend = AzureBackend::connect(config("idxlist", true))
        .await
        .unwrap();
    let worker = Worker::new(backend.clone(), registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());
    // 60 chains that complete, 5 collectors that wait for events (Running), 2 of them
    // terminated (the rare status).
    // Started at once: their entries are written ahead in shared batches, each with its
    // own ETag, which the deletes behind their later status changes depend on.
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = client.clone();
        starting.spawn(async move {
            let id = format!("done-{i:02}");
            let options = StartOptions::with_instance_id(&id);
            client.start("chain", options, &1u64).await.unwrap();
            let status = client.status(&id, StatusOptions::default()).await.unwrap();
            // The index keys times to the microsecond.
            (status.created_time.timestamp_micros(), id)
        });
    }
    let mut created = starting.join_all().await;
    created.sort();
    // In the index's order: creation time, then id.
    let done: Vec<String> = created.into_iter().map(|(_, id)| id).collect();
    let waiting: Vec<String> = (0..5).map(|i| format!("wait-{i}")).collect();
    for id in &waiting {
        client
            .start("collect", StartOptions::with_instance_id(id), &3u64)
            .await
            .unwrap();
    }
    for id in &done {
        let status = client.wait_for_completion(id, WAIT).await.unwrap();
        assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    }
    for id in &waiting {
        wait_for_status(&client, id, RuntimeStatus::Running).await;
    }
    for id in &waiting[..2] {
        client.terminate(id, "enough").await.unwrap();
        wait_for_status(&client, id, RuntimeStatus::Terminated).await;
    }

    // The rare status: one query of its partition and one read of each entry's state row.
    let (terminated, costs) =
        list_all(&backend, by_status(&[RuntimeStatus::Terminated], 100)).await;
    assert_eq!(terminated, waiting[..2]);
    assert_eq!(costs[0].get("table.query"), Some(&1), "{costs:?}");
    assert_eq!(costs[0].get("table.get"), Some(&2), "{costs:?}");

    let (running, _) = list_all(&backend, by_status(&[RuntimeStatus::Running], 100)).await;
    assert_eq!(running, waiting[2..]);
    // Suspended and back: the instance leaves its Running entry and comes back to it (an
    // entry of the same key written again).
    client.suspend(&waiting[4], "hold").await.unwrap();
    wait_for_status(&client, &waiting[4], RuntimeStatus::Suspended).await;
    let (suspended, _) = list_all(&backend, by_status(&[RuntimeStatus::Suspended], 100)).await;
    assert_eq!(suspended, waiting[4..]);
    let (running, _) = list_all(&backend, by_status(&[RuntimeStatus::Running], 100)).await;
    assert_eq!(running, waiting[2..4]);
    client.resume(&waiting[4], "go on").await.unwrap();
    wait_for_status(&client, &waiting[4], RuntimeStatus::Running).await;
    let (suspended, _) = list_all(&backend, by_status(&[RuntimeStatus::Suspended], 100)).await;
    assert!(suspended.is_empty());
    let (running, _) = list_all(&backend, by_status(&[RuntimeStatus::Running], 100)).await;
    assert_eq!(running, waiting[2..]);
    // Nothing is left Pending (Pending shares Running's partition: its three instances are
    // read, no more), and no entry a status change left behind is met once the entries
    // left are swept.
    backend.flush_status_index().await;
    let (pending, costs) = list_all(&backend, by_status(&[RuntimeStatus::Pending], 100)).await;
    assert!(pending.is_empty());
    assert_eq!(
        costs[0].get("table.get"),
        Some(&3),
        "stale entries read: {costs:?}"
    );

    // The common status, a page of 25 at a time: every instance once, in creation order.
    let (completed, costs) = list_all(&backend, by_status(&[RuntimeStatus::Completed], 25)).await;
    assert_eq!(completed, done);
    assert_eq!(costs.len(), 3);

    // Two statuses at once: merged in creation order.
    let (both, _) = list_all(
        &backend,
        by_status(&[RuntimeStatus::Terminated, RuntimeStatus::Running], 2),
    )
    .await;
    assert_eq!(both, waiting);

    // A creation window: the entries of the middle twenty chains.
    let created = |status: flowforge_orchestrator::status::InstanceStatus| status.created_time;
    let options = StatusOptions::default;
    let from = created(client.status(&done[20], options()).await.unwrap());
    let to = created(client.status(&done[39], options()).await.unwrap());
    let window = InstanceQuery {
        created_from: Some(from),
        created_to: Some(to),
        ..by_status(&[RuntimeStatus::Completed], 7)
    };
    let (in_window, _) = list_all(&backend, window.clone()).await;
    assert_eq!(in_window, done[20..40]);
    // The window alone (every status): the same, from all the index's partitions.
    let any_status = InstanceQuery {
        statuses: Vec::new(),
        ..window
    };
    let (in_window, costs) = list_all(&backend, any_status).await;
    assert_eq!(in_window, done[20..40]);
    assert!(
        costs[0].contains_key("table.query") && costs.len() == 3,
        "{costs:?}"
    );

    // A purge takes the entry with it (deleted by the sweeper: flushed to see it).
    client.purge(&waiting[0]).await.unwrap();
    backend.flush_status_index().await;
    let (terminated, costs) =
        list_all(&backend, by_status(&[RuntimeStatus::Terminated], 100)).await;
    assert_eq!(terminated, waiting[1..2]);
    assert_eq!(costs[0].get("table.get"), Some(&1), "{costs:?}");

    // A listing the index does not narrow (an id prefix) scans state rows as before.
    let prefixed = InstanceQuery {
        instance_id_prefix: Some("wait-".into()),
        ..by_status(&[RuntimeStatus::Running], 100)
    };
    let page = backend.list_instances(&prefixed).await.unwrap();
    let ids: Vec<_> = page
        .instances
        .iter()
        .map(|s| s.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["wait-2", "wait-3", "wait-4"]);
    worker.shutdown().await;
    backend.delete_task_hub().await.unwrap();
}

/// A Pending instance written as `create_instance` writes it, without a worker.
async fn create(backend: &Arc<AzureBackend>, id: &str, status: RuntimeStatus) -> InstanceState {
    let now = Utc::now();
    let start = StartInfo::new("collect", "e1", json!(1)).into_event();
    let state = InstanceState {
        status,
        ..InstanceState::started(id, &start, now)
    };
    let message = to_instance(
        id,
        Some(&"e1".to_owned()),
        start,
        now,
        None,
        backend.control_partitions(),
    );
    backend
        .create_instance(&state, &message, None)
        .await
        .unwrap();
    state
}

fn commit(
    state: &InstanceState,
    status: RuntimeStatus,
    expected: &flowforge_orchestrator::backend::ETag,
) -> EpisodeCommit {
    EpisodeCommit {
        state: InstanceState {
            status,
            ..state.clone()
        },
        expected: Some(expected.clone()),
        history: HistoryWrite::Append(Vec::new()),
        messages: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_never_listed_and_is_dropped_when_met() {
    // `one` deletes stale entries as soon as it meets them (no grace for commits under way).
    let mut at_once = config("idxstale", true);
    at_once.stale_index_grace = Duration::ZERO;
    let one = AzureBackend::connect(at_once).await.unwrap();
    let other = AzureBackend::connect(config("idxstale", true))
        .await
        .unwrap();
    let state = create(&one, "stale-1", RuntimeStatus::Pending).await;
    let (_, first) = one.read_state("stale-1").await.unwrap().unwrap();
    // Another process commits first; this one's commit then writes its entry ahead and
    // loses the race for the state row, as a crash between the two writes would leave it.
    other
        .commit_episode("stale-1", commit(&state, RuntimeStatus::Running, &first))
        .await
        .unwrap();
    let lost = one
        .commit_episode("stale-1", commit(&state, RuntimeStatus::Failed, &first))
        .await
        .unwrap_err();
    assert!(
        matches!(lost, flowforge_orchestrator::backend::Error::Conflict(_)),
        "{lost}"
    );

    // Within the grace (the entry might be written ahead of a commit still under way), a
    // listing skips it and leaves it.
    for _ in 0..2 {
        let (failed, costs) = list_all(&other, by_status(&[RuntimeStatus::Failed], 10)).await;
        assert!(failed.is_empty(), "a stale entry was listed: {failed:?}");
        assert_eq!(costs[0].get("table.get"), Some(&1), "{costs:?}");
    }
    let (failed, costs) = list_all(&one, by_status(&[RuntimeStatus::Failed], 10)).await;
    assert!(failed.is_empty(), "a stale entry was listed: {failed:?}");
    assert_eq!(
        costs[0].get("table.get"),
        Some(&1),
        "the entry was checked: {costs:?}"
    );
    // Dropped when met (handed to the sweeper): the next listing finds nothing to check.
    one.flush_status_index().await;
    let (failed, costs) = list_all(&one, by_status(&[RuntimeStatus::Failed], 10)).await;
    assert!(failed.is_empty());
    assert_eq!(costs[0].get("table.get"), None, "{costs:?}");
    let (running, _) = list_all(&one, by_status(&[RuntimeStatus::Running], 10)).await;
    assert_eq!(running, ["stale-1"]);
    one.delete_task_hub().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_hub_is_backfilled_and_every_process_keeps_the_index() {
    let before = AzureBackend::connect(config("idxfill", false))
        .await
        .unwrap();
    let statuses = [
        RuntimeStatus::Completed,
        RuntimeStatus::Failed,
        RuntimeStatus::Running,
    ];
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in 0..30 {
        let id = format!("old-{i:02}");
        let status = statuses[i % 3];
        create(&before, &id, status).await;
        expected.entry(status.as_str()).or_default().push(id);
    }
    // Without the index, a listing by status scans state rows (in id order, a scan's token).
    let page = before
        .list_instances(&by_status(&[RuntimeStatus::Failed], 4))
        .await
        .unwrap();
    assert_eq!(page.continuation.as_deref(), Some("old-10"));

    let after = AzureBackend::connect(config("idxfill", true))
        .await
        .unwrap();
    assert_eq!(after.backfill_status_index().await.unwrap(), 30);
    // A process configured without the index keeps it too, once the hub has it.
    let unconfigured = AzureBackend::connect(config("idxfill", false))
        .await
        .unwrap();
    create(&unconfigured, "new-failed", RuntimeStatus::Failed).await;
    expected
        .get_mut("Failed")
        .unwrap()
        .push("new-failed".into());

    for status in statuses {
        let (ids, costs) = list_all(&after, by_status(&[status], 4)).await;
        assert_eq!(ids, expected[status.as_str()], "{status:?}");
        // One state read per entry, and per page the one that says a next page exists.
        let reads: u64 = costs.iter().filter_map(|c| c.get("table.get")).sum();
        assert_eq!(reads as usize, ids.len() + costs.len() - 1, "{costs:?}");
    }
    after.delete_task_hub().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_pass_reads_the_index_and_takes_the_entries_with_the_instances() {
    use flowforge_orchestrator::retention::{purge_expired, Pace, RetentionPolicy};
    let backend = AzureBackend::connect(config("idxretain", true))
        .await
        .unwrap();
    let mut kept = Vec::new();
    for i in 0..12 {
        let id = format!("ret-{i:02}");
        let status = match i % 4 {
            0 => RuntimeStatus::Running,
            1 => RuntimeStatus::Terminated,
            2 => RuntimeStatus::Failed,
            _ => RuntimeStatus::Completed,
        };
        create(&backend, &id, status).await;
        if matches!(status, RuntimeStatus::Running | RuntimeStatus::Terminated) {
            kept.push(id);
        }
    }
    let policy = RetentionPolicy::parse("completed=1h,failed=1h").unwrap();
    let pace = Pace {
        page_size: 2,
        pause: Duration::ZERO,
        budget: None,
    };
    let before = backend.transaction_counts();
    let later = Utc::now() + chrono::Duration::hours(2);
    let report = purge_expired(backend.as_ref(), &policy, later, pace)
        .await
        .unwrap();
    assert_eq!((report.scanned, report.purged), (6, 6));
    backend.flush_status_index().await;
    // Only the finished instances' entries were read: no scan of the state rows.
    let gets = backend.transaction_counts()["table.get"] - before["table.get"];
    assert!(
        gets <= 6 + 3,
        "{gets} state rows read for 6 entries in pages of 2"
    );
    let finished = [RuntimeStatus::Completed, RuntimeStatus::Failed];
    let (left, costs) = list_all(&backend, by_status(&finished, 10)).await;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        costs[0].get("table.get"),
        None,
        "entries left behind: {costs:?}"
    );
    let all = [RuntimeStatus::Running, RuntimeStatus::Terminated];
    let (listed, _) = list_all(&backend, by_status(&all, 10)).await;
    assert_eq!(listed, kept);
    backend.delete_task_hub().await.unwrap();
}
