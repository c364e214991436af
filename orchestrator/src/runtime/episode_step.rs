//! One episode carried to storage: replay over a known history, the new state row, the
//! split of the decided messages into those that travel through queues and the activities
//! this process runs itself (inline), and the commit under the state row's ETag.

use crate::backend::{
    ActivityWorkItem, ETag, EpisodeCommit, Error, HistoryWrite, QueueMessage, QueueName,
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

/// Replays `events` over `base` and commits the result.
pub(crate) async fn step(
    shared: &Shared,
    instance_id: &str,
    base: Base<'_>,
    events: Vec<NewEvent>,
) -> Result<Stepped, Error> {
    let now = shared.clock.now();
    let episode = run_episode(
        &shared.registry,
        ReplayInput {
            instance_id,
            history: base.history,
            new_events: events,
            now,
            max_history_events: shared.options.max_history_events,
        },
    );
    if matches!(episode.outcome, ExecutionOutcome::NotStarted) {
        return Ok(Stepped::NotStarted);
    }
    if episode.new_events.is_empty() {
        return Ok(Stepped::Unchanged);
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
    let history = if base.replace_history {
        HistoryWrite::Replace(episode.new_events.clone())
    } else {
        HistoryWrite::Append(episode.new_events.clone())
    };
    let commit = EpisodeCommit {
        state: next.clone(),
        expected: base.etag.cloned(),
        history,
        messages: queued,
    };
    let wakes_activities = commit
        .messages
        .iter()
        .any(|m| matches!(m.queue, QueueName::Work));
    let etag = shared.backend.commit_episode(instance_id, commit).await?;
    if wakes_activities {
        // Work items for this process's own activity loop: do not wait for its next poll.
        shared.idle.wake();
    }
    Ok(Stepped::Committed(Box::new(Committed {
        state: next,
        etag,
        new_events: episode.new_events,
        inline,
    })))
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
