//! `flowforge worker`: the standalone mode — the management API, the queue-polling
//! orchestration and activity workers, on one task hub, until SIGTERM or Ctrl-C.

use flowforge_orchestrator::retention::RetentionPolicy;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use flowforge_orchestrator::prelude::*;
use tracing::{info, warn};

use crate::api::{self, Access, ApiState};
use crate::storage::StorageArgs;

/// Settings of the worker and its API.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Address the API listens on (loopback by default).
    #[arg(long, env = "FLOWFORGE_LISTEN", default_value = "127.0.0.1:7071")]
    pub listen: SocketAddr,
    /// Base path of the API.
    #[arg(long, env = "FLOWFORGE_BASE_PATH", default_value = "/api/")]
    pub base_path: String,
    /// The API key callers must send (`x-functions-key` header or `code` parameter).
    #[arg(long, env = "FLOWFORGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve the API without a key (local development only; refused with a key set).
    #[arg(long, env = "FLOWFORGE_OPEN_API")]
    pub open: bool,
    /// Also serve the API without a key on this loopback address, as the Functions host
    /// serves Durable Functions' local RPC endpoint (`rpcBaseUrl`, 127.0.0.1:17071) to the
    /// clients in the same app: only processes on this machine can reach it.
    #[arg(long, env = "FLOWFORGE_LOCAL_RPC")]
    pub local_rpc: Option<SocketAddr>,
    /// Public URL of the app (`https://flows.example.com`): the origin of every URL the API
    /// hands out. Unset: the listening address (never the request's Host header).
    #[arg(long, env = "FLOWFORGE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, env = "FLOWFORGE_BODY_LIMIT", default_value_t = 4 * 1024 * 1024)]
    pub body_limit: usize,
    /// Activities run at once.
    #[arg(long, env = "FLOWFORGE_ACTIVITY_CONCURRENCY", default_value_t = 32)]
    pub activity_concurrency: usize,
    /// Schedules this worker fires itself (as the Functions timer does in the app).
    #[command(flatten)]
    pub schedules: crate::schedules::SchedulesArgs,
    /// Longest a new message waits to be noticed when idle, in seconds (how often an idle
    /// worker looks at the wake signals; each queue's polling ceiling while warm).
    #[arg(long, env = "FLOWFORGE_MAX_IDLE_POLL_SECS", default_value_t = 40)]
    pub max_idle_poll_secs: u64,
    /// Once idle this long (seconds), poll the queues only every `--idle-sweep-secs` and
    /// rely on wake signals.
    #[arg(long, env = "FLOWFORGE_IDLE_WARM_SECS", default_value_t = 300)]
    pub idle_warm_secs: u64,
    /// Safety-net sweep of every queue when idle, in seconds.
    #[arg(long, env = "FLOWFORGE_IDLE_SWEEP_SECS", default_value_t = 3600)]
    pub idle_sweep_secs: u64,
    /// Send every activity through the work-item queue instead of running the ones
    /// registered here in the worker that scheduled them.
    #[arg(long, env = "FLOWFORGE_NO_INLINE_ACTIVITIES")]
    pub no_inline_activities: bool,
    /// Longest an activity may run, in seconds, before it fails with `ActivityTimedOut`
    /// (unset: no limit).
    #[arg(long, env = "FLOWFORGE_ACTIVITY_TIMEOUT_SECS")]
    pub activity_timeout_secs: Option<u64>,
    /// How long a received message stays hidden (its lease, renewed every third of it while
    /// its work runs): work held by a worker that died is taken over within this.
    #[arg(long, env = "FLOWFORGE_LOCK_TIMEOUT_SECS", default_value_t = 30)]
    pub lock_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, how long in-flight work and API calls may take to finish, in
    /// seconds; then the process exits anyway, leaving unfinished messages queued for the
    /// next worker (a container host kills at about 30 s).
    #[arg(long, env = "FLOWFORGE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Purge finished instances after this long, by status: `completed=7d,failed=30d`
    /// (units s, m, h, d; `all=` for the three; unset: keep until purged by hand).
    #[arg(long, env = "FLOWFORGE_RETENTION", value_parser = parse_retention)]
    pub retention: Option<RetentionPolicy>,
    /// How often the retention purge runs, in seconds.
    #[arg(
        long,
        env = "FLOWFORGE_RETENTION_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub retention_interval_secs: u64,
}

pub(crate) fn parse_retention(setting: &str) -> Result<RetentionPolicy, String> {
    RetentionPolicy::parse(setting).map_err(|e| e.to_string())
}

impl WorkerArgs {
    /// How callers are authenticated.
    pub fn access(&self) -> anyhow::Result<Access> {
        match (&self.api_key, self.open) {
            (Some(key), true) if !key.is_empty() => anyhow::bail!(
                "both an API key and --open are set: unset FLOWFORGE_API_KEY to serve without a \
                 key, or drop --open (FLOWFORGE_OPEN_API) to require it"
            ),
            (Some(key), false) if !key.is_empty() => Ok(Access::Key(key.clone())),
            (_, true) => Ok(Access::Open),
            _ => anyhow::bail!(
                "no API key: set FLOWFORGE_API_KEY, or pass --open to serve without one (local only)"
            ),
        }
    }

    /// The origin of the URLs the API hands out: `--public-url`, else the listening
    /// address (`localhost` for an unspecified one).
    pub fn public_origin(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.public_url {
            let parsed: axum::http::Uri = url
                .parse()
                .map_err(|e| anyhow::anyhow!("--public-url '{url}' is not a URL: {e}"))?;
            if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
                anyhow::bail!("--public-url must be an http(s) URL with a host, not '{url}'");
            }
            return Ok(url.trim_end_matches('/').to_owned());
        }
        Ok(origin_of(self.listen))
    }

    /// The base path with a leading and trailing slash.
    pub fn base_path(&self) -> String {
        let trimmed = self.base_path.trim_matches('/');
        if trimmed.is_empty() {
            "/".into()
        } else {
            format!("/{trimmed}/")
        }
    }
}

/// `http://address` of a listening address; an unspecified one (`0.0.0.0`) as `localhost`.
fn origin_of(address: SocketAddr) -> String {
    if address.ip().is_unspecified() {
        format!("http://localhost:{}", address.port())
    } else {
        format!("http://{address}")
    }
}

/// Runs the worker and the API until asked to stop; then stops taking work, lets in-flight
/// work finish (unfinished messages stay queued for the next worker) and returns.
/// `observe_storage` reads the queue backlog gauges (when metrics are exported).
pub async fn run(
    args: WorkerArgs,
    storage: StorageArgs,
    registry: Registry,
    observe_storage: bool,
) -> anyhow::Result<()> {
    let access = args.access()?;
    let public_url = args.public_origin()?;
    if let Some(rpc) = args.local_rpc {
        if !rpc.ip().is_loopback() {
            anyhow::bail!(
                "--local-rpc serves without a key, so it must be a loopback address, not {rpc}"
            );
        }
    }
    if !args.listen.ip().is_loopback() && args.public_url.is_none() {
        warn!(listen = %args.listen, "no --public-url: the URLs the API hands out name {public_url}");
    }
    let backend = storage.connect().await?;
    let _backlog = observe_storage.then(|| {
        flowforge_orchestrator::telemetry::observe_backend(backend.clone(), BACKLOG_EVERY)
    });
    let options = WorkerOptions {
        activity_concurrency: args.activity_concurrency,
        max_idle_poll: std::time::Duration::from_secs(args.max_idle_poll_secs.max(1)),
        idle_warm_period: std::time::Duration::from_secs(args.idle_warm_secs),
        idle_sweep: std::time::Duration::from_secs(args.idle_sweep_secs.max(1)),
        inline_activities: !args.no_inline_activities,
        activity_timeout: args
            .activity_timeout_secs
            .map(std::time::Duration::from_secs),
        lock_timeout: std::time::Duration::from_secs(args.lock_timeout_secs.max(3)),
        lease_renewal: std::time::Duration::from_secs(args.lock_timeout_secs.max(3) / 3),
        retention: args.retention.clone(),
        retention_interval: std::time::Duration::from_secs(args.retention_interval_secs.max(1)),
        ..WorkerOptions::default()
    };
    let client = Client::new(backend.clone());
    let schedules = crate::schedules::ScheduleBook::new(client.clone(), args.schedules.load()?);
    let state = ApiState {
        client,
        orchestrations: Arc::new(registry.orchestration_names()),
        access,
        base_path: args.base_path(),
        public_url: Some(public_url),
        body_limit: args.body_limit,
        schedules: schedules.clone(),
        chains: Arc::new(registry.chains().to_vec()),
    };
    let ticker = tokio::spawn(fire_schedules(schedules));
    let worker = Worker::new(backend, registry, options).start();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let stop = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    if let Some(address) = args.local_rpc {
        let rpc_listener = tokio::net::TcpListener::bind(address).await?;
        let rpc_state = ApiState {
            access: Access::Open,
            public_url: Some(origin_of(rpc_listener.local_addr()?)),
            ..state.clone()
        };
        info!(address = %rpc_listener.local_addr()?, "local RPC endpoint (no key, loopback) ready");
        servers.spawn(serve_until(
            rpc_listener,
            api::router(rpc_state),
            stop.1.clone(),
        ));
    }
    info!(address = %listener.local_addr()?, base_path = %state.base_path, "worker and API ready");
    servers.spawn(serve_until(listener, api::router(state), stop.1.clone()));
    tokio::select! {
        () = crate::shutdown::shutdown_signal() => {}
        Some(ended) = servers.join_next() => {
            warn!(?ended, "an API listener stopped on its own; stopping the worker");
        }
    }
    let grace = std::time::Duration::from_secs(args.shutdown_grace_secs);
    info!(
        grace_secs = grace.as_secs(),
        "stopping: no new messages; finishing in-flight work"
    );
    ticker.abort();
    let _ = stop.0.send(true);
    let finishing = async {
        tokio::join!(worker.shutdown(), async {
            while servers.join_next().await.is_some() {}
        });
    };
    if tokio::time::timeout(grace, finishing).await.is_err() {
        // What did not finish is safe: its messages were not deleted, so they come back
        // to the next worker when their leases lapse.
        warn!(
            grace_secs = grace.as_secs(),
            "in-flight work did not finish within the shutdown grace; its messages stay \
             queued for the next worker"
        );
    }
    Ok(())
}

/// Serves `router` on `listener` until `stop` turns true, then lets open calls finish.
async fn serve_until(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

/// How often the backlog gauges read the queues (two reads per queue).
pub const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Fires the task hub's schedules at their occurrences: sleeps until the next one (at most
/// a minute; a few seconds while an occurrence is buffered; at once when this process
/// changes the book), then starts everything due since the previous tick (a double fire —
/// another worker, the Functions timer — starts an occurrence once: deterministic ids).
async fn fire_schedules(book: crate::schedules::ScheduleBook) {
    let mut previous_tick: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let now = chrono::Utc::now();
        let look_back = match previous_tick {
            Some(previous) => (now - previous + chrono::Duration::seconds(1))
                .max(crate::schedules::look_back(false)),
            None => crate::schedules::look_back(false),
        };
        let mut wait = std::time::Duration::from_secs(60);
        match crate::schedules::fire_due(&book, now, look_back).await {
            Ok(_) => previous_tick = Some(now),
            // Storage is down: the next tick looks back over what this one missed.
            Err(error) => {
                tracing::warn!(error, "schedules not fired");
                wait = std::time::Duration::from_secs(5);
            }
        }
        if let Ok(entries) = book.all().await {
            let live = entries.iter().filter(|e| e.record.paused.is_none());
            for entry in live {
                if entry.record.buffered.is_some() {
                    wait = wait.min(std::time::Duration::from_secs(2));
                }
                if let Some(next) = entry.schedule.next_occurrence(now) {
                    let until = (next - chrono::Utc::now()).to_std().unwrap_or_default();
                    wait = wait.min(until);
                }
            }
        }
        // A few milliseconds past the occurrence, so the clock has reached it on waking.
        tokio::select! {
            _ = tokio::time::sleep(wait + std::time::Duration::from_millis(20)) => {}
            _ = book.changed() => {}
        }
    }
}
