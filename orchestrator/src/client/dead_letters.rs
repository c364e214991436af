//! The dead-letter archive for operators: list, show, requeue, delete.

use super::{Client, Error};
use crate::backend::{ArchivedLetter, QueueMessage};

impl Client {
    /// The archived dead letters, newest first, at most `limit`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<ArchivedLetter>, Error> {
        Ok(self.backend.list_dead_letters(limit).await?)
    }

    /// One archived dead letter.
    pub async fn dead_letter(&self, id: &str) -> Result<ArchivedLetter, Error> {
        // The archive is small and rarely read: a listing is the lookup.
        self.backend
            .list_dead_letters(usize::MAX)
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| Error::DeadLetterNotFound(id.to_owned()))
    }

    /// Sends a dead letter's message back to the queue it came from (its delivery count
    /// starts again) and removes it from the archive. A body that is not an engine message
    /// cannot be requeued.
    pub async fn requeue_dead_letter(&self, id: &str) -> Result<ArchivedLetter, Error> {
        let archived = self.dead_letter(id).await?;
        let message = QueueMessage::decode(&archived.letter.raw).map_err(|reason| {
            Error::InvalidInput(format!(
                "dead letter '{id}' cannot be requeued: its body is not an engine message ({reason})"
            ))
        })?;
        self.backend
            .send_raw(&archived.queue, &message.encode(), None)
            .await?;
        self.backend.remove_dead_letter(id).await?;
        Ok(archived)
    }

    /// Deletes a dead letter from the archive.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<(), Error> {
        if self.backend.remove_dead_letter(id).await? {
            Ok(())
        } else {
            Err(Error::DeadLetterNotFound(id.to_owned()))
        }
    }
}
