//! The `flowforge` binary's library: the management API, the standalone worker command,
//! the client commands and the demonstration orchestration. `main.rs` only parses the
//! command line.

pub mod api;
pub mod client_command;
pub mod demo;
pub mod host;
pub mod landing_events;
pub mod pipeline_command;
pub mod schedules;
pub mod serve_command;
pub mod shutdown;
pub mod storage;
pub mod worker_command;

use flowforge_activities::DataLake;
use flowforge_orchestrator::registry::Registry;

/// Every orchestration and activity this app runs; the medallion pipeline needs the data
/// lake (Blob Storage), so it is registered only with one.
pub fn app_registry(lake: Option<DataLake>) -> Registry {
    let registry = match lake {
        Some(lake) => flowforge_activities::register(demo::registry(), lake),
        None => demo::registry(),
    };
    if std::env::var("FLOWFORGE_HARNESS_ORCHESTRATIONS").is_ok_and(|v| v == "1") {
        demo::with_harness_orchestrations(registry)
    } else {
        registry
    }
}
