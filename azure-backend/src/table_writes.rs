//! Writes to a table: one entity group transaction (or a plain entity request when it
//! holds one write), every operation's answer checked.

use azure_data_tables::clients::TableClient;
use azure_data_tables::IfMatchCondition;
use flowforge_orchestrator::backend::Error;

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::table_op::Op;

impl AzureBackend {
    /// Runs one entity group transaction and checks every operation's status (the SDK
    /// returns `Ok` even when the service rejected the batch). Returns the ETag of the
    /// last operation.
    pub(crate) async fn transact(
        &self,
        table: &TableClient,
        partition: &str,
        ops: Vec<Op>,
    ) -> Result<Option<String>, Error> {
        let etags = self.transact_each(table, partition, ops).await?;
        Ok(etags.into_iter().last().flatten())
    }

    /// [`transact`](Self::transact), returning every operation's ETag in order.
    pub(crate) async fn transact_each(
        &self,
        table: &TableClient,
        partition: &str,
        mut ops: Vec<Op>,
    ) -> Result<Vec<Option<String>>, Error> {
        if ops.len() == 1 {
            if let Some(op) = ops.pop() {
                return self
                    .single(table, partition, op)
                    .await
                    .map(|etag| vec![Some(etag)]);
            }
        }
        let expected_responses = ops.len();
        let mut tx = table.partition_key_client(partition).transaction();
        let build = |e: azure_core::Error| Error::Permanent(format!("building a batch: {e}"));
        for op in ops {
            tx = match op {
                Op::Insert(row) => tx.insert(row).map_err(build)?,
                Op::Upsert(row) => {
                    let key = row.row_key.clone();
                    tx.insert_or_replace(key, row).map_err(build)?
                }
                Op::Update(row, etag) => {
                    let key = row.row_key.clone();
                    tx.update(key, row, Some(IfMatchCondition::Etag(etag.into())))
                        .map_err(build)?
                }
                Op::Merge(row, etag) => {
                    let key = row.row_key.clone();
                    tx.merge(key, row, Some(IfMatchCondition::Etag(etag.into())))
                        .map_err(build)?
                }
                Op::Delete(key) => tx.delete(key, Some(IfMatchCondition::Any)).map_err(build)?,
                Op::DeleteIf(key, etag) => tx
                    .delete(key, Some(IfMatchCondition::Etag(etag.into())))
                    .map_err(build)?,
            };
        }
        self.counter.count("table.batch");
        let response = tx.await.map_err(|e| classify("table batch", e))?;
        if let Some(bad) = response
            .operation_responses
            .iter()
            .find(|r| u16::from(r.status_code) >= 300)
        {
            let status = u16::from(bad.status_code);
            let message = format!("table batch rejected with HTTP {status}");
            return Err(match status {
                409 | 412 => Error::Conflict(message),
                404 => Error::NotFound(message),
                500..=599 => Error::Transient(message),
                _ => Error::Permanent(message),
            });
        }
        if response.operation_responses.len() != expected_responses {
            return Err(Error::Transient(format!(
                "table batch answered {} of {expected_responses} operations",
                response.operation_responses.len()
            )));
        }
        Ok(response
            .operation_responses
            .iter()
            .map(|r| r.etag.as_ref().map(|e| e.to_string()))
            .collect())
    }

    /// One write as a plain entity request: the same one transaction, without the batch's
    /// multipart envelope (cheaper for the service to parse, Azurite especially).
    async fn single(&self, table: &TableClient, partition: &str, op: Op) -> Result<String, Error> {
        let build = |e: azure_core::Error| Error::Permanent(format!("building a request: {e}"));
        let entity = |key: &str| {
            table
                .partition_key_client(partition)
                .entity_client(key.to_owned())
        };
        self.counter.count("table.write");
        let etag = match op {
            Op::Insert(row) => {
                let inserted = table
                    .insert::<_, serde_json::Value>(row)
                    .map_err(build)?
                    .await;
                inserted.map(|r| r.etag)
            }
            Op::Upsert(row) => {
                let key = row.row_key.clone();
                let written = entity(&key).insert_or_replace(row).map_err(build)?.await;
                written.map(|r| r.etag)
            }
            Op::Update(row, etag) => {
                let key = row.row_key.clone();
                let condition = IfMatchCondition::Etag(etag.into());
                let written = entity(&key).update(row, condition).map_err(build)?.await;
                written.map(|r| r.etag)
            }
            Op::Merge(row, etag) => {
                let key = row.row_key.clone();
                let condition = IfMatchCondition::Etag(etag.into());
                let written = entity(&key).merge(row, condition).map_err(build)?.await;
                written.map(|r| r.etag)
            }
            Op::Delete(key) => {
                let deleted = entity(&key).delete().await;
                return deleted
                    .map(|_| String::new())
                    .map_err(|e| classify("table delete", e));
            }
            Op::DeleteIf(key, etag) => {
                let condition = IfMatchCondition::Etag(etag.into());
                let deleted = entity(&key).delete().if_match(condition).await;
                return deleted
                    .map(|_| String::new())
                    .map_err(|e| classify("table delete", e));
            }
        };
        etag.map(|e| e.to_string())
            .map_err(|e| classify("table write", e))
    }
}
