//! The instance turn: an instance as one turn of the worker holds it (state row, ETag,
//! history) and the two things every route does with it — decide (replay new events over
//! it, no I/O) and commit (write under the ETag, then send). The queued route, the group
//! commit, the inline session and the hosted route all go through [`InstanceTurn`]; a
//! committed turn is the instance as it now is in storage, ready for the next episode.

use crate::backend::{
    ActivityWorkItem, ETag, EpisodeCommit, Error, HistoryWrite, LoadedInstance, Outbound,
    QueueMessage, QueueName,
};
use crate::history::{EventKind, HistoryEvent};
use crate::replay::{run_episode, ExecutionOutcome, NewEvent, ReplayInput};
use crate::status::InstanceState;

use super::episode_effects::{next_state, outbound_messages};
use super::Shared;

/// An instance as one turn works on it.
#[derive(Clone)]
pub(crate) struct InstanceTurn {
    /// The state row (a fresh one when this turn starts a new execution).
    pub state: InstanceState,
    /// The state row's ETag, the condition of the commit; `None`: the instance is new.
    pub etag: Option<ETag>,
    /// The committed history of the current execution (empty for a new one).
    pub history: Vec<HistoryEvent>,
    /// This turn starts a new execution over a finished one: its events replace the history.
    pub replace_history: bool,
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
    /// When the (first) episode began deciding, for the episode latency metric.
    pub decided_at: std::time::Instant,
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
            decided_at: self.decided_at,
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

impl InstanceTurn {
    /// The turn of an instance loaded from storage (or the cache).
    pub(crate) fn loaded(loaded: LoadedInstance) -> Self {
        Self {
            state: loaded.state,
            etag: Some(loaded.etag),
            history: loaded.history,
            replace_history: false,
        }
    }

    /// The instance as committed, for the cache; `None` if it was never written.
    pub(crate) fn into_committed(self) -> Option<LoadedInstance> {
        let etag = self.etag?;
        Some(LoadedInstance {
            state: self.state,
            etag,
            history: self.history,
        })
    }

    /// The turn as it will be once `decided` is committed (same ETag): what a group commit
    /// decides the next step over before either is written.
    pub(crate) fn after(&self, decided: &Decided) -> InstanceTurn {
        let mut history = if self.replace_history {
            Vec::new()
        } else {
            self.history.clone()
        };
        history.extend(decided.new_events.iter().cloned());
        InstanceTurn {
            state: decided.state.clone(),
            etag: self.etag.clone(),
            history,
            replace_history: false,
        }
    }

    /// Moves a turn that is ahead of storage past `decided`, the next step of a group
    /// commit (the ETag stays: nothing was written).
    pub(crate) fn advance(&mut self, decided: &Decided) {
        self.history.extend(decided.new_events.iter().cloned());
        self.state = decided.state.clone();
    }

    /// Replays `events` over the turn (no I/O).
    pub(crate) fn decide(&self, shared: &Shared, events: Vec<NewEvent>) -> Decision {
        let decided_at = std::time::Instant::now();
        let now = shared.clock.now();
        let replay = || {
            run_episode(
                &shared.registry,
                ReplayInput {
                    instance_id: &self.state.instance_id,
                    history: &self.history,
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
        let kept = if self.replace_history {
            0
        } else {
            self.history.len()
        };
        let history_len = (kept + episode.new_events.len()) as u64;
        let next = next_state(&self.state, &episode, history_len, now);
        let mut inline = Vec::new();
        let mut queued = Vec::new();
        let partitions = shared.backend.control_partitions();
        let chains = shared.registry.chains();
        for outbound in outbound_messages(&next, &episode, chains, partitions, now) {
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
            decided_at,
        }))
    }

    /// Writes `decided` under the turn's ETag (and history mode), sends its messages, and
    /// moves the turn to what was committed. Returns the activities this process runs.
    pub(crate) async fn commit(
        &mut self,
        shared: &Shared,
        decided: Decided,
    ) -> Result<Vec<ActivityWorkItem>, Error> {
        let history = if self.replace_history {
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
            expected: self.etag.clone(),
            history,
            messages: decided.queued,
        };
        let etag = shared
            .backend
            .commit_episode(&self.state.instance_id, commit)
            .await?;
        if wakes_activities {
            // Work items for this process's own activity loop: do not wait for its next poll.
            shared.idle.wake();
        }
        self.record_committed(
            shared,
            &decided.state,
            &decided.new_events,
            decided.decided_at,
        );
        if self.replace_history {
            self.history.clear();
            self.replace_history = false;
        }
        self.history.extend(decided.new_events);
        self.state = decided.state;
        self.etag = Some(etag);
        Ok(decided.inline)
    }

    /// Telemetry of a commit, emitted once it is durable (never while replaying): the
    /// episode's latency, an execution's start and end (with its span), fired timers' spans.
    fn record_committed(
        &self,
        shared: &Shared,
        next: &InstanceState,
        new_events: &[HistoryEvent],
        decided_at: std::time::Instant,
    ) {
        use crate::telemetry::{metrics, spans};
        metrics::episode_committed(&next.name, decided_at.elapsed());
        let history: &[HistoryEvent] = if self.replace_history {
            &[]
        } else {
            &self.history
        };
        if new_events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }))
        {
            metrics::orchestration_started(&next.name);
        }
        let now = shared.clock.now();
        if let Some(ended) = spans::ended_execution(&self.state, next, history, new_events) {
            if next.status.is_terminal() {
                super::endings::announce(&next.instance_id);
            }
            spans::orchestration_ended(&ended, now);
            let took = (now - ended.started_at).to_std().unwrap_or_default();
            metrics::execution_ended(&next.name, next.status, took);
        }
        spans::timers_fired(next, &spans::fired_timers(history, new_events));
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
