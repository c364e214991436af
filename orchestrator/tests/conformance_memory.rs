//! The backend conformance suite on the in-memory backend, one test per check.

use std::sync::Arc;

use flowforge_orchestrator::backend::MemoryBackend;

flowforge_orchestrator::conformance_tests!(Arc::new(MemoryBackend::new()));
