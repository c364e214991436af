//! Bundles of starts ([`QueueMessage::Starts`]): one queue message carrying the starts of
//! several instances of a partition. Each start becomes a piece with its own receipt and
//! takes its instance's turn like a message of its own; the bundle's delivery is deleted
//! once every piece is settled as consumed. A piece that is not (its turn failed, or it must
//! be seen again) leaves the bundle to come back after its lock: its committed starts are
//! then recognised as duplicates and dropped, the others run again (at least once, as any
//! message). Pieces are never renewed on their own: one renewal would change the receipt
//! the other pieces' settlement needs. A bundle delivered too often is poisoned whole
//! (`settling::poison_bundle`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tracing::debug;

use super::Shared;
use crate::backend::{OrchestratorMessage, QueueMessage, QueueName, Receipt, Received};

/// Marks the pop receipt of a piece; the rest is the bundle's token.
const PIECE_MARK: &str = "start-bundle-piece:";

/// The bundles of this worker whose pieces are not all settled.
#[derive(Default)]
pub(crate) struct StartBundles {
    next_token: AtomicU64,
    open: Mutex<HashMap<u64, OpenBundle>>,
}

/// A bundle delivery waiting for its pieces.
struct OpenBundle {
    queue: QueueName,
    receipt: Receipt,
    unsettled: usize,
    all_consumed: bool,
    /// After this its lock has lapsed and the bundle is delivered again: forgotten.
    stale_at: DateTime<Utc>,
}

/// What the last settled piece leaves to do with the bundle.
pub(crate) enum BundleDone {
    /// Pieces are still unsettled.
    Waiting,
    /// Every piece was consumed: delete the delivery.
    Delete(QueueName, Receipt),
    /// Some piece must be seen again: leave the delivery to come back.
    Leave,
}

impl StartBundles {
    /// Splits a bundle delivery into one delivery per start, each with a piece receipt.
    pub(crate) fn open(
        &self,
        queue: &QueueName,
        received: &Received,
        starts: Vec<OrchestratorMessage>,
        now: DateTime<Utc>,
        lock: std::time::Duration,
    ) -> Vec<(Received, OrchestratorMessage)> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let stale_at = now + chrono::Duration::from_std(lock * 2).unwrap_or_default();
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            // Bundles whose turns never settled (they failed) are delivered again by now.
            open.retain(|_, bundle| bundle.stale_at > now);
            open.insert(
                token,
                OpenBundle {
                    queue: queue.clone(),
                    receipt: received.receipt.clone(),
                    unsettled: starts.len(),
                    all_consumed: true,
                    stale_at,
                },
            );
        }
        starts
            .into_iter()
            .map(|start| {
                let piece = Received {
                    receipt: Receipt {
                        message_id: received.receipt.message_id.clone(),
                        pop_receipt: format!("{PIECE_MARK}{token}"),
                        stored_body: String::new(),
                    },
                    dequeue_count: received.dequeue_count,
                    raw: QueueMessage::Orchestrator(start.clone()).encode(),
                    message: Ok(QueueMessage::Orchestrator(start.clone())),
                };
                (piece, start)
            })
            .collect()
    }

    /// Records how a piece was settled; `None` when `receipt` is not a piece's.
    pub(crate) fn settle_piece(&self, receipt: &Receipt, consumed: bool) -> Option<BundleDone> {
        let token: u64 = receipt.pop_receipt.strip_prefix(PIECE_MARK)?.parse().ok()?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bundle) = open.get_mut(&token) else {
            // Forgotten as stale: the bundle has come back; nothing to settle here.
            return Some(BundleDone::Leave);
        };
        bundle.unsettled = bundle.unsettled.saturating_sub(1);
        bundle.all_consumed &= consumed;
        if bundle.unsettled > 0 {
            return Some(BundleDone::Waiting);
        }
        let bundle = open.remove(&token)?;
        Some(if bundle.all_consumed {
            BundleDone::Delete(bundle.queue, bundle.receipt)
        } else {
            BundleDone::Leave
        })
    }
}

/// Whether a receipt is a piece's (it is settled through its bundle, never renewed).
pub(crate) fn is_piece(receipt: &Receipt) -> bool {
    receipt.pop_receipt.starts_with(PIECE_MARK)
}

/// Records a piece as settled (`consumed`, or to be seen again); the last piece of a
/// bundle whose pieces were all consumed deletes the bundle's delivery.
pub(crate) async fn settle_piece(shared: &Shared, receipt: &Receipt, consumed: bool) {
    if let Some(BundleDone::Delete(queue, receipt)) =
        shared.start_bundles.settle_piece(receipt, consumed)
    {
        if let Err(error) = shared.backend.delete(&queue, &receipt).await {
            debug!(%error, "deleting a settled bundle of starts failed; it will come back and be deduplicated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventKind;

    fn start(id: &str) -> OrchestratorMessage {
        OrchestratorMessage {
            instance_id: id.into(),
            execution_id: None,
            event: crate::history::NewEvent {
                timestamp: Utc::now(),
                kind: EventKind::OrchestratorStarted,
            },
            start_if: None,
        }
    }

    fn delivery() -> Received {
        Received {
            receipt: Receipt {
                message_id: "m1".into(),
                pop_receipt: "pop".into(),
                stored_body: "body".into(),
            },
            dequeue_count: 1,
            raw: String::new(),
            message: Err("unused".into()),
        }
    }

    #[test]
    fn the_bundle_is_deleted_once_every_piece_is_consumed() {
        let bundles = StartBundles::default();
        let pieces = bundles.open(
            &QueueName::Control(0),
            &delivery(),
            vec![start("a"), start("b")],
            Utc::now(),
            std::time::Duration::from_secs(30),
        );
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|(r, _)| is_piece(&r.receipt)));
        assert_eq!(pieces[1].1.instance_id, "b");
        let first = bundles.settle_piece(&pieces[0].0.receipt, true);
        assert!(matches!(first, Some(BundleDone::Waiting)));
        match bundles.settle_piece(&pieces[1].0.receipt, true) {
            Some(BundleDone::Delete(queue, receipt)) => {
                assert_eq!(queue, QueueName::Control(0));
                assert_eq!(receipt.pop_receipt, "pop");
            }
            _ => panic!("expected the bundle's delete"),
        }
        assert!(bundles.settle_piece(&delivery().receipt, true).is_none());
    }

    #[test]
    fn a_piece_not_consumed_leaves_the_bundle_to_come_back() {
        let bundles = StartBundles::default();
        let pieces = bundles.open(
            &QueueName::Control(1),
            &delivery(),
            vec![start("a"), start("b"), start("c")],
            Utc::now(),
            std::time::Duration::from_secs(30),
        );
        bundles.settle_piece(&pieces[0].0.receipt, true);
        bundles.settle_piece(&pieces[1].0.receipt, false);
        let last = bundles.settle_piece(&pieces[2].0.receipt, true);
        assert!(matches!(last, Some(BundleDone::Leave)));
    }

    #[test]
    fn bundles_left_unsettled_are_forgotten_after_their_lock() {
        let bundles = StartBundles::default();
        let now = Utc::now();
        let lock = std::time::Duration::from_secs(30);
        let stuck = bundles.open(
            &QueueName::Control(0),
            &delivery(),
            vec![start("a")],
            now,
            lock,
        );
        let later = now + chrono::Duration::seconds(61);
        bundles.open(
            &QueueName::Control(0),
            &delivery(),
            vec![start("b")],
            later,
            lock,
        );
        assert_eq!(bundles.open.lock().unwrap().len(), 1);
        assert!(matches!(
            bundles.settle_piece(&stuck[0].0.receipt, true),
            Some(BundleDone::Leave)
        ));
    }
}
