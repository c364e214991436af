//! The history ranges and status-index keys of state rows this process has read or written,
//! keyed by instance and valid only for one ETag: a commit that builds on the ETag it
//! expects needs the ranges of exactly that row (and the index key it leaves), and without
//! this it would read the row again first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::rows::Range;
use crate::status_index::IndexEntry;

/// Entries kept before the cache starts over (a miss only costs one read).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct RangesCache {
    entries: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    etag: String,
    ranges: Vec<Range>,
    index: IndexEntry,
}

impl RangesCache {
    /// The ranges of `instance_id`'s state row if its cached ETag is `etag`.
    pub(crate) fn get(&self, instance_id: &str, etag: &str) -> Option<Vec<Range>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(instance_id) {
            Some(cached) if cached.etag == etag => Some(cached.ranges.clone()),
            _ => None,
        }
    }

    /// The status-index entry of `instance_id`'s state row if its cached ETag is `etag`.
    pub(crate) fn index_entry(&self, instance_id: &str, etag: &str) -> Option<IndexEntry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(instance_id) {
            Some(cached) if cached.etag == etag => Some(cached.index.clone()),
            _ => None,
        }
    }

    /// Remembers the ranges and index key of a state row at `etag`.
    pub(crate) fn put(&self, instance_id: &str, etag: &str, ranges: Vec<Range>, index: IndexEntry) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(instance_id) {
            entries.clear();
        }
        let etag = etag.to_owned();
        entries.insert(
            instance_id.to_owned(),
            Cached {
                etag,
                ranges,
                index,
            },
        );
    }

    /// Forgets an instance (deleted).
    pub(crate) fn forget(&self, instance_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(instance_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_index_keys_are_returned_only_for_the_same_etag() {
        let cache = RangesCache::default();
        let ranges = vec![Range {
            from_seq: 0,
            gen: "a".into(),
        }];
        let index = IndexEntry {
            key: crate::status_index::IndexKey {
                status: flowforge_orchestrator::status::RuntimeStatus::Running,
                row_key: "2026-12-03T09:00:00.000000Z|i".into(),
            },
            etag: Some("W/1".into()),
        };
        cache.put("i", "e1", ranges.clone(), index.clone());
        assert_eq!(cache.get("i", "e1"), Some(ranges));
        assert_eq!(cache.index_entry("i", "e1"), Some(index));
        assert_eq!(cache.get("i", "e2"), None);
        assert_eq!(cache.index_entry("i", "e2"), None);
        cache.forget("i");
        assert_eq!(cache.get("i", "e1"), None);
    }
}
