//! Crash recovery: a `flowforge worker` process killed with SIGKILL in the middle of a run,
//! a new one started at once; the figure is the time from the kill until the run makes
//! progress again (its history grows), which the lease bounds (`--lock-timeout-secs`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowforge_azure::azurite::Azurite;
use flowforge_azure::AzureBackend;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use serde_json::{json, Value};

/// A worker process, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(
    flowforge: &Path,
    connection: &str,
    hub: &str,
    (lease_secs, idle_poll_secs, warm_secs): (u64, u64, u64),
) -> anyhow::Result<Worker> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(Worker(
        Command::new(flowforge)
            .args(["worker", "--open", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--lock-timeout-secs", &lease_secs.to_string()])
            .args(["--max-idle-poll-secs", &idle_poll_secs.to_string()])
            .args(["--idle-warm-secs", &warm_secs.to_string()])
            .env("AzureWebJobsStorage", connection)
            .env("FLOWFORGE_TASK_HUB", hub)
            .env("FLOWFORGE_HARNESS_ORCHESTRATIONS", "1")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

async fn history_len(client: &Client, id: &str) -> anyhow::Result<(usize, RuntimeStatus)> {
    let options = StatusOptions::with_history();
    let status = client.status(id, options).await?;
    Ok((status.history.map_or(0, |h| h.len()), status.runtime_status))
}

/// Kills the worker of a 60-step chain once ten steps are done; seconds until the next
/// step lands on a new worker, for the default lease and idle poll ceiling (30 s, 40 s),
/// and short ones (5 s, 5 s), and with a survivor already in its cold idle regime. The new worker is idle when the work surfaces, so the bound
/// is the lease plus its idle poll ceiling (a busy survivor polls within 0.5 s).
pub async fn recovery(flowforge: &Path, azurite: &Azurite) -> anyhow::Result<Vec<Value>> {
    let connection = azurite.connection_string();
    let mut rows = Vec::new();
    // The last: a survivor past its warm period, which polls no queue but sweeps hourly and
    // looks at the wake signals; the lapsing lease's wake signal brings it in.
    for (lease_secs, idle_poll_secs, warm_secs) in [(30, 40, 300), (5, 5, 300), (5, 5, 0)] {
        let settings = (lease_secs, idle_poll_secs, warm_secs);
        let hub = format!("recovery{lease_secs}");
        let client = Client::new(AzureBackend::connect(azurite.config(&hub)).await?);
        let first = worker(flowforge, &connection, &hub, settings)?;
        let id = client
            .start(
                "slow_replay",
                StartOptions::default(),
                &json!({"steps": 60, "block_ms": 20}),
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let at_kill = loop {
            let (len, _) = history_len(&client, &id).await?;
            if len >= 20 {
                break len;
            }
            anyhow::ensure!(Instant::now() < deadline, "the run did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        drop(first); // SIGKILL
        let killed = Instant::now();
        let _second = worker(flowforge, &connection, &hub, settings)?;
        let recovered = loop {
            let (len, status) = history_len(&client, &id).await?;
            if len > at_kill + 2 || status.is_terminal() {
                break killed.elapsed();
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(600),
                "no progress within 10 minutes of the kill"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let done = client
            .wait_for_completion(&id, Duration::from_secs(300))
            .await?;
        anyhow::ensure!(
            done.runtime_status == RuntimeStatus::Completed,
            "run ended {}",
            done.runtime_status
        );
        rows.push(json!({"backend": "azurite", "scenario": format!("recovery after SIGKILL mid-run (lease {lease_secs} s, idle poll {idle_poll_secs} s, warm {warm_secs} s)"),
            "wall_s": recovered.as_secs_f64(), "per_second": null,
            "notes": format!("kill → next step on a new, idle worker {:.1} s (bound: lease {lease_secs} s + idle poll {idle_poll_secs} s)", recovered.as_secs_f64())}));
    }
    Ok(rows)
}
