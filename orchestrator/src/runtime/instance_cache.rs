//! Instances as this worker last committed them (state row, ETag, history), so that its
//! next episode for the same instance need not read the partition again.
//!
//! A cached entry is only a guess until confirmed by the ETag: an episode built on it
//! commits under the cached ETag (If-Match), so a stale entry makes the commit fail and the
//! episode is redone from storage. Outcomes that write nothing (a message to drop or defer)
//! are never decided from the cache: the episode is redone from storage first.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::LoadedInstance;

/// Instances kept at most.
const MAX_INSTANCES: usize = 1_000;
/// History events kept at most, over all instances.
const MAX_EVENTS: usize = 200_000;

#[derive(Default)]
pub(crate) struct InstanceCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_instance: HashMap<String, LoadedInstance>,
    events: usize,
}

impl InstanceCache {
    /// Takes an instance's entry out (the episode owns it until it puts it back).
    pub(crate) fn take(&self, instance_id: &str) -> Option<LoadedInstance> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let taken = inner.by_instance.remove(instance_id)?;
        inner.events -= taken.history.len();
        Some(taken)
    }

    /// Keeps an instance as committed at `etag`; finished instances are not kept.
    pub(crate) fn put(&self, loaded: LoadedInstance) {
        if loaded.state.status.is_terminal() || loaded.history.len() > MAX_EVENTS / 10 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.by_instance.len() >= MAX_INSTANCES
            || inner.events + loaded.history.len() > MAX_EVENTS
        {
            // Simplest eviction: start over (a miss costs one partition read).
            inner.by_instance.clear();
            inner.events = 0;
        }
        inner.events += loaded.history.len();
        let id = loaded.state.instance_id.clone();
        if let Some(old) = inner.by_instance.insert(id, loaded) {
            inner.events -= old.history.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::StartInfo;
    use crate::status::{InstanceState, RuntimeStatus};

    fn loaded(id: &str, status: RuntimeStatus) -> LoadedInstance {
        let started = StartInfo::new("n", "e", serde_json::Value::Null).into_event();
        let state = InstanceState {
            status,
            ..InstanceState::started(id, &started, chrono::Utc::now())
        };
        LoadedInstance {
            state,
            etag: crate::backend::ETag("1".into()),
            history: Vec::new(),
        }
    }

    #[test]
    fn running_instances_are_kept_once_and_finished_ones_not_at_all() {
        let cache = InstanceCache::default();
        cache.put(loaded("a", RuntimeStatus::Running));
        cache.put(loaded("b", RuntimeStatus::Completed));
        assert!(cache.take("a").is_some());
        assert!(cache.take("a").is_none(), "taken out");
        assert!(
            cache.take("b").is_none(),
            "finished instances are not cached"
        );
    }
}
