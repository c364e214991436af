//! Which new events an episode accepts: the exactly-once rule over at-least-once messages.
//!
//! Every inbound event has an identity (the action id it completes, or the event id of an
//! external event); one already in history, or answering nothing this execution scheduled,
//! is dropped. Applying the same message twice therefore changes nothing.

use std::collections::HashSet;

use super::NewEvent;
use crate::history::{EventKind, HistoryEvent};

/// Filters `new_events` against `history` (and each other); keeps their order.
pub fn accept_new_events(history: &[HistoryEvent], new_events: Vec<NewEvent>) -> Vec<NewEvent> {
    let mut scheduled = HashSet::new();
    let mut completed = HashSet::new();
    let mut event_ids = HashSet::new();
    let mut started = false;
    let mut suspended = false;
    let mut terminal = false;
    for event in history {
        note(&event.kind, &mut scheduled, &mut completed, &mut event_ids);
        match &event.kind {
            EventKind::ExecutionStarted { .. } => started = true,
            EventKind::ExecutionSuspended { .. } => suspended = true,
            EventKind::ExecutionResumed { .. } => suspended = false,
            kind if kind.is_terminal() => terminal = true,
            _ => {}
        }
    }
    if terminal {
        return Vec::new();
    }
    // A start delivered in the same batch as the first events must come first.
    let mut new_events = new_events;
    new_events.sort_by_key(|e| !matches!(e.kind, EventKind::ExecutionStarted { .. }));
    let mut accepted = Vec::new();
    for event in new_events {
        let keep = match &event.kind {
            EventKind::ExecutionStarted { .. } => !std::mem::replace(&mut started, true),
            EventKind::ExecutionTerminated { .. } => {
                !std::mem::replace(&mut terminal, true) && started
            }
            EventKind::ExecutionSuspended { .. } => {
                started && !std::mem::replace(&mut suspended, true)
            }
            EventKind::ExecutionResumed { .. } => {
                started && std::mem::replace(&mut suspended, false)
            }
            EventKind::EventRaised { event_id, .. } => {
                started && (event_id.is_empty() || event_ids.insert(event_id.clone()))
            }
            kind => match kind.completes_id() {
                Some(id) => started && scheduled.contains(&id) && completed.insert(id),
                // Decisions are made by replay, never accepted from outside.
                None => false,
            },
        };
        if keep && !terminal_before(&accepted) {
            accepted.push(event);
        }
    }
    accepted
}

fn terminal_before(accepted: &[NewEvent]) -> bool {
    accepted
        .iter()
        .any(|e| matches!(e.kind, EventKind::ExecutionTerminated { .. }))
}

fn note(
    kind: &EventKind,
    scheduled: &mut HashSet<u64>,
    completed: &mut HashSet<u64>,
    event_ids: &mut HashSet<String>,
) {
    if let Some(id) = kind.scheduling_id() {
        scheduled.insert(id);
    }
    if let Some(id) = kind.completes_id() {
        completed.insert(id);
    }
    if let EventKind::EventRaised { event_id, .. } = kind {
        if !event_id.is_empty() {
            event_ids.insert(event_id.clone());
        }
    }
}
