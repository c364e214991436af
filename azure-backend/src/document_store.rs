//! Small shared documents (schedules) in their own table (`<hub>documents`):
//! PartitionKey = kind, RowKey = name, `Body` = the document. The entity's ETag is the
//! document's version, so a replace is a conditional update and a create an insert.

use async_trait::async_trait;
use flowforge_orchestrator::backend::{Document, DocumentStore, ETag, Error, WriteCondition};
use futures::StreamExt;

use crate::backend::AzureBackend;
use crate::error::classify;
use crate::rows::odata_quote;
use crate::rows::Row;
use crate::table_op::Op;

impl AzureBackend {
    async fn document_rows(&self, filter: String) -> Result<Vec<Document>, Error> {
        let mut stream = self.documents.query().filter(filter).into_stream::<Row>();
        let mut documents = Vec::new();
        while let Some(page) = stream.next().await {
            self.counter.count("table.query");
            for row in page.map_err(|e| classify("table query", e))?.entities {
                documents.push(Document {
                    name: row.row_key,
                    body: row.body.unwrap_or_default(),
                    etag: ETag(row.etag.unwrap_or_default()),
                });
            }
        }
        Ok(documents)
    }
}

#[async_trait]
impl DocumentStore for AzureBackend {
    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>, Error> {
        self.document_rows(format!("PartitionKey eq '{}'", odata_quote(kind)))
            .await
    }

    async fn read_document(&self, kind: &str, name: &str) -> Result<Option<Document>, Error> {
        let filter = format!(
            "PartitionKey eq '{}' and RowKey eq '{}'",
            odata_quote(kind),
            odata_quote(name)
        );
        Ok(self.document_rows(filter).await?.into_iter().next())
    }

    async fn write_document(
        &self,
        kind: &str,
        name: &str,
        body: &str,
        condition: WriteCondition,
    ) -> Result<ETag, Error> {
        let row = Row {
            partition_key: kind.to_owned(),
            row_key: name.to_owned(),
            body: Some(body.to_owned()),
            ..Row::default()
        };
        let op = match condition {
            WriteCondition::Absent => Op::Insert(row),
            WriteCondition::Matches(etag) => Op::Update(row, etag.0),
        };
        let etag = self.transact(&self.documents, kind, vec![op]).await?;
        Ok(ETag(etag.unwrap_or_default()))
    }

    async fn delete_document(&self, kind: &str, name: &str) -> Result<(), Error> {
        self.transact(&self.documents, kind, vec![Op::Delete(name.to_owned())])
            .await
            .map(|_| ())
    }
}
