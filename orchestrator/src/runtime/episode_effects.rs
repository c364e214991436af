//! What a finished episode means for storage: the new state row and the messages to send.
//! Pure functions (no I/O, the time given), unit-tested below.

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use crate::backend::to_instance;
use crate::backend::{ActivityWorkItem, Outbound, QueueMessage, QueueName, StartCondition};
use crate::chain::Chain;
use crate::history::{EventKind, FailureDetails, ParentRef, StartInfo, HISTORY_FORMAT_VERSION};
use crate::replay::{Action, Episode, ExecutionOutcome};
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

/// The `traceparent` of what an execution starts (activities, sub-orchestrations, chained
/// runs): its own `orchestration:{name}` span, the same on every worker.
fn children_trace_parent(state: &InstanceState) -> Option<String> {
    Some(crate::telemetry::trace_context::orchestration_traceparent(
        state.trace_parent.as_deref(),
        &state.instance_id,
        &state.execution_id,
    ))
}

/// The messages an episode decided, addressed to their queues.
pub fn outbound_messages(
    state: &InstanceState,
    episode: &Episode,
    chains: &[Chain],
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
                    trace_parent: children_trace_parent(state),
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
                    instance_id,
                    name,
                    version,
                    execution_id,
                    input,
                    Some(parent),
                    children_trace_parent(state),
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
                instance_id,
                name,
                version,
                execution_id,
                input,
                None,
                children_trace_parent(state),
                partitions,
                now,
            ),
            Action::RewindSubOrchestration {
                instance_id,
                reason,
                ..
            } => to_instance(
                instance_id,
                None,
                EventKind::ExecutionRewound {
                    reason: reason.clone(),
                    failures: Vec::new(),
                },
                now,
                None,
                partitions,
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
    if parent_result(&episode.outcome).is_some() {
        // The end of this run starts the chained runs declared for it, each once: a
        // deterministic instance and execution id, started only where none exists.
        for chain in chains.iter().filter(|c| c.fires_for(state)) {
            let start = start_message(
                &chain.instance_id(state),
                &chain.start,
                "",
                &chain.execution_id(state),
                &chain.input_for(state),
                None,
                children_trace_parent(state),
                partitions,
                now,
            );
            out.push(start.with_start_condition(StartCondition::Absent));
        }
    }
    if let ExecutionOutcome::ContinuedAsNew { input, carryover } = &episode.outcome {
        let next_execution = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{me}|{execution}|next").as_bytes(),
        )
        .to_string();
        let next = start_message(
            me,
            &state.name,
            &state.version,
            &next_execution,
            input,
            state.parent.clone(),
            // Every execution of the instance hangs under the start's span.
            state.trace_parent.clone(),
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
    chains: &[Chain],
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
    outbound_messages(state, &episode, chains, partitions, now)
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

#[allow(clippy::too_many_arguments)]
fn start_message(
    instance_id: &str,
    name: &str,
    version: &str,
    execution_id: &str,
    input: &Value,
    parent: Option<ParentRef>,
    trace_parent: Option<String>,
    partitions: u32,
    now: DateTime<Utc>,
) -> Outbound {
    let kind = StartInfo {
        version: version.to_owned(),
        parent,
        trace_parent,
        ..StartInfo::new(name, execution_id, input.clone())
    }
    .into_event();
    to_instance(
        instance_id,
        Some(&execution_id.to_owned()),
        kind,
        now,
        None,
        partitions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::OrchestratorMessage;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    const START_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn started(parent: Option<ParentRef>) -> InstanceState {
        let kind = StartInfo {
            parent,
            trace_parent: Some(START_TRACE.into()),
            ..StartInfo::new("o", "x1", json!(1))
        }
        .into_event();
        InstanceState::started("i", &kind, now())
    }

    fn episode(outcome: ExecutionOutcome, actions: Vec<Action>) -> Episode {
        Episode {
            new_events: Vec::new(),
            actions,
            outcome,
            custom_status: json!("stage 2"),
            suspended: false,
            start: None,
        }
    }

    fn orchestrator_message(outbound: &Outbound) -> &OrchestratorMessage {
        match &outbound.message {
            QueueMessage::Orchestrator(message) => message,
            _ => panic!("expected a control message"),
        }
    }

    #[test]
    fn the_state_row_follows_the_outcome() {
        let state = started(None);
        let done = next_state(
            &state,
            &episode(ExecutionOutcome::Completed(json!(42)), vec![]),
            7,
            now(),
        );
        assert_eq!(done.status, RuntimeStatus::Completed);
        assert_eq!(done.output, json!(42));
        assert_eq!(
            (done.history_len, done.custom_status.clone()),
            (7, json!("stage 2"))
        );
        let failure = FailureDetails::new("Boom", "it broke");
        let failed = next_state(
            &state,
            &episode(ExecutionOutcome::Failed(failure.clone()), vec![]),
            3,
            now(),
        );
        assert_eq!(failed.status, RuntimeStatus::Failed);
        assert_eq!(failed.failure, Some(failure));
        let mut suspended = episode(ExecutionOutcome::Running, vec![]);
        suspended.suspended = true;
        assert_eq!(
            next_state(&state, &suspended, 3, now()).status,
            RuntimeStatus::Suspended
        );
    }

    #[test]
    fn activities_go_to_the_work_queue_and_timers_come_back_when_due() {
        let state = started(None);
        let fire_at = now() + chrono::Duration::seconds(90);
        let actions = vec![
            Action::ScheduleActivity {
                id: 0,
                name: "square".into(),
                version: String::new(),
                input: json!(3),
            },
            Action::CreateTimer { id: 1, fire_at },
        ];
        let out = outbound_messages(
            &state,
            &episode(ExecutionOutcome::Running, actions),
            &[],
            4,
            now(),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].queue, QueueName::Work);
        let QueueMessage::Activity(item) = &out[0].message else {
            panic!("expected a work item");
        };
        assert_eq!((item.scheduled_id, item.execution_id.as_str()), (0, "x1"));
        let expected = crate::telemetry::trace_context::orchestration_traceparent(
            Some(START_TRACE),
            "i",
            "x1",
        );
        assert_eq!(
            item.trace_parent.as_deref(),
            Some(expected.as_str()),
            "the work is a child of the execution's span, in the start's trace"
        );
        assert!(expected.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert_eq!(out[1].queue, QueueName::control_for("i", 4));
        assert_eq!(out[1].visible_at, Some(fire_at));
        assert_eq!(
            orchestrator_message(&out[1]).execution_id.as_deref(),
            Some("x1")
        );
    }

    #[test]
    fn a_finished_child_tells_its_parent_and_continue_as_new_replaces_its_execution() {
        let parent = ParentRef {
            instance_id: "p".into(),
            execution_id: "px".into(),
            scheduled_id: 5,
        };
        let child = started(Some(parent));
        let out = outbound_messages(
            &child,
            &episode(ExecutionOutcome::Completed(json!("ok")), vec![]),
            &[],
            4,
            now(),
        );
        assert_eq!(out.len(), 1);
        let reply = orchestrator_message(&out[0]);
        assert_eq!(
            (reply.instance_id.as_str(), reply.execution_id.as_deref()),
            ("p", Some("px"))
        );
        assert!(matches!(
            reply.event.kind,
            EventKind::SubOrchestrationCompleted {
                scheduled_id: 5,
                ..
            }
        ));

        let state = started(None);
        let continued = ExecutionOutcome::ContinuedAsNew {
            input: json!(2),
            carryover: Vec::new(),
        };
        let first = outbound_messages(&state, &episode(continued.clone(), vec![]), &[], 4, now());
        let again = outbound_messages(&state, &episode(continued, vec![]), &[], 4, now());
        let next = orchestrator_message(&first[0]);
        assert_eq!(
            next.start_if,
            Some(StartCondition::Replacing {
                execution_id: "x1".into()
            }),
            "the next execution may only replace the one that continued"
        );
        assert_eq!(
            next.execution_id,
            orchestrator_message(&again[0]).execution_id,
            "the next execution's id is deterministic (a redelivery re-sends the same start)"
        );
    }

    #[test]
    fn an_end_starts_its_chained_runs_once_and_a_resend_is_the_same_start() {
        let chain: Chain = serde_json::from_value(json!({
            "name": "next", "after": "flow", "start": "after_flow",
            "input": {"total": "{{output/total}}"}
        }))
        .unwrap();
        let mut done = started(None);
        done.status = RuntimeStatus::Completed;
        done.output = json!({"total": 3});
        done.name = "flow".into();
        let out = outbound_messages(
            &done,
            &episode(ExecutionOutcome::Completed(json!({"total": 3})), vec![]),
            std::slice::from_ref(&chain),
            4,
            now(),
        );
        let starts: Vec<&OrchestratorMessage> = out.iter().map(orchestrator_message).collect();
        assert_eq!(starts.len(), 1);
        assert_eq!(
            starts[0].instance_id,
            format!("{}-then-next", done.instance_id)
        );
        assert_eq!(starts[0].start_if, Some(StartCondition::Absent));
        let resent = pending_messages(&done, &[], std::slice::from_ref(&chain), 4, now());
        assert_eq!(resent.len(), 1);
        assert_eq!(
            orchestrator_message(&resent[0]),
            starts[0],
            "the same start, re-derived"
        );
        // Still running, or ended another way: nothing.
        let running = outbound_messages(
            &started(None),
            &episode(ExecutionOutcome::Running, vec![]),
            std::slice::from_ref(&chain),
            4,
            now(),
        );
        assert!(running.is_empty());
    }
}
