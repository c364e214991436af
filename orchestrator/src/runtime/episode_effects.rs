//! What a finished episode means for storage: the new state row and the messages to send.
//! Pure functions, so the mapping is unit-tested without a backend.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::backend::{
    ActivityWorkItem, OrchestratorMessage, Outbound, QueueMessage, QueueName, StartCondition,
};
use crate::history::{EventKind, FailureDetails, ParentRef, HISTORY_FORMAT_VERSION};
use crate::replay::{Action, Episode, ExecutionOutcome, NewEvent};
use crate::status::{InstanceState, RuntimeStatus};

/// The state row after an episode.
pub fn next_state(
    previous: &InstanceState,
    episode: &Episode,
    history_len: u64,
    now: DateTime<Utc>,
) -> InstanceState {
    let mut state = previous.clone();
    if let Some(start) = &episode.start {
        state.name = start.name.clone();
        state.version = start.version.clone();
        state.execution_id = start.execution_id.clone();
        state.input = start.input.clone();
        state.parent = start.parent.clone();
        state.trace_parent = start.trace_parent.clone();
    }
    state.custom_status = episode.custom_status.clone();
    state.updated_at = now;
    state.history_len = history_len;
    state.format_version = HISTORY_FORMAT_VERSION;
    state.output = Value::Null;
    state.failure = None;
    state.status = match &episode.outcome {
        ExecutionOutcome::NotStarted => RuntimeStatus::Pending,
        ExecutionOutcome::Running if episode.suspended => RuntimeStatus::Suspended,
        ExecutionOutcome::Running => RuntimeStatus::Running,
        ExecutionOutcome::Completed(output) => {
            state.output = output.clone();
            RuntimeStatus::Completed
        }
        ExecutionOutcome::Failed(failure) => {
            state.output = Value::String(failure.to_string());
            state.failure = Some(failure.clone());
            RuntimeStatus::Failed
        }
        ExecutionOutcome::Terminated(reason) => {
            state.output = Value::String(reason.clone());
            RuntimeStatus::Terminated
        }
        ExecutionOutcome::ContinuedAsNew { input, .. } => {
            state.input = input.clone();
            RuntimeStatus::ContinuedAsNew
        }
    };
    state
}

/// The messages an episode decided, addressed to their queues.
pub fn outbound_messages(
    state: &InstanceState,
    episode: &Episode,
    partitions: u32,
    now: DateTime<Utc>,
) -> Vec<Outbound> {
    let me = &state.instance_id;
    let execution = &state.execution_id;
    let mut out: Vec<Outbound> = episode
        .actions
        .iter()
        .map(|action| match action {
            Action::ScheduleActivity {
                id,
                name,
                version,
                input,
            } => Outbound {
                queue: QueueName::Work,
                message: QueueMessage::Activity(ActivityWorkItem {
                    instance_id: me.clone(),
                    execution_id: execution.clone(),
                    scheduled_id: *id,
                    name: name.clone(),
                    version: version.clone(),
                    input: input.clone(),
                    trace_parent: state.trace_parent.clone(),
                }),
                visible_at: None,
            },
            Action::CreateTimer { id, fire_at } => to_instance(
                me,
                Some(execution),
                EventKind::TimerFired {
                    scheduled_id: *id,
                    fire_at: *fire_at,
                },
                *fire_at,
                Some(*fire_at),
                partitions,
            ),
            Action::StartSubOrchestration {
                id,
                name,
                version,
                instance_id,
                execution_id,
                input,
            } => {
                let parent = ParentRef {
                    instance_id: me.clone(),
                    execution_id: execution.clone(),
                    scheduled_id: *id,
                };
                start_message(
                    state,
                    instance_id,
                    name,
                    version,
                    execution_id,
                    input,
                    Some(parent),
                    partitions,
                    now,
                )
            }
            Action::StartOrchestration {
                name,
                version,
                instance_id,
                execution_id,
                input,
                ..
            } => start_message(
                state,
                instance_id,
                name,
                version,
                execution_id,
                input,
                None,
                partitions,
                now,
            ),
            Action::SendEvent {
                instance_id,
                name,
                input,
                event_id,
                ..
            } => to_instance(
                instance_id,
                None,
                EventKind::EventRaised {
                    name: name.clone(),
                    input: input.clone(),
                    event_id: event_id.clone(),
                },
                now,
                None,
                partitions,
            ),
        })
        .collect();
    if let (Some(parent), Some(result)) = (&state.parent, parent_result(&episode.outcome)) {
        let kind = match result {
            Ok(output) => EventKind::SubOrchestrationCompleted {
                scheduled_id: parent.scheduled_id,
                result: output,
            },
            Err(failure) => EventKind::SubOrchestrationFailed {
                scheduled_id: parent.scheduled_id,
                failure,
            },
        };
        out.push(to_instance(
            &parent.instance_id,
            Some(&parent.execution_id),
            kind,
            now,
            None,
            partitions,
        ));
    }
    if let ExecutionOutcome::ContinuedAsNew { input, carryover } = &episode.outcome {
        let next_execution = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{me}|{execution}|next").as_bytes(),
        )
        .to_string();
        let next = start_message(
            state,
            me,
            &state.name,
            &state.version,
            &next_execution,
            input,
            state.parent.clone(),
            partitions,
            now,
        );
        out.push(next.with_start_condition(StartCondition::Replacing {
            execution_id: execution.clone(),
        }));
        for event in carryover {
            out.push(to_instance(
                me,
                None,
                event.kind.clone(),
                event.timestamp,
                None,
                partitions,
            ));
        }
    }
    out
}

/// Everything the committed history has decided that may not have been sent: the work of
/// every action without a completion, and the end of the execution (to the parent, or the
/// next execution's start). Used when a message comes back after a worker may have died
/// between a commit and its sends; duplicates are harmless (each has its identity).
pub fn pending_messages(
    state: &InstanceState,
    history: &[crate::history::HistoryEvent],
    partitions: u32,
    now: DateTime<Utc>,
) -> Vec<Outbound> {
    use crate::context::derived_id;
    let completed: std::collections::HashSet<u64> = history
        .iter()
        .filter_map(|e| e.kind.completes_id())
        .collect();
    let (me, execution) = (&state.instance_id, &state.execution_id);
    let actions = history
        .iter()
        .filter_map(|e| match &e.kind {
            kind if kind
                .scheduling_id()
                .is_some_and(|id| completed.contains(&id)) =>
            {
                None
            }
            EventKind::ActivityScheduled {
                id,
                name,
                version,
                input,
            } => Some(Action::ScheduleActivity {
                id: *id,
                name: name.clone(),
                version: version.clone(),
                input: input.clone(),
            }),
            EventKind::TimerCreated { id, fire_at } => Some(Action::CreateTimer {
                id: *id,
                fire_at: *fire_at,
            }),
            EventKind::SubOrchestrationScheduled {
                id,
                name,
                version,
                instance_id,
                input,
            } => Some(Action::StartSubOrchestration {
                id: *id,
                name: name.clone(),
                version: version.clone(),
                instance_id: instance_id.clone(),
                execution_id: derived_id(me, execution, *id),
                input: input.clone(),
            }),
            EventKind::OrchestrationStartSent {
                id,
                name,
                version,
                instance_id,
                input,
            } => Some(Action::StartOrchestration {
                id: *id,
                name: name.clone(),
                version: version.clone(),
                instance_id: instance_id.clone(),
                execution_id: derived_id(me, execution, *id),
                input: input.clone(),
            }),
            EventKind::EventSent {
                id,
                instance_id,
                name,
                input,
            } => Some(Action::SendEvent {
                id: *id,
                instance_id: instance_id.clone(),
                name: name.clone(),
                input: input.clone(),
                event_id: derived_id(me, execution, *id),
            }),
            _ => None,
        })
        .collect();
    let outcome = match state.status {
        RuntimeStatus::Completed => ExecutionOutcome::Completed(state.output.clone()),
        RuntimeStatus::Failed => ExecutionOutcome::Failed(
            state
                .failure
                .clone()
                .unwrap_or_else(|| FailureDetails::new("Failed", "failed")),
        ),
        RuntimeStatus::Terminated => {
            ExecutionOutcome::Terminated(state.output.as_str().unwrap_or_default().to_owned())
        }
        RuntimeStatus::ContinuedAsNew => ExecutionOutcome::ContinuedAsNew {
            input: state.input.clone(),
            carryover: Vec::new(),
        },
        _ => ExecutionOutcome::Running,
    };
    let episode = Episode {
        new_events: Vec::new(),
        actions,
        outcome,
        custom_status: Value::Null,
        suspended: false,
        start: None,
    };
    outbound_messages(state, &episode, partitions, now)
}

/// What a sub-orchestration reports to its parent, once it has ended.
fn parent_result(outcome: &ExecutionOutcome) -> Option<Result<Value, FailureDetails>> {
    match outcome {
        ExecutionOutcome::Completed(output) => Some(Ok(output.clone())),
        ExecutionOutcome::Failed(failure) => Some(Err(failure.clone())),
        ExecutionOutcome::Terminated(reason) => Some(Err(FailureDetails::non_retryable(
            "Terminated",
            format!("the sub-orchestration was terminated: {reason}"),
        ))),
        _ => None,
    }
}

/// A message carrying an event to an instance.
pub fn to_instance(
    instance_id: &str,
    execution_id: Option<&String>,
    kind: EventKind,
    timestamp: DateTime<Utc>,
    visible_at: Option<DateTime<Utc>>,
    partitions: u32,
) -> Outbound {
    Outbound {
        queue: QueueName::control_for(instance_id, partitions),
        message: QueueMessage::Orchestrator(OrchestratorMessage {
            instance_id: instance_id.to_owned(),
            execution_id: execution_id.cloned(),
            event: NewEvent { timestamp, kind },
            start_if: None,
        }),
        visible_at,
    }
}

#[allow(clippy::too_many_arguments)]
fn start_message(
    state: &InstanceState,
    instance_id: &str,
    name: &str,
    version: &str,
    execution_id: &str,
    input: &Value,
    parent: Option<ParentRef>,
    partitions: u32,
    now: DateTime<Utc>,
) -> Outbound {
    let kind = EventKind::ExecutionStarted {
        name: name.to_owned(),
        version: version.to_owned(),
        execution_id: execution_id.to_owned(),
        input: input.clone(),
        parent,
        format_version: HISTORY_FORMAT_VERSION,
        trace_parent: state.trace_parent.clone(),
    };
    to_instance(
        instance_id,
        Some(&execution_id.to_owned()),
        kind,
        now,
        None,
        partitions,
    )
}
