//! Run logs in their own table (`<hub>runlogs`): PartitionKey = instance id, RowKey = the
//! chunk's key (execution, activity id, attempt start, chunk number: the order a reader
//! wants), `Body` = the chunk as JSON. A separate table keeps history loads (which read
//! the instance's whole partition) from reading logs; purge deletes both partitions.
//! Writes go up to [`BATCH`] chunks per entity group transaction.

use async_trait::async_trait;
use flowforge_orchestrator::backend::{Error, RunLogStore};
use flowforge_orchestrator::run_logs::{LogChunk, LogPage};
use futures::StreamExt;

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::rows::odata_quote;
use crate::rows::Row;
use crate::table_op::{Op, BATCH};

/// Chunks per page at most (one query page of the service holds up to 1,000 rows).
const MAX_PAGE: usize = 1_000;

impl AzureBackend {
    /// Deletes every log row of an instance (part of its purge).
    pub(crate) async fn delete_run_logs(&self, instance_id: &str) -> Result<(), Error> {
        let filter = format!("PartitionKey eq '{}'", odata_quote(instance_id));
        let mut stream = self
            .run_logs
            .query()
            .filter(filter)
            .select("PartitionKey,RowKey")
            .into_stream::<Row>();
        let mut keys = Vec::new();
        while let Some(page) = stream.next().await {
            self.counter.count("table.query");
            let page = page.map_err(|e| classify("table query", e))?;
            keys.extend(page.entities.into_iter().map(|r| r.row_key));
        }
        for chunk in keys.chunks(BATCH) {
            let ops = chunk.iter().map(|k| Op::Delete(k.clone())).collect();
            match self.transact(&self.run_logs, instance_id, ops).await {
                // Another purge of the same instance got there first.
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RunLogStore for AzureBackend {
    async fn append_run_logs(&self, instance_id: &str, chunks: &[LogChunk]) -> Result<(), Error> {
        for batch in chunks.chunks(BATCH) {
            let mut ops = Vec::with_capacity(batch.len());
            for chunk in batch {
                let body = serde_json::to_string(chunk)
                    .map_err(|e| Error::Permanent(format!("encoding a log chunk: {e}")))?;
                ops.push(Op::Upsert(Row {
                    partition_key: instance_id.to_owned(),
                    row_key: chunk.key.clone(),
                    body: Some(body),
                    ..Row::default()
                }));
            }
            self.transact(&self.run_logs, instance_id, ops).await?;
        }
        Ok(())
    }

    async fn read_run_logs(
        &self,
        instance_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut filter = format!("PartitionKey eq '{}'", odata_quote(instance_id));
        if let Some(after) = after {
            filter.push_str(&format!(" and RowKey gt '{}'", odata_quote(after)));
        }
        let mut stream = self
            .run_logs
            .query()
            .filter(filter)
            .top(limit as u32 + 1)
            .into_stream::<Row>();
        let mut chunks = Vec::new();
        let mut more = false;
        'pages: while let Some(page) = stream.next().await {
            self.counter.count("table.query");
            for row in page.map_err(|e| classify("table query", e))?.entities {
                if chunks.len() == limit {
                    more = true;
                    break 'pages;
                }
                let body = row.body.unwrap_or_default();
                let chunk: LogChunk = serde_json::from_str(&body).map_err(|e| {
                    Error::Permanent(format!("log row '{}' is not a chunk: {e}", row.row_key))
                })?;
                chunks.push(chunk);
            }
        }
        let continuation = more.then(|| chunks.last().map(|c| c.key.clone())).flatten();
        Ok(LogPage {
            chunks,
            continuation,
        })
    }
}
