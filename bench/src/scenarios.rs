//! The scenarios. Each builds its own registry and worker on a fresh task hub.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowforge_orchestrator::backend::Backend;
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;
use serde_json::{json, Value};

use crate::measure::{self, RunResult};

fn registry() -> Registry {
    let registry = flowforge_orchestrator::testing::fan_out(Registry::new(), "fan", "noop");
    flowforge_orchestrator::testing::fan_out(registry, "fan_logged", "logged")
        .orchestration("chain", |ctx: OrchestrationContext, n: u64| async move {
            let mut sum = 0;
            for i in 0..n {
                sum += ctx.call_activity::<u64>("noop", i).await?;
            }
            Ok(sum)
        })
        .orchestration("one", |ctx: OrchestrationContext, i: u64| async move {
            ctx.call_activity::<u64>("noop", i).await
        })
        .orchestration("listen", |ctx: OrchestrationContext, n: u64| async move {
            for _ in 0..n {
                let _: Value = ctx.wait_for_event("tick").await?;
            }
            Ok(n)
        })
        .activity("noop", |_ctx, i: u64| async move { Ok(i) })
        .activity("logged", |_ctx, i: u64| async move {
            tracing::info!(i, "working on item {i}");
            Ok(i)
        })
}

fn options() -> WorkerOptions {
    WorkerOptions {
        min_idle_poll: Duration::from_millis(1),
        max_idle_poll: Duration::from_millis(50),
        orchestration_concurrency: 64,
        activity_concurrency: 64,
        ..WorkerOptions::default()
    }
}

/// A task hub seen through two connections: the engine's (worker and the client that
/// starts instances and raises events), whose storage transactions are counted, and the
/// observer's (the benchmark waiting for results), whose are not.
pub struct Hub {
    /// The engine's connection.
    pub engine: Arc<dyn Backend>,
    /// The benchmark's own connection for status polling.
    pub observer: Arc<dyn Backend>,
}

async fn azurite_cpu() -> Option<Duration> {
    let pid = std::env::var("FLOWFORGE_BENCH_AZURITE")
        .ok()?
        .parse()
        .ok()?;
    measure::cpu_time(pid)
}

/// Runs one instance of `name` to completion; wall time from the start call to the
/// observer seeing it finished (its last commit included, ±5 ms of polling), storage
/// transactions of the engine's connection — `with_shutdown`: counted after the worker's
/// shutdown, so that work it does after the run (writing run logs) is in.
async fn one_instance(
    hub: Hub,
    name: &str,
    input: Value,
    units: usize,
    with_shutdown: bool,
) -> anyhow::Result<RunResult> {
    let backend = hub.engine;
    let worker = Worker::new(backend.clone(), registry(), options()).start();
    let client = Client::new(backend.clone());
    let observer = Client::new(hub.observer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = backend.transaction_counts();
    let cpu_before = azurite_cpu().await;
    let started = Instant::now();
    let id = client
        .start_value(name, StartOptions::default(), input)
        .await?;
    let done = wait(&observer, &id).await?;
    let wall = started.elapsed();
    let mut after = backend.transaction_counts();
    let cpu_after = azurite_cpu().await;
    worker.shutdown().await;
    if with_shutdown {
        after = backend.transaction_counts();
    }
    anyhow::ensure!(
        done.runtime_status == RuntimeStatus::Completed,
        "{name} ended {}",
        done.runtime_status
    );
    Ok(RunResult {
        wall,
        units,
        latencies: Vec::new(),
        transactions: measure::delta(&before, &after),
        azurite_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
    })
}

async fn wait(client: &Client, id: &str) -> anyhow::Result<InstanceStatus> {
    loop {
        let status = client.status(id, StatusOptions::default()).await?;
        if status.runtime_status.is_terminal() {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The engine scenarios: key (for `--scenarios`), label, size.
pub const ENGINE: [(&str, &str, u64); 6] = [
    ("chain", "sequential chain of 100", 100),
    ("fan_out", "fan-out/fan-in of 1,000", 1000),
    ("fan_out_10k", "fan-out/fan-in of 10,000", 10_000),
    (
        "fan_out_logged",
        "fan-out/fan-in of 1,000, each logging a line",
        1000,
    ),
    ("many", "1,000 orchestrations of 1 activity", 1000),
    ("events", "500 external events into one instance", 500),
];

/// Runs the engine scenario `key` of size `n` on a fresh hub.
pub async fn engine(key: &str, hub: Hub, n: u64) -> anyhow::Result<RunResult> {
    match key {
        "chain" => chain(hub, n).await,
        "fan_out" | "fan_out_10k" => fan_out(hub, n).await,
        "fan_out_logged" => fan_out_logged(hub, n).await,
        "many" => many_instances(hub, n).await,
        "events" => events(hub, n).await,
        other => anyhow::bail!("no engine scenario '{other}'"),
    }
}

/// A chain of `n` no-op activities in one instance.
pub async fn chain(hub: Hub, n: u64) -> anyhow::Result<RunResult> {
    one_instance(hub, "chain", json!(n), n as usize, false).await
}

/// A fan-out/fan-in of `n` no-op activities in one instance.
pub async fn fan_out(hub: Hub, n: u64) -> anyhow::Result<RunResult> {
    one_instance(hub, "fan", json!(n), n as usize, false).await
}

/// A fan-out/fan-in of `n` activities that each log a line (the run-log capture's cost:
/// compare with [`fan_out`]); transactions include writing the logs.
pub async fn fan_out_logged(hub: Hub, n: u64) -> anyhow::Result<RunResult> {
    one_instance(hub, "fan_logged", json!(n), n as usize, true).await
}

/// `m` instances of one activity each, started together.
pub async fn many_instances(hub: Hub, m: u64) -> anyhow::Result<RunResult> {
    let backend = hub.engine;
    let observer = Client::new(hub.observer);
    let worker = Worker::new(backend.clone(), registry(), options()).start();
    let client = Client::new(backend.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = backend.transaction_counts();
    let cpu_before = azurite_cpu().await;
    let started_at = chrono::Utc::now();
    let mut ids = Vec::new();
    for first in (0..m).step_by(50) {
        let handles: Vec<_> = (first..(first + 50).min(m))
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .start_value("one", StartOptions::default(), json!(i))
                        .await
                })
            })
            .collect();
        for handle in handles {
            ids.push(handle.await??);
        }
    }
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(wait(&observer, id).await?);
    }
    // From the first start call to the last completing episode's decision (its commit, a
    // single small transaction, follows within milliseconds): waiting for 1,000 statuses
    // one by one would add the observer's own reads to the figure.
    let last = statuses.iter().map(|s| s.last_updated_time).max();
    let wall = last
        .and_then(|last| (last - started_at).to_std().ok())
        .unwrap_or_default();
    let after = backend.transaction_counts();
    let cpu_after = azurite_cpu().await;
    worker.shutdown().await;
    // Start-to-complete per instance from its own timestamps: creation (the start call)
    // to the completing episode's decision (its commit follows within milliseconds).
    let latencies = statuses
        .iter()
        .filter_map(|s| (s.last_updated_time - s.created_time).to_std().ok())
        .collect();
    Ok(RunResult {
        wall,
        units: m as usize,
        latencies,
        transactions: measure::delta(&before, &after),
        azurite_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
    })
}

/// `k` external events raised into one waiting instance.
pub async fn events(hub: Hub, k: u64) -> anyhow::Result<RunResult> {
    let backend = hub.engine;
    let observer = Client::new(hub.observer);
    let worker = Worker::new(backend.clone(), registry(), options()).start();
    let client = Client::new(backend.clone());
    let id = client
        .start_value("listen", StartOptions::default(), json!(k))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = backend.transaction_counts();
    let started = Instant::now();
    for i in 0..k {
        client.raise_event(&id, "tick", &i).await?;
    }
    let done = wait(&observer, &id).await?;
    let wall = started.elapsed();
    let after = backend.transaction_counts();
    worker.shutdown().await;
    anyhow::ensure!(
        done.runtime_status == RuntimeStatus::Completed,
        "listen ended {}",
        done.runtime_status
    );
    Ok(RunResult {
        wall,
        units: k as usize,
        latencies: Vec::new(),
        transactions: measure::delta(&before, &after),
        azurite_cpu: None,
    })
}

/// Storage transactions of an idle worker with the production polling settings, after it
/// has settled into its idle mode (the warm period shortened so the bench need not wait
/// five minutes for it).
pub async fn idle(backend: Arc<dyn Backend>, secs: u64) -> anyhow::Result<Value> {
    let options = WorkerOptions {
        idle_warm_period: Duration::from_secs(20),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend.clone(), registry(), options).start();
    // Past the warm period and the last poll scheduled before it ended.
    tokio::time::sleep(Duration::from_secs(75)).await;
    let before = backend.transaction_counts();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = backend.transaction_counts();
    worker.shutdown().await;
    let idle = measure::transactions(&measure::delta(&before, &after));
    let per_hour = idle as f64 * 3600.0 / secs as f64;
    Ok(
        json!({"backend": "azurite", "scenario": "idle worker (wake signals looked at every 40 s, queues swept hourly)",
              "per_second": null, "wall_s": secs, "notes": format!("{idle} transactions in {secs} s → {per_hour:.0} per hour")}),
    )
}

/// `flowforge serve`: process start to first answer on `GET /`, and idle resident memory.
pub async fn cold_start(flowforge: &Path, connection: &str) -> anyhow::Result<Value> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let started = Instant::now();
        let mut child = Command::new(flowforge)
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("AzureWebJobsStorage", connection)
            .env("FLOWFORGE_TASK_HUB", "coldstart")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let ready = loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1") {
                    break started.elapsed();
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("serve did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(measure::memory_mib(Some(child.id())).0);
        child.kill()?;
        child.wait()?;
        times.push(ready);
    }
    times.sort();
    rss.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    Ok(
        json!({"backend": "azurite", "scenario": "cold start of flowforge serve", "wall_s": median.as_secs_f64(), "per_second": null,
              "notes": format!("start → first answer {:.1} ms (median of 5); idle RSS {:.1} MiB", median.as_secs_f64() * 1000.0, rss[rss.len() / 2])}),
    )
}

/// One medallion run: start to completion, the stages, peak resident memory.
struct MedallionRun {
    completion: f64,
    peak_mib: f64,
    stages: Vec<String>,
}

/// The medallion pipeline on the full flights file, in a child process (`flowforge
/// pipeline --full`), sampling its peak memory.
async fn medallion_once(flights: &Path) -> anyhow::Result<MedallionRun> {
    let flowforge =
        std::env::var("FLOWFORGE_BENCH_BIN").unwrap_or_else(|_| "target/release/flowforge".into());
    let mut child = Command::new(&flowforge)
        .args(["pipeline", "--full"])
        .arg(flights)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    while child.try_wait()?.is_none() {
        peak = peak.max(measure::memory_mib(Some(pid)).1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let stage = |line: &str| line.strip_prefix("stage ").map(str::to_owned);
    let stages: Vec<String> = out.lines().filter_map(stage).collect();
    let completion = stages
        .iter()
        .find_map(|s| s.strip_prefix("orchestration (start to completion): "))
        .and_then(|s| s.trim_end_matches(" s").parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("the pipeline printed no completion time:\n{out}"))?;
    Ok(MedallionRun {
        completion,
        peak_mib: peak,
        stages,
    })
}

/// DuckDB doing the medallion's work on local files (`bench/duckdb/medallion.py`), with the
/// Python that has `duckdb` (`FLOWFORGE_BENCH_PYTHON`): seconds and peak memory.
fn duckdb_once(python: &str, flights: &Path) -> anyhow::Result<(f64, f64)> {
    let scratch =
        std::env::temp_dir().join(format!("flowforge-bench-duckdb-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb/medallion.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(flights)
        .arg(&scratch)
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    while child.try_wait()?.is_none() {
        peak = peak.max(measure::memory_mib(Some(pid)).1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let answer: Value = serde_json::from_str(out.trim())
        .map_err(|e| anyhow::anyhow!("DuckDB's script answered {out:?}: {e}"))?;
    let seconds = answer["seconds"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("DuckDB's script gave no time: {out}"))?;
    Ok((seconds, peak))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The medallion `runs` times, and DuckDB the same work in between (when
/// `FLOWFORGE_BENCH_PYTHON` names a Python with `duckdb`): medians, and the ratio of the
/// two in the same sitting.
pub async fn medallion(flights: &Path, runs: usize) -> anyhow::Result<Vec<Value>> {
    let python = std::env::var("FLOWFORGE_BENCH_PYTHON").ok();
    let mut ours = Vec::new();
    let mut duck = Vec::new();
    for _ in 0..runs.max(1) {
        ours.push(medallion_once(flights).await?);
        if let Some(python) = &python {
            duck.push(duckdb_once(python, flights)?);
        }
    }
    let completion = median(ours.iter().map(|r| r.completion).collect());
    let peak = median(ours.iter().map(|r| r.peak_mib).collect());
    let typical = ours
        .iter()
        .find(|r| r.completion == completion)
        .map(|r| r.stages.join("; "))
        .unwrap_or_default();
    let all: Vec<String> = ours
        .iter()
        .map(|r| format!("{:.2} s / {:.0} MiB", r.completion, r.peak_mib))
        .collect();
    let mut rows = vec![
        json!({"backend": "azurite", "scenario": "medallion on the full flights file (336,776 rows)",
        "wall_s": completion, "per_second": null, "peak_mib": peak,
        "notes": format!("start to completion, median of {}; peak RSS {peak:.0} MiB (median; the whole pipeline process); runs: {}; median run's stages: {typical}", ours.len(), all.join(", "))}),
    ];
    if !duck.is_empty() {
        let seconds = median(duck.iter().map(|d| d.0).collect());
        let duck_peak = median(duck.iter().map(|d| d.1).collect());
        rows.push(json!({"backend": "local files", "scenario": "DuckDB: the medallion's work (bench/duckdb/medallion.py)",
            "wall_s": seconds, "per_second": null, "peak_mib": duck_peak,
            "notes": format!("median of {} runs interleaved with ours; peak RSS {duck_peak:.0} MiB (the Python process); ours / DuckDB = {:.2} in time, {:.2} in memory", duck.len(), completion / seconds, peak / duck_peak)}));
    }
    Ok(rows)
}
