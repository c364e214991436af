//! The mutable state one replay shares between the engine and the orchestration context.
//!
//! The engine feeds history events into it; the context reads completions from it and
//! records the code's new actions, checking each against the history (`record_action`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Action, NondeterminismError};
use crate::history::{EventKind, FailureDetails, HistoryEvent};

/// The result a completion event delivers to the code.
pub(crate) type Completion = Result<Value, FailureDetails>;

/// What a durable future waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// An activity, timer or sub-orchestration, by action id.
    Task(u64),
    /// An external-event waiter, by waiter id.
    Event(u64),
}

/// A completion delivered to the code, with the history position that delivered it, so
/// that races resolve in history order.
pub(crate) struct Delivered {
    pub order: u64,
    pub completion: Completion,
    /// For an external event: its name and identity, to return it to the buffer when the
    /// waiter is dropped before taking it.
    pub event: Option<(String, String, DateTime<Utc>)>,
}

/// An external event that arrived while nobody waited for it.
#[derive(Debug, Clone)]
pub(crate) struct BufferedEvent {
    pub order: u64,
    pub input: Value,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
}

pub(crate) struct ReplayState {
    pub instance_id: String,
    pub execution_id: String,
    pub current_time: DateTime<Utc>,
    pub is_replaying: bool,
    /// The history position being delivered (orders race results).
    pub current_order: u64,
    next_action_id: u64,
    /// Scheduling events already in history, by action id.
    recorded: BTreeMap<u64, EventKind>,
    /// New scheduling events and their actions, in the order the code produced them.
    pub new_events: Vec<EventKind>,
    pub actions: Vec<Action>,
    pub delivered: HashMap<Source, Delivered>,
    /// Event waiters in creation order: (waiter id, event name).
    waiters: Vec<(u64, String)>,
    next_waiter_id: u64,
    pub buffered_events: BTreeMap<String, VecDeque<BufferedEvent>>,
    pub guid_counter: u64,
    pub custom_status: Value,
    pub continue_as_new: Option<Value>,
    pub nondeterminism: Option<NondeterminismError>,
}

impl ReplayState {
    pub fn new(instance_id: String, execution_id: String, now: DateTime<Utc>) -> Self {
        Self {
            instance_id,
            execution_id,
            current_time: now,
            is_replaying: true,
            current_order: 0,
            next_action_id: 0,
            recorded: BTreeMap::new(),
            new_events: Vec::new(),
            actions: Vec::new(),
            delivered: HashMap::new(),
            waiters: Vec::new(),
            next_waiter_id: 0,
            buffered_events: BTreeMap::new(),
            guid_counter: 0,
            custom_status: Value::Null,
            continue_as_new: None,
            nondeterminism: None,
        }
    }

    /// Registers the scheduling events of the history the code must reproduce.
    pub fn expect_recorded(&mut self, history: &[HistoryEvent]) {
        for event in history {
            if let Some(id) = event.kind.scheduling_id() {
                self.recorded.insert(id, event.kind.clone());
            }
        }
    }

    /// Records one action of the code: matched against history when it was recorded,
    /// otherwise a new event and action of this episode. Returns the action id.
    pub fn record_action(&mut self, make: impl FnOnce(u64) -> (EventKind, Action)) -> u64 {
        let id = self.next_action_id;
        self.next_action_id += 1;
        let (event, action) = make(id);
        match self.recorded.remove(&id) {
            Some(recorded) => {
                if !same_action(&recorded, &event) && self.nondeterminism.is_none() {
                    self.nondeterminism = Some(NondeterminismError::Mismatch {
                        action_id: id,
                        recorded: describe(&recorded),
                        produced: describe(&event),
                    });
                }
            }
            None => {
                self.new_events.push(event);
                self.actions.push(action);
            }
        }
        id
    }

    /// The first recorded action the code never reproduced, if any.
    pub fn unmatched_recorded(&self) -> Option<NondeterminismError> {
        self.recorded
            .iter()
            .next()
            .map(|(id, kind)| NondeterminismError::Missing {
                action_id: *id,
                recorded: describe(kind),
            })
    }

    /// Creates a waiter for the next event called `name`, served from the buffer when
    /// such an event already arrived.
    pub fn add_waiter(&mut self, name: &str) -> u64 {
        let waiter = self.next_waiter_id;
        self.next_waiter_id += 1;
        let buffered = self
            .buffered_events
            .get_mut(name)
            .and_then(VecDeque::pop_front);
        match buffered {
            Some(event) => {
                self.delivered.insert(
                    Source::Event(waiter),
                    Delivered {
                        order: event.order,
                        completion: Ok(event.input),
                        event: Some((name.to_owned(), event.event_id, event.timestamp)),
                    },
                );
            }
            None => self.waiters.push((waiter, name.to_owned())),
        }
        waiter
    }

    /// Forgets a waiter that will never be awaited (its future was dropped).
    pub fn cancel_waiter(&mut self, waiter: u64) {
        self.waiters.retain(|(id, _)| *id != waiter);
        // An event delivered to a dropped waiter goes back to the buffer, in history order,
        // so a later waiter (or continue-as-new) still gets it.
        if let Some(delivered) = self.delivered.remove(&Source::Event(waiter)) {
            if let (Ok(input), Some((name, event_id, timestamp))) =
                (delivered.completion, delivered.event)
            {
                let queue = self.buffered_events.entry(name).or_default();
                let at = queue
                    .iter()
                    .position(|e| e.order > delivered.order)
                    .unwrap_or(queue.len());
                queue.insert(
                    at,
                    BufferedEvent {
                        order: delivered.order,
                        input,
                        event_id,
                        timestamp,
                    },
                );
            }
        }
    }

    /// Delivers an external event to the oldest waiter for its name, or buffers it.
    pub fn deliver_event(
        &mut self,
        name: &str,
        input: Value,
        event_id: String,
        timestamp: DateTime<Utc>,
    ) {
        let order = self.current_order;
        if let Some(pos) = self.waiters.iter().position(|(_, n)| n == name) {
            let (waiter, _) = self.waiters.remove(pos);
            self.delivered.insert(
                Source::Event(waiter),
                Delivered {
                    order,
                    completion: Ok(input),
                    event: Some((name.to_owned(), event_id, timestamp)),
                },
            );
        } else {
            self.buffered_events
                .entry(name.to_owned())
                .or_default()
                .push_back(BufferedEvent {
                    order,
                    input,
                    event_id,
                    timestamp,
                });
        }
    }

    /// Delivers the completion of an activity, timer or sub-orchestration.
    pub fn deliver_task(&mut self, id: u64, completion: Completion) {
        let order = self.current_order;
        self.delivered.insert(
            Source::Task(id),
            Delivered {
                order,
                completion,
                event: None,
            },
        );
    }
}

/// Whether the code's action is the one history recorded (kind, name and target; inputs
/// may change between versions of the code without breaking replay, as in Durable Functions).
fn same_action(recorded: &EventKind, produced: &EventKind) -> bool {
    use EventKind::*;
    match (recorded, produced) {
        (ActivityScheduled { name: a, .. }, ActivityScheduled { name: b, .. }) => a == b,
        (TimerCreated { .. }, TimerCreated { .. }) => true,
        (
            SubOrchestrationScheduled {
                name: a,
                instance_id: ia,
                ..
            },
            SubOrchestrationScheduled {
                name: b,
                instance_id: ib,
                ..
            },
        ) => a == b && ia == ib,
        (
            OrchestrationStartSent {
                name: a,
                instance_id: ia,
                ..
            },
            OrchestrationStartSent {
                name: b,
                instance_id: ib,
                ..
            },
        ) => a == b && ia == ib,
        (
            EventSent {
                name: a,
                instance_id: ia,
                ..
            },
            EventSent {
                name: b,
                instance_id: ib,
                ..
            },
        ) => a == b && ia == ib,
        _ => false,
    }
}

/// A short description of a scheduling event for error messages.
fn describe(kind: &EventKind) -> String {
    use EventKind::*;
    match kind {
        ActivityScheduled { name, .. } => format!("ActivityScheduled '{name}'"),
        TimerCreated { fire_at, .. } => format!("TimerCreated (fire at {fire_at})"),
        SubOrchestrationScheduled {
            name, instance_id, ..
        } => {
            format!("SubOrchestrationScheduled '{name}' (instance '{instance_id}')")
        }
        OrchestrationStartSent {
            name, instance_id, ..
        } => {
            format!("OrchestrationStartSent '{name}' (instance '{instance_id}')")
        }
        EventSent {
            name, instance_id, ..
        } => {
            format!("EventSent '{name}' to '{instance_id}'")
        }
        other => other.type_name().to_owned(),
    }
}
