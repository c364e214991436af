//! The dashboard end to end in a real browser: a `flowforge worker` on Azurite with a
//! completed run (one activity retried), a failed run, a running one and a medallion run on
//! the committed sample; then
//! `browser/dashboard.py` drives Debian's Chromium through Playwright (both installed by
//! `scripts/test`): nothing shown without the key, the runs list and its status filter, the
//! failed run's coded failure, the completed run's timeline (both attempts, the back-off
//! timer) and its logs per attempt, the medallion run's artifacts and logs, terminating the
//! running run from its page, the schedules page, the list at 390 px. Screenshots go
//! to `FLOWFORGE_SCREENSHOTS` (the ones in `docs/screenshots/` came from here) or a
//! temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use worker_process::Server;

const KEY: &str = "dash-key-42";

async fn start(http: &reqwest::Client, base: &str, name: &str, id: &str, input: Value) {
    let reply = http
        .post(format!("{base}orchestrators/{name}/{id}"))
        .header("x-functions-key", KEY)
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202, "{}", reply.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs Playwright",
        python.display()
    );
    let yearly = r#"[{"name": "yearly", "cron": "0 0 0 1 1 *", "orchestration": "await_approval", "input": 60}]"#;
    // A completed demo run starts an approval wait (a chained run), shown on both pages.
    std::env::set_var(
        "FLOWFORGE_CHAINS",
        r#"[{"name": "approval", "after": "demo", "start": "await_approval", "input": 3600}]"#,
    );
    let server = Server::start("dashboard", KEY, &["--schedules", yearly]).await;
    std::env::remove_var("FLOWFORGE_CHAINS");
    let http = reqwest::Client::new();
    let base = server.base.clone();
    start(
        &http,
        &base,
        "demo",
        "run-ok",
        json!({"files": ["a.csv", "flaky-b.csv"], "pause_ms": 0}),
    )
    .await;
    start(&http, &base, "demo", "run-bad", json!({"files": 3})).await;
    start(&http, &base, "await_approval", "run-live", json!(3600)).await;
    worker_process::land_sample(
        "dashboard",
        &[
            ("airlines/airlines.csv", "airlines/airlines.csv"),
            ("flights/flights-2013-a.csv", "flights/flights-2013-a.csv"),
            ("flights/flights-2013-b.csv", "flights/flights-2013-b.csv"),
        ],
    )
    .await;
    start(
        &http,
        &base,
        "medallion",
        "run-lake",
        json!({"workflow_id": "dash", "job_id": "dash-1", "dataset": "flights"}),
    )
    .await;
    assert_eq!(
        server
            .finished(KEY, "run-lake", Duration::from_secs(60))
            .await["runtimeStatus"],
        "Completed"
    );
    assert_eq!(
        server
            .finished(KEY, "run-ok", Duration::from_secs(60))
            .await["runtimeStatus"],
        "Completed"
    );
    assert_eq!(
        server
            .finished(KEY, "run-bad", Duration::from_secs(60))
            .await["runtimeStatus"],
        "Failed"
    );

    let shots = std::env::var_os("FLOWFORGE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("flowforge-shots-{}", std::process::id()))
        });
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py"))
        .args([&base, KEY])
        .arg(&shots)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{printed}");
    assert!(out.status.success(), "the browser test failed");
    assert!(printed.contains("dashboard: PASS"), "{printed}");
    for shot in [
        "dashboard-runs.png",
        "dashboard-run.png",
        "dashboard-medallion.png",
        "dashboard-narrow.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}
