//! Writes ahead of status index entries made at once go out together: while a batch for a
//! partition is in flight, later entries of that partition wait and go in the next batch
//! (at most 100, one entity group transaction), each caller getting its own entry's ETag.
//! Starts made at once (all in Running's partition) and instances finishing together
//! cost a fraction of a write each instead of one. The batches are written by a task of
//! their own, so a caller that stops waiting strands no one.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use flowforge_orchestrator::backend::Error;
use tokio::sync::oneshot;

use crate::partition_queue::PartitionQueue;
use crate::rows::Row;

/// What the batcher writes through: the backend's index table and its batcher.
#[async_trait]
pub(crate) trait IndexWriter: Send + Sync + 'static {
    /// The batcher of this backend.
    fn index_batcher(&self) -> &IndexBatcher;
    /// Upserts rows of one index partition in one transaction; each row's ETag in order.
    async fn upsert_index_rows(
        &self,
        partition: &str,
        rows: Vec<Row>,
    ) -> Result<Vec<Option<String>>, Error>;
}

/// Entries in one batch at most (an entity group transaction's limit).
const MAX_BATCH: usize = 100;

type Reply = oneshot::Sender<Result<Option<String>, Error>>;

/// The entries waiting per partition.
#[derive(Default)]
pub(crate) struct IndexBatcher {
    waiting: PartitionQueue<(Row, Reply)>,
    backend: OnceLock<Weak<dyn IndexWriter>>,
}

impl IndexBatcher {
    /// The backend the batches are written through (set once it is built).
    pub(crate) fn attach(&self, backend: Weak<dyn IndexWriter>) {
        let _ = self.backend.set(backend);
    }

    /// Upserts an entry row with the others of its partition; returns its ETag.
    pub(crate) async fn upsert(&self, row: Row) -> Result<Option<String>, Error> {
        let (reply, answer) = oneshot::channel();
        let partition = row.partition_key.clone();
        if self.waiting.push(&partition, (row, reply)) {
            match self.backend.get().and_then(Weak::upgrade) {
                Some(backend) => {
                    tokio::spawn(write_batches(Arc::downgrade(&backend), partition));
                }
                // Not attached or gone: the waiting replies drop, and their callers get an error.
                None => self.waiting.abandon(&partition),
            }
        }
        answer
            .await
            .map_err(|_| Error::Transient("the status index writer stopped".into()))?
    }

    /// The next batch of a partition, or `None` (and no batch in flight) when none waits.
    fn next_batch(&self, partition: &str) -> Option<Vec<(Row, Reply)>> {
        self.waiting.next(partition, |rows| {
            let take = rows.len().min(MAX_BATCH);
            rows.drain(..take).collect()
        })
    }
}

/// Writes a partition's batches until none waits.
async fn write_batches(backend: Weak<dyn IndexWriter>, partition: String) {
    loop {
        // Gone: the waiting callers' replies drop, and they get an error.
        let Some(live) = backend.upgrade() else {
            return;
        };
        let Some(batch) = live.index_batcher().next_batch(&partition) else {
            return;
        };
        // One operation per entity: an entry asked for twice is written once.
        let mut keys: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut slots = Vec::with_capacity(batch.len());
        for (row, reply) in batch {
            let slot = match keys.iter().position(|k| *k == row.row_key) {
                Some(slot) => slot,
                None => {
                    keys.push(row.row_key.clone());
                    rows.push(row);
                    keys.len() - 1
                }
            };
            slots.push((slot, reply));
        }
        let written = live.upsert_index_rows(&partition, rows).await;
        for (slot, reply) in slots {
            let answer = match &written {
                Ok(etags) => Ok(etags.get(slot).cloned().flatten()),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(answer);
        }
    }
}
