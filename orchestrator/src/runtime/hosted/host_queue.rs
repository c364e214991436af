//! The backend as a hosted worker sees it: settling a message the host owns.
//! - delete → nothing to do (the host deletes on a 2xx answer);
//! - abandon (defer, lost race) → a copy is sent with the delay, carrying the deliveries so
//!   far (the host counts each copy from 1 again);
//! - dead-letter → into the archive with the reason (then the delete above: durable once
//!   the archive holds it).
//!
//! Each settlement of a host-owned message is recorded by message id, so the invocation
//! answers 2xx only once the message's effect is durable ([`HostQueue::take_outcome`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::QueueDepth;
use crate::backend::{
    ArchivedLetter, Backend, DeadLetter, Document, DocumentStore, ETag, EpisodeCommit, Error,
    HistoryPage, InstancePage, InstanceQuery, InstanceStore, LoadedInstance, Outbound,
    PayloadStore, QueueMessage, QueueName, QueueStore, Receipt, Received, RunLogStore,
    WriteCondition,
};
use crate::run_logs::{LogChunk, LogPage};
use crate::status::InstanceState;

/// Marks receipts of host-owned messages.
pub(super) const HOST_RECEIPT: &str = "host-owned";

/// What became of a host-owned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settled {
    /// Its effect is durable (processed, re-sent as a copy, or dead-lettered): the host
    /// may delete it.
    Durable,
    /// Settling failed: the host must deliver it again.
    Failed(String),
}

/// The backend with host-owned message settling.
pub(super) struct HostQueue {
    pub(super) inner: Arc<dyn Backend>,
    outcomes: Mutex<HashMap<String, Settled>>,
}

impl HostQueue {
    pub(super) fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    fn record(&self, receipt: &Receipt, outcome: Settled) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        // A failure sticks: a later "durable" for the same delivery must not hide it.
        let entry = outcomes.entry(receipt.message_id.clone());
        match entry {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if matches!(e.get(), Settled::Durable) {
                    e.insert(outcome);
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(outcome);
            }
        }
    }

    /// Forgets what was recorded for a message id (before its delivery is handled).
    pub(super) fn forget(&self, message_id: &str) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.remove(message_id);
    }

    /// What became of a delivery; `None`: nothing settled it.
    pub(super) fn take_outcome(&self, message_id: &str) -> Option<Settled> {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes.remove(message_id)
    }
}

pub(super) fn host_owned(receipt: &Receipt) -> bool {
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

    async fn queue_depth(&self, queue: &QueueName) -> Result<QueueDepth, Error> {
        self.inner.queue_depth(queue).await
    }

    async fn send_raw(
        &self,
        queue: &QueueName,
        raw: &str,
        visible_at: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        self.inner.send_raw(queue, raw, visible_at).await
    }

    async fn resolve_body(&self, body: &str) -> Result<String, Error> {
        self.inner.resolve_body(body).await
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
            self.record(receipt, Settled::Durable);
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
        // The stored body of a host-owned delivery is the resolved text with its count of
        // deliveries so far (see `HostedWorker::received`).
        let (body, deliveries) = split_host_body(&receipt.stored_body);
        let copy = QueueMessage::decode(body)
            .map(|m| m.encode_copy(deliveries, QueueMessage::held_since(body)))
            .map_err(Error::Permanent);
        let visible_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let sent = match copy {
            Ok(copy) => self.inner.send_raw(queue, &copy, Some(visible_at)).await,
            Err(e) => Err(e),
        };
        match &sent {
            Ok(()) => self.record(receipt, Settled::Durable),
            Err(e) => self.record(receipt, Settled::Failed(format!("re-sending a copy: {e}"))),
        }
        sent.map(|()| receipt.clone())
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

    async fn list_dead_letters(&self, limit: usize) -> Result<Vec<ArchivedLetter>, Error> {
        self.inner.list_dead_letters(limit).await
    }

    async fn remove_dead_letter(&self, id: &str) -> Result<bool, Error> {
        self.inner.remove_dead_letter(id).await
    }
}

/// A host-owned delivery's stored body: `"{deliveries}\n{text}"`.
pub(super) fn host_body(text: &str, deliveries: u32) -> String {
    format!("{deliveries}\n{text}")
}

fn split_host_body(stored: &str) -> (&str, u32) {
    match stored.split_once('\n') {
        Some((count, text)) => (text, count.parse().unwrap_or(0)),
        None => (stored, 0),
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

    async fn read_history(
        &self,
        instance_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<HistoryPage>, Error> {
        self.inner.read_history(instance_id, from, max).await
    }

    async fn take_created(&self, instance_id: &str) -> Option<(InstanceState, ETag)> {
        self.inner.take_created(instance_id).await
    }

    fn events_per_atomic_commit(&self) -> usize {
        self.inner.events_per_atomic_commit()
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

#[async_trait]
impl RunLogStore for HostQueue {
    async fn append_run_logs(&self, instance_id: &str, chunks: &[LogChunk]) -> Result<(), Error> {
        self.inner.append_run_logs(instance_id, chunks).await
    }

    async fn read_run_logs(
        &self,
        instance_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        self.inner.read_run_logs(instance_id, after, limit).await
    }
}

#[async_trait]
impl DocumentStore for HostQueue {
    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>, Error> {
        self.inner.list_documents(kind).await
    }

    async fn read_document(&self, kind: &str, name: &str) -> Result<Option<Document>, Error> {
        self.inner.read_document(kind, name).await
    }

    async fn write_document(
        &self,
        kind: &str,
        name: &str,
        body: &str,
        condition: WriteCondition,
    ) -> Result<ETag, Error> {
        self.inner.write_document(kind, name, body, condition).await
    }

    async fn delete_document(&self, kind: &str, name: &str) -> Result<(), Error> {
        self.inner.delete_document(kind, name).await
    }
}

impl Backend for HostQueue {
    fn transaction_counts(&self) -> BTreeMap<String, u64> {
        self.inner.transaction_counts()
    }
}
