//! `flowforge serve`: start-up of the custom handler.

use clap::Args;
use tracing::{info, warn};

use crate::host::host_json::HostLimits;
use crate::host::{self, HostState};
use flowforge_orchestrator::runtime::{HostOptions, WorkerOptions};

use crate::shutdown::shutdown_signal;
use crate::storage::StorageArgs;

/// Settings of the custom handler (the host sets the port).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on, on 127.0.0.1 (the host sets `FUNCTIONS_CUSTOMHANDLER_PORT`).
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT")]
    pub port: Option<u16>,
    /// The folder of the app's host.json, whose `functionTimeout` and
    /// `extensions.queues.maxDequeueCount` the handler honours (the host sets
    /// `FUNCTIONS_APP_ROOT_PATH`; default: the working directory).
    #[arg(long, env = "FUNCTIONS_APP_ROOT_PATH")]
    pub app_root: Option<std::path::PathBuf>,
    /// Overrides host.json's `maxDequeueCount`; the engine dead-letters a message one
    /// delivery before the host would.
    #[arg(long, env = "FLOWFORGE_HOST_MAX_DEQUEUE_COUNT")]
    pub host_max_dequeue_count: Option<u32>,
    /// Overrides host.json's `functionTimeout`, in seconds.
    #[arg(long, env = "FLOWFORGE_FUNCTION_TIMEOUT_SECS")]
    pub function_timeout_secs: Option<u64>,
    /// Activities that run at once in this handler (heavy activities share the memory).
    /// Matches host.json's `batchSize + newBatchThreshold` (16 + 8): lower both together,
    /// or invocations wait here for a slot while their `functionTimeout` runs.
    #[arg(long, env = "FLOWFORGE_ACTIVITY_CONCURRENCY", default_value_t = 24)]
    pub activity_concurrency: usize,
    /// On SIGTERM, how long open invocations may take to finish, in seconds; then the
    /// handler exits (the host retries what it did not answer).
    #[arg(long, env = "FLOWFORGE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Purge finished instances past their retention, from the `Retention` timer function
    /// (hourly), e.g. `completed=7d,failed=30d,terminated=30d`.
    #[arg(long, env = "FLOWFORGE_RETENTION", value_parser = crate::worker_command::parse_retention)]
    pub retention: Option<flowforge_orchestrator::retention::RetentionPolicy>,
    /// The schedules to fire from the timer function.
    #[command(flatten)]
    pub schedules: crate::schedules::SchedulesArgs,
}

/// Serves the handler until the host stops it.
pub async fn run(
    args: ServeArgs,
    storage: StorageArgs,
    observe_storage: bool,
) -> anyhow::Result<()> {
    let port = args
        .port
        .or_else(|| {
            std::env::var("FUNCTIONS_HTTPWORKER_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
        })
        .ok_or_else(|| {
            anyhow::anyhow!("no port: the Functions host sets FUNCTIONS_CUSTOMHANDLER_PORT")
        })?;
    let schedules = args.schedules.load()?;
    let retention = args.retention.clone();
    let app_root = args.app_root.clone().unwrap_or_else(|| ".".into());
    let mut limits = HostLimits::read(&app_root, &|name| std::env::var(name).ok())
        .map_err(anyhow::Error::msg)?;
    if let Some(count) = args.host_max_dequeue_count {
        limits.max_dequeue_count = count;
    }
    if let Some(secs) = args.function_timeout_secs {
        limits.function_timeout = std::time::Duration::from_secs(secs);
    }
    let host_options =
        HostOptions::for_function_timeout(limits.max_dequeue_count, limits.function_timeout);
    let worker_options = WorkerOptions {
        activity_concurrency: args.activity_concurrency.max(1),
        ..WorkerOptions::default()
    };
    info!(
        function_timeout_secs = limits.function_timeout.as_secs(),
        invocation_budget_secs = host_options.invocation_budget.as_secs(),
        max_dequeue_count = limits.max_dequeue_count,
        "host limits"
    );
    // Listen first: the host's readiness probe is answered while the storage clients are
    // built (an HTTP client loads the system's TLS roots: tens of milliseconds) and connect.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (ready, lazy) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let connected = async {
            let lake = storage.lake()?;
            if let Some(lake) = &lake {
                lake.ensure_containers()
                    .await
                    .map_err(|f| anyhow::anyhow!("creating the lake's containers: {f}"))?;
            }
            let registry = crate::app_registry(lake)?;
            let backend = storage.connect().await?;
            if observe_storage {
                // Runs as long as the handler: the handle is not kept (dropping a
                // JoinHandle detaches the task).
                drop(flowforge_orchestrator::telemetry::observe_backend(
                    backend.clone(),
                    crate::worker_command::BACKLOG_EVERY,
                ));
            }
            anyhow::Ok((backend, registry))
        };
        match connected.await {
            Ok((backend, registry)) => {
                let state = HostState::new(
                    backend,
                    registry,
                    schedules,
                    host_options,
                    worker_options,
                    retention,
                );
                let _ = ready.send(Some(state));
                info!("storage connected");
            }
            Err(error) => {
                // The host restarts a handler that exits.
                tracing::error!(%error, "cannot connect to storage; exiting");
                std::process::exit(1);
            }
        }
    });
    info!(port, "custom handler listening");
    let grace = std::time::Duration::from_secs(args.shutdown_grace_secs);
    let served =
        axum::serve(listener, host::router(lazy)).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        served = served => served?,
        () = async { shutdown_signal().await; tokio::time::sleep(grace).await } => {
            warn!(grace_secs = grace.as_secs(), "open invocations did not finish within the shutdown grace; exiting");
        }
    }
    Ok(())
}
