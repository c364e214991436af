//! Rewinding a failed execution, decided by replay. The failures to undo are those the code
//! did not get past: trying the failures from the last one back, a failure joins the set if
//! replay with the set left out (and without the `ExecutionFailed`) ends waiting, with no
//! nondeterminism. A failure the code handled (an earlier attempt it retried, an error it
//! caught and went on from) fails that test — the code would have to take the other path
//! again — and stays. The tasks of the set run again: activities are sent once more with
//! their ids, failed sub-orchestrations are rewound themselves.

use chrono::{DateTime, Utc};

use super::engine::{replay_over, ExecutionOutcome};
use super::{Action, Episode, NewEvent, ReplayInput};
use crate::history::{EventKind, HistoryEvent};
use crate::registry::Registry;

/// The reason of a rewind request among the new events, if there is one.
pub(super) fn requested(new_events: &[NewEvent]) -> Option<&str> {
    new_events.iter().find_map(|e| match &e.kind {
        EventKind::ExecutionRewound { reason, .. } => Some(reason.as_str()),
        _ => None,
    })
}

/// The episode of a rewind of a failed execution (`history` as replay reads it). Nothing
/// changes when no failure can be undone.
pub(super) fn rewind(
    registry: &Registry,
    input: &ReplayInput<'_>,
    history: &[HistoryEvent],
    committed: usize,
    reason: &str,
) -> Episode {
    let base: Vec<HistoryEvent> = history
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::ExecutionFailed { .. }))
        .cloned()
        .collect();
    let failures: Vec<u64> = base
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::ActivityFailed { .. } | EventKind::SubOrchestrationFailed { .. }
            )
        })
        .map(|e| e.seq)
        .collect();
    let mut undone: Vec<u64> = Vec::new();
    let mut waiting = None;
    for failure in failures.iter().rev() {
        let mut candidate = undone.clone();
        candidate.push(*failure);
        let trial: Vec<HistoryEvent> = base
            .iter()
            .filter(|e| !candidate.contains(&e.seq))
            .cloned()
            .collect();
        let quiet = ReplayInput {
            history: &trial,
            new_events: Vec::new(),
            ..input.clone()
        };
        let episode = replay_over(registry, &quiet, &trial, committed);
        let waits_cleanly = episode.outcome == ExecutionOutcome::Running
            && episode.actions.is_empty()
            && episode.new_events.is_empty();
        if waits_cleanly {
            undone = candidate;
            waiting = Some(episode);
        }
    }
    let Some(waiting) = waiting else {
        return replay_over(
            registry,
            &ReplayInput {
                new_events: Vec::new(),
                ..input.clone()
            },
            history,
            committed,
        );
    };
    undone.sort_unstable();
    let actions = undone
        .iter()
        .filter_map(|seq| redo(&base, *seq, reason))
        .collect();
    Episode {
        new_events: vec![marker(committed, input.now, reason, undone)],
        actions,
        outcome: ExecutionOutcome::Running,
        custom_status: waiting.custom_status,
        suspended: waiting.suspended,
        start: waiting.start,
    }
}

fn marker(seq: usize, now: DateTime<Utc>, reason: &str, failures: Vec<u64>) -> HistoryEvent {
    HistoryEvent {
        seq: seq as u64,
        timestamp: now,
        kind: EventKind::ExecutionRewound {
            reason: reason.to_owned(),
            failures,
        },
    }
}

/// What runs the task of the failure at `seq` again.
fn redo(history: &[HistoryEvent], seq: u64, reason: &str) -> Option<Action> {
    let scheduled_id = history.iter().find(|e| e.seq == seq)?.kind.completes_id()?;
    history.iter().find_map(|e| match &e.kind {
        EventKind::ActivityScheduled {
            id,
            name,
            version,
            input,
        } if *id == scheduled_id => Some(Action::ScheduleActivity {
            id: *id,
            name: name.clone(),
            version: version.clone(),
            input: input.clone(),
        }),
        EventKind::SubOrchestrationScheduled {
            id, instance_id, ..
        } if *id == scheduled_id => Some(Action::RewindSubOrchestration {
            id: *id,
            instance_id: instance_id.clone(),
            reason: reason.to_owned(),
        }),
        _ => None,
    })
}
