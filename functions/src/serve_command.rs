//! `flowforge serve`: start-up of the custom handler.

use clap::Args;
use tracing::info;

use crate::host::{self, HostState};

use crate::schedules::{self, Schedule};
use crate::storage::StorageArgs;
use crate::worker_command::shutdown_signal;

/// Settings of the custom handler (the host sets the port).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on, on 127.0.0.1 (the host sets `FUNCTIONS_CUSTOMHANDLER_PORT`).
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT")]
    pub port: Option<u16>,
    /// The host's `maxDequeueCount` (host.json `extensions.queues`); the engine dead-letters
    /// a message one delivery before the host would.
    #[arg(long, env = "FLOWFORGE_HOST_MAX_DEQUEUE_COUNT", default_value_t = 5)]
    pub host_max_dequeue_count: u32,
    /// The schedules to fire from the timer function.
    #[command(flatten)]
    pub schedules: SchedulesArgs,
}

/// Where the schedules come from.
#[derive(Debug, Args)]
pub struct SchedulesArgs {
    /// Schedules as a JSON array (see README).
    #[arg(long, env = "FLOWFORGE_SCHEDULES")]
    pub schedules: Option<String>,
    /// Or a file holding that JSON array.
    #[arg(long, env = "FLOWFORGE_SCHEDULES_FILE")]
    pub schedules_file: Option<std::path::PathBuf>,
}

impl SchedulesArgs {
    /// Loads and validates the schedules.
    pub fn load(&self) -> anyhow::Result<Vec<Schedule>> {
        let text = match (&self.schedules, &self.schedules_file) {
            (Some(json), _) => json.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
            (None, None) => String::new(),
        };
        schedules::parse_all(&text).map_err(anyhow::Error::msg)
    }
}

/// Serves the handler until the host stops it.
pub async fn run(args: ServeArgs, storage: StorageArgs) -> anyhow::Result<()> {
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
    // Listen first: the host's readiness probe is answered while the storage clients are
    // built (an HTTP client loads the system's TLS roots: tens of milliseconds) and connect.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (ready, lazy) = tokio::sync::watch::channel(None);
    let max_dequeue_count = args.host_max_dequeue_count;
    tokio::spawn(async move {
        let connected = async {
            let registry = crate::app_registry(storage.lake()?);
            let backend = storage.connect().await?;
            anyhow::Ok((backend, registry))
        };
        match connected.await {
            Ok((backend, registry)) => {
                let state = HostState::new(backend, registry, schedules, max_dequeue_count);
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
    axum::serve(listener, host::router(lazy))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
