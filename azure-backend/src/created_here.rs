//! Instances this process created, kept until a worker of this process takes its first
//! episode: the state row and ETag `create_instance` wrote spare that worker a point read
//! (one storage transaction per orchestration). Bounded: instances with an input over
//! [`MAX_INPUT_BYTES`] are not kept, and past [`CAP`] entries the oldest half is dropped (a
//! missing entry only means the point read is made) — at most about 16 MiB, also when
//! the workers are other processes and nothing is ever taken.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use flowforge_orchestrator::backend::ETag;
use flowforge_orchestrator::status::InstanceState;

/// Entries kept at most.
const CAP: usize = 1024;
/// Largest input (as JSON) of an instance kept.
const MAX_INPUT_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub(crate) struct CreatedHere {
    inner: Mutex<Created>,
    /// Woken whenever a creation in flight ends.
    creation_ended: Notify,
}

#[derive(Default)]
struct Created {
    by_id: HashMap<String, (InstanceState, ETag)>,
    order: VecDeque<String>,
    /// Instances whose start is (being) sent and whose state row is being written: a
    /// worker here that sees the start meanwhile (a bundle of starts goes out before its
    /// callers write their rows) waits for the row instead of reading storage, and does
    /// not write the instance itself only to lose the race to the creator.
    in_flight: HashSet<String>,
}

/// Marks a creation in flight until dropped.
pub(crate) struct CreationInFlight<'a> {
    created: &'a CreatedHere,
    instance_id: String,
}

impl Drop for CreationInFlight<'_> {
    fn drop(&mut self) {
        let mut created = self.created.inner.lock().unwrap_or_else(|p| p.into_inner());
        created.in_flight.remove(&self.instance_id);
        drop(created);
        self.created.creation_ended.notify_waiters();
    }
}

impl CreatedHere {
    /// Remembers an instance as created with `etag`.
    pub(crate) fn put(&self, state: &InstanceState, etag: &ETag) {
        let input_bytes = serde_json::to_vec(&state.input).map_or(usize::MAX, |v| v.len());
        if input_bytes > MAX_INPUT_BYTES {
            return;
        }
        let mut created = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if created.by_id.len() >= CAP {
            for _ in 0..CAP / 2 {
                if let Some(old) = created.order.pop_front() {
                    created.by_id.remove(&old);
                }
            }
        }
        let id = state.instance_id.clone();
        if created
            .by_id
            .insert(id.clone(), (state.clone(), etag.clone()))
            .is_none()
        {
            created.order.push_back(id);
        }
    }

    /// Marks `instance_id` as being created here until the returned guard is dropped.
    pub(crate) fn begin(&self, instance_id: &str) -> CreationInFlight<'_> {
        let mut created = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        created.in_flight.insert(instance_id.to_owned());
        CreationInFlight {
            created: self,
            instance_id: instance_id.to_owned(),
        }
    }

    /// The instance as created, once — after its creation here ends, if one is in flight
    /// (waiting at most `within`).
    pub(crate) async fn take_when_created(
        &self,
        instance_id: &str,
        within: Duration,
    ) -> Option<(InstanceState, ETag)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.creation_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let in_flight = {
                let created = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                created.in_flight.contains(instance_id)
            };
            if !in_flight || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.take(instance_id);
            }
        }
    }

    /// The instance as created, once.
    pub(crate) fn take(&self, instance_id: &str) -> Option<(InstanceState, ETag)> {
        let mut created = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let taken = created.by_id.remove(instance_id);
        if taken.is_some() {
            created.order.retain(|id| id != instance_id);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowforge_orchestrator::history::StartInfo;

    fn state(id: &str) -> InstanceState {
        let start = StartInfo::new("o", "e1", serde_json::Value::Null).into_event();
        InstanceState::started(id, &start, chrono::Utc::now())
    }

    #[test]
    fn an_instance_is_handed_out_once() {
        let created = CreatedHere::default();
        created.put(&state("a"), &ETag("e1".into()));
        let (taken, etag) = created.take("a").unwrap();
        assert_eq!((taken.instance_id.as_str(), etag.0.as_str()), ("a", "e1"));
        assert!(created.take("a").is_none());
        assert!(created.take("b").is_none());
    }

    #[tokio::test]
    async fn a_taker_waits_for_a_creation_in_flight() {
        let created = std::sync::Arc::new(CreatedHere::default());
        let guard = created.begin("a");
        let taker = {
            let created = created.clone();
            tokio::spawn(async move {
                created
                    .take_when_created("a", Duration::from_secs(60))
                    .await
            })
        };
        tokio::task::yield_now().await;
        created.put(&state("a"), &ETag("e1".into()));
        drop(guard);
        let (taken, _) = taker.await.unwrap().expect("the row as created");
        assert_eq!(taken.instance_id, "a");
        // Nothing in flight: no wait, nothing to take.
        assert!(created
            .take_when_created("b", Duration::from_secs(60))
            .await
            .is_none());
    }

    #[test]
    fn a_large_input_is_not_kept() {
        let created = CreatedHere::default();
        let mut big = state("big");
        big.input = serde_json::Value::String("x".repeat(MAX_INPUT_BYTES + 1));
        created.put(&big, &ETag("e".into()));
        assert!(created.take("big").is_none());
    }

    #[test]
    fn past_the_cap_the_oldest_are_dropped() {
        let created = CreatedHere::default();
        for i in 0..=CAP {
            created.put(&state(&format!("i{i}")), &ETag(format!("e{i}")));
        }
        assert!(created.take("i0").is_none());
        assert!(created.take(&format!("i{CAP}")).is_some());
        assert!(created.inner.lock().unwrap().by_id.len() <= CAP);
    }
}
