//! Activities an episode decided that run in this process: started on the worker's
//! activity slots, their results taken as the events to deliver, abandoned (aborted, their
//! work items returned) when the instance stops waiting for them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use super::activity_attempt::{self, result_kind, ActivityResult};
use super::Shared;
use crate::backend::ActivityWorkItem;
use crate::history::{FailureDetails, FailureKind};
use crate::replay::NewEvent;

/// Activities running in this process for one instance.
pub(crate) struct InlineActivities {
    running: JoinSet<ActivityResult>,
    outstanding: HashMap<Id, ActivityWorkItem>,
}

impl InlineActivities {
    /// Starts `items`.
    pub(crate) fn start(shared: &Arc<Shared>, items: Vec<ActivityWorkItem>) -> Self {
        let mut activities = Self {
            running: JoinSet::new(),
            outstanding: HashMap::new(),
        };
        activities.spawn_all(shared, items);
        activities
    }

    /// Whether none is running.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Waits for the first result (none by `deadline`: `None`), then takes every result
    /// ready by now as well, as the events to deliver.
    pub(crate) async fn next_results(
        &mut self,
        shared: &Shared,
        deadline: Instant,
    ) -> Option<Vec<NewEvent>> {
        let first = tokio::select! {
            joined = self.running.join_next_with_id() => joined,
            _ = tokio::time::sleep_until(deadline) => return None,
        };
        let mut finished = Vec::from_iter(first);
        while let Some(joined) = self.running.try_join_next_with_id() {
            finished.push(joined);
        }
        let now = shared.clock.now();
        Some(
            finished
                .into_iter()
                .filter_map(|joined| {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, result),
                        // Panics are caught inside the attempt; this is a task cancelled
                        // as the runtime shuts down.
                        Err(join) => (join.id(), Err(cancelled(&join))),
                    };
                    let item = self.outstanding.remove(&id)?;
                    Some(NewEvent {
                        timestamp: now,
                        kind: result_kind(item.scheduled_id, result),
                    })
                })
                .collect(),
        )
    }

    /// Every result ready by `deadline`; true when none is left running.
    pub(crate) async fn results_by(
        &mut self,
        shared: &Shared,
        deadline: Instant,
    ) -> (Vec<NewEvent>, bool) {
        let mut events = Vec::new();
        while !self.is_empty() {
            match self.next_results(shared, deadline).await {
                Some(more) => events.extend(more),
                None => break,
            }
        }
        (events, self.is_empty())
    }

    pub(crate) fn spawn_all(&mut self, shared: &Arc<Shared>, items: Vec<ActivityWorkItem>) {
        for item in items {
            let work = activity_attempt::attempt(shared, &item, 1, true);
            // Inline activities share the worker's activity slots with the queued ones.
            let slots = shared.activity_slots.clone();
            let handle = self.running.spawn(async move {
                let _slot = slots.acquire_owned().await;
                work.await
            });
            self.outstanding.insert(handle.id(), item);
        }
    }

    /// Stops waiting: the running ones are aborted and their work items returned.
    pub(crate) fn abandon(mut self) -> Vec<ActivityWorkItem> {
        self.running.abort_all();
        self.outstanding.into_values().collect()
    }
}

fn cancelled(join: &tokio::task::JoinError) -> FailureDetails {
    FailureDetails::of(
        FailureKind::ActivityPanicked,
        format!("the activity's task ended early: {join}"),
    )
}
