//! Firing schedules: each due occurrence started once under its overlap policy, a run
//! started by hand, and backfills of a past range.

use chrono::{DateTime, Duration, Timelike, Utc};
use flowforge_orchestrator::backend::InstanceQuery;
use flowforge_orchestrator::prelude::*;
use serde::Serialize;
use tracing::{info, warn};

use super::book::{BookEntry, ScheduleBook};
use super::{Overlap, Schedule, MAX_CATCH_UP};

/// What [`fire_due`] did with one occurrence of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Started this instance.
    Started(String),
    /// The occurrence's instance already exists (a double fire).
    AlreadyStarted(String),
    /// Skipped: the previous run (named) is still active.
    SkippedOverlap {
        /// The occurrence's instance id, which was not started.
        skipped: String,
        /// The run still active.
        active: String,
    },
    /// Held back (`bufferOne`) until the active run (named) ends.
    Buffered {
        /// The occurrence's instance id, started later.
        buffered: String,
        /// The run still active.
        active: String,
    },
    /// Started after terminating the previous runs (`cancelPrevious`).
    StartedReplacing {
        /// The instance started.
        started: String,
        /// The runs terminated.
        terminated: Vec<String>,
    },
    /// This many occurrences were older than the [`MAX_CATCH_UP`] newest and not started.
    Missed(usize),
}

/// The window [`fire_due`] looks back over: the Functions timer ticks every minute, so two
/// minutes covers a late tick; a past-due timer (the app was stopped) looks back a day.
pub fn look_back(past_due: bool) -> Duration {
    if past_due {
        Duration::hours(24)
    } else {
        Duration::minutes(2)
    }
}

/// Starts every due occurrence of every live, unpaused schedule of the book that has not
/// been started, oldest first, under its overlap policy (and a buffered occurrence whose
/// run ahead has ended); logs each start, skip and miss. Occurrences at or before a
/// schedule's `firesAfter` (its creation, its last resume) are not due.
pub async fn fire_due(
    book: &ScheduleBook,
    now: DateTime<Utc>,
    look_back: Duration,
) -> Result<Vec<(String, Result<Fired, String>)>, String> {
    let entries = book.all().await.map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for entry in entries {
        if entry.record.paused.is_some() {
            continue;
        }
        let name = entry.schedule.name().to_owned();
        let mut entry = entry;
        if entry.record.buffered.is_some() {
            match start_buffered(book, &entry).await {
                Ok(Some((fired, updated))) => {
                    results.push((name.clone(), Ok(fired)));
                    entry = updated;
                }
                Ok(None) => {}
                Err(error) => {
                    warn!(schedule = name, error, "buffered occurrence not started");
                    results.push((name.clone(), Err(error)));
                }
            }
        }
        let (mut due, missed) = entry.schedule.due_occurrences(now, look_back, MAX_CATCH_UP);
        if let Some(after) = entry.record.fires_after {
            due.retain(|t| *t > after);
        }
        if missed > 0 {
            warn!(
                schedule = name,
                missed, "occurrences older than the catch-up limit were not started"
            );
            results.push((name.clone(), Ok(Fired::Missed(missed))));
        }
        for occurrence in due {
            let result = fire_occurrence(book, &mut entry, occurrence).await;
            log_fired(&name, occurrence, &result);
            results.push((name.clone(), result));
        }
    }
    Ok(results)
}

fn log_fired(name: &str, occurrence: DateTime<Utc>, result: &Result<Fired, String>) {
    match result {
        Ok(Fired::Started(id)) => {
            info!(schedule = name, instance_id = id, %occurrence, "schedule fired")
        }
        Ok(Fired::SkippedOverlap { skipped, active }) => info!(
            schedule = name,
            instance_id = skipped,
            active_instance_id = active,
            %occurrence,
            "schedule occurrence skipped: the previous run is still active"
        ),
        Ok(Fired::Buffered { buffered, active }) => info!(
            schedule = name,
            instance_id = buffered,
            active_instance_id = active,
            %occurrence,
            "schedule occurrence buffered until the previous run ends"
        ),
        Ok(Fired::StartedReplacing {
            started,
            terminated,
        }) => info!(
            schedule = name,
            instance_id = started,
            terminated = terminated.join(","),
            %occurrence,
            "schedule fired after terminating the previous run"
        ),
        Ok(_) => {}
        Err(error) => warn!(schedule = name, %occurrence, error, "schedule failed"),
    }
}

/// The schedule's runs still going (at most a page's worth), newest first.
async fn active_runs(client: &Client, schedule: &Schedule) -> Result<Vec<String>, String> {
    let prefix = format!("schedule-{}-", schedule.name());
    let query = InstanceQuery {
        statuses: vec![
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Suspended,
            RuntimeStatus::ContinuedAsNew,
        ],
        instance_id_prefix: Some(prefix.clone()),
        page_size: 100,
        ..Default::default()
    };
    let (active, _) = client
        .list(&query, false)
        .await
        .map_err(|e| e.to_string())?;
    // The prefix of `nightly` also matches `nightly-eu`'s runs: keep ids whose rest is an
    // occurrence stamp.
    let mut ids: Vec<String> = active
        .into_iter()
        .map(|s| s.instance_id)
        .filter(|id| {
            id.strip_prefix(&prefix).is_some_and(|stamp| {
                chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").is_ok()
            })
        })
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// Starts the buffered occurrence if the runs ahead of it have ended, and clears it.
async fn start_buffered(
    book: &ScheduleBook,
    entry: &BookEntry,
) -> Result<Option<(Fired, BookEntry)>, String> {
    let Some(occurrence) = entry.record.buffered else {
        return Ok(None);
    };
    let client = book.client();
    if !active_runs(client, &entry.schedule).await?.is_empty() {
        return Ok(None);
    }
    // Started before cleared: a crash between the two starts it again under its own id,
    // which starts nothing.
    let id = start_once(client, &entry.schedule, occurrence).await?;
    let updated = book
        .set_buffered(entry.schedule.name(), None)
        .await
        .map_err(|e| e.to_string())?;
    info!(schedule = entry.schedule.name(), instance_id = id, %occurrence, "buffered occurrence started");
    Ok(Some((Fired::Started(id), updated)))
}

async fn fire_occurrence(
    book: &ScheduleBook,
    entry: &mut BookEntry,
    occurrence: DateTime<Utc>,
) -> Result<Fired, String> {
    let client = book.client();
    let schedule = &entry.schedule;
    let id = schedule.instance_id(occurrence);
    match client.status(&id, Default::default()).await {
        Ok(_) => return Ok(Fired::AlreadyStarted(id)),
        Err(flowforge_orchestrator::client::Error::NotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let overlap = schedule.spec().overlap;
    if overlap == Overlap::Allow {
        return start_once(client, schedule, occurrence)
            .await
            .map(Fired::Started);
    }
    let active = active_runs(client, schedule).await?;
    let Some(newest) = active.first().cloned() else {
        return start_once(client, schedule, occurrence)
            .await
            .map(Fired::Started);
    };
    match overlap {
        Overlap::Skip | Overlap::Allow => Ok(Fired::SkippedOverlap {
            skipped: id,
            active: newest,
        }),
        Overlap::BufferOne => {
            if entry.record.buffered.is_some_and(|b| b != occurrence) {
                return Ok(Fired::SkippedOverlap {
                    skipped: id,
                    active: newest,
                });
            }
            *entry = book
                .set_buffered(schedule.name(), Some(occurrence))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Fired::Buffered {
                buffered: id,
                active: newest,
            })
        }
        Overlap::CancelPrevious => {
            let reason = format!("superseded by the schedule's occurrence {id}");
            for previous in &active {
                match client.terminate(previous, &reason).await {
                    Ok(()) | Err(flowforge_orchestrator::client::Error::NotFound(_)) => {}
                    // It finished meanwhile.
                    Err(flowforge_orchestrator::client::Error::Finished { .. }) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            let started = start_once(client, schedule, occurrence).await?;
            Ok(Fired::StartedReplacing {
                started,
                terminated: active,
            })
        }
    }
}

/// Starts an occurrence's instance unless it exists, running or finished: another replica
/// (or a backfill elsewhere) that started it a moment ago, even one that has already
/// finished, is not started again.
async fn start_once(
    client: &Client,
    schedule: &Schedule,
    occurrence: DateTime<Utc>,
) -> Result<String, String> {
    let options = StartOptions {
        if_running: flowforge_orchestrator::client::IfRunning::OncePerId,
        ..StartOptions::with_instance_id(schedule.instance_id(occurrence))
    };
    client
        .start_value(
            &schedule.spec.orchestration,
            options,
            schedule.input(occurrence),
        )
        .await
        .map_err(|e| e.to_string())
}

/// Runs a schedule now, as the occurrence of this second (its deterministic id: a second
/// call within the same second starts nothing more).
pub async fn trigger_now(
    client: &Client,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let occurrence = now.with_nanosecond(0).unwrap_or(now);
    let id = start_once(client, schedule, occurrence).await?;
    info!(
        schedule = schedule.name(),
        instance_id = id,
        "schedule triggered by hand"
    );
    Ok(id)
}

/// The most occurrences one backfill may start.
pub const MAX_BACKFILL: usize = 1_000;

/// One occurrence of a backfill and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backfilled {
    /// The occurrence time.
    pub occurrence: DateTime<Utc>,
    /// Its instance id (deterministic: the same as the schedule's own fire would use).
    pub instance_id: String,
    /// `started`, `existing` (started before, by the schedule or another backfill), or
    /// `planned` (a dry run).
    pub outcome: &'static str,
}

/// Starts every occurrence of `schedule` in `[from, to]` that has no instance yet, oldest
/// first, at most `limit` (refused past it, so a backfill is never cut silently); each
/// occurrence once, whoever else starts it. A dry run starts nothing and says what would
/// be started. The overlap policy does not apply: a backfill's runs overlap by design.
pub async fn backfill(
    client: &Client,
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    dry_run: bool,
) -> Result<Vec<Backfilled>, BackfillError> {
    if to < from {
        return Err(BackfillError::Range("'to' is before 'from'".into()));
    }
    let limit = limit.min(MAX_BACKFILL);
    // `after` excludes its start: begin a second before `from` so `from` itself counts
    // (and nothing before it, when `from` is not on a whole second).
    let occurrences: Vec<DateTime<Utc>> = schedule
        .after(from - Duration::seconds(1))
        .skip_while(|t| *t < from)
        .take_while(|t| *t <= to)
        .take(limit + 1)
        .collect();
    if occurrences.len() > limit {
        return Err(BackfillError::Range(format!(
            "the range holds more than {limit} occurrences: narrow it or raise the limit (at most {MAX_BACKFILL})"
        )));
    }
    let mut done = Vec::with_capacity(occurrences.len());
    for occurrence in occurrences {
        let instance_id = schedule.instance_id(occurrence);
        let exists = match client.status(&instance_id, Default::default()).await {
            Ok(_) => true,
            Err(flowforge_orchestrator::client::Error::NotFound(_)) => false,
            Err(e) => return Err(BackfillError::Storage(e.to_string())),
        };
        let outcome = match (exists, dry_run) {
            (true, _) => "existing",
            (false, true) => "planned",
            (false, false) => {
                start_once(client, schedule, occurrence)
                    .await
                    .map_err(BackfillError::Storage)?;
                info!(schedule = schedule.name(), instance_id, %occurrence, "backfill started an occurrence");
                "started"
            }
        };
        done.push(Backfilled {
            occurrence,
            instance_id,
            outcome,
        });
    }
    Ok(done)
}

/// Why a backfill was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    /// The range is empty the wrong way round or holds too many occurrences.
    #[error("{0}")]
    Range(String),
    /// Storage failed (what was started so far stays started; a retry goes on from there).
    #[error("storage failed: {0}")]
    Storage(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::tests::{spec, utc};
    use flowforge_orchestrator::backend::MemoryBackend;

    #[tokio::test]
    async fn a_backfill_starts_each_occurrence_once_and_a_dry_run_nothing() {
        let backend = std::sync::Arc::new(MemoryBackend::new());
        let client = Client::new(backend);
        let hourly = Schedule::parse(spec("0 0 * * * *")).unwrap();
        let (from, to) = (utc("2026-11-01T00:00:00Z"), utc("2026-11-01T05:00:00Z"));
        let planned = backfill(&client, &hourly, from, to, 10, true)
            .await
            .unwrap();
        assert_eq!(planned.len(), 6, "both ends included");
        assert!(planned.iter().all(|b| b.outcome == "planned"));
        let (listed, _) = client.list(&InstanceQuery::default(), false).await.unwrap();
        assert!(listed.is_empty(), "a dry run starts nothing");
        let first = backfill(
            &client,
            &hourly,
            from,
            utc("2026-11-01T02:00:00Z"),
            10,
            false,
        )
        .await
        .unwrap();
        assert!(first.iter().all(|b| b.outcome == "started"));
        let again = backfill(&client, &hourly, from, to, 10, false)
            .await
            .unwrap();
        let outcomes: Vec<_> = again.iter().map(|b| b.outcome).collect();
        assert_eq!(
            outcomes,
            ["existing", "existing", "existing", "started", "started", "started"]
        );
        assert_eq!(again[0].instance_id, "schedule-nightly-20261101T000000Z");
        let (listed, _) = client.list(&InstanceQuery::default(), false).await.unwrap();
        assert_eq!(listed.len(), 6);
        let too_many = backfill(&client, &hourly, from, to, 5, false)
            .await
            .unwrap_err();
        assert!(matches!(too_many, BackfillError::Range(_)), "{too_many}");
        let backwards = backfill(&client, &hourly, to, from, 10, false)
            .await
            .unwrap_err();
        assert!(matches!(backwards, BackfillError::Range(_)), "{backwards}");
    }
}
