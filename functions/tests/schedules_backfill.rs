//! Backfill across two workers: two `flowforge worker` processes on one task hub, with the
//! same schedule, are both asked at once to backfill the same range (and one asks again):
//! every occurrence in the range starts exactly once, with the schedule's deterministic
//! ids; a dry run starts nothing; a range over the limit is refused; "run now" starts one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::time::Duration;

use serde_json::Value;
use worker_process::Server;

const KEY: &str = "backfill-key-3";
const HUB: &str = "backfilltwo";
const SCHEDULE: &str = r#"[{"name": "hourly", "cron": "0 0 * * * *", "orchestration": "demo",
    "input": {"files": [], "pause_ms": 0}, "overlap": "skip"}]"#;

async fn post(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let reply = http
        .post(url)
        .header("x-functions-key", KEY)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn instances(http: &reqwest::Client, base: &str) -> Vec<Value> {
    http.get(format!(
        "{base}instances?instanceIdPrefix=schedule-hourly-20261101&top=1000"
    ))
    .header("x-functions-key", KEY)
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_two_workers_starts_each_occurrence_exactly_once() {
    let one = Server::start(HUB, KEY, &["--schedules", SCHEDULE]).await;
    let two = Server::start(HUB, KEY, &["--schedules", SCHEDULE]).await;
    let http = reqwest::Client::new();
    let range = "from=2026-11-01T00:00:00Z&to=2026-11-01T23:00:00Z";

    let (status, dry) = post(
        &http,
        &format!("{}schedules/hourly/backfill?{range}&dryRun=true", one.base),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["occurrences"].as_array().unwrap().len(), 24);
    assert!(
        instances(&http, &one.base).await.is_empty(),
        "a dry run starts nothing"
    );
    let (status, refused) = post(
        &http,
        &format!("{}schedules/hourly/backfill?{range}&limit=10", one.base),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["code"], "InvalidRange", "{refused}");

    // Both workers at once, then the first again.
    let url = |base: &str| format!("{base}schedules/hourly/backfill?{range}");
    let (url_one, url_two) = (url(&one.base), url(&two.base));
    let ((a, body_a), (b, body_b)) = tokio::join!(post(&http, &url_one), post(&http, &url_two));
    assert_eq!((a, b), (200, 200), "{body_a} {body_b}");
    let (c, body_c) = post(&http, &url_one).await;
    assert_eq!(c, 200);
    assert!(
        body_c["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["outcome"] == "existing"),
        "{body_c}"
    );
    let listed = flowforge_orchestrator::testing::eventually(
        "the backfilled runs",
        Duration::from_secs(60),
        || async {
            let listed = instances(&http, &one.base).await;
            listed
                .iter()
                .all(|r| r["runtimeStatus"] == "Completed")
                .then_some(listed)
        },
    )
    .await;
    let mut ids: Vec<String> = listed
        .iter()
        .map(|r| r["instanceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..24)
        .map(|h| format!("schedule-hourly-20261101T{h:02}0000Z"))
        .collect();
    assert_eq!(ids, expected, "each occurrence once");
    for run in &listed {
        let history: Value = http
            .get(format!(
                "{}instances/{}?showHistory=true",
                one.base,
                run["instanceId"].as_str().unwrap()
            ))
            .header("x-functions-key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let starts = history["historyEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["EventType"] == "ExecutionStarted")
            .count();
        assert_eq!(starts, 1, "one execution: {history}");
    }

    // Run now: one more run, outside the backfilled range.
    let (status, now) = post(&http, &format!("{}schedules/hourly/trigger", two.base)).await;
    assert_eq!(status, 202, "{now}");
    assert!(now["instanceId"]
        .as_str()
        .unwrap()
        .starts_with("schedule-hourly-"));
    let (status, missing) = post(&http, &format!("{}schedules/nope/trigger", two.base)).await;
    assert_eq!(status, 404, "{missing}");

    // The CLI, on the same schedules setting: the backfilled day is all there; the next
    // day's first hours would start.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flowforge"))
            .args(args)
            .env(
                "AzureWebJobsStorage",
                flowforge_azure::azurite::shared().connection_string(),
            )
            .env("FLOWFORGE_TASK_HUB", HUB)
            .env("FLOWFORGE_SCHEDULES", SCHEDULE)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let out = cli(&[
        "schedule",
        "backfill",
        "hourly",
        "--from",
        "2026-11-01T22:00:00Z",
        "--to",
        "2026-11-02T01:00:00Z",
        "--dry-run",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["existing", "existing", "planned", "planned"]);
    let unknown = cli(&["schedule", "trigger", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no schedule named 'nope'"));
}
