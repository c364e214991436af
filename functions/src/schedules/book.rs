//! The schedule book: the task hub's schedules, one document each in the task hub's
//! document store, so every worker and the Functions app fire, list and change the same
//! set. Configuration (`FLOWFORGE_SCHEDULES`) seeds it at start-up; the API, the CLI and
//! the dashboard change it at run time. Every change is a replace under the document's
//! version (ETag), retried on a conflict, so two operators or two workers never lose each
//! other's change.
//!
//! Seeding rules: a configured schedule the book lacks is added; one the book holds from
//! configuration is updated to the configured spec (its paused state kept); one created or
//! changed at run time keeps the run-time version (logged); one deleted at run time stays
//! deleted (a tombstone), until it is created again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowforge_orchestrator::backend::{ETag, Error as StoreError, WriteCondition};
use flowforge_orchestrator::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{Schedule, ScheduleSpec};

/// The document kind of schedules.
const KIND: &str = "schedule";

/// Where a schedule's current spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The configuration (`FLOWFORGE_SCHEDULES`); a changed configuration updates it.
    Config,
    /// The API, the CLI or the dashboard; configuration no longer changes it.
    Api,
}

/// A pause: since when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// When it was paused.
    pub at: DateTime<Utc>,
    /// Why (the operator's words; may be empty).
    #[serde(default)]
    pub reason: String,
}

/// A schedule as the book keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    /// What it runs and when.
    pub spec: ScheduleSpec,
    /// Set while paused: no occurrence fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Occurrences at or before this instant never fire from the timer (set on creation
    /// and on a resume, so neither catches up what came before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_after: Option<DateTime<Utc>>,
    /// The one occurrence held back by the `bufferOne` overlap policy, started when the
    /// run ahead of it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<DateTime<Utc>>,
    /// Where the spec came from.
    pub origin: Origin,
    /// Deleted at run time while configuration still names it (keeps it from coming back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A schedule of the book: its record, parsed, with the record's version.
#[derive(Debug, Clone)]
pub struct BookEntry {
    /// The parsed schedule.
    pub schedule: Schedule,
    /// Its record.
    pub record: ScheduleRecord,
    /// The record's version.
    pub etag: ETag,
}

/// Why a change of the book was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// No schedule of that name.
    #[error("no schedule named '{0}'")]
    NotFound(String),
    /// A schedule of that name exists already.
    #[error("a schedule named '{0}' exists already")]
    Exists(String),
    /// The spec is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
}

impl From<StoreError> for BookError {
    fn from(error: StoreError) -> Self {
        Self::Storage(error.to_string())
    }
}

/// How many times a change is retried when another writer got there first.
const CONFLICT_RETRIES: usize = 8;

/// The task hub's schedules.
#[derive(Clone)]
pub struct ScheduleBook {
    client: Client,
    configured: Arc<Vec<Schedule>>,
    seeded: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl ScheduleBook {
    /// The book of the client's task hub, seeded (on first use, until seeding succeeds)
    /// from the configured schedules.
    pub fn new(client: Client, configured: Vec<Schedule>) -> Self {
        Self {
            client,
            configured: Arc::new(configured),
            seeded: Arc::new(AtomicBool::new(false)),
            changed: Arc::new(Notify::new()),
        }
    }

    async fn ensure_seeded(&self) -> Result<(), BookError> {
        if !self.seeded.load(Ordering::Acquire) {
            self.seed(Utc::now()).await?;
            self.seeded.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The client the book's schedules start runs with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves when this process changed the book (the worker's ticker wakes on it).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn decode(name: &str, body: &str, etag: ETag) -> Result<BookEntry, String> {
        let record: ScheduleRecord = serde_json::from_str(body)
            .map_err(|e| format!("stored schedule '{name}' is unreadable: {e}"))?;
        let schedule = Schedule::parse(record.spec.clone())?;
        Ok(BookEntry {
            schedule,
            record,
            etag,
        })
    }

    /// Every live schedule, in name order. An unreadable record is logged and left out
    /// (the others still fire).
    pub async fn all(&self) -> Result<Vec<BookEntry>, BookError> {
        self.ensure_seeded().await?;
        let documents = self.client.documents().list_documents(KIND).await?;
        let mut entries = Vec::with_capacity(documents.len());
        for document in documents {
            match Self::decode(&document.name, &document.body, document.etag) {
                Ok(entry) if !entry.record.deleted => entries.push(entry),
                Ok(_) => {}
                Err(error) => warn!(schedule = document.name, error, "schedule left out"),
            }
        }
        Ok(entries)
    }

    async fn read(&self, name: &str) -> Result<Option<BookEntry>, BookError> {
        self.ensure_seeded().await?;
        self.read_seeded(name).await
    }

    async fn read_seeded(&self, name: &str) -> Result<Option<BookEntry>, BookError> {
        let Some(document) = self.client.documents().read_document(KIND, name).await? else {
            return Ok(None);
        };
        Self::decode(name, &document.body, document.etag)
            .map(Some)
            .map_err(BookError::Storage)
    }

    /// One live schedule.
    pub async fn get(&self, name: &str) -> Result<BookEntry, BookError> {
        match self.read(name).await? {
            Some(entry) if !entry.record.deleted => Ok(entry),
            _ => Err(BookError::NotFound(name.to_owned())),
        }
    }

    async fn write(
        &self,
        record: &ScheduleRecord,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        let body = serde_json::to_string(record)
            .map_err(|e| StoreError::Permanent(format!("encoding a schedule: {e}")))?;
        let etag = self
            .client
            .documents()
            .write_document(KIND, &record.spec.name, &body, condition)
            .await?;
        self.changed.notify_waiters();
        Ok(etag)
    }

    /// Adds a schedule; it fires from its first occurrence after `now`.
    pub async fn create(
        &self,
        spec: ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<BookEntry, BookError> {
        let schedule = Schedule::parse(spec.clone()).map_err(BookError::Invalid)?;
        let record = ScheduleRecord {
            spec,
            paused: None,
            fires_after: Some(now),
            buffered: None,
            origin: Origin::Api,
            deleted: false,
            updated_at: now,
        };
        let name = schedule.name().to_owned();
        let condition = match self.read(&name).await? {
            None => WriteCondition::Absent,
            Some(tombstone) if tombstone.record.deleted => WriteCondition::Matches(tombstone.etag),
            Some(_) => return Err(BookError::Exists(name)),
        };
        let etag = match self.write(&record, condition).await {
            Err(StoreError::Conflict(_)) => return Err(BookError::Exists(name)),
            other => other?,
        };
        info!(schedule = name, "schedule created");
        Ok(BookEntry {
            schedule,
            record,
            etag,
        })
    }

    /// Reads, changes and replaces a live schedule under its version, again on a conflict.
    async fn change(
        &self,
        name: &str,
        mut apply: impl FnMut(&mut ScheduleRecord) -> Result<(), BookError>,
    ) -> Result<BookEntry, BookError> {
        for _ in 0..CONFLICT_RETRIES {
            let entry = self.get(name).await?;
            let mut record = entry.record.clone();
            apply(&mut record)?;
            if record == entry.record {
                return Ok(entry);
            }
            let schedule = Schedule::parse(record.spec.clone()).map_err(BookError::Invalid)?;
            match self
                .write(&record, WriteCondition::Matches(entry.etag))
                .await
            {
                Ok(etag) => {
                    return Ok(BookEntry {
                        schedule,
                        record,
                        etag,
                    })
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(BookError::Storage(format!(
            "schedule '{name}' kept changing under this change; try again"
        )))
    }

    /// Replaces a schedule's spec (its name stays); paused stays paused. Occurrences of the
    /// new expression fire from `now` on.
    pub async fn update(
        &self,
        name: &str,
        spec: ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<BookEntry, BookError> {
        if spec.name != name {
            return Err(BookError::Invalid(format!(
                "the body names schedule '{}' but the path names '{name}' (a schedule cannot be renamed)",
                spec.name
            )));
        }
        Schedule::parse(spec.clone()).map_err(BookError::Invalid)?;
        let entry = self
            .change(name, |record| {
                if record.spec != spec {
                    record.spec = spec.clone();
                    record.origin = Origin::Api;
                    record.fires_after = Some(now);
                    record.buffered = None;
                    record.updated_at = now;
                }
                Ok(())
            })
            .await?;
        info!(schedule = name, "schedule updated");
        Ok(entry)
    }

    /// Pauses a schedule: no occurrence fires until it is resumed (a buffered one is
    /// dropped). Pausing a paused schedule changes nothing.
    pub async fn pause(
        &self,
        name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<BookEntry, BookError> {
        let entry = self
            .change(name, |record| {
                if record.paused.is_none() {
                    record.paused = Some(Paused {
                        at: now,
                        reason: reason.to_owned(),
                    });
                    record.buffered = None;
                    record.updated_at = now;
                }
                Ok(())
            })
            .await?;
        info!(schedule = name, reason, "schedule paused");
        Ok(entry)
    }

    /// Resumes a schedule. The occurrences that fell in the pause do not fire: the next
    /// is the first after `now`. (To run them, backfill the pause's range: the API's and
    /// CLI's `catchUp` does, with [`super::backfill`].) Returns the entry and when the
    /// pause began, if it was paused.
    pub async fn resume(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(BookEntry, Option<DateTime<Utc>>), BookError> {
        let mut paused_at = None;
        let entry = self
            .change(name, |record| {
                paused_at = record.paused.take().map(|p| p.at);
                if paused_at.is_some() {
                    record.fires_after = Some(now);
                    record.updated_at = now;
                }
                Ok(())
            })
            .await?;
        info!(schedule = name, "schedule resumed");
        Ok((entry, paused_at))
    }

    /// Sets or clears the buffered occurrence (see [`ScheduleRecord::buffered`]).
    pub(super) async fn set_buffered(
        &self,
        name: &str,
        buffered: Option<DateTime<Utc>>,
    ) -> Result<BookEntry, BookError> {
        self.change(name, |record| {
            record.buffered = buffered;
            Ok(())
        })
        .await
    }

    /// Deletes a schedule (its runs stay). One configuration still names is kept as a
    /// tombstone so the next start-up does not bring it back.
    pub async fn delete(&self, name: &str, now: DateTime<Utc>) -> Result<(), BookError> {
        if self.configured.iter().any(|s| s.name() == name) {
            self.change(name, |record| {
                record.deleted = true;
                record.paused = None;
                record.buffered = None;
                record.updated_at = now;
                Ok(())
            })
            .await?;
        } else {
            self.get(name).await?;
            match self.client.documents().delete_document(KIND, name).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
            self.changed.notify_waiters();
        }
        info!(schedule = name, "schedule deleted");
        Ok(())
    }

    /// Brings the configured schedules into the book (see the module's seeding rules).
    async fn seed(&self, now: DateTime<Utc>) -> Result<(), BookError> {
        for schedule in self.configured.iter() {
            let spec = schedule.spec().clone();
            let name = schedule.name();
            for attempt in 0..CONFLICT_RETRIES {
                let (record, condition) = match self.read_seeded(name).await? {
                    None => (
                        ScheduleRecord {
                            spec: spec.clone(),
                            paused: None,
                            fires_after: None,
                            buffered: None,
                            origin: Origin::Config,
                            deleted: false,
                            updated_at: now,
                        },
                        WriteCondition::Absent,
                    ),
                    Some(entry)
                        if entry.record.origin == Origin::Config && !entry.record.deleted =>
                    {
                        if entry.record.spec == spec {
                            break;
                        }
                        let record = ScheduleRecord {
                            spec: spec.clone(),
                            buffered: None,
                            updated_at: now,
                            ..entry.record
                        };
                        (record, WriteCondition::Matches(entry.etag))
                    }
                    Some(entry) => {
                        if entry.record.spec != spec || entry.record.deleted {
                            info!(
                                schedule = name,
                                "schedule changed or deleted at run time: the configuration's version is not applied"
                            );
                        }
                        break;
                    }
                };
                match self.write(&record, condition).await {
                    Ok(_) => {
                        info!(schedule = name, "schedule seeded from configuration");
                        break;
                    }
                    Err(StoreError::Conflict(_)) if attempt + 1 < CONFLICT_RETRIES => continue,
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::tests::{spec, utc};
    use flowforge_orchestrator::backend::MemoryBackend;

    fn book() -> ScheduleBook {
        ScheduleBook::new(Client::new(Arc::new(MemoryBackend::new())), Vec::new())
    }

    /// A second process's book over the same task hub, configured with `cron`.
    fn restarted(book: &ScheduleBook, cron: &str) -> ScheduleBook {
        let configured = vec![Schedule::parse(spec(cron)).unwrap()];
        ScheduleBook::new(book.client().clone(), configured)
    }

    #[tokio::test]
    async fn configuration_seeds_but_run_time_changes_win() {
        let now = utc("2027-01-01T00:00:00Z");
        let book = restarted(&book(), "0 0 * * * *");
        assert_eq!(book.all().await.unwrap().len(), 1);

        // A new configuration updates a configured schedule, and keeps its pause.
        book.pause("nightly", "maintenance", now).await.unwrap();
        let book = restarted(&book, "0 30 * * * *");
        let entry = book.get("nightly").await.unwrap();
        assert_eq!(entry.record.spec.cron, "0 30 * * * *");
        assert!(entry.record.paused.is_some());

        // Changed at run time: configuration no longer applies.
        book.update("nightly", spec("0 45 * * * *"), now)
            .await
            .unwrap();
        let book = restarted(&book, "0 0 * * * *");
        assert_eq!(
            book.get("nightly").await.unwrap().record.spec.cron,
            "0 45 * * * *"
        );

        // Deleted at run time: stays deleted across seeding, and can be created again.
        book.delete("nightly", now).await.unwrap();
        let book = restarted(&book, "0 0 * * * *");
        assert!(book.all().await.unwrap().is_empty());
        assert_eq!(
            book.get("nightly").await.unwrap_err(),
            BookError::NotFound("nightly".into())
        );
        book.create(spec("0 0 * * * *"), now).await.unwrap();
        assert_eq!(
            book.create(spec("0 0 * * * *"), now).await.unwrap_err(),
            BookError::Exists("nightly".into())
        );
    }

    #[tokio::test]
    async fn bad_specs_and_renames_are_refused() {
        let book = book();
        let now = utc("2027-01-01T00:00:00Z");
        let error = book.create(spec("0 0 * *"), now).await.unwrap_err();
        assert!(
            matches!(error, BookError::Invalid(ref m) if m.contains("six")),
            "{error}"
        );
        book.create(spec("0 0 * * * *"), now).await.unwrap();
        let mut renamed = spec("0 0 * * * *");
        renamed.name = "other".into();
        let error = book.update("nightly", renamed, now).await.unwrap_err();
        assert!(
            matches!(error, BookError::Invalid(ref m) if m.contains("renamed")),
            "{error}"
        );
        assert_eq!(
            book.pause("missing", "", now).await.unwrap_err(),
            BookError::NotFound("missing".into())
        );
    }
}
