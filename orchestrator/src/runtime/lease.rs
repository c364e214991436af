//! Lease renewal: work that runs longer than the lock keeps the messages it came from
//! hidden, so they are not delivered again while it runs. If the process dies, the
//! renewals stop and the messages come back after at most one lock timeout.

use std::time::Duration;

use tracing::warn;

use super::{start_bundles, Shared, WorkerOptions};
use crate::backend::{QueueName, Receipt};

/// How often leases are renewed: the configured period, at most half the lock; `None`
/// when renewals are off (`lease_renewal` zero).
pub(crate) fn renewal_period(options: &WorkerOptions) -> Option<Duration> {
    (!options.lease_renewal.is_zero()).then(|| options.lease_renewal.min(options.lock_timeout / 2))
}

/// Hides each message for another lock timeout, updating its receipt in place. False when
/// any renewal failed (that message may be delivered again).
pub(crate) async fn renew_all<'a>(
    shared: &Shared,
    queue: &QueueName,
    receipts: impl Iterator<Item = &'a mut Receipt>,
) -> bool {
    let lock = shared.options.lock_timeout;
    let mut all_renewed = true;
    for receipt in receipts {
        if start_bundles::is_piece(receipt) {
            // A renewal would change the receipt the bundle's other pieces settle with.
            continue;
        }
        match shared.backend.renew(queue, receipt, lock).await {
            Ok(renewed) => *receipt = renewed,
            Err(error) => {
                warn!(%error, "renewing a message's lease failed; it may be delivered again");
                all_renewed = false;
            }
        }
    }
    all_renewed
}

/// Runs `work` while renewing the lease of the message behind `receipt` every renewal
/// period (kept up to date in place, for the delete that follows).
pub(crate) async fn renewing<T>(
    shared: &Shared,
    queue: &QueueName,
    receipt: &mut Receipt,
    work: impl std::future::Future<Output = T>,
) -> T {
    let Some(period) = renewal_period(&shared.options) else {
        return work.await;
    };
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tokio::time::sleep(period) => {
                renew_all(shared, queue, std::iter::once(&mut *receipt)).await;
            }
        }
    }
}
