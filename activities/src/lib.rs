//! Activities of the FlowForge data platform.
//!
//! The bronze → silver → gold activities in polars land here with the medallion issue;
//! polars stays in this crate only, so that the engine and its tests build without it.
//! Until then the crate offers the registration hook the binary calls.

use flowforge_orchestrator::registry::Registry;

/// Adds this crate's activities to a registry (none yet: see the crate docs).
pub fn register(registry: Registry) -> Registry {
    registry
}
