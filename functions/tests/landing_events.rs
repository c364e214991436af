//! Landing files start the pipeline through the standalone worker's Event Grid webhook
//! (`flowforge worker` on Azurite): both handshakes (Event Grid's validation event,
//! CloudEvents' `OPTIONS`), a `BlobCreated` event in the Event Grid schema and one as a
//! CloudEvent, each delivered three times (two of them at once), start exactly one
//! medallion run each, which completes on the uploaded file; bad deliveries get a 400 with
//! a code (Event Grid dead-letters those at once) and start nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::time::Duration;

use serde_json::{json, Value};
use worker_process::Server;

const KEY: &str = "grid-key-7";
const HUB: &str = "landinggrid";

fn subject(path: &str) -> String {
    format!("/blobServices/default/containers/landing/blobs/{path}")
}

async fn deliver(
    http: &reqwest::Client,
    hook: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let reply = http
        .post(hook)
        .header("content-type", content_type)
        .header("aeg-event-type", "Notification")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_created_events_start_one_medallion_run_each_however_often_delivered() {
    let server = Server::start(HUB, KEY, &[]).await;
    let http = reqwest::Client::new();
    let hook = format!("{}eventgrid/landing?code={KEY}", server.base);

    // Without the key nothing is accepted.
    let keyless = http
        .post(format!("{}eventgrid/landing", server.base))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 401);

    // CloudEvents' abuse-protection handshake.
    let options = http
        .request(reqwest::Method::OPTIONS, &hook)
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(
        options.headers()["webhook-allowed-origin"],
        "eventgrid.azure.net"
    );
    // Event Grid's validation event.
    let validation = json!([{
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": "/subscriptions/s",
        "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-12-02T10:00:00Z", "metadataVersion": "1", "dataVersion": "1",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                 "validationUrl": "https://rp-eastus2.eventgrid.azure.net/validate"}
    }]);
    let (status, body) = deliver(&http, &hook, "application/json", &validation).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );

    worker_process::land_sample(
        HUB,
        &[
            ("airlines/airlines.csv", "airlines/airlines.csv"),
            ("flights/grid-a.csv", "flights/flights-2013-a.csv"),
            ("flights/grid-b.csv", "flights/flights-2013-b.csv"),
        ],
    )
    .await;
    let grid_id = "831e1650-001e-001b-66ab-eeb76e069631";
    let grid_event = json!([{
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
        "subject": subject("flights/grid-a.csv"), "eventType": "Microsoft.Storage.BlobCreated",
        "id": grid_id, "eventTime": "2026-12-02T10:00:00Z", "dataVersion": "", "metadataVersion": "1",
        "data": {"api": "PutBlob", "contentType": "text/csv", "blobType": "BlockBlob",
                 "url": "https://lake.blob.core.windows.net/landing/flights/grid-a.csv"}
    }]);
    let cloud_id = "9aeb0fdf-c01e-0131-0922-9eb54906e209";
    let cloud_event = json!({
        "specversion": "1.0", "type": "Microsoft.Storage.BlobCreated", "id": cloud_id,
        "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
        "subject": subject("flights/grid-b.csv"), "time": "2026-12-02T10:00:01Z",
        "data": {"api": "PutBlob", "blobType": "BlockBlob"}
    });
    // Three deliveries each: two at once, then one more.
    for (content_type, event) in [
        ("application/json", &grid_event),
        ("application/cloudevents+json; charset=utf-8", &cloud_event),
    ] {
        let (a, b) = tokio::join!(
            deliver(&http, &hook, content_type, event),
            deliver(&http, &hook, content_type, event)
        );
        let c = deliver(&http, &hook, content_type, event).await;
        for (status, body) in [a, b, c] {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
        }
    }
    // A dimension file and another event type start nothing.
    let ignored = json!([
        {"id": "d1", "eventType": "Microsoft.Storage.BlobCreated",
         "subject": subject("airlines/airlines.csv"), "data": {}},
        {"id": "d2", "eventType": "Microsoft.Storage.BlobDeleted",
         "subject": subject("flights/grid-a.csv"), "data": {}}
    ]);
    let (status, body) = deliver(&http, &hook, "application/json", &ignored).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"runs": [], "ignored": 2}));
    // Malformed deliveries: 400 with a code, nothing started.
    for bad in [
        json!("text"),
        json!([{"id": "x"}]),
        json!([{"eventType": "t"}]),
    ] {
        let (status, body) = deliver(&http, &hook, "application/json", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["code"].as_str().is_some(), "{body}");
    }

    // One run per event, each completed on its own file, in the workflow's list.
    for (id, file, rows) in [
        (grid_id, "flights/grid-a.csv", 1_123u64),
        (cloud_id, "flights/grid-b.csv", 1_123),
    ] {
        let done = server
            .finished(KEY, &format!("landing-{id}"), Duration::from_secs(120))
            .await;
        assert_eq!(done["runtimeStatus"], "Completed", "{done}");
        assert_eq!(done["input"]["workflow_id"], "landing-files");
        assert_eq!(done["input"]["landing_path"], file);
        let landed: u64 = done["output"]["bronze"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["rows"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(landed, rows, "{done}");
    }
    let listed: Vec<Value> = http
        .get(format!(
            "{}instances?instanceIdPrefix=landing-&code={KEY}",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        2,
        "one run per event, in the workflow's list: {listed:?}"
    );
    let ids: Vec<&str> = listed
        .iter()
        .filter_map(|r| r["instanceId"].as_str())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("landing-")), "{ids:?}");
}
