//! The status index in storage (layout and rules in [`crate::status_index`]): written
//! ahead of state rows, deleted behind them, backfilled for an existing hub, and read by
//! listings of statuses, each candidate checked against its state row.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use azure_data_tables::operations::QueryEntityResponse;
use flowforge_orchestrator::backend::{Error, InstancePage, InstanceQuery, InstanceStore};
use flowforge_orchestrator::status::InstanceState;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::index_batcher::{IndexBatcher, IndexWriter};
use crate::rows::{Row, STATE_KIND};
use crate::status_index::{
    self, IndexEntry, IndexKey, COMPLETE_ROW, ENABLED_ROW, MARKER_PARTITION,
};
use crate::table_op::{Op, BATCH};

/// Candidates whose state rows are read at once.
const VERIFY_AT_ONCE: usize = 16;

#[async_trait]
impl IndexWriter for AzureBackend {
    fn index_batcher(&self) -> &IndexBatcher {
        &self.index_batcher
    }

    async fn upsert_index_rows(
        &self,
        partition: &str,
        rows: Vec<Row>,
    ) -> Result<Vec<Option<String>>, Error> {
        let ops = rows.into_iter().map(Op::Upsert).collect();
        self.transact_each(&self.index.table, partition, ops).await
    }
}

impl AzureBackend {
    /// Whether this hub maintains the status index.
    pub(crate) fn index_on(&self) -> bool {
        self.index.on.load(Ordering::Acquire)
    }

    /// Creates the index table and learns whether the hub maintains the index: it does once
    /// any process was configured so (the `enabled` row). Backfills an existing hub whose
    /// index is not complete yet, in the background.
    pub(crate) async fn prepare_status_index(self: &Arc<Self>) -> Result<(), Error> {
        let created = self.index.table.create().await.map(|_| ());
        crate::backend::ignore_exists(created, "create table")?;
        if self.config.status_index {
            self.write_marker(ENABLED_ROW).await?;
        } else if !self.marker_exists(ENABLED_ROW).await? {
            return Ok(());
        }
        self.index.on.store(true, Ordering::Release);
        tokio::spawn(sweep_left(Arc::downgrade(self)));
        if self.marker_exists(COMPLETE_ROW).await? {
            self.index.complete.store(true, Ordering::Release);
            return Ok(());
        }
        let backend = Arc::clone(self);
        tokio::spawn(async move {
            match backend.backfill_status_index().await {
                Ok(count) => tracing::info!(count, "status index backfilled"),
                Err(error) => {
                    tracing::warn!(%error, "status index backfill failed; listings scan state rows")
                }
            }
        });
        Ok(())
    }

    /// Indexes every state row of the hub, then marks the index complete. Safe beside
    /// running workers: they index what they write from the moment the index is on, and a
    /// row this copies after it changed is stale, which listings drop.
    pub async fn backfill_status_index(&self) -> Result<usize, Error> {
        let mut stream = self
            .table
            .query()
            .filter(format!("Kind eq '{STATE_KIND}'"))
            .select("PartitionKey,RowKey,Status,CreatedAt")
            .into_stream::<Row>();
        let mut count = 0;
        while let Some(response) = stream.next().await {
            self.counter.count("table.query");
            let rows = response.map_err(|e| classify("table query", e))?.entities;
            let mut by_status: BTreeMap<&'static str, Vec<Op>> = BTreeMap::new();
            for key in rows.iter().filter_map(status_index::key_of_row) {
                by_status
                    .entry(key.status.as_str())
                    .or_default()
                    .push(Op::Upsert(index_row(&key)));
            }
            for (status, ops) in by_status {
                let mut ops = ops.into_iter().peekable();
                while ops.peek().is_some() {
                    let chunk: Vec<Op> = ops.by_ref().take(BATCH).collect();
                    count += chunk.len();
                    self.transact(&self.index.table, status, chunk).await?;
                }
            }
        }
        self.write_marker(COMPLETE_ROW).await?;
        self.index.complete.store(true, Ordering::Release);
        Ok(count)
    }

    /// Writes the entry `new` ahead of a state row that leaves `old` (none: a new row);
    /// returns the written entry's ETag (`None`: nothing to write).
    pub(crate) async fn index_ahead(
        &self,
        instance_id: &str,
        old: Option<&IndexKey>,
        new: &IndexKey,
    ) -> Result<Option<String>, Error> {
        if !self.index_on() || old == Some(new) {
            return Ok(None);
        }
        let written = self.index_batcher.upsert(index_row(new)).await;
        written.map_err(|e| {
            tracing::debug!(instance_id, %e, "status index write failed");
            e
        })
    }

    /// Deletes the entry `old` once a state row with `new` is committed, only while it is
    /// still as written ahead of `old`'s state (see [`IndexEntry`]). Best effort: one left
    /// behind is stale, and listings drop it.
    pub(crate) async fn index_behind(&self, instance_id: &str, old: &IndexEntry, new: &IndexKey) {
        if old.key != *new {
            tracing::trace!(instance_id, "status index entry left");
            self.index_leave(old.clone());
        }
    }

    /// Hands an entry no state row points at any more (left by a commit or a purge, or
    /// met stale by a listing) to the sweeper, which deletes it in a batch of its partition. Best effort: one the
    /// process dies with is stale, and listings drop it.
    pub(crate) fn index_leave(&self, entry: IndexEntry) {
        if self.index_on() {
            let mut left = self.index.left.lock().unwrap_or_else(|p| p.into_inner());
            left.push(entry);
            self.index.left_signal.notify_one();
        }
    }

    /// Deletes the entries handed to the sweeper so far, a batch per partition
    /// (conditional on their ETags; a batch one of them fails is done one by one). Tests call it to see the
    /// index settled; the sweeper calls it as entries are left.
    pub async fn flush_status_index(&self) {
        let _one_at_a_time = self.index.flushing.lock().await;
        let left = std::mem::take(&mut *self.index.left.lock().unwrap_or_else(|p| p.into_inner()));
        let mut by_partition: BTreeMap<&'static str, Vec<IndexEntry>> = BTreeMap::new();
        for entry in left {
            by_partition
                .entry(entry.key.status.as_str())
                .or_default()
                .push(entry);
        }
        for (partition, entries) in by_partition {
            for chunk in entries.chunks(BATCH) {
                let ops = chunk.iter().map(delete_op).collect();
                if self
                    .transact(&self.index.table, partition, ops)
                    .await
                    .is_err()
                {
                    // One entry written again or gone fails the whole batch: one by one.
                    for entry in chunk {
                        self.index_remove(entry).await;
                    }
                }
            }
        }
    }

    /// Deletes an entry, conditionally on its ETag when known (best effort; a missing one
    /// is already gone, a changed one was written again and stays).
    async fn index_remove(&self, entry: &IndexEntry) {
        if !self.index_on() {
            return;
        }
        let partition = entry.key.status.as_str();
        let op = delete_op(entry);
        match self.transact(&self.index.table, partition, vec![op]).await {
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {}
            Err(error) => {
                tracing::debug!(%error, "stale status index entry left for listings to drop")
            }
        }
    }

    /// The index entry of the state row at `etag`, when the index is on: from this
    /// process's cache, else read (a row that changed since is a conflict, as the commit
    /// would be).
    pub(crate) async fn index_entry_left(
        &self,
        instance_id: &str,
        etag: &flowforge_orchestrator::backend::ETag,
    ) -> Result<Option<IndexEntry>, Error> {
        if !self.index_on() {
            return Ok(None);
        }
        if self.ranges.index_entry(instance_id, &etag.0).is_none() {
            // Reading the row caches its entry under its ETag.
            self.read_state(instance_id).await?;
        }
        match self.ranges.index_entry(instance_id, &etag.0) {
            Some(entry) => Ok(Some(entry)),
            None => Err(Error::Conflict(format!("instance '{instance_id}' changed"))),
        }
    }

    /// A page of a listing by status or creation window from the index, or `None` when the index does not
    /// serve it (off, not complete yet, a query it does not narrow, a scan's token).
    pub(crate) async fn list_by_index(
        &self,
        query: &InstanceQuery,
        size: usize,
    ) -> Result<Option<InstancePage>, Error> {
        let token = query.continuation.as_deref();
        let ready = self.index_on() && self.index.complete.load(Ordering::Acquire);
        let statuses = status_index::partitions_serving(query).filter(|_| ready);
        let Ok(after) = status_index::resume_after(query) else {
            return Ok(None);
        };
        let Some(statuses) = statuses else {
            return match token.filter(|t| status_index::is_index_token(t)) {
                Some(_) => Err(Error::Permanent(
                    "the continuation token is of a listing by the status index, which no \
                     longer serves this query: list again from the first page"
                        .into(),
                )),
                None => Ok(None),
            };
        };
        let mut partitions = Vec::new();
        for status in statuses {
            let filter = status_index::partition_filter(status, query, after);
            partitions.push(Partition::open(self, filter, size));
        }
        let mut matches: Vec<(String, InstanceState)> = Vec::new();
        'page: loop {
            // No more than the page still needs (its last match says a next page exists).
            let wanted = (size + 1 - matches.len()).min(VERIFY_AT_ONCE);
            let mut candidates = Vec::new();
            while candidates.len() < wanted {
                match next_in_order(self, &mut partitions).await? {
                    Some(key) => candidates.push(key),
                    None => break,
                }
            }
            if candidates.is_empty() {
                break;
            }
            let checked = futures::future::join_all(
                candidates.iter().map(|c| self.current_entry(&c.entry.key)),
            )
            .await;
            for (candidate, state) in candidates.into_iter().zip(checked) {
                match state? {
                    Some(state) if query.matches(&state) => {
                        matches.push((candidate.entry.key.row_key, state));
                        if matches.len() > size {
                            break 'page;
                        }
                    }
                    Some(_) => {}
                    // Not listed. Deleted only once older than any commit under way (it
                    // may be written ahead of one) and as read (not if written again), by
                    // the sweeper, so the listing does not wait for it.
                    None if candidate.older_than(self.config.stale_index_grace) => {
                        self.index_leave(candidate.entry);
                    }
                    None => {}
                }
            }
        }
        let more = matches.len() > size;
        matches.truncate(size);
        let continuation = more
            .then(|| matches.last().map(|(key, _)| status_index::token(key)))
            .flatten();
        Ok(Some(InstancePage {
            instances: matches.into_iter().map(|(_, state)| state).collect(),
            continuation,
        }))
    }

    /// The state an index entry stands for, `None` when the entry is stale (the instance
    /// is gone or its state row has another key now).
    async fn current_entry(&self, key: &IndexKey) -> Result<Option<InstanceState>, Error> {
        let Some(id) = status_index::instance_of(&key.row_key) else {
            return Ok(None);
        };
        Ok(self
            .read_state(id)
            .await?
            .map(|(state, _)| state)
            .filter(|state| IndexKey::of(state) == *key))
    }

    async fn write_marker(&self, row_key: &str) -> Result<(), Error> {
        let row = Row {
            partition_key: MARKER_PARTITION.into(),
            row_key: row_key.into(),
            ..Row::default()
        };
        self.transact(&self.index.table, MARKER_PARTITION, vec![Op::Upsert(row)])
            .await
            .map(|_| ())
    }

    async fn marker_exists(&self, row_key: &str) -> Result<bool, Error> {
        self.counter.count("table.get");
        let got = self
            .index
            .table
            .partition_key_client(MARKER_PARTITION)
            .entity_client(row_key)
            .get::<Row>()
            .await;
        match got.map_err(|e| classify("read status index", e)) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How long the sweeper gathers entries left behind before it deletes them: more
/// entries per batch (at a few hundred completions a second, tens), a later delete
/// (an entry not yet deleted is stale, which listings skip).
const SWEEP_GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// Deletes the entries handed to it (left by commits and purges, met stale by listings),
/// in batches, while the backend lives. Entries still waiting when the process ends stay
/// as stale entries, which listings drop.
async fn sweep_left(backend: std::sync::Weak<AzureBackend>) {
    loop {
        let Some(live) = backend.upgrade() else {
            return;
        };
        // Waits without keeping the backend alive, so it can be dropped.
        let signal = Arc::clone(&live.index.left_signal);
        drop(live);
        let wake = tokio::time::timeout(std::time::Duration::from_secs(60), signal.notified());
        let _ = wake.await;
        tokio::time::sleep(SWEEP_GATHER).await;
        match backend.upgrade() {
            Some(live) => live.flush_status_index().await,
            None => return,
        }
    }
}

/// The delete of an entry: on its ETag when known.
fn delete_op(entry: &IndexEntry) -> Op {
    let key = entry.key.row_key.clone();
    match &entry.etag {
        Some(etag) => Op::DeleteIf(key, etag.clone()),
        None => Op::Delete(key),
    }
}

fn index_row(key: &IndexKey) -> Row {
    Row {
        partition_key: key.status.as_str().into(),
        row_key: key.row_key.clone(),
        ..Row::default()
    }
}

/// An entry as a listing read it.
struct Candidate {
    entry: IndexEntry,
    written_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Candidate {
    fn older_than(&self, grace: std::time::Duration) -> bool {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.written_at
            .is_some_and(|at| at + grace <= chrono::Utc::now())
    }
}

/// One status's partition being read in key order, a response at a time.
struct Partition {
    rows: BoxStream<'static, azure_core::Result<QueryEntityResponse<Row>>>,
    buffered: VecDeque<Candidate>,
    done: bool,
}

impl Partition {
    fn open(backend: &AzureBackend, filter: String, size: usize) -> Self {
        let top = azure_data_tables::Top::new(crate::list_query::rows_per_request(size));
        let rows = backend
            .index
            .table
            .query()
            .filter(filter)
            .top(top)
            .into_stream::<Row>()
            .boxed();
        Self {
            rows,
            buffered: VecDeque::new(),
            done: false,
        }
    }

    /// Reads the next response if nothing is buffered; false once the partition is done.
    async fn fill(&mut self, backend: &AzureBackend) -> Result<bool, Error> {
        while self.buffered.is_empty() && !self.done {
            match self.rows.next().await {
                None => self.done = true,
                Some(response) => {
                    backend.counter.count("table.query");
                    let rows = response.map_err(|e| classify("table query", e))?.entities;
                    self.buffered.extend(rows.into_iter().filter_map(|row| {
                        let status = row.partition_key.parse().ok()?;
                        let written_at = row
                            .timestamp
                            .as_deref()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| t.to_utc());
                        let key = IndexKey {
                            status,
                            row_key: row.row_key,
                        };
                        let entry = IndexEntry {
                            key,
                            etag: row.etag,
                        };
                        Some(Candidate { entry, written_at })
                    }));
                }
            }
        }
        Ok(!self.buffered.is_empty())
    }
}

/// The next entry over all the listed statuses in key order (a merge of their partitions).
async fn next_in_order(
    backend: &AzureBackend,
    partitions: &mut [Partition],
) -> Result<Option<Candidate>, Error> {
    let mut first: Option<usize> = None;
    for i in 0..partitions.len() {
        if !partitions[i].fill(backend).await? {
            continue;
        }
        let key = &partitions[i].buffered[0].entry.key.row_key;
        if first.is_none_or(|f| *key < partitions[f].buffered[0].entry.key.row_key) {
            first = Some(i);
        }
    }
    Ok(first.and_then(|i| partitions[i].buffered.pop_front()))
}
