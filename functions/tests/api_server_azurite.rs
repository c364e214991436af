//! The real binary (`flowforge worker`) on loopback against Azurite, used the way the web
//! app uses it; and SIGTERM in the middle of a run loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use std::process::Command;

mod worker_process;
use worker_process::Server;

const KEY: &str = "web-app-key-42";

async fn serve(hub: &str) -> Server {
    Server::start(hub, KEY, &[]).await
}

fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-functions-key", KEY.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Polls a status URL until 200, as the web app does; returns the status body.
async fn poll(http: &reqwest::Client, url: &str) -> Value {
    for _ in 0..1200 {
        let reply = http.get(url).send().await.unwrap();
        match reply.status().as_u16() {
            200 => return reply.json().await.unwrap(),
            202 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!(
                "status poll answered {other}: {}",
                reply.text().await.unwrap()
            ),
        }
    }
    panic!("{url} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_flow_against_azurite() {
    let server = serve("webapp").await;
    let http = http();
    // Start, poll the statusQueryGetUri until 200, read the output.
    let input = json!({"files": ["landing/a.csv", "landing/b.csv"], "pause_ms": 100});
    let reply = http
        .post(format!("{}orchestrators/demo", server.base))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202);
    let check: Value = reply.json().await.unwrap();
    let done = poll(&http, check["statusQueryGetUri"].as_str().unwrap()).await;
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(done["output"]["total"], json!(2 * 13 * 1024));

    // Raise an event to a waiting instance.
    let reply = http
        .post(format!("{}orchestrators/await_approval/job-7", server.base))
        .json(&3600)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202);
    let check: Value = reply.json().await.unwrap();
    let event_url = check["sendEventPostUri"]
        .as_str()
        .unwrap()
        .replace("{eventName}", "approve");
    assert_eq!(
        http.post(&event_url)
            .json(&"ada")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let done = poll(&http, check["statusQueryGetUri"].as_str().unwrap()).await;
    assert_eq!(done["output"], "approved by ada");

    // Terminate one.
    let reply = http
        .post(format!("{}orchestrators/await_approval/job-8", server.base))
        .json(&3600)
        .send()
        .await
        .unwrap();
    let check: Value = reply.json().await.unwrap();
    let terminate = check["terminatePostUri"]
        .as_str()
        .unwrap()
        .replace("{text}", "cancelled");
    assert_eq!(
        http.post(&terminate)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let done = poll(&http, check["statusQueryGetUri"].as_str().unwrap()).await;
    assert_eq!(done["runtimeStatus"], "Terminated");

    // List by status with paging over more instances than one page.
    for i in 0..5 {
        let url = format!("{}orchestrators/await_approval/wait-{i}", server.base);
        assert_eq!(
            http.post(url)
                .json(&3600)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            202
        );
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = http.get(format!(
            "{}instances?runtimeStatus=Running,Pending&instanceIdPrefix=wait-&top=2",
            server.base
        ));
        if let Some(t) = &token {
            request = request.header("x-ms-continuation-token", t);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        token = reply
            .headers()
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = reply.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|s| s["instanceId"].as_str().unwrap().to_owned()),
        );
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("wait-{i}")).collect::<Vec<_>>()
    );

    // Purge.
    let purge = http
        .delete(format!("{}instances/job-7", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status().as_u16(), 200);
    assert_eq!(
        purge.json::<Value>().await.unwrap(),
        json!({"instancesDeleted": 1})
    );
    assert_eq!(
        http.get(format!("{}instances/job-7", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    // And without the key: 401.
    let anonymous = reqwest::get(format!("{}instances", server.base))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_loses_nothing() {
    let mut server = serve("sigterm").await;
    let http = http();
    let mut status_urls = Vec::new();
    for i in 0..6 {
        let input = json!({"files": (0..20).map(|f| format!("landing/{i}-{f}.csv")).collect::<Vec<_>>(), "pause_ms": 500});
        let reply = http
            .post(format!("{}orchestrators/demo/run-{i}", server.base))
            .json(&input)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 202);
        let check: Value = reply.json().await.unwrap();
        status_urls.push(check["statusQueryGetUri"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
    // A new worker (new port) finishes every instance.
    let restarted = serve("sigterm").await;
    for url in status_urls {
        let url = url.replace(&server.base, &restarted.base);
        let done = poll(&http, &url).await;
        assert_eq!(done["runtimeStatus"], "Completed", "{url}");
        assert_eq!(done["output"]["sizes"].as_array().unwrap().len(), 20);
    }
}

/// The CLI's exit codes tell a script how a run ended, and status shows the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_exits_non_zero_unless_completed_and_status_shows_the_input() {
    let _server = serve("cliexit").await;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowforge"))
            .args(args)
            .env(
                "AzureWebJobsStorage",
                flowforge_azure::azurite::shared().connection_string(),
            )
            .env("FLOWFORGE_TASK_HUB", "cliexit")
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let bad = r#"{"workflow_id":"w","job_id":"j","dataset":"no_such_dataset"}"#;
    let failed = cli(&[
        "start",
        "medallion",
        "--id",
        "cli-bad",
        "--input",
        bad,
        "--wait",
    ]);
    assert!(!failed.status.success(), "a Failed run exits non-zero");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("ended Failed"), "{stderr}");
    let input = r#"{"files":["a.csv"],"pause_ms":0}"#;
    let ok = cli(&[
        "start", "demo", "--id", "cli-ok", "--input", input, "--wait",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let status = cli(&["status", "cli-ok"]);
    let shown: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(shown["input"], json!({"files": ["a.csv"], "pause_ms": 0}));
}

/// `--open` with a key set is refused, not silently ignored.
#[test]
fn open_with_a_key_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowforge"))
        .args(["worker", "--in-memory", "--open"])
        .env("FLOWFORGE_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--open"), "{stderr}");
}
