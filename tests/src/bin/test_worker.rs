//! A worker process for the crash and split-brain tests: runs the test orchestrations
//! against the Azurite task hub named by its environment until killed.
//!
//! Environment: `FLOWFORGE_TEST_PORTS=blob,queue,table`, `FLOWFORGE_TEST_HUB`.

use std::time::Duration;

use flowforge_azure::{AzureBackend, AzureConfig};
use flowforge_orchestrator::prelude::*;

#[tokio::main]
async fn main() -> Result<(), String> {
    // Warnings, and the storage outage reports (their end is at info level).
    // And the run-log layer, as the binary installs it.
    use tracing_subscriber::prelude::*;
    let format = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::new(
            "warn,flowforge_azure=info",
        ));
    tracing_subscriber::registry()
        .with(format)
        .with(flowforge_orchestrator::run_logs::RunLogLayer::new().at_info())
        .init();
    let ports = std::env::var("FLOWFORGE_TEST_PORTS").map_err(|_| "FLOWFORGE_TEST_PORTS unset")?;
    let ports: Vec<u16> = ports
        .split(',')
        .map(|p| p.parse().map_err(|_| "bad port"))
        .collect::<Result<_, _>>()?;
    let [blob, queue, table] = ports[..] else {
        return Err("need three ports".into());
    };
    let hub = std::env::var("FLOWFORGE_TEST_HUB").map_err(|_| "FLOWFORGE_TEST_HUB unset")?;
    let mut config = AzureConfig::azurite_at(&hub, blob, queue, table);
    // Short deadlines, so a frozen Azurite is noticed (and reported) within seconds.
    config.attempt_deadline = Duration::from_secs(3);
    config.retry_budget = Duration::from_secs(10);
    let backend = AzureBackend::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    let options = WorkerOptions {
        lock_timeout: Duration::from_secs(5),
        max_idle_poll: Duration::from_millis(100),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(backend, flowforge_tests::registry(), options).start();
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    worker.shutdown().await;
    Ok(())
}
