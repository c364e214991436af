//! One write of a table transaction, as the batchers and the stores build them
//! (`table_writes` runs them).

use crate::rows::Row;

/// Operations per entity group transaction (the service allows 100).
pub(crate) const BATCH: usize = 100;

/// One write of a transaction.
#[derive(Clone)]
pub(crate) enum Op {
    Insert(Row),
    Upsert(Row),
    Update(Row, String),
    Merge(Row, String),
    Delete(String),
    /// Deletes the row only while it still has this ETag.
    DeleteIf(String, String),
}

impl Op {
    /// The RowKey the operation writes.
    pub(crate) fn row_key(&self) -> &str {
        match self {
            Op::Insert(row) | Op::Upsert(row) | Op::Update(row, _) | Op::Merge(row, _) => {
                &row.row_key
            }
            Op::Delete(key) | Op::DeleteIf(key, _) => key,
        }
    }

    /// About how many bytes the operation's properties take in a request.
    pub(crate) fn approximate_bytes(&self) -> usize {
        let row = match self {
            Op::Insert(row) | Op::Upsert(row) | Op::Update(row, _) | Op::Merge(row, _) => row,
            Op::Delete(_) | Op::DeleteIf(..) => return 256,
        };
        let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
        512 + text(&row.body) + text(&row.event) + text(&row.ranges) + text(&row.name)
    }
}
