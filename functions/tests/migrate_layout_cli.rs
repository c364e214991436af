//! `flowforge migrate-layout`, the binary against Azurite: a task hub holding an instance in
//! table layout format 1 (a partition per instance, its rows written here as that format
//! stored them) is refused by the client commands with the command that moves it; after
//! the move the same command reads the instance, its status and its history.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use chrono::Utc;
use flowforge_azure::{azurite, AzureBackend};
use flowforge_orchestrator::history::{EventKind, HistoryEvent, StartInfo};
use flowforge_orchestrator::status::{InstanceState, RuntimeStatus};
use serde_json::{json, Value};

const HUB: &str = "clilayout";

fn flowforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowforge"))
        .args(args)
        .env("AzureWebJobsStorage", azurite::shared().connection_string())
        .env("FLOWFORGE_TASK_HUB", HUB)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_format_1_hub_is_refused_then_moved_by_the_command() {
    let config = azurite::shared().config(HUB);
    drop(
        AzureBackend::connect_to_migrate(config.clone())
            .await
            .unwrap(),
    );
    let table = config
        .table_service()
        .unwrap()
        .table_client(format!("{HUB}instances"));
    let started = StartInfo::new("hello", "x1", json!("ada")).into_event();
    let events = [
        HistoryEvent {
            seq: 0,
            timestamp: Utc::now(),
            kind: started.clone(),
        },
        HistoryEvent {
            seq: 1,
            timestamp: Utc::now(),
            kind: EventKind::ExecutionCompleted {
                output: json!("Hello, ada"),
            },
        },
    ];
    for event in &events {
        let row = json!({
            "PartitionKey": "old-1",
            "RowKey": format!("h-x1-{:010}-a", event.seq),
            "Event": serde_json::to_string(event).unwrap(),
        });
        table.insert::<_, Value>(row).unwrap().await.unwrap();
    }
    let state = InstanceState {
        status: RuntimeStatus::Completed,
        output: json!("Hello, ada"),
        history_len: 2,
        ..InstanceState::started("old-1", &started, Utc::now())
    };
    let row = json!({
        "PartitionKey": "old-1",
        "RowKey": "state",
        "Status": "Completed",
        "Name": "hello",
        "CreatedAt": state.created_at.to_rfc3339(),
        "Body": serde_json::to_string(&state).unwrap(),
        "Ranges": "[]",
    });
    table.insert::<_, Value>(row).unwrap().await.unwrap();

    let refused = flowforge(&["status", "old-1"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("flowforge migrate-layout"), "{stderr}");

    let moved = flowforge(&["migrate-layout"]);
    let stdout = String::from_utf8_lossy(&moved.stdout);
    assert!(
        moved.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(stdout.contains("1 instances moved"), "{stdout}");
    assert!(stdout.contains("(3 rows written)"), "{stdout}");

    let shown = flowforge(&["status", "old-1", "--history"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let status: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(status["runtimeStatus"], "Completed");
    assert_eq!(status["output"], "Hello, ada");
    let history = status["historyEvents"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{status}");
}
