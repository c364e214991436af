//! One episode carried to storage: replay over a known history, the new state row, the
//! split of the decided messages into those that travel through queues and the activities
//! this process runs itself (inline), and the commit under the state row's ETag.

use crate::backend::{
    ActivityWorkItem, ETag, EpisodeCommit, Error, HistoryWrite, Outbound, QueueMessage, QueueName,
};
use crate::history::HistoryEvent;
use crate::replay::{run_episode, ExecutionOutcome, NewEvent, ReplayInput};
use crate::status::InstanceState;

use super::episode_effects::{next_state, outbound_messages};
use super::Shared;

/// What an episode builds on.
pub(crate) struct Base<'a> {
    /// The state row (a fresh one for an instance created by this episode).
    pub state: &'a InstanceState,
    /// The state row's ETag; `None` when the instance does not exist yet.
    pub etag: Option<&'a ETag>,
    /// The committed history of the current execution.
    pub history: &'a [HistoryEvent],
    /// The episode starts a new execution: its events replace the history.
    pub replace_history: bool,
}

/// How an episode ended.
pub(crate) enum Stepped {
    /// The execution has not started yet (its start message has not arrived).
    NotStarted,
    /// Nothing new: no event changed the history, nothing was written.
    Unchanged,
    /// The episode was committed.
    Committed(Box<Committed>),
}

/// A committed episode.
pub(crate) struct Committed {
    /// The state row as written.
    pub state: InstanceState,
    /// Its ETag after the commit.
    pub etag: ETag,
    /// The events appended (or the whole history, after a replace).
    pub new_events: Vec<HistoryEvent>,
    /// Activities decided by the episode that this process runs itself. Their work items
    /// were not sent: the messages that caused the episode stay locked until the results
    /// are committed, and if this process dies they come back and the activities are
    /// re-derived from history and sent through the work-item queue.
    pub inline: Vec<ActivityWorkItem>,
}

/// An episode decided but not yet written.
pub(crate) struct Decided {
    /// The state row to write.
    pub state: InstanceState,
    /// The events to append (or the new execution's history).
    pub new_events: Vec<HistoryEvent>,
    /// Activities this process runs itself.
    pub inline: Vec<ActivityWorkItem>,
    /// Messages to send after the commit.
    pub queued: Vec<Outbound>,
}

impl Decided {
    /// This episode followed by `next`, decided over this one's events: one commit.
    pub(crate) fn then(mut self, next: Decided) -> Decided {
        self.new_events.extend(next.new_events);
        self.queued.extend(next.queued);
        Decided {
            state: next.state,
            new_events: self.new_events,
            inline: next.inline,
            queued: self.queued,
        }
    }
}

/// What replay decided.
pub(crate) enum Decision {
    /// The execution has not started yet.
    NotStarted,
    /// Nothing new.
    Unchanged,
    /// New events (and maybe work) to commit.
    Changed(Box<Decided>),
}

/// Replays `events` over `base` (no I/O).
pub(crate) fn decide(
    shared: &Shared,
    instance_id: &str,
    base: &Base<'_>,
    events: Vec<NewEvent>,
) -> Decision {
    let now = shared.clock.now();
    let replay = || {
        run_episode(
            &shared.registry,
            ReplayInput {
                instance_id,
                history: base.history,
                new_events: events,
                now,
                max_history_events: shared.options.max_history_events,
            },
        )
    };
    // A replay is synchronous: where a long one must not hold an async worker (and the
    // tasks queued behind it), it gives the worker's queue to another thread first.
    let off_runtime = shared.options.replay_off_runtime
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let episode = if off_runtime {
        tokio::task::block_in_place(replay)
    } else {
        replay()
    };
    if matches!(episode.outcome, ExecutionOutcome::NotStarted) {
        return Decision::NotStarted;
    }
    if episode.new_events.is_empty() {
        return Decision::Unchanged;
    }
    let kept = if base.replace_history {
        0
    } else {
        base.history.len()
    };
    let history_len = (kept + episode.new_events.len()) as u64;
    let next = next_state(base.state, &episode, history_len, now);
    let mut inline = Vec::new();
    let mut queued = Vec::new();
    for outbound in outbound_messages(&next, &episode, shared.backend.control_partitions(), now) {
        match outbound.message {
            QueueMessage::Activity(item) if runs_inline(shared, &item) => inline.push(item),
            _ => queued.push(outbound),
        }
    }
    log_outcome(&episode.outcome, &next);
    Decision::Changed(Box::new(Decided {
        state: next,
        new_events: episode.new_events,
        inline,
        queued,
    }))
}

/// Writes a decided episode over `base` (its ETag and history mode), then sends its
/// messages. Returns what was committed.
pub(crate) async fn commit(
    shared: &Shared,
    instance_id: &str,
    base: &Base<'_>,
    decided: Decided,
) -> Result<Committed, Error> {
    let history = if base.replace_history {
        HistoryWrite::Replace(decided.new_events.clone())
    } else {
        HistoryWrite::Append(decided.new_events.clone())
    };
    let wakes_activities = decided
        .queued
        .iter()
        .any(|m| matches!(m.queue, QueueName::Work));
    let commit = EpisodeCommit {
        state: decided.state.clone(),
        expected: base.etag.cloned(),
        history,
        messages: decided.queued,
    };
    let etag = shared.backend.commit_episode(instance_id, commit).await?;
    if wakes_activities {
        // Work items for this process's own activity loop: do not wait for its next poll.
        shared.idle.wake();
    }
    Ok(Committed {
        state: decided.state,
        etag,
        new_events: decided.new_events,
        inline: decided.inline,
    })
}

/// Replays `events` over `base` and commits the result.
pub(crate) async fn step(
    shared: &Shared,
    instance_id: &str,
    base: Base<'_>,
    events: Vec<NewEvent>,
) -> Result<Stepped, Error> {
    match decide(shared, instance_id, &base, events) {
        Decision::NotStarted => Ok(Stepped::NotStarted),
        Decision::Unchanged => Ok(Stepped::Unchanged),
        Decision::Changed(decided) => {
            let committed = commit(shared, instance_id, &base, *decided).await?;
            Ok(Stepped::Committed(Box::new(committed)))
        }
    }
}

/// An activity runs in this process when inline execution is on and it is registered here.
fn runs_inline(shared: &Shared, item: &ActivityWorkItem) -> bool {
    shared.options.inline_activities
        && shared
            .registry
            .find_activity(&item.name, &item.version)
            .is_some()
}

fn log_outcome(outcome: &ExecutionOutcome, state: &InstanceState) {
    use tracing::info;
    match outcome {
        ExecutionOutcome::Completed(_) => {
            info!(orchestration = %state.name, "orchestration completed")
        }
        ExecutionOutcome::Failed(failure) => {
            info!(orchestration = %state.name, %failure, "orchestration failed")
        }
        ExecutionOutcome::Terminated(reason) => {
            info!(orchestration = %state.name, reason, "orchestration terminated")
        }
        ExecutionOutcome::ContinuedAsNew { .. } => {
            info!(orchestration = %state.name, "orchestration continued as new")
        }
        ExecutionOutcome::Running | ExecutionOutcome::NotStarted => {}
    }
}
