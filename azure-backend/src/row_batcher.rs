//! Writes of instances that share a table partition, made at once, go out together: while a
//! transaction of a partition is in flight, the writes that arrive for it wait and go in
//! the next one (at most 100 operations, within a size bound), and each caller gets the
//! ETags of its own operations. Starts made at once and the commits of a worker's batch of
//! messages (the instances of one control partition) cost a fraction of a transaction each
//! instead of one. No timer: a write alone goes at once.
//!
//! A transaction is all or nothing, so one caller's conflict (its state row changed, its
//! instance exists) would fail the others' writes: a shared transaction the service refuses
//! is written again one caller at a time, so each gets its own answer. A transaction whose
//! outcome is unknown (a timeout) is not retried: its callers get the error, as alone.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use flowforge_orchestrator::backend::Error;
use tokio::sync::oneshot;

use crate::partition_queue::PartitionQueue;
use crate::table_op::{Op, BATCH};

/// What the batcher writes through: the backend's instances table.
#[async_trait]
pub(crate) trait RowWriter: Send + Sync + 'static {
    /// The batcher of this backend.
    fn row_batcher(&self) -> &RowBatcher;
    /// Runs one transaction in a partition of the instances table; each operation's ETag.
    async fn transact_rows(
        &self,
        partition: &str,
        ops: Vec<Op>,
    ) -> Result<Vec<Option<String>>, Error>;
}

/// Bytes of properties one shared transaction carries at most (the service takes 4 MiB);
/// a caller's own operations always go, however large.
const MAX_SHARED_BYTES: usize = 2 << 20;

type Reply = oneshot::Sender<Result<Vec<Option<String>>, Error>>;

/// One caller's operations.
struct Write {
    ops: Vec<Op>,
    reply: Reply,
}

/// The writes waiting per partition.
#[derive(Default)]
pub(crate) struct RowBatcher {
    waiting: PartitionQueue<Write>,
    backend: OnceLock<Weak<dyn RowWriter>>,
}

impl RowBatcher {
    /// The backend the transactions are written through (set once it is built).
    pub(crate) fn attach(&self, backend: Weak<dyn RowWriter>) {
        let _ = self.backend.set(backend);
    }

    /// Writes `ops` (one instance's, at most 100) with the others of `partition`; returns
    /// the ETag of each, in order.
    pub(crate) async fn write(
        &self,
        partition: &str,
        ops: Vec<Op>,
    ) -> Result<Vec<Option<String>>, Error> {
        let (reply, answer) = oneshot::channel();
        if self.waiting.push(partition, Write { ops, reply }) {
            match self.backend.get().and_then(Weak::upgrade) {
                Some(backend) => {
                    tokio::spawn(write_batches(
                        Arc::downgrade(&backend),
                        partition.to_owned(),
                    ));
                }
                // Not attached or gone: the waiting replies drop, and their callers get an error.
                None => self.waiting.abandon(partition),
            }
        }
        answer
            .await
            .map_err(|_| Error::Transient("the instance table writer stopped".into()))?
    }

    /// The next writes of a partition to share a transaction, or `None` (and none in
    /// flight) when none waits.
    fn next_batch(&self, partition: &str) -> Option<Vec<Write>> {
        self.waiting.next(partition, |writes| {
            let taken = shareable(writes);
            let mut batch = Vec::with_capacity(taken.len());
            let mut kept = Vec::with_capacity(writes.len() - taken.len());
            for (i, write) in writes.drain(..).enumerate() {
                if taken.contains(&i) {
                    batch.push(write);
                } else {
                    kept.push(write);
                }
            }
            *writes = kept;
            batch
        })
    }
}

/// Which of the waiting writes (indices, in arrival order) go in the next transaction: the
/// first always; then each that fits within 100 operations and the size bound and touches
/// no row already in it (a transaction may name an entity once) nor a row of a write left
/// for later (writes of one row keep their order).
fn shareable(writes: &[Write]) -> Vec<usize> {
    let mut taken = Vec::new();
    let mut ops = 0;
    let mut bytes = 0;
    let mut rows: HashSet<&str> = HashSet::new();
    let mut later: HashSet<&str> = HashSet::new();
    for (i, write) in writes.iter().enumerate() {
        let size: usize = write.ops.iter().map(Op::approximate_bytes).sum();
        let clash = write
            .ops
            .iter()
            .any(|op| rows.contains(op.row_key()) || later.contains(op.row_key()));
        let fits = ops + write.ops.len() <= BATCH && bytes + size <= MAX_SHARED_BYTES;
        if !taken.is_empty() && (clash || !fits) {
            later.extend(write.ops.iter().map(Op::row_key));
            continue;
        }
        taken.push(i);
        ops += write.ops.len();
        bytes += size;
        rows.extend(write.ops.iter().map(Op::row_key));
    }
    taken
}

/// Writes a partition's transactions until none waits.
async fn write_batches(backend: Weak<dyn RowWriter>, partition: String) {
    loop {
        // Gone: the waiting callers' replies drop, and they get an error.
        let Some(live) = backend.upgrade() else {
            return;
        };
        let Some(batch) = live.row_batcher().next_batch(&partition) else {
            return;
        };
        if batch.len() == 1 {
            for write in batch {
                let written = live.transact_rows(&partition, write.ops).await;
                let _ = write.reply.send(written);
            }
            continue;
        }
        let lengths: Vec<usize> = batch.iter().map(|w| w.ops.len()).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut ops = Vec::with_capacity(lengths.iter().sum());
        let mut alone = Vec::with_capacity(batch.len());
        for write in batch {
            // Kept to write again alone should the shared transaction be refused.
            alone.push(write.ops.clone());
            ops.extend(write.ops);
            replies.push(write.reply);
        }
        match live.transact_rows(&partition, ops).await {
            Ok(etags) => {
                let mut etags = etags.into_iter();
                for (reply, length) in replies.into_iter().zip(lengths) {
                    let _ = reply.send(Ok(etags.by_ref().take(length).collect()));
                }
            }
            Err(Error::Conflict(_) | Error::NotFound(_) | Error::Permanent(_)) => {
                // Refused as a whole, nothing written: each caller's writes alone.
                for (reply, ops) in replies.into_iter().zip(alone) {
                    let _ = reply.send(live.transact_rows(&partition, ops).await);
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Row;

    fn write(keys: &[&str]) -> Write {
        let (reply, _) = oneshot::channel();
        Write {
            ops: keys
                .iter()
                .map(|k| {
                    Op::Upsert(Row {
                        row_key: (*k).into(),
                        ..Row::default()
                    })
                })
                .collect(),
            reply,
        }
    }

    #[test]
    fn writes_share_a_transaction_within_its_limits_and_never_name_a_row_twice() {
        let many: Vec<String> = (0..60).map(|i| format!("x{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let writes = vec![
            write(&["a  state", "a  h-1"]),
            write(&["b  state"]),
            write(&["a  state"]),
            write(&many),
            write(&many[..40]),
            write(&["c  state"]),
        ];
        // The second write of `a` waits; 60 + 40 would pass 100 operations; `c` fits.
        assert_eq!(shareable(&writes), [0, 1, 3, 5]);
        // A write that waits holds back the later writes of its rows: `d`'s first write
        // would pass 100 operations, so its second waits too, and `e` fits.
        let most: Vec<String> = (0..99).map(|i| format!("w{i}")).collect();
        let most: Vec<&str> = most.iter().map(String::as_str).collect();
        let writes = vec![
            write(&most),
            write(&["d  state", "d  h-1"]),
            write(&["d  state"]),
            write(&["e  state"]),
        ];
        assert_eq!(shareable(&writes), [0, 3]);
        // A write alone goes whatever its size.
        let big: Vec<String> = (0..100).map(|i| format!("y{i}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        assert_eq!(shareable(&[write(&big), write(&["z"])]), [0]);
    }
}
