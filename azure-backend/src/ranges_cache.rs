//! The history ranges of state rows this process has read or written, keyed by instance and
//! valid only for one ETag: a commit that builds on the ETag it expects needs the ranges of
//! exactly that row, and without this it would read the row again first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::rows::Range;

/// Entries kept before the cache starts over (a miss only costs one read).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct RangesCache {
    entries: Mutex<HashMap<String, (String, Vec<Range>)>>,
}

impl RangesCache {
    /// The ranges of `instance_id`'s state row if its cached ETag is `etag`.
    pub(crate) fn get(&self, instance_id: &str, etag: &str) -> Option<Vec<Range>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(instance_id) {
            Some((cached, ranges)) if cached == etag => Some(ranges.clone()),
            _ => None,
        }
    }

    /// Remembers the ranges of a state row at `etag`.
    pub(crate) fn put(&self, instance_id: &str, etag: &str, ranges: Vec<Range>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(instance_id) {
            entries.clear();
        }
        entries.insert(instance_id.to_owned(), (etag.to_owned(), ranges));
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
    fn ranges_are_returned_only_for_the_same_etag() {
        let cache = RangesCache::default();
        let ranges = vec![Range {
            from_seq: 0,
            gen: "a".into(),
        }];
        cache.put("i", "e1", ranges.clone());
        assert_eq!(cache.get("i", "e1"), Some(ranges));
        assert_eq!(cache.get("i", "e2"), None);
        cache.forget("i");
        assert_eq!(cache.get("i", "e1"), None);
    }
}
