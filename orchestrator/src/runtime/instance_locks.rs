//! One episode (or inline session commit) per instance at a time within this process:
//! messages for an instance that is busy here wait for it instead of racing its commits (a
//! lost race costs a redelivery, and redeliveries count towards poison). An inline session
//! lets go while its activities run, so it never holds up an event or a terminate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-instance locks, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub(crate) struct InstanceLocks {
    held: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds an instance until dropped.
pub(crate) struct InstanceGuard {
    locks: Arc<InstanceLocks>,
    instance_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InstanceLocks {
    /// Waits until no other episode of this process holds the instance.
    pub(crate) async fn lock(self: &Arc<Self>, instance_id: &str) -> InstanceGuard {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.entry(instance_id.to_owned()).or_default().clone()
        };
        InstanceGuard {
            locks: self.clone(),
            instance_id: instance_id.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// The instance's lock if nobody in this process holds it now.
    pub(crate) fn try_lock(self: &Arc<Self>, instance_id: &str) -> Option<InstanceGuard> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.entry(instance_id.to_owned()).or_default().clone()
        };
        let guard = lock.try_lock_owned().ok();
        // Built even when busy, so that its drop forgets an entry made for nothing.
        let attempt = InstanceGuard {
            locks: self.clone(),
            instance_id: instance_id.to_owned(),
            guard,
        };
        attempt.guard.is_some().then_some(attempt)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or_default()
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.guard.take());
        // Only the map's own handle left: nobody holds or waits, forget the lock.
        if held
            .get(&self.instance_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.instance_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn second_holder_waits_and_locks_are_forgotten() {
        let locks = Arc::new(InstanceLocks::default());
        let first = locks.lock("a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second episode must wait");
        assert!(locks.try_lock("a").is_none(), "held");
        let other = locks.try_lock("b").expect("free");
        drop(other);
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
