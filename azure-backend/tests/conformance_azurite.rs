//! The backend conformance suite on Azurite (started here on free ports, stopped at the end).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use flowforge_azure::azurite::Azurite;
use flowforge_azure::AzureBackend;
use flowforge_orchestrator::backend::{conformance, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_backend_passes_the_conformance_suite_on_azurite() {
    let azurite = Azurite::start().expect("Azurite starts (run `npm ci` first)");
    let hubs = AtomicU32::new(0);
    conformance::run_all(|| {
        let config = azurite.config(&format!("conf{}", hubs.fetch_add(1, Ordering::SeqCst)));
        async move { AzureBackend::connect(config).await.unwrap() as Arc<dyn Backend> }
    })
    .await;
}
