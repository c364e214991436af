//! The status index: one row per instance in a table of its own (`{hub}statusindex`),
//! partitioned by runtime status and keyed by creation time, so that a page of a rare status
//! or of a deep creation window reads about as many rows as it returns at any task-hub size
//! (the scan of state rows reads until it has found its page: at a million instances and a
//! status one in ten thousand has, that is most of the table).
//!
//! | PartitionKey | RowKey | what |
//! | --- | --- | --- |
//! | the status (`Running`, `Failed`, …) | `{created, µs, UTC}\|{instance id}` | one instance |
//! | `Index` | `enabled` / `complete` | the hub maintains the index / every instance is in it |
//!
//! An index row lives in another partition than its state row, so the two cannot be written
//! in one transaction. The index is written ahead: a state row with a new (status, creation
//! time) is written only after its index row, so every state row has one; the state row
//! keeps the entry's ETag (`IndexETag`), and the entry of the key it leaves is deleted after
//! the commit on that ETag only (an entry another process wrote again meanwhile — the
//! instance back in that status — stays). A crash in between leaves a stale row, never a
//! missing one. A listing reads each candidate's state row and lists it only while its key
//! is still that row's; a stale row is deleted when met, once older than any commit that
//! may still be under way behind it (`stale_index_grace`, 10 min), and only as read.
//!
//! Opt-in per task hub (`FLOWFORGE_STATUS_INDEX=true`): it costs a write ahead and a delete
//! behind for each status change. Once one process has enabled it, every process connecting
//! to the hub maintains it (the `enabled` row). An existing hub is backfilled from its state
//! rows, and listings use the index once the `complete` row is there.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use flowforge_orchestrator::backend::InstanceQuery;
use flowforge_orchestrator::status::{InstanceState, RuntimeStatus};

use crate::rows::{id_of_state_row, odata_quote, Row};

/// PartitionKey of the index's own rows (never a status name).
pub(crate) const MARKER_PARTITION: &str = "Index";
/// The hub maintains the index (every process connecting to it writes index rows).
pub(crate) const ENABLED_ROW: &str = "enabled";
/// Every instance is in the index (written after the backfill): listings may use it.
pub(crate) const COMPLETE_ROW: &str = "complete";
/// Continuation tokens of listings served by the index start with this; `#` is not allowed
/// in a table key, so no instance id (a scan's token) does.
const TOKEN_PREFIX: &str = "#index:";

/// The index's table and what this process knows of it.
#[derive(Debug)]
pub(crate) struct StatusIndex {
    pub table: azure_data_tables::clients::TableClient,
    pub on: std::sync::atomic::AtomicBool,
    pub complete: std::sync::atomic::AtomicBool,
    /// Entries left behind by commits, deleted in batches per partition (see
    /// `status_index_store::sweep_left`).
    pub left: std::sync::Mutex<Vec<IndexEntry>>,
    /// Wakes the sweeper when entries are left.
    pub left_signal: std::sync::Arc<tokio::sync::Notify>,
    /// One flush at a time, so a flush returns only once what was left before it is done.
    pub flushing: tokio::sync::Mutex<()>,
}

/// Where an instance stands in the index: its status (the partition) and its row key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexKey {
    pub status: RuntimeStatus,
    pub row_key: String,
}

impl IndexKey {
    /// The index entry of a state.
    pub(crate) fn of(state: &InstanceState) -> Self {
        Self {
            status: partition_of(state.status),
            row_key: row_key(state.created_at, &state.instance_id),
        }
    }

    /// The entry of a state row's listing properties (`Status`, `CreatedAt`), for the
    /// backfill, which does not read the state's body.
    pub(crate) fn from_properties(id: &str, status: &str, created_at: &str) -> Option<Self> {
        let status = partition_of(status.parse().ok()?);
        let created = DateTime::parse_from_rfc3339(created_at).ok()?.to_utc();
        Some(Self {
            status,
            row_key: row_key(created, id),
        })
    }
}

/// The entry of a state row as stored (its `Status` and `CreatedAt` properties).
pub(crate) fn key_of_row(row: &Row) -> Option<IndexKey> {
    IndexKey::from_properties(
        &id_of_state_row(&row.row_key)?,
        row.status.as_deref()?,
        row.created_at.as_deref()?,
    )
}

/// An instance's entry as its state row knows it: the key, and the entry's ETag as written
/// ahead (`None`: the index is off, or the entry came from the backfill). The delete behind
/// a status change is conditional on that ETag, so that an entry another process has
/// written again meanwhile (the instance back in that status, e.g. resumed) stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub key: IndexKey,
    pub etag: Option<String>,
}

impl IndexEntry {
    /// The entry a state row names.
    pub(crate) fn of_row(state: &InstanceState, row: &Row) -> Self {
        Self {
            key: IndexKey::of(state),
            etag: row.index_etag.clone(),
        }
    }
}

/// `{created}|{id}`: fixed-width microseconds, so keys sort by creation time, then id.
fn row_key(created: DateTime<Utc>, instance_id: &str) -> String {
    format!("{}|{instance_id}", time_key(created))
}

fn time_key(at: DateTime<Utc>) -> String {
    let at = at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at);
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The instance id of an index row key.
pub(crate) fn instance_of(row_key: &str) -> Option<&str> {
    row_key.split_once('|').map(|(_, id)| id)
}

/// The index partitions that serve a listing, `None` when the index does not narrow it:
/// the statuses it asks for, or every status for a creation window alone (each partition
/// is in creation order); not with an id prefix (the scan of state rows is in id order and
/// serves that), nor for a listing of everything.
pub(crate) fn partitions_serving(query: &InstanceQuery) -> Option<Vec<RuntimeStatus>> {
    if query
        .instance_id_prefix
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return None;
    }
    if !query.statuses.is_empty() {
        let mut partitions: Vec<RuntimeStatus> =
            query.statuses.iter().map(|s| partition_of(*s)).collect();
        partitions.sort_by_key(|s| s.as_str());
        partitions.dedup();
        return Some(partitions);
    }
    let window = query.created_from.is_some() || query.created_to.is_some();
    window.then(|| {
        let mut partitions: Vec<RuntimeStatus> = RuntimeStatus::ALL
            .iter()
            .map(|s| partition_of(*s))
            .collect();
        partitions.sort_by_key(|s| s.as_str());
        partitions.dedup();
        partitions
    })
}

/// The partition of a status: its own, except that Pending and ContinuedAsNew (passing
/// statuses on the way to Running) share Running's, so that an instance starting to run
/// costs no index writes; a listing of one of them reads that partition and keeps the
/// instances whose state has the status asked for.
pub(crate) fn partition_of(status: RuntimeStatus) -> RuntimeStatus {
    match status {
        RuntimeStatus::Pending | RuntimeStatus::ContinuedAsNew => RuntimeStatus::Running,
        other => other,
    }
}

/// The row key a listing continues after, from its continuation token: `Ok(None)` without
/// one, `Err(())` for a token of the other kind of listing (a scan's instance id).
pub(crate) fn resume_after(query: &InstanceQuery) -> Result<Option<&str>, ()> {
    match query.continuation.as_deref() {
        None => Ok(None),
        Some(token) => token.strip_prefix(TOKEN_PREFIX).map(Some).ok_or(()),
    }
}

/// The continuation token of a page that ends at `row_key`.
pub(crate) fn token(row_key: &str) -> String {
    format!("{TOKEN_PREFIX}{row_key}")
}

/// Whether a token is an index listing's.
pub(crate) fn is_index_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// The filter of one status's partition: after the continuation, within the creation
/// window. The bounds are whole microseconds widened outwards; the exact check is the
/// query's own, on the state row.
pub(crate) fn partition_filter(
    status: RuntimeStatus,
    query: &InstanceQuery,
    after: Option<&str>,
) -> String {
    let mut clauses = vec![format!("PartitionKey eq '{}'", status.as_str())];
    if let Some(after) = after {
        clauses.push(format!("RowKey gt '{}'", odata_quote(after)));
    }
    if let Some(from) = query.created_from {
        clauses.push(format!("RowKey ge '{}'", time_key(from)));
    }
    if let Some(to) = query.created_to {
        // `|` sorts after every character of the time: all of the last microsecond's keys.
        clauses.push(format!("RowKey lt '{}~'", time_key(to)));
    }
    clauses.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn state(id: &str, status: RuntimeStatus, created: DateTime<Utc>) -> InstanceState {
        let start =
            flowforge_orchestrator::history::StartInfo::new("wf", "e1", json!(null)).into_event();
        InstanceState {
            status,
            ..InstanceState::started(id, &start, created)
        }
    }

    fn at(second: u32, nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, second).unwrap()
            + TimeDelta::nanoseconds(nanos as i64)
    }

    #[test]
    fn keys_sort_by_creation_time_then_id() {
        let keys: Vec<String> = [
            ("b", at(1, 0)),
            ("a", at(1, 0)),
            ("z", at(0, 999_999_000)),
            ("c", at(10, 5_000)),
        ]
        .iter()
        .map(|(id, t)| IndexKey::of(&state(id, RuntimeStatus::Failed, *t)).row_key)
        .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                "2026-12-03T09:00:00.999999Z|z",
                "2026-12-03T09:00:01.000000Z|a",
                "2026-12-03T09:00:01.000000Z|b",
                "2026-12-03T09:00:10.000005Z|c",
            ]
        );
        assert_eq!(instance_of(&sorted[0]), Some("z"));
        assert_eq!(
            instance_of("2026-12-03T09:00:01.000000Z|run|7"),
            Some("run|7")
        );
    }

    #[test]
    fn the_backfill_reads_the_same_key_as_the_writer() {
        let s = state("run-1", RuntimeStatus::Running, at(3, 123_456_789));
        let from_row =
            IndexKey::from_properties("run-1", "Running", &s.created_at.to_rfc3339()).unwrap();
        assert_eq!(from_row, IndexKey::of(&s));
        assert_eq!(
            IndexKey::from_properties("x", "Sleeping", "2026-12-03T09:00:00Z"),
            None
        );
    }

    #[test]
    fn a_partition_filter_bounds_the_window_and_the_continuation() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Failed],
            created_from: Some(at(5, 500)),
            created_to: Some(at(7, 1_500)),
            ..Default::default()
        };
        assert_eq!(
            partition_filter(
                RuntimeStatus::Failed,
                &query,
                Some("2026-12-03T09:00:06.000000Z|o'k")
            ),
            "PartitionKey eq 'Failed' and RowKey gt '2026-12-03T09:00:06.000000Z|o''k' \
             and RowKey ge '2026-12-03T09:00:05.000000Z' \
             and RowKey lt '2026-12-03T09:00:07.000001Z~'"
        );
        // Every key of the window's ends is inside the bounds.
        let first = IndexKey::of(&state("a", RuntimeStatus::Failed, at(5, 500))).row_key;
        let last = IndexKey::of(&state("zz", RuntimeStatus::Failed, at(7, 1_500))).row_key;
        assert!(first.as_str() >= "2026-12-03T09:00:05.000000Z");
        assert!(last.as_str() < "2026-12-03T09:00:07.000001Z~");
    }

    #[test]
    fn tokens_say_which_listing_they_continue() {
        let key = "2026-12-03T09:00:06.000000Z|run-9";
        let query = InstanceQuery {
            continuation: Some(token(key)),
            ..Default::default()
        };
        assert_eq!(resume_after(&query), Ok(Some(key)));
        let scan = InstanceQuery {
            continuation: Some("run-9".into()),
            ..Default::default()
        };
        assert_eq!(resume_after(&scan), Err(()));
        assert_eq!(resume_after(&InstanceQuery::default()), Ok(None));
        assert!(is_index_token(&token(key)) && !is_index_token("run-9"));
    }

    #[test]
    fn statuses_and_creation_windows_use_the_index_id_prefixes_do_not() {
        let by_status = InstanceQuery {
            statuses: vec![RuntimeStatus::Failed],
            ..Default::default()
        };
        assert_eq!(
            partitions_serving(&by_status),
            Some(vec![RuntimeStatus::Failed])
        );
        let window = InstanceQuery {
            created_from: Some(at(5, 0)),
            ..Default::default()
        };
        let every = [
            RuntimeStatus::Completed,
            RuntimeStatus::Failed,
            RuntimeStatus::Running,
            RuntimeStatus::Suspended,
            RuntimeStatus::Terminated,
        ];
        assert_eq!(partitions_serving(&window), Some(every.to_vec()));
        let starting = InstanceQuery {
            statuses: vec![RuntimeStatus::Pending, RuntimeStatus::Running],
            ..Default::default()
        };
        assert_eq!(
            partitions_serving(&starting),
            Some(vec![RuntimeStatus::Running])
        );
        assert_eq!(partitions_serving(&InstanceQuery::default()), None);
        assert_eq!(
            partitions_serving(&InstanceQuery {
                instance_id_prefix: Some("run-".into()),
                ..by_status
            }),
            None
        );
    }
}
