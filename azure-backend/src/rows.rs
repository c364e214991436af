//! Table layout, format 2: the instances of a control partition share one table partition,
//! so that the starts and commits of instances handled together share entity group
//! transactions (see `row_batcher`).
//!
//! | PartitionKey | RowKey | what |
//! | --- | --- | --- |
//! | the control partition, `00`–`15` | `{id}  state` | the state row: `Kind` = `state`, `Status`, `Name`, `CreatedAt` (for listing), `Body` (the state as JSON), `Ranges`, `IndexETag` (status index on) |
//! | the same | `{id}  h-{execution}-{seq:010}-{gen}` | one history event (`Event`, JSON) |
//! | `~hub` | `layout` | the hub's layout: `Format` and `Partitions` |
//!
//! `{id}` is the instance id with each space doubled as ` !`, and two spaces end it: no
//! encoded id holds two spaces in a row, so an instance's rows are exactly those that start
//! with its prefix, and state rows sort in instance id order (a space, the lowest character
//! a key may hold, sorts the end of an id before any longer id).
//!
//! `gen` is `a` for events written by single-batch commits and the commit's claim id for
//! those written by multi-batch commits; `Ranges` in the state says which `gen` holds each
//! sequence range, so a stalled multi-batch writer can never overwrite rows another commit
//! made visible.
//!
//! Format 1 (before 4 December 2026) gave each instance a partition of its own
//! (PartitionKey = the instance id, RowKeys `state` and `h-…`); `layout_migration` moves a
//! hub from it.

use flowforge_orchestrator::backend::QueueName;
use serde::{Deserialize, Serialize};

/// Generation tag of rows written atomically with their state row.
pub(crate) const ATOMIC_GEN: &str = "a";
/// The RowKey suffix of the state row, after the instance's prefix.
const STATE_SUFFIX: &str = "state";
/// The `Kind` of a state row (the property listings filter on).
pub(crate) const STATE_KIND: &str = "state";
/// The layout format this build writes.
pub(crate) const LAYOUT_FORMAT: u32 = 2;
/// PartitionKey and RowKey of the hub's layout row.
pub(crate) const LAYOUT_PARTITION: &str = "~hub";
pub(crate) const LAYOUT_ROW: &str = "layout";
/// Format 1's RowKey of the state row.
pub(crate) const V1_STATE_ROW: &str = "state";

/// Where an instance's rows live: its table partition and its RowKey prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceKeys {
    pub partition: String,
    pub prefix: String,
}

impl InstanceKeys {
    /// The keys of `instance_id` in a hub of `partitions` table partitions.
    pub fn of(instance_id: &str, partitions: u32) -> Self {
        let partition = match QueueName::control_for(instance_id, partitions) {
            QueueName::Control(n) => n,
            QueueName::Work => 0,
        };
        Self {
            partition: partition_key(partition),
            prefix: format!("{}  ", encode_id(instance_id)),
        }
    }

    /// RowKey of the state row.
    pub fn state_row(&self) -> String {
        format!("{}{STATE_SUFFIX}", self.prefix)
    }

    /// RowKey of a history event.
    pub fn history_row(&self, execution_id: &str, seq: u64, gen: &str) -> String {
        format!("{}{}", self.prefix, history_key(execution_id, seq, gen))
    }

    /// A RowKey above every row of the instance (its rows' suffixes start with `h` or `s`).
    pub fn rows_end(&self) -> String {
        format!("{}~", self.prefix)
    }
}

/// The PartitionKey of table partition `n`.
pub(crate) fn partition_key(n: u32) -> String {
    format!("{n:02}")
}

/// An instance id as it begins its RowKeys: each space as ` !`, so that two spaces in a row
/// never occur and can end it.
pub(crate) fn encode_id(instance_id: &str) -> String {
    instance_id.replace(' ', " !")
}

/// The instance id of a state row's RowKey (`None`: not a state row).
pub(crate) fn id_of_state_row(row_key: &str) -> Option<String> {
    let encoded = row_key.strip_suffix(STATE_SUFFIX)?.strip_suffix("  ")?;
    Some(encoded.replace(" !", " "))
}

/// The history part of a RowKey of this layout (`h-…`), after the instance's prefix.
pub(crate) fn history_part<'a>(keys: &InstanceKeys, row_key: &'a str) -> Option<&'a str> {
    row_key.strip_prefix(keys.prefix.as_str())
}

/// Doubles single quotes for an OData string literal (a key in a query filter).
pub(crate) fn odata_quote(value: &str) -> String {
    value.replace('\'', "''")
}

/// Which generation tag holds history from `from_seq` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    pub from_seq: u64,
    pub gen: String,
}

/// The generation of a sequence number under a list of ranges.
pub(crate) fn gen_of(ranges: &[Range], seq: u64) -> &str {
    ranges
        .iter()
        .rev()
        .find(|r| r.from_seq <= seq)
        .map_or(ATOMIC_GEN, |r| r.gen.as_str())
}

/// RowKey of a history event.
pub(crate) fn history_key(execution_id: &str, seq: u64, gen: &str) -> String {
    format!("h-{execution_id}-{seq:010}-{gen}")
}

/// Parses a history RowKey into (execution, seq, gen).
pub(crate) fn parse_history_key(key: &str) -> Option<(&str, u64, &str)> {
    let rest = key.strip_prefix("h-")?;
    let (rest, gen) = rest.rsplit_once('-')?;
    let (execution, seq) = rest.rsplit_once('-')?;
    Some((execution, seq.parse().ok()?, gen))
}

/// Any row of the instances table (fields absent in other row kinds are `None`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Row {
    #[serde(rename = "PartitionKey")]
    pub partition_key: String,
    #[serde(rename = "RowKey")]
    pub row_key: String,
    #[serde(rename = "odata.etag", default, skip_serializing)]
    pub etag: Option<String>,
    /// When the service last wrote the row (its own property; never written by us).
    #[serde(rename = "Timestamp", default, skip_serializing)]
    pub timestamp: Option<String>,
    /// `state` on state rows (what listings filter on); absent on history rows.
    #[serde(rename = "Kind", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "CreatedAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "Body", default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(rename = "Ranges", default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<String>,
    #[serde(rename = "Claim", default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(rename = "Event", default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// On a state row: the ETag of its status index entry as written ahead.
    #[serde(rename = "IndexETag", default, skip_serializing_if = "Option::is_none")]
    pub index_etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_round_trip_and_sort_by_sequence() {
        let key = history_key("e-1", 42, "a");
        assert_eq!(parse_history_key(&key), Some(("e-1", 42, "a")));
        assert!(history_key("x", 9, "a") < history_key("x", 10, "a"));
        let ranges = vec![
            Range {
                from_seq: 0,
                gen: "a".into(),
            },
            Range {
                from_seq: 10,
                gen: "c1".into(),
            },
            Range {
                from_seq: 300,
                gen: "a".into(),
            },
        ];
        assert_eq!(gen_of(&ranges, 5), "a");
        assert_eq!(gen_of(&ranges, 10), "c1");
        assert_eq!(gen_of(&ranges, 299), "c1");
        assert_eq!(gen_of(&ranges, 300), "a");
    }

    #[test]
    fn an_instances_rows_share_its_prefix_and_no_other_instances_do() {
        let ids = [
            "run", "run ", "run  x", "run !", "run-1", "run 1", " ", "a b",
        ];
        for id in ids {
            let keys = InstanceKeys::of(id, 4);
            assert_eq!(id_of_state_row(&keys.state_row()).as_deref(), Some(id));
            let history = keys.history_row("e1", 3, "a");
            assert!(history.starts_with(&keys.prefix) && history < keys.rows_end());
            assert!(keys.state_row() < keys.rows_end());
            assert_eq!(
                history_part(&keys, &history).and_then(parse_history_key),
                Some(("e1", 3, "a"))
            );
            for other in ids.iter().filter(|o| **o != id) {
                let theirs = InstanceKeys::of(other, 4);
                assert!(
                    !theirs.state_row().starts_with(&keys.prefix),
                    "{other:?} under {id:?}"
                );
                let their_history = theirs.history_row("e1", 3, "a");
                assert!(!their_history.starts_with(&keys.prefix));
            }
        }
    }

    #[test]
    fn state_rows_sort_in_instance_id_order() {
        let mut ids = vec![
            "run", "run ", "run  x", "run !", "run-1", "run 1", "ru", "a b", "a",
        ];
        let mut by_key = ids.clone();
        ids.sort();
        by_key.sort_by_key(|id| InstanceKeys::of(id, 1).state_row());
        assert_eq!(by_key, ids);
    }

    #[test]
    fn partitions_are_the_control_partitions() {
        for id in ["a", "b", "order-17"] {
            let QueueName::Control(n) = QueueName::control_for(id, 4) else {
                unreachable!()
            };
            assert_eq!(InstanceKeys::of(id, 4).partition, format!("{n:02}"));
        }
    }
}
