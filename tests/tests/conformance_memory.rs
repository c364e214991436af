//! The backend conformance suite on the in-memory backend.

use std::sync::Arc;

use flowforge_orchestrator::backend::{conformance, Backend, MemoryBackend};

#[tokio::test]
async fn memory_backend_passes_the_conformance_suite() {
    conformance::run_all(|| async { Arc::new(MemoryBackend::new()) as Arc<dyn Backend> }).await;
}
