//! Messages this process puts, told at once to this process's own workers: a start made
//! through the worker's own API, or an episode's message to another instance, is picked up
//! when it is sent instead of at the queue's next poll (other processes still learn of it
//! by polling and the wake signals). Bookkeeping per queue: the order of the last
//! immediate send and of the last look (a receive begun, or a wait that ended for it); a
//! queue sent to after its last look may hold a message this process has not looked for
//! yet. A wait ends once per send, so a caller that does not receive at once waits again
//! rather than spinning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Sends and receives of this process, per queue name.
#[derive(Default)]
pub(crate) struct LocalArrivals {
    order: AtomicU64,
    queues: Mutex<HashMap<String, Marks>>,
    sent: Notify,
}

#[derive(Default, Clone, Copy)]
struct Marks {
    last_send: u64,
    last_look: u64,
}

impl LocalArrivals {
    fn mark(&self, queue: &str, set: impl FnOnce(&mut Marks, u64)) {
        let at = self.order.fetch_add(1, Ordering::SeqCst) + 1;
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        set(queues.entry(queue.to_owned()).or_default(), at);
    }

    /// A message visible now was put on `queue`.
    pub(crate) fn sent(&self, queue: &str) {
        self.mark(queue, |marks, at| marks.last_send = at);
        self.sent.notify_waiters();
    }

    /// A receive of `queue` is about to begin: it will see what was sent before.
    pub(crate) fn receiving(&self, queue: &str) {
        self.mark(queue, |marks, at| marks.last_look = at);
    }

    /// Whether one of `queues` was sent to after its last look; if so, they count as
    /// looked at now.
    fn take_pending(&self, queues: &[String]) -> bool {
        let at = self.order.fetch_add(1, Ordering::SeqCst) + 1;
        let mut known = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let pending = queues.iter().any(|queue| {
            known
                .get(queue)
                .is_some_and(|marks| marks.last_send > marks.last_look)
        });
        if pending {
            for queue in queues {
                known.entry(queue.clone()).or_default().last_look = at;
            }
        }
        pending
    }

    /// Waits until one of `queues` may hold a message this process put, or `max_wait`.
    pub(crate) async fn wait(&self, queues: &[String], max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Registered before the check, so a send between the two is not missed.
            let notified = self.sent.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.take_pending(queues) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(queues: &[&str]) -> Vec<String> {
        queues.iter().map(|q| (*q).to_owned()).collect()
    }

    #[test]
    fn a_send_after_the_last_look_is_pending_once() {
        let arrivals = LocalArrivals::default();
        assert!(!arrivals.take_pending(&names(&["control-00"])));
        arrivals.receiving("control-00");
        arrivals.sent("control-00");
        assert!(!arrivals.take_pending(&names(&["workitems"])));
        assert!(arrivals.take_pending(&names(&["control-00", "workitems"])));
        // Told once: the next wait blocks until another send, even without a receive.
        assert!(!arrivals.take_pending(&names(&["control-00"])));
        arrivals.sent("control-00");
        arrivals.receiving("control-00");
        assert!(!arrivals.take_pending(&names(&["control-00"])));
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken_by_a_send_to_its_queues_only() {
        let arrivals = std::sync::Arc::new(LocalArrivals::default());
        arrivals.receiving("control-00");
        let waiter = {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                arrivals
                    .wait(&names(&["control-00"]), Duration::from_secs(3600))
                    .await
            })
        };
        // A send to another queue leaves it waiting; one to its queue ends the wait (the
        // hour-long deadline would fail the test by its time limit, not pass it).
        arrivals.sent("workitems");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        arrivals.sent("control-00");
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn a_send_before_the_wait_ends_it_at_once() {
        let arrivals = LocalArrivals::default();
        arrivals.receiving("control-01");
        arrivals.sent("control-01");
        arrivals
            .wait(&names(&["control-01"]), Duration::from_secs(3600))
            .await;
    }
}
