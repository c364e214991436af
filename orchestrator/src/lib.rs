//! FlowForge Durable's engine: durable orchestrations written as async Rust functions,
//! replayed deterministically from their history (the Durable Functions model).
//!
//! Layers, from the inside out (see `ARCHITECTURE.md`):
//! - [`history`]: the versioned event model;
//! - [`replay`]: the pure core, `(history, new events) → (new events, actions)`;
//! - [`context`]: what orchestration code calls (activities, timers, events, …);
//! - [`registry`]: orchestrations and activities by name and version, and the declared
//!   [`chain`]s (runs that start runs);
//! - [`backend`]: the storage traits, an in-memory backend and (feature `conformance`) the
//!   suite every backend must pass;
//! - [`runtime`]: the worker that runs episodes and activities against a backend;
//! - [`client`]: start, query and control instances;
//! - [`run_logs`]: what activities log, captured per attempt and kept with the instance.
//!
//! ```no_run
//! use flowforge_orchestrator::prelude::*;
//!
//! async fn greet(ctx: OrchestrationContext, names: Vec<String>) -> Result<Vec<String>, FailureDetails> {
//!     let calls = names.iter().map(|n| ctx.call_activity::<String>("hello", n)).collect();
//!     ctx.join_all(calls).await.into_iter().collect()
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new()
//!     .orchestration("greet", greet)
//!     .activity("hello", |_ctx, name: String| async move { Ok(format!("hello {name}")) });
//! let backend = std::sync::Arc::new(MemoryBackend::new());
//! let worker = Worker::new(backend.clone(), registry, WorkerOptions::default()).start();
//! let client = Client::new(backend);
//! let id = client.start("greet", StartOptions::default(), &vec!["ada", "bob"]).await?;
//! let status = client.wait_for_completion(&id, std::time::Duration::from_secs(10)).await?;
//! println!("{:?}", status.output);
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod chain;
pub mod client;
pub mod clock;
pub mod context;
pub mod history;
pub mod ids;
pub mod registry;
pub mod replay;
pub mod retention;
pub mod run_logs;
pub mod runtime;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// The names most programs need.
pub mod prelude {
    pub use crate::backend::{Backend, MemoryBackend};
    pub use crate::client::{Client, StartOptions};
    pub use crate::context::{OrchestrationContext, RetryPolicy, TaskResult};
    pub use crate::history::{FailureDetails, FailureKind};
    pub use crate::registry::{ActivityContext, Registry};
    pub use crate::runtime::{Worker, WorkerOptions};
    pub use crate::status::{InstanceStatus, RuntimeStatus};
}
