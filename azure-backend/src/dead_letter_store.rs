//! The dead-letter archive: a table (`<hub>deadletters`) that keeps every dead letter with
//! its reason until an operator requeues or deletes it. One partition (dead letters are
//! rare); RowKeys sort newest first ([`ArchivedLetter::new_id`]). Large bodies go to the
//! payload container by reference, as elsewhere.

use chrono::{DateTime, Utc};
use flowforge_orchestrator::backend::{ArchivedLetter, DeadLetter, Error, QueueName};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::AzureBackend;
use crate::error::classify;

const PARTITION: &str = "letters";

#[derive(Debug, Serialize, Deserialize)]
struct LetterRow {
    #[serde(rename = "PartitionKey")]
    partition_key: String,
    #[serde(rename = "RowKey")]
    row_key: String,
    #[serde(rename = "Queue")]
    queue: String,
    #[serde(rename = "Reason")]
    reason: String,
    #[serde(rename = "DequeueCount")]
    dequeue_count: u32,
    #[serde(rename = "ArchivedAt")]
    archived_at: String,
    #[serde(rename = "Raw")]
    raw: String,
}

impl AzureBackend {
    pub(crate) async fn archive_letter(
        &self,
        queue: &QueueName,
        letter: &DeadLetter,
    ) -> Result<(), Error> {
        let now = Utc::now();
        let raw = self
            .offload("_dead", letter.raw.clone(), self.config.max_inline_property)
            .await?;
        // Reasons come from the engine and stay short; a long one is cut, not refused.
        let reason: String = letter.reason.chars().take(8_000).collect();
        let row = LetterRow {
            partition_key: PARTITION.into(),
            row_key: ArchivedLetter::new_id(now),
            queue: queue.suffix(),
            reason,
            dequeue_count: letter.dequeue_count,
            archived_at: now.to_rfc3339(),
            raw,
        };
        self.counter.count("table.write");
        self.dead_letters
            .insert::<_, serde_json::Value>(row)
            .map_err(|e| Error::Permanent(format!("building a request: {e}")))?
            .await
            .map(|_| ())
            .map_err(|e| classify("archive dead letter", e))
    }

    pub(crate) async fn archived_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<ArchivedLetter>, Error> {
        let mut stream = self
            .dead_letters
            .query()
            .filter(format!("PartitionKey eq '{PARTITION}'"))
            .into_stream::<LetterRow>();
        let mut letters = Vec::new();
        while let Some(page) = stream.next().await {
            self.counter.count("table.query");
            for row in page.map_err(|e| classify("table query", e))?.entities {
                letters.push(self.letter_of(row).await?);
                if letters.len() >= limit {
                    return Ok(letters);
                }
            }
        }
        Ok(letters)
    }

    async fn letter_of(&self, row: LetterRow) -> Result<ArchivedLetter, Error> {
        let archived_at = DateTime::parse_from_rfc3339(&row.archived_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        Ok(ArchivedLetter {
            id: row.row_key,
            queue: QueueName::from_suffix(&row.queue).unwrap_or(QueueName::Work),
            archived_at,
            letter: DeadLetter {
                raw: self.inline(row.raw).await?,
                reason: row.reason,
                dequeue_count: row.dequeue_count,
            },
        })
    }

    pub(crate) async fn remove_letter(&self, id: &str) -> Result<bool, Error> {
        self.counter.count("table.delete");
        let deleted = self
            .dead_letters
            .partition_key_client(PARTITION)
            .entity_client(id.to_owned())
            .delete()
            .await;
        match deleted.map_err(|e| classify("table delete", e)) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
