//! One episode: replays the committed history through the orchestration code, feeds it the
//! new events one at a time, and collects what the code decided.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::state::ReplayState;
use super::{accept_new_events, Action};
use crate::context::OrchestrationContext;
use crate::history::{
    panic_message, EventKind, FailureDetails, FailureKind, HistoryEvent, NewEvent, StartInfo,
};
use crate::registry::{OrchestrationFuture, Registry};

/// Everything an episode needs; nothing else is read.
#[derive(Debug, Clone)]
pub struct ReplayInput<'a> {
    /// The instance.
    pub instance_id: &'a str,
    /// The committed history of the current execution.
    pub history: &'a [HistoryEvent],
    /// Events delivered by messages since the last commit.
    pub new_events: Vec<NewEvent>,
    /// The episode time (the replay-safe `utc_now` of new code paths).
    pub now: DateTime<Utc>,
    /// Upper bound of history events per execution.
    pub max_history_events: usize,
}

/// How the execution stands after the episode.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionOutcome {
    /// No `ExecutionStarted` yet: the new events must wait for the start.
    NotStarted,
    /// Waiting for more events.
    Running,
    /// Finished with an output.
    Completed(Value),
    /// Failed.
    Failed(FailureDetails),
    /// Terminated by a client.
    Terminated(String),
    /// Restarts with `input`; `carryover` are external events to deliver to the new execution.
    ContinuedAsNew {
        /// The next execution's input.
        input: Value,
        /// Unconsumed external events.
        carryover: Vec<NewEvent>,
    },
}

impl ExecutionOutcome {
    /// Whether the execution has ended.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::NotStarted | Self::Running)
    }
}

/// The result of one episode.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Events to append to history, with sequence numbers following the committed ones.
    pub new_events: Vec<HistoryEvent>,
    /// Decisions to carry out after the commit.
    pub actions: Vec<Action>,
    /// Where the execution stands.
    pub outcome: ExecutionOutcome,
    /// The custom status after the episode.
    pub custom_status: Value,
    /// Whether the instance is suspended.
    pub suspended: bool,
    /// The execution's start data, once started.
    pub start: Option<StartInfo>,
}

/// Replays `history` (the history as replay reads it) and then the new events of `input`;
/// new history events are numbered from `committed`.
pub(super) fn replay_over(
    registry: &Registry,
    input: &ReplayInput<'_>,
    history: &[HistoryEvent],
    committed: usize,
) -> Episode {
    if let Some(outcome) = finished_before(history) {
        return Episode {
            new_events: Vec::new(),
            actions: Vec::new(),
            outcome,
            custom_status: last_custom_status(history),
            suspended: false,
            start: start_info(history),
        };
    }
    let accepted = accept_new_events(history, input.new_events.clone());
    let mut run = EpisodeRun::new(registry, input, history, committed);
    for (order, event) in history.iter().enumerate() {
        if run.outcome.is_some() {
            break;
        }
        run.step(&event.kind, event.timestamp, order as u64);
    }
    if accepted.is_empty() {
        return run.finish(committed, input.max_history_events, Vec::new());
    }
    run.state.borrow_mut().is_replaying = false;
    run.append(EventKind::OrchestratorStarted, input.now);
    let mut leftovers = Vec::new();
    for event in accepted {
        if run.outcome.is_some() {
            leftovers.push(event);
            continue;
        }
        run.append(event.kind, event.timestamp);
    }
    run.finish(committed, input.max_history_events, leftovers)
}

/// The start data recorded in history, if any.
pub(crate) fn start_info(history: &[HistoryEvent]) -> Option<StartInfo> {
    history.iter().find_map(|e| StartInfo::from_event(&e.kind))
}

pub(super) fn last_custom_status(history: &[HistoryEvent]) -> Value {
    history
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::CustomStatusSet { status } => Some(status.clone()),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

/// The terminal outcome already recorded in history, if any.
pub(super) fn finished_before(history: &[HistoryEvent]) -> Option<ExecutionOutcome> {
    history.iter().rev().find_map(|e| match &e.kind {
        EventKind::ExecutionCompleted { output } => {
            Some(ExecutionOutcome::Completed(output.clone()))
        }
        EventKind::ExecutionFailed { failure } => Some(ExecutionOutcome::Failed(failure.clone())),
        EventKind::ExecutionTerminated { reason } => {
            Some(ExecutionOutcome::Terminated(reason.clone()))
        }
        EventKind::ContinuedAsNew { input } => Some(ExecutionOutcome::ContinuedAsNew {
            input: input.clone(),
            carryover: Vec::new(),
        }),
        _ => None,
    })
}

struct EpisodeRun<'r> {
    registry: &'r Registry,
    state: Rc<RefCell<ReplayState>>,
    future: Option<OrchestrationFuture>,
    outcome: Option<ExecutionOutcome>,
    suspended: bool,
    /// Deliveries held while suspended: (history position, event, arrival time).
    held: Vec<(u64, EventKind, DateTime<Utc>)>,
    new_history: Vec<HistoryEvent>,
    next_seq: u64,
    now: DateTime<Utc>,
    recorded_custom_status: Value,
    start: Option<StartInfo>,
}

impl<'r> EpisodeRun<'r> {
    fn new(
        registry: &'r Registry,
        input: &ReplayInput<'_>,
        history: &[HistoryEvent],
        committed: usize,
    ) -> Self {
        let state = ReplayState::new(input.instance_id.to_owned(), String::new(), input.now);
        let state = Rc::new(RefCell::new(state));
        state.borrow_mut().expect_recorded(history);
        Self {
            registry,
            state,
            future: None,
            outcome: None,
            suspended: false,
            held: Vec::new(),
            new_history: Vec::new(),
            next_seq: committed as u64,
            now: input.now,
            recorded_custom_status: Value::Null,
            start: None,
        }
    }

    /// Appends a new event to history and applies it.
    fn append(&mut self, kind: EventKind, timestamp: DateTime<Utc>) {
        let order = self.next_seq;
        self.push_history(kind.clone(), timestamp);
        self.step(&kind, timestamp, order);
    }

    fn push_history(&mut self, kind: EventKind, timestamp: DateTime<Utc>) {
        self.new_history.push(HistoryEvent {
            seq: self.next_seq,
            timestamp,
            kind,
        });
        self.next_seq += 1;
    }

    /// Applies one event (recorded or new) to the running code.
    fn step(&mut self, kind: &EventKind, timestamp: DateTime<Utc>, order: u64) {
        self.state.borrow_mut().current_order = order;
        match kind {
            EventKind::OrchestratorStarted => self.state.borrow_mut().current_time = timestamp,
            EventKind::ExecutionStarted {
                name,
                version,
                execution_id,
                input,
                ..
            } => {
                self.start = StartInfo::from_event(kind);
                self.state.borrow_mut().execution_id = execution_id.clone();
                self.begin(name, version, input.clone());
            }
            EventKind::ExecutionSuspended { .. } => self.suspended = true,
            EventKind::ExecutionResumed { .. } => {
                self.suspended = false;
                for (held_order, held, held_at) in std::mem::take(&mut self.held) {
                    self.state.borrow_mut().current_order = held_order;
                    self.deliver(&held, held_order, held_at);
                }
            }
            EventKind::ExecutionTerminated { reason } => {
                self.outcome = Some(ExecutionOutcome::Terminated(reason.clone()));
            }
            EventKind::CustomStatusSet { status } => self.recorded_custom_status = status.clone(),
            EventKind::EventRaised { .. } => self.deliver(kind, order, timestamp),
            other if other.completes_id().is_some() => self.deliver(kind, order, timestamp),
            _ => {}
        }
    }

    fn begin(&mut self, name: &str, version: &str, input: Value) {
        match self.registry.find_orchestration(name, version) {
            Some(orchestration) => {
                let ctx = OrchestrationContext::new(self.state.clone());
                self.future = Some(orchestration(ctx, input));
                self.poll();
            }
            None => {
                let known = self.registry.orchestration_names().join(", ");
                let shown_version = if version.is_empty() {
                    "latest"
                } else {
                    version
                };
                self.outcome = Some(ExecutionOutcome::Failed(FailureDetails::of(
                    FailureKind::UnknownOrchestration,
                    format!(
                        "no orchestration named '{name}' (version {shown_version}) is registered; \
                         registered: [{known}]"
                    ),
                )));
            }
        }
    }

    /// Hands a completion to the code (or holds it while suspended) and lets the code run.
    fn deliver(&mut self, kind: &EventKind, order: u64, timestamp: DateTime<Utc>) {
        if self.suspended {
            self.held.push((order, kind.clone(), timestamp));
            return;
        }
        {
            let mut state = self.state.borrow_mut();
            match kind {
                EventKind::ActivityCompleted {
                    scheduled_id,
                    result,
                }
                | EventKind::SubOrchestrationCompleted {
                    scheduled_id,
                    result,
                } => state.deliver_task(*scheduled_id, Ok(result.clone())),
                EventKind::ActivityFailed {
                    scheduled_id,
                    failure,
                } => state.deliver_task(*scheduled_id, Err(failure.clone())),
                EventKind::SubOrchestrationFailed {
                    scheduled_id,
                    failure,
                } => {
                    let wrapped = FailureDetails {
                        kind: FailureKind::SubOrchestrationFailed,
                        message: format!("sub-orchestration failed: {}", failure.message),
                        retryable: failure.retryable,
                        inner: Some(Box::new(failure.clone())),
                    };
                    state.deliver_task(*scheduled_id, Err(wrapped))
                }
                EventKind::TimerFired { scheduled_id, .. } => {
                    state.deliver_task(*scheduled_id, Ok(Value::Null))
                }
                EventKind::EventRaised {
                    name,
                    input,
                    event_id,
                } => state.deliver_event(name, input.clone(), event_id.clone(), timestamp),
                _ => return,
            }
        }
        self.poll();
    }

    /// Polls the code once; records what it decided.
    fn poll(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        let Some(future) = self.future.as_mut() else {
            return;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let produced = std::mem::take(&mut self.state.borrow_mut().new_events);
        for kind in produced {
            self.push_history(kind, self.now);
        }
        let continue_as_new = self.state.borrow_mut().continue_as_new.take();
        self.outcome = match polled {
            Err(panic) => Some(ExecutionOutcome::Failed(FailureDetails::non_retryable(
                "OrchestrationPanicked",
                format!("the orchestration code panicked: {}", panic_message(&panic)),
            ))),
            Ok(Poll::Ready(result)) => Some(match (continue_as_new, result) {
                (Some(input), _) => ExecutionOutcome::ContinuedAsNew {
                    input,
                    carryover: Vec::new(),
                },
                (None, Ok(output)) => ExecutionOutcome::Completed(output),
                (None, Err(failure)) => ExecutionOutcome::Failed(failure),
            }),
            Ok(Poll::Pending) => {
                if let Some(input) = continue_as_new {
                    self.state.borrow_mut().continue_as_new = Some(input);
                }
                None
            }
        };
        if let Some(error) = self.state.borrow().nondeterminism.clone() {
            self.outcome = Some(ExecutionOutcome::Failed(error.to_failure()));
        }
    }

    fn finish(
        mut self,
        committed: usize,
        max_history_events: usize,
        leftovers: Vec<NewEvent>,
    ) -> Episode {
        let Some(_) = self.start else {
            return Episode {
                new_events: Vec::new(),
                actions: Vec::new(),
                outcome: ExecutionOutcome::NotStarted,
                custom_status: Value::Null,
                suspended: false,
                start: None,
            };
        };
        let mut state = self.state.borrow_mut();
        let terminated = matches!(self.outcome, Some(ExecutionOutcome::Terminated(_)));
        if !terminated && state.nondeterminism.is_none() {
            if let Some(missing) = state.unmatched_recorded() {
                state.nondeterminism = Some(missing.clone());
                self.outcome = Some(ExecutionOutcome::Failed(missing.to_failure()));
            }
        }
        let mut actions = std::mem::take(&mut state.actions);
        if state.nondeterminism.is_some() || terminated {
            // Decisions of diverged or terminated code are not carried out.
            actions.clear();
            self.new_history
                .retain(|e| e.kind.scheduling_id().is_none());
            self.next_seq = (committed + self.new_history.len()) as u64;
        }
        if self.outcome.is_none() {
            if let Some(input) = state.continue_as_new.take() {
                self.outcome = Some(ExecutionOutcome::ContinuedAsNew {
                    input,
                    carryover: Vec::new(),
                });
            }
        }
        if committed + self.new_history.len() > max_history_events && self.outcome.is_none() {
            actions.clear();
            self.outcome = Some(ExecutionOutcome::Failed(FailureDetails::of(
                FailureKind::HistoryLimitExceeded,
                format!(
                    "the execution has more than {max_history_events} history events; \
                     use continue-as-new for long-running orchestrations"
                ),
            )));
        }
        let custom_status = state.custom_status.clone();
        let carryover = carried_over_events(&mut state, leftovers);
        drop(state);
        if !terminated
            && custom_status != self.recorded_custom_status
            && !self.new_history.is_empty()
        {
            self.push_history(
                EventKind::CustomStatusSet {
                    status: custom_status.clone(),
                },
                self.now,
            );
        }
        let mut outcome = self.outcome.take().unwrap_or(ExecutionOutcome::Running);
        match &mut outcome {
            ExecutionOutcome::Completed(output) => self.push_history(
                EventKind::ExecutionCompleted {
                    output: output.clone(),
                },
                self.now,
            ),
            ExecutionOutcome::Failed(failure) => self.push_history(
                EventKind::ExecutionFailed {
                    failure: failure.clone(),
                },
                self.now,
            ),
            ExecutionOutcome::ContinuedAsNew {
                input,
                carryover: slot,
            } => {
                *slot = carryover;
                self.push_history(
                    EventKind::ContinuedAsNew {
                        input: input.clone(),
                    },
                    self.now,
                )
            }
            ExecutionOutcome::Terminated(_)
            | ExecutionOutcome::Running
            | ExecutionOutcome::NotStarted => {}
        }
        Episode {
            new_events: self.new_history,
            actions,
            outcome,
            custom_status,
            suspended: self.suspended,
            start: self.start,
        }
    }
}

/// External events nobody consumed, in arrival order, for the next execution.
fn carried_over_events(state: &mut ReplayState, leftovers: Vec<NewEvent>) -> Vec<NewEvent> {
    let mut buffered: Vec<_> = std::mem::take(&mut state.buffered_events)
        .into_iter()
        .flat_map(|(name, events)| events.into_iter().map(move |e| (name.clone(), e)))
        .collect();
    buffered.sort_by_key(|(_, e)| e.order);
    let mut carried: Vec<NewEvent> = buffered
        .into_iter()
        .map(|(name, e)| NewEvent {
            timestamp: e.timestamp,
            kind: EventKind::EventRaised {
                name,
                input: e.input,
                event_id: e.event_id,
            },
        })
        .collect();
    carried.extend(
        leftovers
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::EventRaised { .. })),
    );
    carried
}
