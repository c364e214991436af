//! The backend traits and the types that cross them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ArchivedLetter, DeadLetter, Outbound, QueueName, Receipt, Received};
use crate::history::HistoryEvent;
use crate::run_logs::{LogChunk, LogPage};
use crate::status::{InstanceState, RuntimeStatus};

/// Errors of a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An optimistic-concurrency check failed (stale ETag, or the row already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The instance, message or payload does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The storage service failed; may succeed when retried.
    #[error("storage error: {0}")]
    Transient(String),
    /// The storage service refused the request for good.
    #[error("storage error: {0}")]
    Permanent(String),
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Opaque version tag of an instance's state row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

/// An instance as an episode needs it.
#[derive(Debug, Clone)]
pub struct LoadedInstance {
    /// The state row.
    pub state: InstanceState,
    /// Its ETag, the condition of the next commit.
    pub etag: ETag,
    /// The history of the current execution, in sequence order, up to `state.history_len`.
    pub history: Vec<HistoryEvent>,
}

/// A page of an instance's history (its current execution).
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The state row.
    pub state: InstanceState,
    /// The events of the page, in sequence order.
    pub events: Vec<HistoryEvent>,
    /// The sequence number the next page starts at; `None` on the last page.
    pub next: Option<u64>,
}

/// How an episode changes the history.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryWrite {
    /// Append events after the committed ones.
    Append(Vec<HistoryEvent>),
    /// Start a new execution: replace the whole history (continue-as-new, restart).
    Replace(Vec<HistoryEvent>),
}

/// Everything one episode writes, atomically for the instance.
#[derive(Debug, Clone)]
pub struct EpisodeCommit {
    /// The new state row.
    pub state: InstanceState,
    /// `None`: the instance must not exist yet; `Some`: its state row must still have this ETag.
    pub expected: Option<ETag>,
    /// History changes.
    pub history: HistoryWrite,
    /// Messages decided by the episode: sent only if the commit succeeds, and then never lost.
    pub messages: Vec<Outbound>,
}

/// A query over instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceQuery {
    /// Only these statuses (empty: all).
    pub statuses: Vec<RuntimeStatus>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created at or before.
    pub created_to: Option<DateTime<Utc>>,
    /// Instance id prefix.
    pub instance_id_prefix: Option<String>,
    /// Only instances whose input has this `workflow_id` (the web app's runs of one
    /// workflow, whatever started them).
    pub workflow_id: Option<String>,
    /// Page size (0: the backend's default).
    pub page_size: usize,
    /// Continuation token from the previous page.
    pub continuation: Option<String>,
}

impl InstanceQuery {
    /// Whether an instance matches the filters (not the paging).
    pub fn matches(&self, state: &InstanceState) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&state.status))
            && self
                .created_from
                .is_none_or(|from| state.created_at >= from)
            && self.created_to.is_none_or(|to| state.created_at <= to)
            && self
                .instance_id_prefix
                .as_deref()
                .is_none_or(|p| state.instance_id.starts_with(p))
            && self.workflow_id.as_deref().is_none_or(|w| {
                state
                    .input
                    .get("workflow_id")
                    .and_then(serde_json::Value::as_str)
                    == Some(w)
            })
    }
}

/// One page of instances.
#[derive(Debug, Clone, Default)]
pub struct InstancePage {
    /// The instances, ordered by instance id.
    pub instances: Vec<InstanceState>,
    /// Token for the next page, if any.
    pub continuation: Option<String>,
}

impl InstancePage {
    /// One page from instances matching a query, in instance-id order: at most `size`, with
    /// a continuation token when more follow.
    pub fn from_matches(matching: impl IntoIterator<Item = InstanceState>, size: usize) -> Self {
        let mut matching = matching.into_iter();
        let instances: Vec<_> = matching.by_ref().take(size).collect();
        let continuation = match matching.next() {
            Some(_) => instances.last().map(|s| s.instance_id.clone()),
            None => None,
        };
        Self {
            instances,
            continuation,
        }
    }
}

/// Instance state and history, with optimistic concurrency.
#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Creates an instance and enqueues its start message, so that its state is readable as
    /// soon as this returns. `replace`: `None` to refuse an existing instance (Conflict),
    /// `Some(etag)` to replace one whose state row still has that ETag (its history is wiped).
    /// A backend may send the start message before writing the state row (a worker that
    /// sees it first creates the instance itself); an existing instance with the same
    /// execution id then counts as created. A rejected start's message is harmless: the
    /// worker refuses a start for a running instance.
    async fn create_instance(
        &self,
        state: &InstanceState,
        start: &Outbound,
        replace: Option<&ETag>,
    ) -> Result<ETag, Error>;

    /// The state row and history of an instance.
    async fn load_instance(&self, instance_id: &str) -> Result<Option<LoadedInstance>, Error>;

    /// The state row of an instance.
    async fn read_state(&self, instance_id: &str) -> Result<Option<(InstanceState, ETag)>, Error>;

    /// At most `max` events of an instance's current history from sequence number `from`,
    /// with its state: a backend reads only the page's events. By default the whole
    /// instance is loaded and cut.
    async fn read_history(
        &self,
        instance_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<HistoryPage>, Error> {
        let Some(loaded) = self.load_instance(instance_id).await? else {
            return Ok(None);
        };
        let total = loaded.history.len() as u64;
        let to = from.saturating_add(max as u64).min(total);
        let events = loaded
            .history
            .into_iter()
            .skip(from as usize)
            .take(to.saturating_sub(from) as usize)
            .collect();
        Ok(Some(HistoryPage {
            state: loaded.state,
            events,
            next: (to < total).then_some(to),
        }))
    }

    /// The state row of an instance as this process just created it (`create_instance`),
    /// handed out once: a worker in the same process starts the instance's first episode
    /// from it instead of a point read, as from its instance cache — the commit's If-Match
    /// confirms it, and a conflict redoes the episode from storage. A backend may wait
    /// (briefly) for a creation of the instance still in flight here. `None` when unknown
    /// (the default).
    async fn take_created(&self, instance_id: &str) -> Option<(InstanceState, ETag)> {
        let _ = instance_id;
        None
    }

    /// The most history events one [`commit_episode`](Self::commit_episode) writes in a
    /// single atomic write (one table transaction with the state row); a group commit of
    /// inline steps stays within it. Unbounded by default.
    fn events_per_atomic_commit(&self) -> usize {
        usize::MAX
    }

    /// Commits an episode: state and history together, conditional on `expected`;
    /// then sends its messages. Conflict when the condition fails (nothing is written).
    async fn commit_episode(&self, instance_id: &str, commit: EpisodeCommit)
        -> Result<ETag, Error>;

    /// Lists instances by filter, ordered by instance id, in pages.
    async fn list_instances(&self, query: &InstanceQuery) -> Result<InstancePage, Error>;

    /// Deletes an instance's state, history, payloads and run logs. False when it did not
    /// exist.
    async fn delete_instance(&self, instance_id: &str) -> Result<bool, Error>;
}

/// Queues with visibility delay and at-least-once delivery.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// How many control queue partitions the task hub has.
    fn control_partitions(&self) -> u32;

    /// Sends a message, invisible until `visible_at` when given.
    async fn send(&self, outbound: &Outbound) -> Result<(), Error>;

    /// Sends a raw body, invisible until `visible_at` when given (a copy re-sent by a host
    /// that owns deliveries; tools and tests injecting malformed messages).
    async fn send_raw(
        &self,
        queue: &QueueName,
        raw: &str,
        visible_at: Option<DateTime<Utc>>,
    ) -> Result<(), Error>;

    /// A message body as delivered by someone else (the Functions host) made whole: a
    /// backend that stores large bodies by reference reads them back here.
    async fn resolve_body(&self, body: &str) -> Result<String, Error> {
        Ok(body.to_owned())
    }

    /// Receives up to `max` visible messages and hides them for `lock`.
    async fn receive(
        &self,
        queue: &QueueName,
        max: usize,
        lock: Duration,
    ) -> Result<Vec<Received>, Error>;

    /// Deletes a received message (after the work it caused is committed).
    async fn delete(&self, queue: &QueueName, receipt: &Receipt) -> Result<(), Error>;

    /// Makes a received message visible again after `delay`. Returns its new receipt.
    async fn abandon(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<Receipt, Error>;

    /// Keeps a received message hidden for `lock` more while its work runs (a lease
    /// renewal). Returns its new receipt. By default the same visibility update as
    /// [`abandon`](Self::abandon).
    async fn renew(
        &self,
        queue: &QueueName,
        receipt: &Receipt,
        lock: Duration,
    ) -> Result<Receipt, Error> {
        self.abandon(queue, receipt, lock).await
    }

    /// Puts a letter into the queue's dead-letter queue (without touching the original).
    async fn put_dead_letter(&self, queue: &QueueName, letter: &DeadLetter) -> Result<(), Error>;

    /// The archived dead letters, newest first, at most `limit`.
    async fn list_dead_letters(&self, limit: usize) -> Result<Vec<ArchivedLetter>, Error>;

    /// Removes a letter from the archive (after a requeue, or by an operator). False when
    /// there was none with that id.
    async fn remove_dead_letter(&self, id: &str) -> Result<bool, Error>;

    /// Moves a received message to the queue's dead-letter queue with a reason.
    async fn dead_letter(
        &self,
        queue: &QueueName,
        received: &Received,
        reason: &str,
    ) -> Result<(), Error> {
        let letter = DeadLetter {
            raw: received.raw.clone(),
            reason: reason.to_owned(),
            dequeue_count: received.dequeue_count,
        };
        self.put_dead_letter(queue, &letter).await?;
        crate::telemetry::metrics::dead_lettered(&queue.suffix());
        match self.delete(queue, &received.receipt).await {
            Err(Error::NotFound(_)) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The dead-lettered messages of a queue, oldest first.
    async fn dead_letters(&self, queue: &QueueName) -> Result<Vec<DeadLetter>, Error> {
        let mut letters: Vec<DeadLetter> = self
            .list_dead_letters(usize::MAX)
            .await?
            .into_iter()
            .filter(|a| &a.queue == queue)
            .map(|a| a.letter)
            .collect();
        letters.reverse();
        Ok(letters)
    }

    /// Whether every send also leaves a wake signal that idle workers can watch with
    /// [`peek_wake`](Self::peek_wake) instead of polling every queue.
    fn has_wake_signals(&self) -> bool {
        false
    }

    /// How many messages a queue holds (approximately, visible or not) and how long its
    /// oldest visible message has been in it (since it was sent: a durable timer's message
    /// counts from when the timer was created). For the backlog metrics.
    async fn queue_depth(&self, queue: &QueueName) -> Result<QueueDepth, Error>;

    /// The ids of the wake signals visible now: a look that hides and deletes nothing, so
    /// every worker sees every signal until it expires.
    async fn peek_wake(&self) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }

    /// Waits until a message may be available on one of `queues` or `max_wait` passes.
    /// Backends that can be notified return early; others just sleep.
    async fn wait_for_messages(&self, queues: &[QueueName], max_wait: Duration) {
        let _ = queues;
        tokio::time::sleep(max_wait).await;
    }
}

/// The backlog of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Messages in the queue (approximate on Azure Storage).
    pub messages: u64,
    /// Age of the oldest visible message; `None` when none is visible.
    pub oldest_age: Option<Duration>,
}

/// Large payloads by reference.
#[async_trait]
pub trait PayloadStore: Send + Sync {
    /// Stores bytes under a key (`<instance id>/<name>`).
    async fn put_payload(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error>;
    /// Reads bytes back.
    async fn get_payload(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Deletes every payload under a prefix. Returns how many.
    async fn delete_payloads(&self, prefix: &str) -> Result<usize, Error>;
}

/// Run logs by instance (see [`crate::run_logs`]); removed with the instance.
#[async_trait]
pub trait RunLogStore: Send + Sync {
    /// Writes chunks of one instance's logs. A chunk written again under its key replaces
    /// itself (a retried write is harmless).
    async fn append_run_logs(&self, instance_id: &str, chunks: &[LogChunk]) -> Result<(), Error>;

    /// Chunks of an instance in key order, after the key `after`, at most `limit`.
    async fn read_run_logs(
        &self,
        instance_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error>;
}

/// A small named document of the task hub (a schedule), with its version tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its name, unique within its kind.
    pub name: String,
    /// Its body (JSON).
    pub body: String,
    /// Its version: the condition of the next replace.
    pub etag: ETag,
}

/// When a document write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Only if no document of that name exists (create).
    Absent,
    /// Only if the stored document still has this version (replace).
    Matches(ETag),
}

/// Small documents every worker and the Functions app must see alike (schedules), keyed
/// by kind and name, replaced under optimistic concurrency.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Every document of a kind, in name order.
    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>, Error>;
    /// One document, if it exists.
    async fn read_document(&self, kind: &str, name: &str) -> Result<Option<Document>, Error>;
    /// Writes a document if the condition holds ([`Error::Conflict`] otherwise); returns
    /// its new version.
    async fn write_document(
        &self,
        kind: &str,
        name: &str,
        body: &str,
        condition: WriteCondition,
    ) -> Result<ETag, Error>;
    /// Deletes a document; [`Error::NotFound`] if there is none.
    async fn delete_document(&self, kind: &str, name: &str) -> Result<(), Error>;
}

/// A complete backend.
pub trait Backend:
    InstanceStore + QueueStore + PayloadStore + RunLogStore + DocumentStore + 'static
{
    /// Storage transactions so far, by `service.operation`.
    fn transaction_counts(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }

    /// How long storage has gone unanswered (or answered only with server errors), if it
    /// is in an outage now; `None` when it answers, or when the backend cannot tell.
    fn unreachable_for(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::StartInfo;
    use serde_json::json;

    fn with_input(id: &str, input: serde_json::Value) -> InstanceState {
        let started = StartInfo::new("medallion", "e1", input).into_event();
        InstanceState::started(id, &started, chrono::Utc::now())
    }

    #[test]
    fn a_workflow_id_filter_matches_the_inputs_workflow_id_only() {
        let query = InstanceQuery {
            workflow_id: Some("nightly".into()),
            ..InstanceQuery::default()
        };
        assert!(query.matches(&with_input(
            "a",
            json!({"workflow_id": "nightly", "job_id": "1"})
        )));
        assert!(!query.matches(&with_input("b", json!({"workflow_id": "other"}))));
        assert!(!query.matches(&with_input("c", json!({"workflow_id": 7}))));
        assert!(!query.matches(&with_input("d", json!("nightly"))));
        assert!(InstanceQuery::default().matches(&with_input("e", json!(null))));
    }
}
