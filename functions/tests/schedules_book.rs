//! Schedules as data: pause stops occurrences and resume does not replay the paused ones
//! (the timer is driven with chosen instants, so no test waits on the wall clock); the
//! overlap policies `bufferOne` and `cancelPrevious` against real runs of an engine; and
//! the HTTP API's create / update / pause / resume with catch-up / delete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowforge::schedules::{fire_due, Fired, ScheduleBook, ScheduleSpec};
use flowforge_orchestrator::backend::{InstanceQuery, MemoryBackend};
use flowforge_orchestrator::prelude::*;
use flowforge_orchestrator::runtime::WorkerHandle;
use serde_json::{json, Value};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn minutely(name: &str, orchestration: &str, input: Value, overlap: &str) -> ScheduleSpec {
    serde_json::from_value(json!({
        "name": name, "cron": "0 * * * * *", "orchestration": orchestration,
        "input": input, "overlap": overlap,
    }))
    .unwrap()
}

/// A book over an in-memory task hub with an engine running its orchestrations.
fn engine() -> (ScheduleBook, Client, WorkerHandle) {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(
        backend.clone(),
        flowforge_tests::registry(),
        WorkerOptions::default(),
    )
    .start();
    let client = Client::new(backend);
    (
        ScheduleBook::new(client.clone(), Vec::new()),
        client,
        worker,
    )
}

async fn fire(book: &ScheduleBook, now: &str, look_back_secs: i64) -> Vec<Fired> {
    fire_due(book, at(now), chrono::Duration::seconds(look_back_secs))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, fired)| fired.unwrap())
        .collect()
}

async fn instance_ids(client: &Client, prefix: &str) -> Vec<String> {
    let query = InstanceQuery {
        instance_id_prefix: Some(prefix.into()),
        page_size: 1000,
        ..Default::default()
    };
    let mut ids: Vec<String> = client
        .list(&query, false)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|s| s.instance_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_occurrences_and_resume_does_not_replay_them() {
    let (book, client, _worker) = engine();
    book.create(
        minutely("minutely", "fan", json!(2), "allow"),
        at("2027-03-01T10:00:30Z"),
    )
    .await
    .unwrap();

    // Created at 10:00:30: 10:00 is before it, 10:01 fires.
    let fired = fire(&book, "2027-03-01T10:01:30Z", 120).await;
    assert_eq!(
        fired,
        [Fired::Started("schedule-minutely-20270301T100100Z".into())]
    );

    book.pause(
        "minutely",
        "upstream maintenance",
        at("2027-03-01T10:01:40Z"),
    )
    .await
    .unwrap();
    // Three minutes of ticks while paused: nothing.
    for now in [
        "2027-03-01T10:02:10Z",
        "2027-03-01T10:03:10Z",
        "2027-03-01T10:04:30Z",
    ] {
        assert!(
            fire(&book, now, 240).await.is_empty(),
            "fired while paused at {now}"
        );
    }

    // Resumed at 10:04:40; a tick whose look-back reaches over the whole pause starts only
    // the occurrence after the resume.
    let (_, paused_at) = book
        .resume("minutely", at("2027-03-01T10:04:40Z"))
        .await
        .unwrap();
    assert_eq!(paused_at, Some(at("2027-03-01T10:01:40Z")));
    let fired = fire(&book, "2027-03-01T10:05:30Z", 600).await;
    assert_eq!(
        fired,
        [Fired::Started("schedule-minutely-20270301T100500Z".into())]
    );
    assert_eq!(
        instance_ids(&client, "schedule-minutely-").await,
        [
            "schedule-minutely-20270301T100100Z",
            "schedule-minutely-20270301T100500Z"
        ]
    );

    // Asked to catch up, a backfill of the pause's range runs exactly the paused ones.
    let entry = book.get("minutely").await.unwrap();
    let caught_up = flowforge::schedules::backfill(
        &client,
        &entry.schedule,
        paused_at.unwrap(),
        at("2027-03-01T10:04:40Z"),
        100,
        false,
    )
    .await
    .unwrap();
    let started: Vec<&str> = caught_up
        .iter()
        .filter(|b| b.outcome == "started")
        .map(|b| b.instance_id.as_str())
        .collect();
    assert_eq!(
        started,
        [
            "schedule-minutely-20270301T100200Z",
            "schedule-minutely-20270301T100300Z",
            "schedule-minutely-20270301T100400Z"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_one_holds_one_occurrence_until_the_run_ahead_ends() {
    let (book, client, _worker) = engine();
    // `collect` with 1 waits for one "item" event: a run that stays active until released.
    book.create(
        minutely("held", "collect", json!(1), "bufferOne"),
        at("2027-03-01T10:00:30Z"),
    )
    .await
    .unwrap();
    let first = "schedule-held-20270301T100100Z";
    let second = "schedule-held-20270301T100200Z";
    assert_eq!(
        fire(&book, "2027-03-01T10:01:10Z", 60).await,
        [Fired::Started(first.into())]
    );
    assert_eq!(
        fire(&book, "2027-03-01T10:02:10Z", 60).await,
        [Fired::Buffered {
            buffered: second.into(),
            active: first.into()
        }]
    );
    // One is held already: the next is skipped.
    assert_eq!(
        fire(&book, "2027-03-01T10:03:10Z", 60).await,
        [Fired::SkippedOverlap {
            skipped: "schedule-held-20270301T100300Z".into(),
            active: first.into()
        }]
    );
    // Still held while the first runs.
    assert!(fire(&book, "2027-03-01T10:03:20Z", 5).await.is_empty());
    assert_eq!(instance_ids(&client, "schedule-held-").await, [first]);

    client
        .raise_event(first, "item", &json!("done"))
        .await
        .unwrap();
    let status = client
        .wait_for_completion(first, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        fire(&book, "2027-03-01T10:03:30Z", 5).await,
        [Fired::Started(second.into())],
        "the buffered occurrence starts once the run ahead has ended"
    );
    assert!(book.get("held").await.unwrap().record.buffered.is_none());
    assert_eq!(
        instance_ids(&client, "schedule-held-").await,
        [first, second]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_previous_terminates_the_run_ahead_and_starts_the_new_one() {
    let (book, client, _worker) = engine();
    book.create(
        minutely("latest", "collect", json!(1), "cancelPrevious"),
        at("2027-03-01T10:00:30Z"),
    )
    .await
    .unwrap();
    let first = "schedule-latest-20270301T100100Z";
    let second = "schedule-latest-20270301T100200Z";
    assert_eq!(
        fire(&book, "2027-03-01T10:01:10Z", 60).await,
        [Fired::Started(first.into())]
    );
    assert_eq!(
        fire(&book, "2027-03-01T10:02:10Z", 60).await,
        [Fired::StartedReplacing {
            started: second.into(),
            terminated: vec![first.into()]
        }]
    );
    let status = client
        .wait_for_completion(first, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Terminated);
    let output = status.output.to_string();
    assert!(
        output.contains(second),
        "the reason names the new run: {output}"
    );
    let running = client.status(second, Default::default()).await.unwrap();
    assert!(!running.runtime_status.is_terminal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_creates_changes_pauses_resumes_and_deletes_schedules() {
    let app = support::app(1 << 20);
    let every_second =
        r#"{"name": "tick", "cron": "* * * * * *", "orchestration": "fan", "input": 1}"#;
    let created = app.call("POST", "/api/schedules", Some(every_second)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["origin"], "api");
    assert_eq!(created.body["paused"], false);
    let again = app.call("POST", "/api/schedules", Some(every_second)).await;
    assert_eq!(
        (again.status.as_u16(), again.body["code"].as_str()),
        (409, Some("Conflict"))
    );

    let bad_cron = r#"{"name": "bad", "cron": "every day", "orchestration": "fan"}"#;
    let refused = app.call("POST", "/api/schedules", Some(bad_cron)).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "InvalidSchedule");
    assert!(refused.body["error"].as_str().unwrap().contains("six"));
    let unknown = r#"{"name": "bad", "cron": "0 0 * * * *", "orchestration": "nope"}"#;
    let refused = app.call("POST", "/api/schedules", Some(unknown)).await;
    assert_eq!(
        (refused.status.as_u16(), refused.body["code"].as_str()),
        (422, Some("InvalidSchedule"))
    );
    let not_json = app.call("POST", "/api/schedules", Some("{")).await;
    assert_eq!(not_json.status, 400);

    // The configured schedule of the app (seeded) and the new one.
    let listed = app.call("GET", "/api/schedules", None).await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly", "tick"]);
    assert_eq!(listed.body[0]["origin"], "config");

    let updated = app
        .call(
            "PUT",
            "/api/schedules/tick",
            Some(r#"{"name": "tick", "cron": "* * * * * *", "orchestration": "fan", "input": 2, "overlap": "allow"}"#),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(
        (
            updated.body["input"].clone(),
            updated.body["overlap"].clone()
        ),
        (json!(2), json!("allow"))
    );
    let renamed = app
        .call(
            "PUT",
            "/api/schedules/tick",
            Some(r#"{"name": "tock", "cron": "* * * * * *", "orchestration": "fan"}"#),
        )
        .await;
    assert_eq!(renamed.status, 422, "{:?}", renamed.body);

    let paused = app
        .call("POST", "/api/schedules/tick/pause?reason=maintenance", None)
        .await;
    assert_eq!(paused.status, 200);
    assert_eq!(
        (
            paused.body["paused"].clone(),
            paused.body["pauseReason"].clone()
        ),
        (json!(true), json!("maintenance"))
    );
    assert_eq!(paused.body["next"], json!([]));
    let paused_at = at(paused.body["pausedAt"].as_str().unwrap());
    // Wait for the clock to pass at least two occurrences of the pause.
    while Utc::now() < paused_at + chrono::Duration::milliseconds(2_100) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = app
        .call("POST", "/api/schedules/tick/resume?catchUp=true", None)
        .await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    assert_eq!(resumed.body["paused"], false);
    let caught_up = resumed.body["caughtUp"].as_array().unwrap();
    assert!(caught_up.len() >= 2, "{caught_up:?}");
    for occurrence in caught_up {
        assert_eq!(occurrence["outcome"], "started");
        let when = at(occurrence["occurrence"].as_str().unwrap());
        assert!(
            when >= paused_at,
            "{when} is before the pause at {paused_at}"
        );
        let id = occurrence["instanceId"].as_str().unwrap();
        let status = app.poll_until_done(id).await;
        assert_eq!(
            status.body["runtimeStatus"], "Completed",
            "{:?}",
            status.body
        );
    }
    // Resuming a running schedule changes nothing and catches nothing up.
    let again = app
        .call("POST", "/api/schedules/tick/resume?catchUp=true", None)
        .await;
    assert_eq!(again.body["caughtUp"], json!([]));

    let deleted = app.call("DELETE", "/api/schedules/tick", None).await;
    assert_eq!(deleted.status, 204);
    let gone = app.call("GET", "/api/schedules/tick", None).await;
    assert_eq!(
        (gone.status.as_u16(), gone.body["code"].as_str()),
        (404, Some("NotFound"))
    );
    let gone = app.call("POST", "/api/schedules/tick/pause", None).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_run_and_the_run_that_started_it_link_to_each_other_in_their_status() {
    let app = support::app(1 << 20);
    let started = app
        .call(
            "POST",
            "/api/orchestrators/waves/links-a",
            Some(r#"{"waves": 1, "width": 2}"#),
        )
        .await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let a = app.poll_until_done("links-a").await;
    assert_eq!(a.body["runtimeStatus"], "Completed", "{:?}", a.body);
    assert_eq!(
        a.body["chainedRuns"],
        json!([{"chain": "report", "orchestration": "waves_report", "instanceId": "links-a-then-report"}])
    );
    let b = app.poll_until_done("links-a-then-report").await;
    assert_eq!(b.body["runtimeStatus"], "Completed", "{:?}", b.body);
    assert_eq!(
        b.body["chainedFrom"],
        json!({"chain": "report", "instanceId": "links-a"})
    );
    assert!(b.body.get("chainedRuns").is_none());
}
