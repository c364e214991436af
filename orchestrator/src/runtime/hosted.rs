//! Running under a host that owns the queue messages (the Azure Functions host with queue
//! triggers): the host receives a message, hands it over, and deletes it when the handler
//! answers 2xx. The same episode and activity code runs; only settling differs, through
//! [`HostQueue`], which wraps the backend:
//! - delete → nothing (the host deletes on success);
//! - abandon (defer, lost race) → a copy of the message is sent with the delay;
//! - dead-letter → a copy goes to `<queue>-poison` with the reason.
//!
//! Poison comes before the host's own limit: the worker's `max_dequeue_count` is set below
//! the host's `maxDequeueCount`, so the engine dead-letters the message and fails its
//! instance (visible in the status) instead of the host moving it silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{activity_worker, orchestration_worker, Shared, WorkerOptions};
use crate::backend::{
    Backend, DeadLetter, ETag, EpisodeCommit, Error, InstancePage, InstanceQuery, InstanceStore,
    LoadedInstance, Outbound, PayloadStore, QueueMessage, QueueName, QueueStore, Receipt, Received,
};
use crate::clock::{Clock, SystemClock};
use crate::registry::Registry;
use crate::status::InstanceState;

/// Marks receipts of host-owned messages.
const HOST_RECEIPT: &str = "host-owned";

/// Processes host-delivered messages through the engine.
pub struct HostedWorker {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
}

impl HostedWorker {
    /// A hosted worker. `host_max_dequeue_count` is the host's `maxDequeueCount`.
    pub fn new(
        backend: Arc<dyn Backend>,
        registry: Registry,
        mut options: WorkerOptions,
        host_max_dequeue_count: u32,
    ) -> Self {
        options.max_dequeue_count = host_max_dequeue_count.saturating_sub(1).max(1);
        let backend: Arc<dyn Backend> = Arc::new(HostQueue { inner: backend });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let permits = Arc::new(Semaphore::new(options.orchestration_concurrency.max(1)));
        Self {
            shared: Arc::new(Shared::new(backend, registry, options, clock)),
            permits,
        }
    }

    fn received(raw: &str, dequeue_count: u32, message_id: &str) -> Received {
        Received {
            receipt: Receipt {
                message_id: message_id.to_owned(),
                pop_receipt: HOST_RECEIPT.to_owned(),
                stored_body: raw.to_owned(),
            },
            dequeue_count: dequeue_count.max(1),
            raw: raw.to_owned(),
            message: QueueMessage::decode(raw),
        }
    }

    /// Handles one message of a control queue (an orchestrator queue trigger).
    pub async fn handle_control(
        &self,
        queue: QueueName,
        raw: &str,
        dequeue_count: u32,
        message_id: &str,
    ) {
        let received = Self::received(raw, dequeue_count, message_id);
        orchestration_worker::process_batch(
            &self.shared,
            &queue,
            vec![received],
            &self.permits,
            orchestration_worker::Sessions::Awaited,
        )
        .await;
    }

    /// Handles one work item (the activity queue trigger).
    pub async fn handle_work_item(&self, raw: &str, dequeue_count: u32, message_id: &str) {
        activity_worker::handle(&self.shared, Self::received(raw, dequeue_count, message_id)).await;
    }

    /// Marks an instance Failed with a reason (unless it already finished): for messages
    /// the host dead-lettered on its own.
    pub async fn fail_instance(&self, instance_id: &str, reason: &str) -> Result<(), Error> {
        orchestration_worker::fail_instance(&self.shared, instance_id, reason).await
    }

    /// The backend the engine sees (host-owned settling included).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.shared.backend.clone()
    }
}

/// The backend with host-owned message settling.
struct HostQueue {
    inner: Arc<dyn Backend>,
}

fn host_owned(receipt: &Receipt) -> bool {
    receipt.pop_receipt == HOST_RECEIPT
}

#[async_trait]
impl QueueStore for HostQueue {
    fn control_partitions(&self) -> u32 {
        self.inner.control_partitions()
    }

    async fn send(&self, outbound: &Outbound) -> Result<(), Error> {
        self.inner.send(outbound).await
    }

    async fn send_raw(&self, queue: &QueueName, raw: &str) -> Result<(), Error> {
        self.inner.send_raw(queue, raw).await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        lock: Duration,
    ) -> Result<Vec<Received>, Error> {
        self.inner.receive(queue, max, lock).await
    }

    async fn delete(&self, queue: &QueueName, receipt: &Receipt) -> Result<(), Error> {
        if host_owned(receipt) {
            return Ok(());
        }
        self.inner.delete(queue, receipt).await
    }

    async fn abandon(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<Receipt, Error> {
        if !host_owned(receipt) {
            return self.inner.abandon(queue, receipt, delay).await;
        }
        let message = QueueMessage::decode(&receipt.stored_body).map_err(Error::Permanent)?;
        let visible_at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.inner
            .send(&Outbound {
                queue: queue.clone(),
                message,
                visible_at: Some(visible_at),
            })
            .await?;
        Ok(receipt.clone())
    }

    async fn renew(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        lock: Duration,
    ) -> Result<Receipt, Error> {
        if host_owned(receipt) {
            // The host keeps an invocation's message hidden while the invocation runs.
            return Ok(receipt.clone());
        }
        self.inner.renew(queue, receipt, lock).await
    }

    async fn put_dead_letter(&self, queue: &QueueName, letter: &DeadLetter) -> Result<(), Error> {
        self.inner.put_dead_letter(queue, letter).await
    }

    fn has_wake_signals(&self) -> bool {
        self.inner.has_wake_signals()
    }

    async fn peek_wake(&self) -> Result<Vec<String>, Error> {
        self.inner.peek_wake().await
    }

    async fn dead_letters(&self, queue: &QueueName) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(queue).await
    }
}

#[async_trait]
impl InstanceStore for HostQueue {
    async fn create_instance(
        &self,
        state: &InstanceState,
        start: &Outbound,
        replace: Option<&ETag>,
    ) -> Result<ETag, Error> {
        self.inner.create_instance(state, start, replace).await
    }

    async fn load_instance(&self, instance_id: &str) -> Result<Option<LoadedInstance>, Error> {
        self.inner.load_instance(instance_id).await
    }

    async fn read_state(&self, instance_id: &str) -> Result<Option<(InstanceState, ETag)>, Error> {
        self.inner.read_state(instance_id).await
    }

    async fn commit_episode(
        &self,
        instance_id: &str,
        commit: EpisodeCommit,
    ) -> Result<ETag, Error> {
        self.inner.commit_episode(instance_id, commit).await
    }

    async fn list_instances(&self, query: &InstanceQuery) -> Result<InstancePage, Error> {
        self.inner.list_instances(query).await
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<bool, Error> {
        self.inner.delete_instance(instance_id).await
    }
}

#[async_trait]
impl PayloadStore for HostQueue {
    async fn put_payload(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        self.inner.put_payload(key, bytes).await
    }

    async fn get_payload(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get_payload(key).await
    }

    async fn delete_payloads(&self, prefix: &str) -> Result<usize, Error> {
        self.inner.delete_payloads(prefix).await
    }
}

impl Backend for HostQueue {
    fn transaction_counts(&self) -> BTreeMap<String, u64> {
        self.inner.transaction_counts()
    }
}
