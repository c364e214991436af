//! The intake rules, pure: given the messages delivered for one instance and the instance as
//! last seen, what the turn does — replay events over a state (perhaps a new execution's),
//! wait for a start that has not come, dead-letter messages for an instance that does not
//! exist, refuse a start, or go back to storage because a cached snapshot cannot be trusted
//! for the decision. No I/O and no clock: the caller gives the time and carries out the
//! outcome (`instance_turn.rs`).

use chrono::{DateTime, Utc};

use super::turn::InstanceTurn;
use crate::backend::{LoadedInstance, OrchestratorMessage, StartCondition};
use crate::history::EventKind;
use crate::replay::NewEvent;
use crate::status::{InstanceState, RuntimeStatus};

/// What the delivered messages lead to.
pub(crate) enum Intake {
    /// The instance does not exist and nothing starts it: dead-letter every message.
    NoInstance,
    /// The snapshot came from the cache and this decision must rest on storage: load the
    /// instance and apply the rules again.
    Unconfirmed,
    /// Events early for the start of the (next) execution: hold those meant for any
    /// execution, delete those addressed to another one.
    AwaitStart,
    /// Replay these events over the turn.
    Replay(Box<Replay>),
}

/// A turn to replay.
pub(crate) struct Replay {
    /// The instance as the replay sees it.
    pub turn: InstanceTurn,
    /// The events for the current execution, in delivery order.
    pub events: Vec<NewEvent>,
    /// A start that arrived while its instance runs: its parent (if any) is told it failed.
    pub refused_start: Option<OrchestratorMessage>,
    /// A start that may not run (its caller was refused, or another start won), dropped.
    pub dropped_start: bool,
    /// How many messages were for another execution and are dropped.
    pub dropped: usize,
}

/// Applies the intake rules. `snapshot`: the instance as loaded (`None`: it does not exist);
/// `from_cache`: the snapshot is this process's cache, not confirmed by storage.
pub(crate) fn take_in(
    instance_id: &str,
    snapshot: Option<LoadedInstance>,
    messages: &[&OrchestratorMessage],
    from_cache: bool,
    now: DateTime<Utc>,
) -> Intake {
    let start = messages
        .iter()
        .copied()
        .find(|m| matches!(m.event.kind, EventKind::ExecutionStarted { .. }));
    let mut turn = match snapshot {
        Some(loaded) => InstanceTurn::loaded(loaded),
        // A sub-orchestration, a fire-and-forget start, or a start whose state row was
        // never written (its caller died) creates the instance here.
        None => match start {
            Some(message) => InstanceTurn {
                state: InstanceState::started(instance_id, &message.event.kind, now),
                etag: None,
                history: Vec::new(),
                replace_history: false,
            },
            None => return Intake::NoInstance,
        },
    };
    // A start decides from the current state (new execution, or refused): confirm it —
    // unless the snapshot is the instance exactly as this process created it for this
    // start (no history yet, same execution), which the start's commit confirms by its
    // If-Match like any other cached turn.
    let created_for_this_start = |message: &OrchestratorMessage| {
        turn.history.is_empty()
            && turn.state.history_len == 0
            && turn.state.status == RuntimeStatus::Pending
            && started_execution(message) == turn.state.execution_id
    };
    if from_cache && start.is_some_and(|m| !created_for_this_start(m)) {
        return Intake::Unconfirmed;
    }
    let mut refused_start = None;
    let mut dropped_start = false;
    if let Some(message) = start {
        let execution_id = started_execution(message);
        if execution_id != turn.state.execution_id {
            let finished = turn.state.status.is_terminal()
                || turn.state.status == RuntimeStatus::ContinuedAsNew;
            if !StartCondition::allows(message.start_if.as_ref(), &turn.state.execution_id) {
                // Dropped below as a message for another execution.
                dropped_start = true;
            } else if finished {
                turn = InstanceTurn {
                    state: InstanceState::started(instance_id, &message.event.kind, now),
                    etag: turn.etag,
                    history: Vec::new(),
                    replace_history: true,
                };
            } else {
                refused_start = Some(message.clone());
            }
        }
    }
    let current = &turn.state.execution_id;
    let events: Vec<NewEvent> = messages
        .iter()
        .filter(|m| m.execution_id.as_ref().is_none_or(|e| e == current))
        .map(|m| m.event.clone())
        .collect();
    let dropped = messages.len() - events.len();
    let waiting_for_start = !turn.replace_history
        && turn.history.is_empty()
        && !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }));
    let waiting_for_next_execution =
        turn.state.status == RuntimeStatus::ContinuedAsNew && !turn.replace_history;
    if from_cache && (waiting_for_start || waiting_for_next_execution || dropped > 0) {
        // Settling without a commit must not rest on an unconfirmed cache.
        return Intake::Unconfirmed;
    }
    if waiting_for_start || waiting_for_next_execution {
        return Intake::AwaitStart;
    }
    Intake::Replay(Box::new(Replay {
        turn,
        events,
        refused_start,
        dropped_start,
        dropped,
    }))
}

fn started_execution(message: &OrchestratorMessage) -> &str {
    match &message.event.kind {
        EventKind::ExecutionStarted { execution_id, .. } => execution_id,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ETag, StartCondition};
    use crate::history::{HistoryEvent, StartInfo};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn start(execution: &str, start_if: Option<StartCondition>) -> OrchestratorMessage {
        OrchestratorMessage {
            instance_id: "i".into(),
            execution_id: Some(execution.into()),
            event: NewEvent {
                timestamp: now(),
                kind: StartInfo::new("o", execution, json!(1)).into_event(),
            },
            start_if,
        }
    }

    fn raised(execution: Option<&str>) -> OrchestratorMessage {
        OrchestratorMessage {
            instance_id: "i".into(),
            execution_id: execution.map(str::to_owned),
            event: NewEvent {
                timestamp: now(),
                kind: EventKind::EventRaised {
                    name: "go".into(),
                    input: json!(true),
                    event_id: "e1".into(),
                },
            },
            start_if: None,
        }
    }

    /// An instance of execution `execution` with `status` and `events` history events.
    fn snapshot(execution: &str, status: RuntimeStatus, events: u64) -> LoadedInstance {
        let mut state = InstanceState::started("i", &start(execution, None).event.kind, now());
        state.status = status;
        state.history_len = events;
        let history = (0..events)
            .map(|seq| HistoryEvent {
                seq,
                timestamp: now(),
                kind: EventKind::OrchestratorStarted,
            })
            .collect();
        LoadedInstance {
            state,
            etag: ETag("e".into()),
            history,
        }
    }

    fn replay(intake: Intake) -> Replay {
        match intake {
            Intake::Replay(replay) => *replay,
            _ => panic!("expected a replay"),
        }
    }

    #[test]
    fn an_event_for_an_instance_that_does_not_exist_is_dead_lettered() {
        let event = raised(None);
        assert!(matches!(
            take_in("i", None, &[&event], false, now()),
            Intake::NoInstance
        ));
    }

    #[test]
    fn a_start_creates_its_instance_when_no_state_row_exists() {
        let message = start("x1", Some(StartCondition::Absent));
        let replay = replay(take_in("i", None, &[&message], false, now()));
        assert_eq!(replay.turn.state.execution_id, "x1");
        assert_eq!(replay.turn.state.status, RuntimeStatus::Pending);
        assert!(replay.turn.etag.is_none());
        assert_eq!(replay.events.len(), 1);
    }

    #[test]
    fn a_start_never_rests_on_the_cache() {
        let message = start("x2", None);
        let cached = snapshot("x1", RuntimeStatus::Completed, 3);
        assert!(matches!(
            take_in("i", Some(cached), &[&message], true, now()),
            Intake::Unconfirmed
        ));
    }

    #[test]
    fn a_start_may_rest_on_the_row_this_process_created_for_it_only() {
        let message = start("x1", None);
        // As created for this start: decided, the commit's If-Match confirms it.
        let created = snapshot("x1", RuntimeStatus::Pending, 0);
        let replay = replay(take_in("i", Some(created), &[&message], true, now()));
        assert_eq!(replay.turn.etag, Some(ETag("e".into())));
        assert_eq!(replay.events.len(), 1);
        // Created for another execution, or already running: confirmed from storage.
        let other = snapshot("x0", RuntimeStatus::Pending, 0);
        assert!(matches!(
            take_in("i", Some(other), &[&message], true, now()),
            Intake::Unconfirmed
        ));
        let running = snapshot("x1", RuntimeStatus::Running, 2);
        assert!(matches!(
            take_in("i", Some(running), &[&message], true, now()),
            Intake::Unconfirmed
        ));
    }

    #[test]
    fn a_refused_start_is_dropped_even_over_a_finished_instance() {
        // Sent when the instance did not exist; by now another start has run and finished.
        let message = start("x2", Some(StartCondition::Absent));
        let loaded = snapshot("x1", RuntimeStatus::Completed, 3);
        let replay = replay(take_in("i", Some(loaded), &[&message], false, now()));
        assert!(replay.dropped_start);
        assert_eq!(replay.dropped, 1);
        assert!(replay.events.is_empty());
        assert_eq!(replay.turn.state.execution_id, "x1", "no second execution");
    }

    #[test]
    fn a_start_replacing_the_finished_execution_starts_a_new_one() {
        let message = start(
            "x2",
            Some(StartCondition::Replacing {
                execution_id: "x1".into(),
            }),
        );
        let loaded = snapshot("x1", RuntimeStatus::Completed, 3);
        let replay = replay(take_in("i", Some(loaded), &[&message], false, now()));
        assert!(replay.turn.replace_history);
        assert!(replay.turn.history.is_empty());
        assert_eq!(replay.turn.state.execution_id, "x2");
        assert!(
            replay.turn.etag.is_some(),
            "the commit is conditional on the old row"
        );
        assert_eq!(replay.events.len(), 1);
    }

    #[test]
    fn a_start_while_the_instance_runs_is_refused() {
        let message = start("x2", None);
        let loaded = snapshot("x1", RuntimeStatus::Running, 3);
        let replay = replay(take_in("i", Some(loaded), &[&message], false, now()));
        assert!(replay.refused_start.is_some());
        assert_eq!(replay.turn.state.execution_id, "x1");
        assert_eq!(replay.dropped, 1);
    }

    #[test]
    fn an_event_early_for_its_start_waits_for_it() {
        // The client wrote the Pending row; the start message has not been processed yet.
        let event = raised(None);
        let pending = snapshot("x1", RuntimeStatus::Pending, 0);
        assert!(matches!(
            take_in("i", Some(pending), &[&event], false, now()),
            Intake::AwaitStart
        ));
        // Between continue-as-new and the next execution's start, too.
        let continued = snapshot("x1", RuntimeStatus::ContinuedAsNew, 4);
        assert!(matches!(
            take_in("i", Some(continued), &[&event], false, now()),
            Intake::AwaitStart
        ));
    }

    #[test]
    fn the_start_and_its_early_event_run_together() {
        let message = start("x1", Some(StartCondition::Absent));
        let event = raised(None);
        let pending = snapshot("x1", RuntimeStatus::Pending, 0);
        let replay = replay(take_in(
            "i",
            Some(pending),
            &[&event, &message],
            false,
            now(),
        ));
        assert_eq!(replay.events.len(), 2);
        assert!(!replay.dropped_start && replay.refused_start.is_none());
    }

    #[test]
    fn messages_for_another_execution_are_dropped_but_not_on_the_cache() {
        let stale = raised(Some("x0"));
        let current = raised(Some("x1"));
        let loaded = snapshot("x1", RuntimeStatus::Running, 3);
        let replay = replay(take_in(
            "i",
            Some(loaded.clone()),
            &[&stale, &current],
            false,
            now(),
        ));
        assert_eq!((replay.events.len(), replay.dropped), (1, 1));
        assert!(matches!(
            take_in("i", Some(loaded), &[&stale, &current], true, now()),
            Intake::Unconfirmed
        ));
    }
}
