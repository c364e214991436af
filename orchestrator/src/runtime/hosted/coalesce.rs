//! Coalescing per instance: the host invokes many messages at once (a fan-in of 1,000
//! results may arrive as 1,000 parallel invocations). Each invocation leaves its message
//! in the instance's mailbox; one of them at a time leads: it takes everything waiting,
//! runs it as one batch (one episode, one commit) and wakes the others whose messages it
//! ran. A leader that is cancelled (over budget) drops the wake-ups of its batch, so those
//! invocations end too (and answer non-2xx); messages not yet taken get a new leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::backend::Received;

type Waiting = (Received, oneshot::Sender<()>);

/// The mailboxes of the instances with invocations in flight.
#[derive(Default)]
pub(super) struct Mailbox {
    instances: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    waiting: Mutex<Vec<Waiting>>,
    lead: tokio::sync::Mutex<()>,
}

impl Slot {
    fn take(&self) -> Vec<Waiting> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Mailbox {
    /// Delivers one message for `instance_id` and returns once a batch that held it has
    /// run (by this invocation or another), or its leader was cancelled.
    pub(super) async fn deliver<F, Fut>(&self, instance_id: &str, received: Received, run: F)
    where
        F: Fn(Vec<Received>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let slot = self.slot(instance_id);
        let (done, mut ran) = oneshot::channel();
        slot.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((received, done));
        loop {
            tokio::select! {
                biased;
                _ = &mut ran => break,
                lead = slot.lead.lock() => {
                    let batch = slot.take();
                    if !batch.is_empty() {
                        let (messages, wakes): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                        run(messages).await;
                        for wake in wakes {
                            let _ = wake.send(());
                        }
                    }
                    drop(lead);
                }
            }
        }
        self.release(instance_id, slot);
    }

    fn slot(&self, instance_id: &str) -> Arc<Slot> {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.entry(instance_id.to_owned()).or_default().clone()
    }

    /// Drops an instance's mailbox once nobody else holds it. Every reference is taken and
    /// given back under the map's lock, so the last one out sees only the map's.
    fn release(&self, instance_id: &str, slot: Arc<Slot>) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        drop(slot);
        if instances
            .get(instance_id)
            .is_some_and(|kept| Arc::strong_count(kept) == 1)
        {
            instances.remove(instance_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Receipt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(id: usize) -> Received {
        Received {
            receipt: Receipt {
                message_id: format!("m{id}"),
                pop_receipt: String::new(),
                stored_body: String::new(),
            },
            dequeue_count: 1,
            raw: String::new(),
            message: Err("test".into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_deliveries_for_one_instance_run_in_few_batches() {
        let mailbox = Arc::new(Mailbox::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..200 {
            let (mailbox, batches, messages) = (mailbox.clone(), batches.clone(), messages.clone());
            let gate = gate.clone();
            tasks.spawn(async move {
                mailbox
                    .deliver("one", message(id), |batch| {
                        let (batches, messages, mut gate) =
                            (batches.clone(), messages.clone(), gate.clone());
                        async move {
                            batches.fetch_add(1, Ordering::SeqCst);
                            messages.fetch_add(batch.len(), Ordering::SeqCst);
                            // The first batch waits until every delivery is in the mailbox.
                            let _ = gate.wait_for(|open| *open).await;
                        }
                    })
                    .await;
            });
        }
        // Every delivery is in: taken by the first leader (held at the gate) or waiting.
        loop {
            let slot = mailbox.slot("one");
            let waiting = slot.waiting.lock().unwrap().len();
            mailbox.release("one", slot);
            if messages.load(Ordering::SeqCst) + waiting == 200 {
                break;
            }
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        while tasks.join_next().await.is_some() {}
        assert_eq!(messages.load(Ordering::SeqCst), 200);
        // The first leader's batch, and everything that waited meanwhile as one more.
        assert!(batches.load(Ordering::SeqCst) <= 2, "{batches:?}");
        assert!(mailbox.instances.lock().unwrap().is_empty());
    }
}
