//! An in-process backend: the reference semantics of the traits, for tests, the demo and
//! the benchmark's engine-only figures. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::QueueDepth;
use super::{
    ArchivedLetter, Backend, DeadLetter, Document, DocumentStore, ETag, EpisodeCommit, Error,
    HistoryWrite, InstancePage, InstanceQuery, InstanceStore, LoadedInstance, Outbound,
    PayloadStore, QueueMessage, QueueName, QueueStore, Receipt, Received, RunLogStore,
    WriteCondition,
};
use crate::clock::{Clock, SystemClock};
use crate::history::HistoryEvent;
use crate::run_logs::{LogChunk, LogPage};
use crate::status::InstanceState;

const DEFAULT_PAGE_SIZE: usize = 100;

struct StoredInstance {
    state: InstanceState,
    etag: u64,
    history: Vec<HistoryEvent>,
}

struct StoredMessage {
    id: String,
    raw: String,
    enqueued_at: DateTime<Utc>,
    visible_at: DateTime<Utc>,
    dequeue_count: u32,
    pop_receipt: String,
}

#[derive(Default)]
struct Inner {
    instances: BTreeMap<String, StoredInstance>,
    queues: HashMap<QueueName, VecDeque<StoredMessage>>,
    dead: Vec<ArchivedLetter>,
    payloads: BTreeMap<String, Vec<u8>>,
    /// Run-log chunks by (instance id, chunk key).
    run_logs: BTreeMap<(String, String), LogChunk>,
    /// Documents by (kind, name): body and version.
    documents: BTreeMap<(String, String), (String, u64)>,
    next_id: u64,
    transactions: BTreeMap<String, u64>,
}

impl Inner {
    fn count(&mut self, op: &str) {
        *self.transactions.entry(op.to_owned()).or_default() += 1;
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn push(
        &mut self,
        queue: QueueName,
        raw: String,
        enqueued_at: DateTime<Utc>,
        visible_at: DateTime<Utc>,
    ) {
        let id = format!("m{}", self.next());
        self.queues
            .entry(queue)
            .or_default()
            .push_back(StoredMessage {
                id,
                raw,
                enqueued_at,
                visible_at,
                dequeue_count: 0,
                pop_receipt: String::new(),
            });
    }
}

/// The in-memory backend.
pub struct MemoryBackend {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    notify: Notify,
    partitions: u32,
    /// Sends still to fail (fault injection for tests of the settle path).
    failing_sends: std::sync::atomic::AtomicU32,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend on the system clock with one control partition.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A backend whose message visibility follows `clock` (a manual clock in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            notify: Notify::new(),
            partitions: 1,
            failing_sends: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Sets the number of control partitions.
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Makes the next `count` sends (`send`, `send_raw`) fail with a transient error, as a
    /// storage outage would: for tests of what the runtime does when it cannot send.
    pub fn fail_next_sends(&self, count: u32) {
        self.failing_sends
            .store(count, std::sync::atomic::Ordering::SeqCst);
    }

    fn injected_send_failure(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let failing = self
            .failing_sends
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failing {
            Ok(_) => Err(Error::Transient("injected send failure".into())),
            Err(_) => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, inner: &mut Inner, outbound: &Outbound) {
        let now = self.clock.now();
        let visible_at = outbound.visible_at.map_or(now, |at| at.max(now));
        inner.push(
            outbound.queue.clone(),
            outbound.message.encode(),
            now,
            visible_at,
        );
        inner.count("queue.put");
    }

    /// Messages waiting in a queue (visible or not), for tests and tools.
    pub fn queue_len(&self, queue: &QueueName) -> usize {
        self.lock().queues.get(queue).map_or(0, VecDeque::len)
    }

    /// Messages of a queue a receive would get now (not held by a receiver, not delayed).
    pub fn visible_len(&self, queue: &QueueName) -> usize {
        let now = self.clock.now();
        self.lock()
            .queues
            .get(queue)
            .map_or(0, |q| q.iter().filter(|m| m.visible_at <= now).count())
    }
}

fn receipt_mismatch(receipt: &Receipt) -> Error {
    Error::NotFound(format!(
        "message {} with that pop receipt",
        receipt.message_id
    ))
}

#[async_trait]
impl InstanceStore for MemoryBackend {
    async fn create_instance(
        &self,
        state: &InstanceState,
        start: &Outbound,
        replace: Option<&ETag>,
    ) -> Result<ETag, Error> {
        let mut inner = self.lock();
        inner.count("table.insert");
        match (inner.instances.get(&state.instance_id), replace) {
            (Some(_), None) => {
                return Err(Error::Conflict(format!(
                    "instance '{}' exists",
                    state.instance_id
                )))
            }
            (Some(existing), Some(etag)) if existing.etag.to_string() != etag.0 => {
                return Err(Error::Conflict(format!(
                    "instance '{}' changed",
                    state.instance_id
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Conflict(format!(
                    "instance '{}' vanished",
                    state.instance_id
                )))
            }
            _ => {}
        }
        let etag = inner.next();
        inner.instances.insert(
            state.instance_id.clone(),
            StoredInstance {
                state: state.clone(),
                etag,
                history: Vec::new(),
            },
        );
        self.enqueue(&mut inner, start);
        drop(inner);
        self.notify.notify_waiters();
        Ok(ETag(etag.to_string()))
    }

    async fn load_instance(&self, instance_id: &str) -> Result<Option<LoadedInstance>, Error> {
        let mut inner = self.lock();
        inner.count("table.query");
        Ok(inner.instances.get(instance_id).map(|s| LoadedInstance {
            state: s.state.clone(),
            etag: ETag(s.etag.to_string()),
            history: s.history.clone(),
        }))
    }

    async fn read_state(&self, instance_id: &str) -> Result<Option<(InstanceState, ETag)>, Error> {
        let mut inner = self.lock();
        inner.count("table.get");
        Ok(inner
            .instances
            .get(instance_id)
            .map(|s| (s.state.clone(), ETag(s.etag.to_string()))))
    }

    async fn commit_episode(
        &self,
        instance_id: &str,
        commit: EpisodeCommit,
    ) -> Result<ETag, Error> {
        let mut inner = self.lock();
        inner.count("table.batch");
        let current = inner.instances.get(instance_id).map(|s| s.etag.to_string());
        match (&commit.expected, current) {
            (None, Some(_)) => {
                return Err(Error::Conflict(format!(
                    "instance '{instance_id}' already exists"
                )))
            }
            (Some(expected), Some(current)) if expected.0 != current => {
                return Err(Error::Conflict(format!("instance '{instance_id}' changed")))
            }
            (Some(_), None) => {
                return Err(Error::Conflict(format!(
                    "instance '{instance_id}' was deleted"
                )))
            }
            _ => {}
        }
        let etag = inner.next();
        let entry = inner
            .instances
            .entry(instance_id.to_owned())
            .or_insert_with(|| StoredInstance {
                state: commit.state.clone(),
                etag,
                history: Vec::new(),
            });
        match commit.history {
            HistoryWrite::Append(events) => entry.history.extend(events),
            HistoryWrite::Replace(events) => entry.history = events,
        }
        entry.state = commit.state;
        entry.etag = etag;
        for outbound in &commit.messages {
            self.enqueue(&mut inner, outbound);
        }
        drop(inner);
        if !commit.messages.is_empty() {
            self.notify.notify_waiters();
        }
        Ok(ETag(etag.to_string()))
    }

    async fn list_instances(&self, query: &InstanceQuery) -> Result<InstancePage, Error> {
        let mut inner = self.lock();
        inner.count("table.query");
        let size = if query.page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            query.page_size
        };
        let after = query.continuation.clone().unwrap_or_default();
        let matching = inner
            .instances
            .range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, s)| &s.state)
            .filter(|s| query.matches(s))
            .cloned();
        Ok(InstancePage::from_matches(matching, size))
    }

    async fn delete_instance(&self, instance_id: &str) -> Result<bool, Error> {
        let mut inner = self.lock();
        inner.count("table.delete");
        let existed = inner.instances.remove(instance_id).is_some();
        let prefix = format!("{instance_id}/");
        inner.payloads.retain(|k, _| !k.starts_with(&prefix));
        inner
            .run_logs
            .retain(|(instance, _), _| instance != instance_id);
        Ok(existed)
    }
}

#[async_trait]
impl QueueStore for MemoryBackend {
    fn control_partitions(&self) -> u32 {
        self.partitions
    }

    async fn send(&self, outbound: &Outbound) -> Result<(), Error> {
        self.injected_send_failure()?;
        let mut inner = self.lock();
        self.enqueue(&mut inner, outbound);
        drop(inner);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn send_raw(
        &self,
        queue: &QueueName,
        raw: &str,
        visible_at: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        self.injected_send_failure()?;
        let mut inner = self.lock();
        let now = self.clock.now();
        let at = visible_at.unwrap_or(now);
        inner.push(queue.clone(), raw.to_owned(), now, at);
        inner.count("queue.put");
        drop(inner);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn queue_depth(&self, queue: &QueueName) -> Result<QueueDepth, Error> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.count("queue.metadata");
        let messages = inner.queues.get(queue);
        let oldest = messages
            .into_iter()
            .flatten()
            .filter(|m| m.visible_at <= now)
            .map(|m| m.enqueued_at)
            .min();
        Ok(QueueDepth {
            messages: messages.map_or(0, |m| m.len() as u64),
            oldest_age: oldest.map(|t| (now - t).to_std().unwrap_or_default()),
        })
    }

    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        lock: Duration,
    ) -> Result<Vec<Received>, Error> {
        let now = self.clock.now();
        let hidden_until = now + chrono::Duration::from_std(lock).unwrap_or_default();
        let mut inner = self.lock();
        inner.count("queue.get");
        let mut receipts = Vec::new();
        let mut next = inner.next_id;
        if let Some(messages) = inner.queues.get_mut(queue) {
            for message in messages
                .iter_mut()
                .filter(|m| m.visible_at <= now)
                .take(max.min(32))
            {
                next += 1;
                message.visible_at = hidden_until;
                message.dequeue_count += 1;
                message.pop_receipt = format!("r{next}");
                receipts.push(Received {
                    receipt: Receipt {
                        message_id: message.id.clone(),
                        pop_receipt: message.pop_receipt.clone(),
                        stored_body: String::new(),
                    },
                    dequeue_count: message.dequeue_count
                        + QueueMessage::prior_deliveries(&message.raw),
                    raw: message.raw.clone(),
                    message: QueueMessage::decode(&message.raw),
                });
            }
        }
        inner.next_id = next;
        Ok(receipts)
    }

    async fn delete(&self, queue: &QueueName, receipt: &Receipt) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.count("queue.delete");
        let messages = inner.queues.entry(queue.clone()).or_default();
        let position = messages
            .iter()
            .position(|m| m.id == receipt.message_id && m.pop_receipt == receipt.pop_receipt)
            .ok_or_else(|| receipt_mismatch(receipt))?;
        messages.remove(position);
        Ok(())
    }

    async fn abandon(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<Receipt, Error> {
        let visible_at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let mut inner = self.lock();
        inner.count("queue.update");
        let next = inner.next();
        let messages = inner.queues.entry(queue.clone()).or_default();
        let message = messages
            .iter_mut()
            .find(|m| m.id == receipt.message_id && m.pop_receipt == receipt.pop_receipt)
            .ok_or_else(|| receipt_mismatch(receipt))?;
        message.visible_at = visible_at;
        message.pop_receipt = format!("r{next}");
        let renewed = Receipt {
            message_id: message.id.clone(),
            pop_receipt: message.pop_receipt.clone(),
            stored_body: String::new(),
        };
        drop(inner);
        self.notify.notify_waiters();
        Ok(renewed)
    }

    async fn put_dead_letter(&self, queue: &QueueName, letter: &DeadLetter) -> Result<(), Error> {
        let at = self.clock.now();
        let mut inner = self.lock();
        inner.count("table.write");
        inner.dead.push(ArchivedLetter {
            id: ArchivedLetter::new_id(at),
            queue: queue.clone(),
            archived_at: at,
            letter: letter.clone(),
        });
        Ok(())
    }

    async fn list_dead_letters(&self, limit: usize) -> Result<Vec<ArchivedLetter>, Error> {
        let mut letters = self.lock().dead.clone();
        letters.sort_by(|a, b| a.id.cmp(&b.id));
        letters.truncate(limit);
        Ok(letters)
    }

    async fn remove_dead_letter(&self, id: &str) -> Result<bool, Error> {
        let mut inner = self.lock();
        let before = inner.dead.len();
        inner.dead.retain(|a| a.id != id);
        Ok(inner.dead.len() < before)
    }

    async fn wait_for_messages(&self, queues: &[QueueName], max_wait: Duration) {
        let notified = self.notify.notified();
        // Wake up no later than the next delayed message (a timer) becomes visible.
        let now = self.clock.now();
        let next_due = {
            let inner = self.lock();
            queues
                .iter()
                .filter_map(|q| inner.queues.get(q))
                .flat_map(|messages| messages.iter().map(|m| m.visible_at))
                .min()
        };
        let wait = match next_due {
            Some(due) => (due - now).to_std().unwrap_or(Duration::ZERO).min(max_wait),
            None => max_wait,
        };
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

#[async_trait]
impl PayloadStore for MemoryBackend {
    async fn put_payload(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.count("blob.put");
        inner.payloads.insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get_payload(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut inner = self.lock();
        inner.count("blob.get");
        Ok(inner.payloads.get(key).cloned())
    }

    async fn delete_payloads(&self, prefix: &str) -> Result<usize, Error> {
        let mut inner = self.lock();
        inner.count("blob.delete");
        let before = inner.payloads.len();
        inner.payloads.retain(|k, _| !k.starts_with(prefix));
        Ok(before - inner.payloads.len())
    }
}

#[async_trait]
impl RunLogStore for MemoryBackend {
    async fn append_run_logs(&self, instance_id: &str, chunks: &[LogChunk]) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.count("table.batch");
        for chunk in chunks {
            let key = (instance_id.to_owned(), chunk.key.clone());
            inner.run_logs.insert(key, chunk.clone());
        }
        Ok(())
    }

    async fn read_run_logs(
        &self,
        instance_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        let mut inner = self.lock();
        inner.count("table.query");
        let mut matching = inner
            .run_logs
            .iter()
            .filter(|((instance, key), _)| {
                instance == instance_id && after.is_none_or(|after| key.as_str() > after)
            })
            .map(|(_, chunk)| chunk.clone());
        let chunks: Vec<_> = matching.by_ref().take(limit.max(1)).collect();
        let continuation = match matching.next() {
            Some(_) => chunks.last().map(|c| c.key.clone()),
            None => None,
        };
        Ok(LogPage {
            chunks,
            continuation,
        })
    }
}

#[async_trait]
impl DocumentStore for MemoryBackend {
    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>, Error> {
        let mut inner = self.lock();
        inner.count("table.query");
        Ok(inner
            .documents
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, name), (body, version))| Document {
                name: name.clone(),
                body: body.clone(),
                etag: ETag(version.to_string()),
            })
            .collect())
    }

    async fn read_document(&self, kind: &str, name: &str) -> Result<Option<Document>, Error> {
        let mut inner = self.lock();
        inner.count("table.read");
        Ok(inner
            .documents
            .get(&(kind.to_owned(), name.to_owned()))
            .map(|(body, version)| Document {
                name: name.to_owned(),
                body: body.clone(),
                etag: ETag(version.to_string()),
            }))
    }

    async fn write_document(
        &self,
        kind: &str,
        name: &str,
        body: &str,
        condition: WriteCondition,
    ) -> Result<ETag, Error> {
        let mut inner = self.lock();
        inner.count("table.write");
        let key = (kind.to_owned(), name.to_owned());
        let current = inner.documents.get(&key).map(|(_, v)| ETag(v.to_string()));
        match (&condition, &current) {
            (WriteCondition::Absent, None) => {}
            (WriteCondition::Matches(expected), Some(current)) if expected == current => {}
            _ => return Err(Error::Conflict(format!("document {kind}/{name} changed"))),
        }
        let version = inner.next();
        inner.documents.insert(key, (body.to_owned(), version));
        Ok(ETag(version.to_string()))
    }

    async fn delete_document(&self, kind: &str, name: &str) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.count("table.write");
        match inner.documents.remove(&(kind.to_owned(), name.to_owned())) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("document {kind}/{name}"))),
        }
    }
}

impl Backend for MemoryBackend {
    fn transaction_counts(&self) -> BTreeMap<String, u64> {
        self.lock().transactions.clone()
    }
}
