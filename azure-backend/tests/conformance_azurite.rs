//! The backend conformance suite on Azurite (one for this test binary, started on free
//! ports), one test per check, each on a task hub of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};

use flowforge_azure::{azurite, AzureBackend};

/// A new, empty task hub on the shared Azurite.
async fn fresh_hub() -> std::sync::Arc<AzureBackend> {
    static HUBS: AtomicU32 = AtomicU32::new(0);
    let hub = format!("conf{}", HUBS.fetch_add(1, Ordering::SeqCst));
    AzureBackend::connect(azurite::shared().config(&hub))
        .await
        .unwrap()
}

flowforge_orchestrator::conformance_tests!(fresh_hub().await);
