//! `flowforge`: the one binary of FlowForge Durable.
//!
//! - `flowforge pipeline`: the main job — the medallion pipeline on a local Azurite;
//! - `flowforge demo`: a demonstration orchestration on the in-memory backend, printing
//!   its status and history;
//! - `flowforge worker`: the standalone mode (management API + queue-polling workers);
//! - `flowforge start|status|list|raise-event|terminate|suspend|resume|restart|purge|delete-task-hub`:
//!   client commands against the task hub's storage.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use flowforge::client_command::{self, ClientCommand};
use flowforge::lake_command::{self, LakeCommand};
use flowforge::pipeline_command::{self, PipelineArgs};
use flowforge::serve_command::{self, ServeArgs};
use flowforge::storage::StorageArgs;
use flowforge::worker_command::{self, WorkerArgs};
use flowforge::{app_registry, demo};
use flowforge_orchestrator::client::StatusOptions;
use flowforge_orchestrator::prelude::*;

#[derive(Parser)]
#[command(
    name = "flowforge",
    version,
    about = "FlowForge Durable: durable orchestrations on Azure Storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demonstration orchestration (fan-out with a retry and a timer) in memory.
    Demo {
        /// How many files to fan out over.
        #[arg(long, default_value_t = 8)]
        files: usize,
        /// Pause (durable timer) before the summary, in milliseconds.
        #[arg(long, default_value_t = 300)]
        pause_ms: u64,
    },
    /// The main job: the medallion pipeline end to end on a local Azurite it starts itself.
    Pipeline(PipelineArgs),
    /// The Azure Functions custom handler (started by the Functions host).
    Serve(ServeArgs),
    /// Run the management API and the workers on a task hub (standalone mode).
    Worker(WorkerArgs),
    /// The lake's Delta tables, and the Synapse Serverless SQL over them.
    #[command(subcommand)]
    Lake(LakeCommand),
    /// Client operations on a task hub.
    #[command(flatten)]
    Client(ClientCommand),
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    return_freed_memory_promptly();
    // At least four workers even on small hosts: a long replay is synchronous code that
    // holds its thread, and the handler must still answer the host meanwhile.
    let workers = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run())
}

/// glibc gives each thread that allocates concurrently its own arena (up to 8 per core) and
/// keeps freed pages in them: polars' worker threads left the medallion's peak resident
/// memory near 470 MiB. Two arenas: about 350 MiB, no measurable loss of speed here.
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before any thread starts.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// mimalloc keeps freed pages for 10 ms, so polars' short-lived frames (bronze's text
/// pieces, silver's slices) pile up: the medallion on the full flights file peaked at
/// 410–470 MiB. With each stage's threads collecting their freed blocks once its frame
/// work is done (`set_memory_release`), 210–230 MiB. Purging at once, though, hands each
/// piece's pages back just before the next piece asks for them again, and touching a
/// fresh page is the expensive part on a VM: freed pages are kept 20 ms (one piece to the
/// next). mimalloc is built without transparent huge pages (the `no_thp` feature): with
/// them, a small allocation in a fresh span zeroed a whole 2 MiB page, and the medallion
/// peaked at 221–255 MiB instead of 181–201 at the same time (4 December, eighth
/// session). On a host whose kernel gives huge pages to every process (THP `always`
/// rather than the usual `madvise`), `MIMALLOC_ALLOW_THP=0` in the environment makes
/// mimalloc turn them off for the process at start. `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
fn return_freed_memory_promptly() {
    #[cfg(target_env = "musl")]
    {
        // The option number of mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49, pinned
        // in Cargo.lock): the crate exposes `mi_option_set` only with v2's numbering.
        const PURGE_DELAY: std::ffi::c_int = 15;
        extern "C" {
            fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: sets a tuning option of the linked mimalloc; any value is valid.
            #[allow(unsafe_code)]
            unsafe {
                mi_option_set(PURGE_DELAY, 20);
            }
        }
        flowforge_activities::medallion::set_memory_release(collect_freed_blocks);
    }
}

/// Collects the calling thread's freed blocks (those other threads freed included) and
/// returns emptied pages to the system.
#[cfg(target_env = "musl")]
fn collect_freed_blocks() {
    extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect only tidies the calling thread's heap of the linked mimalloc.
    #[allow(unsafe_code)]
    unsafe {
        mi_collect(true)
    }
}

/// musl's allocator is slow and fragments under polars' threads; the static build (the
/// Functions package) uses mimalloc instead.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,flowforge=info,flowforge_orchestrator=info".into());
    // The formatting layer keeps its own filter (RUST_LOG); the run-log layer captures
    // what activities log at INFO and above whatever RUST_LOG says (see `run_logs`).
    use flowforge_orchestrator::run_logs::RunLogLayer;
    use tracing_subscriber::prelude::*;
    if matches!(cli.command, Command::Serve(_)) {
        // Under the Functions host every stderr line is logged as an Error: JSON lines on
        // stdout, without colours; only errors go to stderr.
        use tracing_subscriber::fmt::writer::MakeWriterExt;
        let errors_to_stderr = std::io::stderr
            .with_max_level(tracing::Level::ERROR)
            .or_else(std::io::stdout);
        let format = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .with_writer(errors_to_stderr)
            .with_filter(filter);
        tracing_subscriber::registry()
            .with(format)
            .with(RunLogLayer::new().at_info())
            .init();
    } else {
        // Colours only on a terminal: log files and container logs get plain lines.
        use std::io::IsTerminal as _;
        let format = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter);
        tracing_subscriber::registry()
            .with(format)
            .with(RunLogLayer::new().at_info())
            .init();
    }
    let telemetry =
        flowforge_telemetry::TelemetrySettings::from_env(&|name| std::env::var(name).ok())
            .and_then(|settings| flowforge_telemetry::Telemetry::install(&settings))?;
    let result = run_command(cli, &telemetry).await;
    telemetry.shutdown();
    result
}

async fn run_command(cli: Cli, telemetry: &flowforge_telemetry::Telemetry) -> anyhow::Result<()> {
    let observe_storage = telemetry.metrics_on();
    match cli.command {
        Command::Demo { files, pause_ms } => run_demo(files, pause_ms).await,
        Command::Worker(args) => {
            let lake = cli.storage.lake()?;
            if let Some(lake) = &lake {
                // The medallion's containers (landing, bronze, silver, gold), if missing.
                lake.ensure_containers()
                    .await
                    .map_err(|f| anyhow::anyhow!("creating the lake's containers: {f}"))?;
            }
            let registry = app_registry(lake)?;
            worker_command::run(args, cli.storage, registry, observe_storage).await
        }
        Command::Pipeline(args) => pipeline_command::run(args, cli.storage).await,
        Command::Serve(args) => serve_command::run(args, cli.storage, observe_storage).await,
        Command::Lake(command) => lake_command::run(command, cli.storage).await,
        Command::Client(command) => client_command::run(command, cli.storage).await,
    }
}

async fn run_demo(files: usize, pause_ms: u64) -> anyhow::Result<()> {
    let backend = Arc::new(MemoryBackend::new());
    let worker = Worker::new(backend.clone(), demo::registry(), WorkerOptions::default()).start();
    let client = Client::new(backend.clone());
    let mut names: Vec<String> = (1..=files)
        .map(|i| format!("landing/file-{i:03}.csv"))
        .collect();
    names.push("flaky-file.csv".into());
    let input = demo::DemoInput {
        files: names,
        pause_ms,
    };
    let id = client
        .start("demo", StartOptions::with_instance_id("demo-1"), &input)
        .await
        .context("starting the demo orchestration")?;
    println!("started instance {id}");
    let done = client
        .wait_for_completion(&id, Duration::from_secs(60))
        .await?;
    let status = client
        .status(
            &id,
            StatusOptions {
                show_history: true,
                show_history_output: true,
                show_input: false,
            },
        )
        .await?;
    println!("runtime status: {}", done.runtime_status);
    println!("output: {}", done.output);
    println!("custom status: {}", done.custom_status);
    println!(
        "history ({} events):",
        status.history.as_ref().map_or(0, Vec::len)
    );
    for event in status.history.unwrap_or_default() {
        println!(
            "  #{:<3} {}  {}",
            event.seq,
            event.timestamp.format("%H:%M:%S%.3f"),
            describe(&event.kind)
        );
    }
    let transactions: u64 = backend.transaction_counts().values().sum();
    println!("backend operations: {transactions}");
    worker.shutdown().await;
    if done.runtime_status != RuntimeStatus::Completed {
        anyhow::bail!("the demo orchestration ended {}", done.runtime_status);
    }
    Ok(())
}

fn describe(kind: &flowforge_orchestrator::history::EventKind) -> String {
    let json = serde_json::to_value(kind).unwrap_or_default();
    let mut text = json.to_string();
    if text.len() > 110 {
        text.truncate(107);
        text.push_str("...");
    }
    text
}
