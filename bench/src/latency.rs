//! The web app's view of latency: Durable Functions' `hello_sequence` (three activities one
//! after another) started over the HTTP API of a `flowforge worker` on Azurite and followed
//! as the 202 answer says (`GET Location` until it is no longer 202; the `Location` a 202
//! hands out long-polls), from the start request to the finished status in hand — alone,
//! then under 100 concurrent clients.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowforge_azure::azurite::Azurite;
use serde_json::{json, Value};

/// A `flowforge worker` child serving the API on a loopback port, killed on drop.
struct Worker {
    child: std::process::Child,
    base: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker(flowforge: &Path, azurite: &Azurite) -> anyhow::Result<Worker> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(flowforge)
        .args(["worker", "--open", "--listen", &format!("127.0.0.1:{port}")])
        .env("AzureWebJobsStorage", azurite.connection_string())
        .env(
            "FLOWFORGE_TASK_HUB",
            format!("latency{}", std::process::id()),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Worker {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

/// One run: start, follow `Location` until the end; start to end.
async fn one_run(http: &reqwest::Client, base: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut reply = http
        .post(format!("{base}/api/orchestrators/hello_sequence"))
        .json(&Value::Null)
        .send()
        .await?;
    while reply.status() == reqwest::StatusCode::ACCEPTED {
        let location = reply
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("a 202 without Location"))?
            .to_owned();
        reply = http.get(location).send().await?;
    }
    let status = reply.status();
    let body: Value = reply.json().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK && body["runtimeStatus"] == "Completed",
        "the run ended {status}: {body}"
    );
    anyhow::ensure!(
        body["output"] == json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"]),
        "unexpected output {body}"
    );
    Ok(started.elapsed())
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn row(scenario: &str, mut latencies: Vec<Duration>, wall: Duration, notes: &str) -> Value {
    latencies.sort();
    json!({"backend": "azurite", "scenario": scenario, "wall_s": wall.as_secs_f64(),
           "per_second": latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
           "p50_ms": percentile_ms(&latencies, 0.50), "p95_ms": percentile_ms(&latencies, 0.95),
           "p99_ms": percentile_ms(&latencies, 0.99), "notes": notes})
}

/// Unloaded: `runs` runs one after another. Loaded: 100 clients at once, 3 runs each.
pub async fn web_app_latency(
    flowforge: &Path,
    azurite: &Azurite,
    runs: usize,
) -> anyhow::Result<Vec<Value>> {
    let worker = start_worker(flowforge, azurite)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    // Ready when a start is answered; these first runs also warm the connections.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match one_run(&http, &worker.base).await {
            Ok(_) => break,
            Err(error) if Instant::now() > deadline => {
                anyhow::bail!("the worker did not serve a run within 60 s: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    for _ in 0..5 {
        one_run(&http, &worker.base).await?;
    }
    let started = Instant::now();
    let mut alone = Vec::new();
    for _ in 0..runs {
        alone.push(one_run(&http, &worker.base).await?);
    }
    let alone_wall = started.elapsed();
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let http = http.clone();
            let base = worker.base.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..3 {
                    mine.push(one_run(&http, &base).await?);
                }
                anyhow::Ok(mine)
            })
        })
        .collect();
    let mut loaded = Vec::new();
    for client in clients {
        loaded.extend(client.await??);
    }
    let loaded_wall = started.elapsed();
    let notes = "hello_sequence (3 activities) over the HTTP API of `flowforge worker`: POST, then GET Location until 200; start to finished status in hand";
    Ok(vec![
        row(
            "web app latency, one client",
            alone,
            alone_wall,
            &format!("{notes}; {runs} runs one after another"),
        ),
        row(
            "web app latency, 100 concurrent clients",
            loaded,
            loaded_wall,
            &format!("{notes}; 100 clients × 3 runs"),
        ),
    ])
}
