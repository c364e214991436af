//! The benchmark. Reports a markdown table and writes JSON; figures, not pass/fail.
//!
//! ```text
//! cargo run --release -p flowforge-bench --bin bench -- [--backend memory|azurite|both]
//!     [--runs 3] [--flights PATH] [--idle-secs 60] [--json bench-results.json]
//!     [--telemetry-cost]
//! ```

mod latency;
mod measure;
mod recovery;
mod replay;
mod scenarios;
mod task_hub;
mod telemetry_cost;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use flowforge_azure::azurite::Azurite;
use flowforge_azure::AzureBackend;
use flowforge_orchestrator::backend::{Backend, MemoryBackend};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "FlowForge Durable benchmark")]
struct Args {
    /// Which backends: memory, azurite or both; `none` runs only the scenarios of the
    /// `--flowforge` binary (cold start, crash recovery), on Azurite.
    #[arg(long, default_value = "both")]
    backend: String,
    /// Runs per scenario on the in-memory backend (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs per scenario on Azurite.
    #[arg(long, default_value_t = 3)]
    azurite_runs: usize,
    /// The full flights CSV for the medallion scenario (skipped without it).
    #[arg(long)]
    flights: Option<PathBuf>,
    /// Seconds to watch an idle worker's storage transactions.
    #[arg(long, default_value_t = 120)]
    idle_secs: u64,
    /// The `flowforge` binary for the cold-start and crash-recovery scenarios.
    #[arg(long)]
    flowforge: Option<PathBuf>,
    /// Only these scenarios (comma-separated: chain, fan_out, fan_out_10k, fan_out_logged,
    /// many, events, idle, task_hub, replay; with `--flowforge`: latency, cold_start,
    /// recovery); all when absent.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Export traces and metrics (OTLP/HTTP protobuf, as in production) to a local
    /// receiver in this process while the scenarios run.
    #[arg(long)]
    telemetry: bool,
    /// Also measure what telemetry costs: chain and fan-out, in two child runs of this
    /// benchmark, export off and on, side by side.
    #[arg(long)]
    telemetry_cost: bool,
    /// Instances of the grown task hub (`task_hub`, Azurite; at least 2,000).
    #[arg(long, default_value_t = 10_000)]
    hub_instances: u64,
    /// Keep the status index in the Azurite hubs (`FLOWFORGE_STATUS_INDEX`).
    #[arg(long)]
    status_index: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Quiet unless RUST_LOG says otherwise (the engine's own logs, for investigating a run).
    // The run-log layer as the binary installs it: the logging scenario measures capture.
    use tracing_subscriber::prelude::*;
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        );
    tracing_subscriber::registry()
        .with(format)
        .with(flowforge_orchestrator::run_logs::RunLogLayer::new().at_info())
        .init();
    // Before any scenario: the engine's instruments bind to the provider of their first use.
    let telemetry = if args.telemetry {
        Some(telemetry_cost::export_locally().await?)
    } else {
        None
    };
    let mut rows: Vec<Value> = Vec::new();
    let azurite = if args.backend != "memory" {
        Some(Azurite::start().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    if let Some(a) = &azurite {
        // Lets the scenarios read Azurite's CPU time.
        if let Some(pid) = a.server_pid() {
            std::env::set_var("FLOWFORGE_BENCH_AZURITE", pid.to_string());
        }
    }
    let mut hub = 0;
    let mut fresh = |kind: &str| {
        hub += 1;
        let kind = kind.to_owned();
        let config = azurite.as_ref().map(|a| {
            let mut config = a.config(&format!("bench{hub}"));
            config.status_index = args.status_index;
            config
        });
        async move {
            let hub = match (kind.as_str(), config) {
                ("azurite", Some(config)) => scenarios::Hub {
                    engine: AzureBackend::connect(config.clone()).await?,
                    observer: AzureBackend::connect(config).await?,
                },
                _ => {
                    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
                    scenarios::Hub {
                        engine: memory.clone(),
                        observer: memory,
                    }
                }
            };
            anyhow::Ok(hub)
        }
    };
    let backends: Vec<&str> = match args.backend.as_str() {
        "memory" => vec!["memory"],
        "azurite" => vec!["azurite"],
        // Only the scenarios of a `flowforge` binary (cold start, crash recovery) on Azurite.
        "none" => vec![],
        _ => vec!["memory", "azurite"],
    };
    let wanted = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    for kind in &backends {
        let azurite_pid = azurite.as_ref().and_then(|a| a.server_pid());
        let runs = if *kind == "azurite" {
            args.azurite_runs.max(1)
        } else {
            args.runs.max(1)
        };
        for (key, label, n) in scenarios::ENGINE {
            if !wanted(key) {
                continue;
            }
            let mut results = Vec::new();
            for _ in 0..runs {
                eprintln!("running {key} on {kind}");
                results.push(scenarios::engine(key, fresh(kind).await?, n).await?);
            }
            rows.push(measure::median_row(kind, label, results, azurite_pid));
        }
        if *kind == "azurite" && wanted("task_hub") {
            eprintln!(
                "running task_hub on azurite ({} instances)",
                args.hub_instances
            );
            let engine = fresh(kind).await?.engine;
            let n = args.hub_instances.max(2000);
            rows.extend(task_hub::task_hub(engine, n, runs, args.status_index).await?);
        }
        if *kind == "azurite" && wanted("idle") {
            rows.push(scenarios::idle(fresh(kind).await?.engine, args.idle_secs).await?);
        }
    }
    if wanted("replay") {
        eprintln!("running replay of long histories");
        rows.extend(replay::replay_curve(args.runs));
    }
    if let (Some(flowforge), Some(azurite)) = (&args.flowforge, &azurite) {
        if wanted("latency") {
            eprintln!("running the web app's latency");
            rows.extend(latency::web_app_latency(flowforge, azurite, 50).await?);
        }
        if wanted("cold_start") {
            rows.push(scenarios::cold_start(flowforge, &azurite.connection_string()).await?);
        }
        if wanted("recovery") {
            rows.extend(recovery::recovery(flowforge, azurite).await?);
        }
    }
    if let Some(flights) = &args.flights {
        eprintln!("running the medallion on {}", flights.display());
        rows.extend(scenarios::medallion(flights, args.azurite_runs).await?);
    }
    if let Some((telemetry, receiver)) = telemetry {
        telemetry.shutdown();
        let (requests, bytes) = receiver.received();
        eprintln!("telemetry: {requests} exports, {bytes} bytes received");
    }
    if args.telemetry_cost {
        rows.extend(telemetry_cost::compare(
            &args.backend,
            args.runs.max(1),
            args.azurite_runs.max(1),
        )?);
    }
    measure::print_table(&rows);
    std::fs::write(
        &args.json,
        serde_json::to_string_pretty(&json!({"results": rows}))?,
    )?;
    println!("\nJSON written to {}", args.json.display());
    Ok(())
}
