//! Landing files start the pipeline: Event Grid `Microsoft.Storage.BlobCreated` events
//! for the lake's landing container — in the Event Grid schema or as CloudEvents 1.0,
//! through the standalone worker's webhook or the Functions app's Event Grid trigger —
//! become medallion starts, one per event id: the run's instance id is derived from the
//! event id, so an event delivered three times starts one run.
//!
//! Parsing and the mapping from a blob to a start are pure (unit-tested here);
//! [`start_runs`] starts them.

use flowforge_activities::spec;
use flowforge_orchestrator::client::{Client, Error as ClientError, IfRunning, StartOptions};
use serde_json::{json, Value};
use tracing::info;

/// The event type of a new blob.
pub const BLOB_CREATED: &str = "Microsoft.Storage.BlobCreated";
/// The event type of Event Grid's subscription-validation handshake (Event Grid schema).
pub const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
/// The lake container whose new files start runs.
pub const LANDING_CONTAINER: &str = "landing";
/// The workflow id of file-triggered runs unless `FLOWFORGE_LANDING_WORKFLOW_ID` says
/// otherwise (the web app lists a workflow's runs by it).
pub const DEFAULT_WORKFLOW_ID: &str = "landing-files";

/// What one delivery carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The subscription-validation handshake: answer with the code.
    Validation {
        /// `data.validationCode`.
        code: String,
    },
    /// Events (of any type; [`start_for`] picks the ones that start runs).
    Events(Vec<Event>),
}

/// One event, in either schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (unique per event; kept across redeliveries).
    pub id: String,
    /// `eventType` (Event Grid schema) or `type` (CloudEvents).
    pub event_type: String,
    /// `/blobServices/default/containers/<container>/blobs/<path>` for storage events.
    pub subject: String,
}

/// Reads a delivery: an array of events (Event Grid schema, or a CloudEvents batch) or one
/// event (CloudEvents structured mode, or one event as the Functions host passes it).
pub fn parse(body: &Value) -> Result<Delivery, String> {
    let items: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![body],
        _ => return Err("the body is neither an event nor an array of events".into()),
    };
    let mut events = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        check_types(n, item)?;
        let text = |field: &str| item.get(field).and_then(Value::as_str);
        let event_type = text("eventType")
            .or_else(|| text("type"))
            .ok_or(format!("event {n} has no eventType (or CloudEvents type)"))?;
        if event_type == SUBSCRIPTION_VALIDATION {
            let code = item
                .pointer("/data/validationCode")
                .and_then(Value::as_str)
                .ok_or("the validation event has no data.validationCode")?;
            return Ok(Delivery::Validation { code: code.into() });
        }
        let id = text("id").ok_or(format!("event {n} has no id"))?;
        if id.is_empty() {
            return Err(format!("event {n} has an empty id"));
        }
        events.push(Event {
            id: id.into(),
            event_type: event_type.into(),
            subject: text("subject").unwrap_or_default().into(),
        });
    }
    Ok(Delivery::Events(events))
}

/// The envelope fields of both schemas that are text, and `data`, an object: a delivery
/// that gives them another type is malformed, not an event to ignore.
fn check_types(n: usize, item: &Value) -> Result<(), String> {
    let Some(fields) = item.as_object() else {
        return Err(format!("event {n} is not an object"));
    };
    const TEXT: [&str; 11] = [
        "id",
        "eventType",
        "type",
        "subject",
        "topic",
        "source",
        "specversion",
        "eventTime",
        "time",
        "dataVersion",
        "metadataVersion",
    ];
    for name in TEXT {
        if fields.get(name).is_some_and(|v| !v.is_string()) {
            return Err(format!("event {n}: {name} must be a string"));
        }
    }
    if fields.get("data").is_some_and(|v| !v.is_object()) {
        return Err(format!("event {n}: data must be an object"));
    }
    Ok(())
}

/// The run an event starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LandingStart {
    /// `landing-<event id>`: the same for every delivery of the event.
    pub instance_id: String,
    /// The medallion's input.
    pub input: Value,
}

/// The medallion start for an event, or `None` when the event starts nothing: another
/// event type, another container, not a CSV, or a file no shipped dataset lands there (a
/// dimension file such as `airlines/airlines.csv` is read by the runs, not run itself).
pub fn start_for(event: &Event, workflow_id: &str) -> Option<LandingStart> {
    if event.event_type != BLOB_CREATED {
        return None;
    }
    let prefix = format!("/blobServices/default/containers/{LANDING_CONTAINER}/blobs/");
    let path = event.subject.strip_prefix(&prefix)?;
    if !path.ends_with(".csv") {
        return None;
    }
    let dataset = spec::BUILTIN.iter().find(|name| {
        spec::builtin(name)
            .and_then(Result::ok)
            .is_some_and(|spec| path.starts_with(&spec.landing.prefix))
    })?;
    let instance_id = instance_id(&event.id);
    Some(LandingStart {
        input: json!({
            "workflow_id": workflow_id,
            "job_id": instance_id,
            "dataset": dataset,
            "landing_path": path,
        }),
        instance_id,
    })
}

/// The workflow id of file-triggered runs (`FLOWFORGE_LANDING_WORKFLOW_ID`).
pub fn workflow_id() -> String {
    std::env::var("FLOWFORGE_LANDING_WORKFLOW_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_WORKFLOW_ID.into())
}

/// Starts the run of every event that starts one, once per event id. Returns the instance
/// ids (started now or before) and how many events started nothing. A storage failure is
/// returned, so that the caller answers non-2xx and Event Grid delivers again.
pub async fn start_runs(
    client: &Client,
    events: &[Event],
    workflow_id: &str,
) -> Result<(Vec<String>, usize), ClientError> {
    let mut runs = Vec::new();
    let mut ignored = 0;
    for event in events {
        let Some(start) = start_for(event, workflow_id) else {
            ignored += 1;
            continue;
        };
        let options = StartOptions {
            if_running: IfRunning::OncePerId,
            ..StartOptions::with_instance_id(&start.instance_id)
        };
        let id = client
            .start_value("medallion", options, start.input)
            .await?;
        info!(event_id = %event.id, subject = %event.subject, instance_id = %id,
            "landing file event: medallion run started (or already started for this event)");
        runs.push(id);
    }
    Ok((runs, ignored))
}

/// `landing-<event id>`, or a name-based GUID of the id when it is not usable as an
/// instance id as it is (storage event ids are GUIDs).
fn instance_id(event_id: &str) -> String {
    let plain = event_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain && event_id.len() <= 200 {
        format!("landing-{event_id}")
    } else {
        let guid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, event_id.as_bytes());
        format!("landing-{guid}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "/blobServices/default/containers/landing/blobs/flights/f-2013-c.csv";

    fn event_grid(id: &str, subject: &str) -> Value {
        json!({
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
            "subject": subject, "eventType": BLOB_CREATED, "id": id,
            "eventTime": "2026-12-02T10:00:00Z", "dataVersion": "", "metadataVersion": "1",
            "data": {"api": "PutBlob", "url": "https://lake.blob.core.windows.net/landing/flights/f-2013-c.csv"}
        })
    }

    fn cloud_event(id: &str, subject: &str) -> Value {
        json!({
            "specversion": "1.0", "type": BLOB_CREATED, "id": id,
            "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake",
            "subject": subject, "time": "2026-12-02T10:00:00Z", "data": {"api": "PutBlob"}
        })
    }

    #[test]
    fn both_schemas_give_the_same_start_for_the_same_event() {
        let id = "831e1650-001e-001b-66ab-eeb76e069631";
        let from_grid = parse(&json!([event_grid(id, SUBJECT)])).unwrap();
        let from_cloud = parse(&cloud_event(id, SUBJECT)).unwrap();
        assert_eq!(from_grid, from_cloud);
        let Delivery::Events(events) = from_grid else {
            panic!("events expected")
        };
        let start = start_for(&events[0], "w-1").unwrap();
        assert_eq!(start.instance_id, format!("landing-{id}"));
        assert_eq!(
            start.input,
            json!({"workflow_id": "w-1", "job_id": start.instance_id, "dataset": "flights",
                   "landing_path": "flights/f-2013-c.csv"})
        );
    }

    #[test]
    fn the_validation_handshake_is_recognised() {
        let body = json!([{"id": "v1", "eventType": SUBSCRIPTION_VALIDATION, "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}}]);
        assert_eq!(
            parse(&body).unwrap(),
            Delivery::Validation {
                code: "512d38b6-c7b8-40c8-89fe-f46f9e9622b6".into()
            }
        );
        let no_code = json!([{"id": "v1", "eventType": SUBSCRIPTION_VALIDATION, "data": {}}]);
        assert!(parse(&no_code).is_err());
    }

    #[test]
    fn only_new_landing_csv_files_of_a_dataset_start_runs() {
        let start = |subject: &str, event_type: &str| {
            let event = Event {
                id: "e1".into(),
                event_type: event_type.into(),
                subject: subject.into(),
            };
            start_for(&event, "w").map(|s| s.input["landing_path"].clone())
        };
        assert_eq!(
            start(SUBJECT, BLOB_CREATED),
            Some(json!("flights/f-2013-c.csv"))
        );
        assert_eq!(start(SUBJECT, "Microsoft.Storage.BlobDeleted"), None);
        let other = "/blobServices/default/containers/bronze/blobs/flights/x.csv";
        assert_eq!(start(other, BLOB_CREATED), None);
        let not_csv = "/blobServices/default/containers/landing/blobs/flights/x.parquet";
        assert_eq!(start(not_csv, BLOB_CREATED), None);
        let dimension = "/blobServices/default/containers/landing/blobs/airlines/airlines.csv";
        assert_eq!(start(dimension, BLOB_CREATED), None);
    }

    #[test]
    fn malformed_deliveries_are_refused_with_a_reason() {
        assert!(parse(&json!("text")).is_err());
        assert!(parse(&json!([{"id": "x"}]))
            .unwrap_err()
            .contains("eventType"));
        assert!(parse(&json!([{"eventType": BLOB_CREATED}]))
            .unwrap_err()
            .contains("id"));
    }

    #[test]
    fn odd_event_ids_still_give_a_valid_stable_instance_id() {
        let odd = instance_id("a/b#c?d");
        assert!(odd.starts_with("landing-") && !odd.contains('/'));
        assert_eq!(odd, instance_id("a/b#c?d"));
    }
}
