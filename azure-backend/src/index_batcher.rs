//! Writes ahead of status index entries made at once go out together: while a batch for a
//! partition is in flight, later entries of that partition wait and go in the next batch
//! (at most 100, one entity group transaction), each caller getting its own entry's ETag.
//! Starts made at once (all in Running's partition) and instances finishing together
//! cost a fraction of a write each instead of one. The batches are written by a task of
//! their own, so a caller that stops waiting strands no one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use flowforge_orchestrator::backend::Error;
use tokio::sync::oneshot;

use crate::backend::AzureBackend;
use crate::instance_store::{Op, BATCH};
use crate::rows::Row;

type Reply = oneshot::Sender<Result<Option<String>, Error>>;

/// The entries waiting per partition, and whether a batch of it is in flight.
#[derive(Default)]
pub(crate) struct IndexBatcher {
    partitions: Mutex<HashMap<String, Waiting>>,
    backend: OnceLock<Weak<AzureBackend>>,
}

#[derive(Default)]
struct Waiting {
    in_flight: bool,
    rows: Vec<(Row, Reply)>,
}

impl IndexBatcher {
    /// The backend the batches are written through (set once it is built).
    pub(crate) fn attach(&self, backend: &Arc<AzureBackend>) {
        let _ = self.backend.set(Arc::downgrade(backend));
    }

    /// Upserts an entry row with the others of its partition; returns its ETag.
    pub(crate) async fn upsert(&self, row: Row) -> Result<Option<String>, Error> {
        let (reply, answer) = oneshot::channel();
        let partition = row.partition_key.clone();
        let start_writer = {
            let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
            let waiting = partitions.entry(partition.clone()).or_default();
            waiting.rows.push((row, reply));
            !std::mem::replace(&mut waiting.in_flight, true)
        };
        if start_writer {
            let backend = self.backend.get().cloned().unwrap_or_default();
            tokio::spawn(write_batches(backend, partition));
        }
        answer
            .await
            .map_err(|_| Error::Transient("the status index writer stopped".into()))?
    }

    /// The next batch of a partition, or `None` (and no batch in flight) when none waits.
    fn next_batch(&self, partition: &str) -> Option<Vec<(Row, Reply)>> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = partitions.get_mut(partition)?;
        if waiting.rows.is_empty() {
            waiting.in_flight = false;
            return None;
        }
        let take = waiting.rows.len().min(BATCH);
        Some(waiting.rows.drain(..take).collect())
    }
}

/// Writes a partition's batches until none waits.
async fn write_batches(backend: Weak<AzureBackend>, partition: String) {
    loop {
        // Gone: the waiting callers' replies drop, and they get an error.
        let Some(live) = backend.upgrade() else {
            return;
        };
        let Some(batch) = live.index_batcher.next_batch(&partition) else {
            return;
        };
        // One operation per entity: an entry asked for twice is written once.
        let mut keys: Vec<String> = Vec::new();
        let mut ops = Vec::new();
        let mut slots = Vec::with_capacity(batch.len());
        for (row, reply) in batch {
            let slot = match keys.iter().position(|k| *k == row.row_key) {
                Some(slot) => slot,
                None => {
                    keys.push(row.row_key.clone());
                    ops.push(Op::Upsert(row));
                    keys.len() - 1
                }
            };
            slots.push((slot, reply));
        }
        let written = live.transact_each(&live.index.table, &partition, ops).await;
        for (slot, reply) in slots {
            let answer = match &written {
                Ok(etags) => Ok(etags.get(slot).cloned().flatten()),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(answer);
        }
    }
}
