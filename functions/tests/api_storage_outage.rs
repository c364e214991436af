//! Storage frozen under load (Azurite stopped with SIGSTOP while runs are in flight): every
//! API call answers while storage is still frozen — a 503 with `Retry-After` and the code
//! `StorageUnavailable`, not a hang; SIGTERM stops the worker within its shutdown grace,
//! also while frozen; and once storage is back, a new worker finishes every run, and the
//! start refused during the outage, retried with its id, runs once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod worker_process;

use std::time::Duration;

use flowforge_azure::azurite::Azurite;
use flowforge_tests::processes::Frozen;
use serde_json::{json, Value};
use worker_process::Server;

const KEY: &str = "outage-key-3";
const RUNS: usize = 12;
/// Short leases and grace, so the test takes seconds rather than the defaults' minutes.
const ARGS: [&str; 4] = ["--lock-timeout-secs", "6", "--shutdown-grace-secs", "5"];

fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-functions-key", KEY.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        // Far above the API's own deadlines: a call that reaches this has hung.
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}

async fn start(http: &reqwest::Client, base: &str, id: &str) -> reqwest::Response {
    http.post(format!("{base}orchestrators/demo/{id}"))
        .json(&json!({"files": ["a.csv", "bb.csv", "ccc.csv"], "pause_ms": 1500}))
        .send()
        .await
        .unwrap()
}

async fn completed(http: &reqwest::Client, base: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let reply = http
            .get(format!("{base}instances/{id}"))
            .send()
            .await
            .unwrap();
        if reply.status() == 200 {
            return reply.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_storage_gets_503s_a_bounded_shutdown_and_loses_nothing() {
    let azurite = Azurite::start().unwrap();
    let connection = azurite.connection_string();
    let mut first = Server::start_on(&connection, "outage", KEY, &ARGS).await;
    let http = http();
    for i in 0..RUNS {
        let reply = start(&http, &first.base, &format!("run-{i}")).await;
        assert_eq!(reply.status(), 202);
    }

    let frozen = Frozen::azurite(&azurite).unwrap();
    let froze = std::time::Instant::now();
    let mut calls = Vec::new();
    for i in 0..6 {
        let (http, base) = (http.clone(), first.base.clone());
        calls.push(tokio::spawn(async move {
            http.get(format!("{base}instances/run-{i}")).send().await
        }));
    }
    let (client, base) = (http.clone(), first.base.clone());
    calls.push(tokio::spawn(async move {
        client.delete(format!("{base}instances/run-0")).send().await
    }));
    let (client, base) = (http.clone(), first.base.clone());
    calls.push(tokio::spawn(async move {
        start(&client, &base, "during-outage").await;
        client.get(format!("{base}instances")).send().await
    }));
    for call in calls {
        let reply = call
            .await
            .unwrap()
            .expect("every call answers while storage is frozen");
        assert_eq!(reply.status(), 503, "{reply:?}");
        assert!(reply.headers().contains_key("retry-after"));
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["code"], "StorageUnavailable", "{body}");
    }
    eprintln!(
        "every call answered 503, the last {:?} into the outage",
        froze.elapsed()
    );

    // SIGTERM while storage is still frozen: the worker is gone within its grace.
    let pid = first.child.id().to_string();
    let terminated = std::time::Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut exit = None;
    for _ in 0..600 {
        exit = first.child.try_wait().unwrap();
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = exit.expect("the worker stopped while storage was still frozen");
    assert!(exit.success(), "{exit:?}");
    eprintln!(
        "SIGTERM to exit, storage frozen: {:?}",
        terminated.elapsed()
    );
    drop(frozen);

    let second = Server::start_on(&connection, "outage", KEY, &ARGS).await;
    let retried = start(&http, &second.base, "during-outage").await;
    assert!(
        [202, 409].contains(&retried.status().as_u16()),
        "a retried start runs once: {retried:?}"
    );
    for id in (0..RUNS)
        .map(|i| format!("run-{i}"))
        .chain(["during-outage".to_owned()])
    {
        let done = completed(&http, &second.base, &id).await;
        assert_eq!(done["runtimeStatus"], "Completed", "{done}");
        assert_eq!(done["output"]["total"], 18 * 1024, "{done}");
    }
}
