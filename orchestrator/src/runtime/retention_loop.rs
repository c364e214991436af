//! The worker's retention pass (see [`crate::retention`]): every `retention_interval`, the
//! finished instances past their retention are purged, a page at a time.

use std::sync::Arc;

use tokio::sync::watch;

use super::{log_retried_failure, Shared};
use crate::retention::{purge_expired, Pace, RetentionPolicy};

pub(crate) async fn run(
    shared: Arc<Shared>,
    policy: RetentionPolicy,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(%policy, every = ?shared.options.retention_interval, "retention purge on");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.options.retention_interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let pass = purge_expired(
            shared.backend.as_ref(),
            &policy,
            shared.clock.now(),
            Pace::default(),
        );
        // A pass stops with the worker; the next worker's pass picks up where it left.
        tokio::select! {
            report = pass => match report {
                Ok(report) if report.purged > 0 => {
                    tracing::info!(purged = report.purged, scanned = report.scanned, "retention purge");
                }
                Ok(_) => {}
                Err(error) => log_retried_failure(&error, "retention purge failed; tried again next interval"),
            },
            _ = stop.changed() => return,
        }
    }
}
