//! Table layout formats on Azurite: a hub in format 1 (a partition per instance, written
//! here row by row as that format stored it) is refused until moved, the move keeps every
//! instance's state and history, and a hub keeps the partition count it was created with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::backend::to_instance;
use flowforge_orchestrator::backend::{InstanceQuery, InstanceStore, QueueName};
use flowforge_orchestrator::history::{EventKind, HistoryEvent};
use flowforge_orchestrator::status::{InstanceState, RuntimeStatus};
use serde_json::json;

fn started(id: &str) -> EventKind {
    EventKind::ExecutionStarted {
        name: "hello".into(),
        version: String::new(),
        execution_id: format!("x-{id}"),
        input: json!({ "for": id }),
        parent: None,
        format_version: 1,
        trace_parent: None,
    }
}

/// An instance as format 1 stored it: the state row `state` and `h-{execution}-{seq}-a`
/// rows in the partition named by the instance id.
async fn write_v1_instance(
    table: &azure_data_tables::clients::TableClient,
    id: &str,
    events: u64,
) -> (InstanceState, Vec<HistoryEvent>) {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let history: Vec<HistoryEvent> = (0..events)
        .map(|seq| HistoryEvent {
            seq,
            timestamp: at,
            kind: if seq == 0 {
                started(id)
            } else {
                EventKind::OrchestratorStarted
            },
        })
        .collect();
    let state = InstanceState {
        status: RuntimeStatus::Running,
        history_len: events,
        ..InstanceState::started(id, &started(id), at)
    };
    for event in &history {
        let row = json!({
            "PartitionKey": id,
            "RowKey": format!("h-x-{id}-{:010}-a", event.seq),
            "Event": serde_json::to_string(event).unwrap(),
        });
        table
            .insert::<_, serde_json::Value>(row)
            .unwrap()
            .await
            .unwrap();
    }
    let row = json!({
        "PartitionKey": id,
        "RowKey": "state",
        "Status": "Running",
        "Name": "hello",
        "CreatedAt": at.to_rfc3339(),
        "Body": serde_json::to_string(&state).unwrap(),
        "Ranges": "[]",
    });
    table
        .insert::<_, serde_json::Value>(row)
        .unwrap()
        .await
        .unwrap();
    (state, history)
}

#[tokio::test]
async fn a_format_1_hub_is_refused_until_moved_and_the_move_keeps_every_instance() {
    let config = azurite::shared().config("layoutmove");
    // The hub's tables, as a format 1 build left them.
    let opened = AzureBackend::connect_to_migrate(config.clone())
        .await
        .unwrap();
    drop(opened);
    let table = config
        .table_service()
        .unwrap()
        .table_client("layoutmoveinstances");
    let ids = ["b", "a b", "c-1", "c-10"];
    let mut written = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        written.push(write_v1_instance(&table, id, 3 + n as u64 * 60).await);
    }

    let refused = AzureBackend::connect(config.clone()).await.err().unwrap();
    assert!(
        refused.to_string().contains("flowforge migrate-layout"),
        "{refused}"
    );

    let mover = AzureBackend::connect_to_migrate(config.clone())
        .await
        .unwrap();
    let moved = mover.migrate_layout().await.unwrap();
    assert_eq!(moved.instances, 4);
    assert_eq!(moved.rows, 4 + 3 + 63 + 123 + 183);
    // Run again (as after an interruption): nothing left to move.
    assert_eq!(mover.migrate_layout().await.unwrap().instances, 0);

    let backend = AzureBackend::connect(config.clone()).await.unwrap();
    for (state, history) in &written {
        let loaded = backend
            .load_instance(&state.instance_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&loaded.state, state);
        assert_eq!(&loaded.history, history);
        let page = backend
            .read_history(&state.instance_id, 1, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.events, history[1..3]);
    }
    let listed: Vec<String> = backend
        .list_instances(&InstanceQuery::default())
        .await
        .unwrap()
        .instances
        .into_iter()
        .map(|s| s.instance_id)
        .collect();
    assert_eq!(listed, ["a b", "b", "c-1", "c-10"]);
    // No format 1 row is left.
    let mut old = table
        .query()
        .filter("RowKey eq 'state' or (RowKey ge 'h-' and RowKey lt 'h.')")
        .into_stream::<serde_json::Value>();
    use futures::StreamExt;
    let mut left = 0;
    while let Some(page) = old.next().await {
        left += page.unwrap().entities.len();
    }
    assert_eq!(left, 0);
    // A moved instance is purged whole.
    assert!(backend.delete_instance("c-10").await.unwrap());
    assert_eq!(backend.load_instance_rows("c-10").await.unwrap(), 0);
    assert_eq!(backend.load_instance_rows("c-1").await.unwrap(), 124);
}

#[tokio::test]
async fn a_hub_keeps_the_partition_count_it_was_created_with() {
    let mut config = azurite::shared().config("layoutkeep");
    config.control_partitions = 4;
    let first = AzureBackend::connect(config.clone()).await.unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("keep-{i}")).collect();
    for id in &ids {
        let state = InstanceState::started(id, &started(id), Utc::now());
        let start = to_instance(id, None, started(id), Utc::now(), None, 4);
        first.create_instance(&state, &start, None).await.unwrap();
    }
    assert!(ids
        .iter()
        .any(|id| QueueName::control_for(id, 4) != QueueName::control_for(id, 3)));
    config.control_partitions = 3;
    let second = AzureBackend::connect(config).await.unwrap();
    for id in &ids {
        let (state, _) = second.read_state(id).await.unwrap().unwrap();
        assert_eq!(&state.instance_id, id);
    }
    let page = second
        .list_instances(&InstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(page.instances.len(), 12);
}
