//! The `flowforge` binary's library: the management API, the standalone worker command,
//! the client commands and the demonstration orchestration. `main.rs` only parses the
//! command line.

pub mod api;
pub mod client_command;
pub mod demo;
pub mod storage;
pub mod worker_command;

use flowforge_orchestrator::registry::Registry;

/// Every orchestration and activity this app runs.
pub fn app_registry() -> Registry {
    flowforge_activities::register(demo::registry())
}
