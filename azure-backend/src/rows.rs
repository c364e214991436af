//! Table layout: one partition per instance (PartitionKey = instance id), holding the state
//! row and the history rows of its executions.
//!
//! | RowKey | what |
//! | --- | --- |
//! | `state` | the state row: `Status`, `Name`, `CreatedAt` (for listing), `Body` (the state as JSON), `Ranges`, `IndexETag` (status index on) |
//! | `h-{execution}-{seq:010}-{gen}` | one history event (`Event`, JSON) |
//!
//! `gen` is `a` for events written by single-batch commits and the commit's claim id for
//! those written by multi-batch commits; `Ranges` in the state says which `gen` holds each
//! sequence range, so a stalled multi-batch writer can never overwrite rows another commit
//! made visible.

use serde::{Deserialize, Serialize};

/// Generation tag of rows written atomically with their state row.
pub(crate) const ATOMIC_GEN: &str = "a";
/// RowKey of the state row.
pub(crate) const STATE_ROW: &str = "state";

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
}
